"""Bad input gives a counter and one log line per kind (then debug lines), never an exception."""

from __future__ import annotations

import logging

import pytest

from gateway_stats.config.store import ConfigStore
from gateway_stats.core.observer import CallObserver
from gateway_stats.envoy.runtime import Runtime

MS = 1_000_000


def _call(rt: Runtime, path: str, request: bytes, response: bytes, ctype: str = "application/json") -> None:
    obs = CallObserver(rt.config)
    obs.on_request_headers(
        {":method": "POST", ":path": path, ":authority": "h"}, {"request.id": "r"}, False, 0
    )
    obs.on_request_body(request, True, MS)
    obs.on_response_headers({":status": "200", "content-type": ctype}, {}, False, 2 * MS)
    obs.on_response_body(response, True, 3 * MS)
    rec = obs.finish(4 * MS)
    rt.emit(rec, obs.ai_log())


def _count(rt: Runtime, name: str, **labels: str) -> float:
    v = rt.registry.get_sample_value(name, labels or None)
    return v or 0.0


def test_malformed_bodies_and_unknown_api_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = Runtime(ConfigStore(None))
    caplog.set_level(logging.DEBUG, logger="gateway_stats.envoy.runtime")
    for _ in range(3):
        _call(rt, "/v1/chat/completions", b'{"model": "m", "messages": [', b"{not json")
    assert _count(rt, "gateway_stats_bad_json_total", where="request") == 3
    assert _count(rt, "gateway_stats_bad_json_total", where="response") == 3
    _call(rt, "/internal/thing", b'{"a": 1}', b'{"b": 2}')
    _call(rt, "/internal/thing", b'{"a": 1}', b'{"b": 2}')
    assert _count(rt, "gateway_stats_unrecognised_calls_total") == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("request body was not valid JSON" in w for w in warnings) == 1
    assert sum("response body was not valid JSON" in w for w in warnings) == 1
    assert sum("no known LLM API shape" in w for w in warnings) == 1
    assert any(
        "no known LLM API shape" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG
    )


def test_broken_sse_stream_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime(ConfigStore(None))
    big = b"data: " + b"x" * (2 << 20) + b"\n\n"  # over the 1 MiB event cap
    stream = (
        b'data: {"id":"c","model":"m","choices":[{"delta":{"content":"a"}}]}\n\n' + big + b"data: {oops\n\n"
    )
    with caplog.at_level(logging.WARNING, logger="gateway_stats.envoy.runtime"):
        _call(rt, "/v1/chat/completions", b'{"model":"m","stream":true}', stream, "text/event-stream")
    assert _count(rt, "gateway_stats_caps_hit_total", cap="sse_event") == 1
    assert _count(rt, "gateway_stats_bad_json_total", where="event") >= 1
    assert any("'sse_event' reached its cap" in r.getMessage() for r in caplog.records)
