"""The sans-IO core, without gRPC: phase events in, one record and one ai_log out."""

from __future__ import annotations

import gzip
import json

from driver import MS, chat_chunk, start

from gateway_stats.config import default_config
from gateway_stats.core.observer import CallObserver


def test_json_chat_record_and_ai_log() -> None:
    obs = CallObserver(default_config())
    start(obs, {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    obs.on_response_headers({":status": "200", "content-type": "application/json"}, {}, False, 50 * MS)
    body = {
        "id": "c-9",
        "model": "gpt-4o-2024",
        "choices": [{"message": {"content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }
    raw = json.dumps(body).encode()
    assert obs.on_response_body(raw[:10], False, 60 * MS) is False
    assert obs.on_response_body(raw[10:], True, 70 * MS) is True
    rec = obs.finish(71 * MS)
    assert (
        rec.route == "r1" and rec.cluster == "c1" and rec.request_id == "rid-1" and rec.consumer == "team-a"
    )
    assert rec.request_model == "gpt-4o" and rec.model == "gpt-4o-2024"
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.usage.total_tokens) == (11, 3, 14)
    assert rec.answer == "hello" and rec.finish_reasons == ["stop"]
    assert rec.end_reason == "complete" and not rec.failed
    log = obs.ai_log()
    assert log["model"] == "gpt-4o-2024" and log["input_token"] == 11 and log["output_token"] == 3
    assert log["total_token"] == 14 and log["llm_service_duration"] == 70 and log["response_type"] == "normal"
    assert log["chat_id"] == "c-9" and log["chat_round"] == 1 and log["api"] == "-"


def test_stream_usage_split_anywhere_and_timings() -> None:
    stream = b"".join(
        [
            chat_chunk("Hel"),
            chat_chunk("lo"),
            chat_chunk(finish="stop"),
            chat_chunk(usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
            b"data: [DONE]\n\n",
        ]
    )
    for cut in range(1, len(stream)):
        obs = CallObserver(default_config())
        start(obs, {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        obs.on_response_headers({":status": "200", "content-type": "text/event-stream"}, {}, False, 10 * MS)
        obs.on_response_body(stream[:cut], False, 20 * MS)
        obs.on_response_body(stream[cut:], False, 30 * MS)
        obs.on_response_body(b"", True, 40 * MS)
        rec = obs.finish(41 * MS)
        assert (rec.usage.input_tokens, rec.usage.output_tokens) == (5, 2), cut
        assert rec.answer == "Hello"
        log = obs.ai_log()
        assert log["response_type"] == "stream"
        assert log["llm_first_token_duration"] == 20
        # The answer was complete at [DONE] (30 ms); the trailing empty end-of-stream message (40 ms)
        # does not move the end, so ai_log, metrics and spans agree.
        assert log["llm_service_duration"] == 30 and rec.service_duration_ms == 30


def test_finalized_once_and_abort_keeps_what_was_seen() -> None:
    obs = CallObserver(default_config())
    start(obs, {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    obs.on_response_headers({":status": "200", "content-type": "text/event-stream"}, {}, False, 10 * MS)
    obs.on_response_body(
        chat_chunk("a", model="gpt-4o")
        + chat_chunk(usage={"prompt_tokens": 9, "completion_tokens": 1}, model="gpt-4o"),
        False,
        20 * MS,
    )
    rec = obs.finish(25 * MS, "aborted")
    assert rec.finished and rec.end_reason == "aborted"
    assert rec.usage.input_tokens == 9 and rec.model == "gpt-4o"
    again = obs.finish(99 * MS, "complete")
    assert again is rec and rec.end_reason == "aborted" and rec.t_end == 25 * MS


def test_error_response_keeps_request_model() -> None:
    obs = CallObserver(default_config())
    start(obs, {"model": "gpt-4o", "messages": []})
    obs.on_response_headers({":status": "429", "content-type": "application/json"}, {}, False, 10 * MS)
    obs.on_response_body(b'{"error":{"message":"slow down","type":"rate_limit"}}', True, 20 * MS)
    rec = obs.finish(21 * MS)
    assert rec.failed and rec.error_type == "rate_limit" and rec.model == "gpt-4o"
    assert obs.ai_log()["model"] == "gpt-4o"


def test_gzip_body_is_decoded_for_analysis() -> None:
    obs = CallObserver(default_config())
    start(obs, {"model": "m", "messages": []})
    obs.on_response_headers(
        {":status": "200", "content-type": "application/json", "content-encoding": "gzip"}, {}, False, 1
    )
    raw = gzip.compress(
        json.dumps({"model": "m2", "usage": {"prompt_tokens": 4, "completion_tokens": 6}}).encode()
    )
    obs.on_response_body(raw[:7], False, 2)
    obs.on_response_body(raw[7:], True, 3)
    rec = obs.finish(4)
    assert rec.model == "m2" and rec.usage.total_tokens == 10


def test_garbage_never_raises() -> None:
    obs = CallObserver(default_config())
    obs.on_request_headers({":path": "/v1/chat/completions"}, {}, False, 0)
    obs.on_request_body(b"\xff\xfe not json", True, 1)
    obs.on_response_headers({":status": "200", "content-type": "text/event-stream"}, {}, False, 2)
    obs.on_response_body(b"data: {broken\n\ndata: [1,2]\n\n: comment\n\n\r\r\n", False, 3)
    obs.on_response_body(b'data: {"usage": "nope"}\n\n', True, 4)
    rec = obs.finish(5)
    assert rec.finished and rec.usage.input_tokens is None
    assert rec.extra.get("bad_json_request") and rec.extra.get("bad_json_events") == 1


def test_request_body_prefix_is_capped() -> None:
    from dataclasses import replace

    cfg = default_config()
    cfg = replace(
        cfg,
        extensions=replace(
            cfg.extensions, limits=replace(cfg.extensions.limits, max_request_body_bytes=1000)
        ),
    )
    obs = CallObserver(cfg)
    obs.on_request_headers({":path": "/v1/chat/completions"}, {}, False, 0)
    for _ in range(100):
        obs.on_request_body(b"x" * 1000, False, 1)
    obs.on_request_body(b"", True, 2)
    rec = obs.finish(3)
    assert rec.request_body_bytes == 100_000 and rec.request_body_truncated
    assert "request_body" in rec.caps_hit
