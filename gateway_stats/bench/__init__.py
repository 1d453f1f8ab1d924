"""`make bench`: what gateway-stats costs the traffic, measured beside plain Envoy in the same run.

Kept apart from the sidecar's hot path: nothing here is imported by `gateway-stats serve`.
Modules: canned (the request and answer bytes), httpwire (tiny HTTP/1.1 parsing), upstream (the fast
mock LLM), noop (the naive no-op processor, our floor), client (SSE and fixed-rate load), wrk (the JSON
load generator), stacks (the four set-ups), probes (/proc, Envoy and sidecar counters), report
(tables and targets), profile (py-spy), driver (the whole run).
"""
