"""Test helpers shipped with the package, for our demo and tests and for users' own tests.

`mockllm` is a mock OpenAI / Anthropic / Gemini upstream that knows its ground truth (tokens, answers,
tool calls) for every request — its import surface and CLI; the parts live in `truth.py` (what it
answers), `bodies.py` (the JSON bodies and SSE events it writes), `scenarios.py` (the `x-mock-*`
request headers that shape an answer on the wire) and `mock_server.py` (the HTTP server). `procs`
starts Envoy, gateway-stats and the mock on free loopback ports and stops them by PID.
Never imported by `gateway-stats serve`.
"""
