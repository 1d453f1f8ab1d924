"""Mock LLM upstream: the stable import surface and ``python -m gateway_stats.testing.mockllm``.

The code now lives in ``mock_server`` (split by concept in the next commit); import from here.
"""

from __future__ import annotations

from gateway_stats.testing.mock_server import (
    DEFAULT_EVENTS,
    DEFAULT_MAX_PARSE_BYTES,
    DEFAULT_MAX_RECORDS,
    SCENARIO_HEADERS,
    MockLLM,
    RequestRecord,
    ToolCall,
    Truth,
    build_events,
    build_json,
    error_body,
    expected,
    main,
    provider_for_path,
)

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_MAX_PARSE_BYTES",
    "DEFAULT_MAX_RECORDS",
    "SCENARIO_HEADERS",
    "MockLLM",
    "RequestRecord",
    "ToolCall",
    "Truth",
    "build_events",
    "build_json",
    "error_body",
    "expected",
    "main",
    "provider_for_path",
]

if __name__ == "__main__":
    raise SystemExit(main())
