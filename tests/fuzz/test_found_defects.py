"""Regression tests for defects found by probing the core as an attacker would (issue 16).

Each test here failed on the code before its fix (the commit that adds the test says how).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_stats.config.reader import default_config
from gateway_stats.core.observer import CallObserver

MS = 1_000_000


def _started(path: str = "/v1/chat/completions", body: dict[str, Any] | None = None, cfg: Any = None) -> CallObserver:
    obs = CallObserver(cfg or default_config())
    obs.on_request_headers({":method": "POST", ":path": path, ":authority": "llm.local"}, {}, False, 0)
    obs.on_request_body(json.dumps(body or {"model": "m", "stream": True}).encode(), True, MS)
    return obs


# ------------------------------------------------------------------ unhashable JSON values
@pytest.mark.parametrize("bad_type", [[], ["message_stop"], {}, {"a": 1}, [[1]]])
@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/unknown", "/v1beta/models/g:streamGenerateContent"]
)
def test_sse_event_type_that_is_a_list_or_object_does_not_raise(path: str, bad_type: Any) -> None:
    """Was: TypeError: unhashable type: 'list' out of on_response_body (set-membership of `type`)."""
    obs = _started(path)
    obs.on_response_headers({":status": "200", "content-type": "text/event-stream"}, {}, False, 2 * MS)
    ev = {"type": bad_type, "delta": {"type": bad_type}, "choices": [{"delta": {"content": "x"}}]}
    body = b"data: " + json.dumps(ev).encode() + b"\n\n"
    body += b'data: {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n'
    obs.on_response_body(body, False, 3 * MS)
    obs.on_response_body(b"", True, 4 * MS)
    rec = obs.finish(5 * MS)
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (3, 4)


def test_unhashable_values_everywhere_in_json_bodies() -> None:
    """Every field the providers compare or look up, given a list/object instead of a string."""
    weird: list[Any] = [[], {}, [1, [2]], {"k": []}]
    for w in weird:
        for path in ("/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/x"):
            obs = _started(path, {"model": w, "stream": w, "messages": w, "input": w})
            obs.on_response_headers({":status": "200", "content-type": "application/json"}, {}, False, 2 * MS)
            doc = {
                "type": w, "id": w, "model": w, "error": {"type": w, "message": w}, "status": w,
                "stop_reason": w, "choices": [{"finish_reason": w, "message": {"content": w, "tool_calls": [w]}}],
                "content": [{"type": w, "text": w}], "output": [{"type": w}], "candidates": [{"finishReason": w}],
                "usage": {"prompt_tokens": w, "completion_tokens": w, "prompt_tokens_details": w},
            }
            obs.on_response_body(json.dumps(doc).encode(), True, 3 * MS)
            obs.finish(4 * MS)
            obs.ai_log()
