"""The sans-IO core: what one LLM call means, computed from plain events.

A `CallObserver` (observer.py) is fed request/response events — headers, body chunks, end of stream,
monotonic timestamps, Envoy attributes — and fills one `CallRecord` (record.py), finalized exactly once.
Next to it: SSE framing (sse.py), content decoding (decoding.py), capped accumulators (accumulate.py),
usage rules (usage.py), configured attributes (attributes.py), the per-call extraction that ties them to
a provider shape (extraction.py), GJSON paths (gjson.py), histogram buckets (buckets.py) and the Higress
`ai_log` document built from the record (ai_log.py).

May import: the standard library (no I/O), orjson, jsonpath-ng, `gateway_stats.config` (plain data) and
`gateway_stats.providers`. Never grpc, asyncio, prometheus_client, opentelemetry, uvloop or socket:
tests/core/test_boundaries.py enforces it.
"""
