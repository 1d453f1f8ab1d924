"""Test helpers shipped with the package, for our demo and tests and for users' own tests.

`mockllm` is a mock OpenAI / Anthropic / Gemini upstream that knows its ground truth (tokens, answers,
tool calls) for every request; `procs` starts Envoy, gateway-stats and the mock on free loopback ports
and stops them by PID. Never imported by `gateway-stats serve`.
"""
