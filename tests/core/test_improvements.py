"""Where gateway-stats does better than Higress (higress-compat.md §9), one test per improvement.

Streamed answers append without an explicit rule; compressed bodies are decoded for analysis; a
final event without a delimiter still counts when its JSON is complete; every cap is bounded,
reported in the record and in the ai_log (`gateway_stats_caps_hit`), never an out-of-memory; a huge
request body is observed with only a bounded prefix kept; durations without usage; disconnects.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from typing import Any

import brotli
import pytest
from driver import MS, T_FIRST_CHUNK_MS, run_call, sse, start_call

from gateway_stats.config import parse_config

REQ = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def delta(text: str, cid: str = "chatcmpl-1") -> dict[str, Any]:
    return {
        "id": cid,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


USAGE = {
    "id": "chatcmpl-1",
    "model": "gpt-4o-2024-08-06",
    "choices": [],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}
STREAM = sse(delta("Hel"), delta("lo"), USAGE, b"[DONE]")
JSON_BODY = json.dumps(
    {
        "id": "chatcmpl-2",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"message": {"content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
).encode()


def limits(**kw: int) -> dict[str, Any]:
    return {"gateway_stats": {"limits": kw}}


# ========================================================================= answer appends by default
@pytest.mark.parametrize("key", ["answer", "reasoning"])
def test_streamed_answer_and_reasoning_append_without_a_rule(key: str) -> None:
    """Higress logs null for a response_streaming_body answer without `rule`; we append."""
    field = "content" if key == "answer" else "reasoning_content"
    config = {
        "attributes": [
            {
                "key": key,
                "value_source": "response_streaming_body",
                "value": f"choices.0.delta.{field}",
                "apply_to_log": True,
            }
        ]
    }
    body = sse(*({"choices": [{"delta": {field: t}}]} for t in ("a", "b", "c")), b"[DONE]")
    log = run_call(config, request=REQ, response=body, content_type="text/event-stream").log
    assert log[key] == "abc"


def test_other_streaming_attributes_default_to_first() -> None:
    config = {
        "attributes": [
            {
                "key": "k",
                "value_source": "response_streaming_body",
                "value": "choices.0.delta.content",
                "apply_to_log": True,
            }
        ]
    }
    log = run_call(config, request=REQ, response=STREAM, content_type="text/event-stream").log
    assert log["k"] == "Hel"


def test_builtin_answer_in_a_stream_is_the_whole_answer() -> None:
    config = {"attributes": [{"key": "answer", "apply_to_log": True}]}
    assert (
        run_call(config, request=REQ, response=STREAM, content_type="text/event-stream").log["answer"]
        == "Hello"
    )


# ================================================================================ compressed bodies
def deflate_zlib(b: bytes) -> bytes:
    return zlib.compress(b)


def deflate_raw(b: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(b) + c.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": deflate_zlib,
    "deflate-raw": deflate_raw,
    "br": brotli.compress,
}


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_compressed_bodies_are_decoded_for_analysis(name: str, stream: bool) -> None:
    """Higress records nothing for gzip/deflate/br answers; we decode a copy (bytes pass unchanged)."""
    plain = STREAM if stream else JSON_BODY
    packed = ENCODERS[name](plain)
    encoding = "deflate" if name == "deflate-raw" else name
    ct = "text/event-stream" if stream else "application/json"
    for way in ({}, {"chunk_size": 1}, {"chunk_size": 5}, {"cuts": [len(packed) // 2]}):
        for extra in ({}, {"content-length": str(len(packed))}):
            call = run_call(
                request=REQ,
                response=packed,
                content_type=ct,
                resp_headers={"content-encoding": encoding, **extra},
                **way,
            )
            log = call.log
            assert (log["input_token"], log["output_token"], log["total_token"]) == (7, 3, 10), (way, extra)
            assert log["model"] == "gpt-4o-2024-08-06" and call.rec.answer == "Hello"
            assert call.rec.response_body_bytes == len(packed)  # counted as sent, compressed
            assert "gateway_stats_caps_hit" not in log


def test_unknown_encoding_is_reported_not_guessed() -> None:
    call = run_call(
        request=REQ, response=b"\x28\xb5\x2f\xfd garbage", resp_headers={"content-encoding": "zstd"}
    )
    assert call.rec.caps_hit == ["undecodable_encoding"] and not call.rec.usage.known
    assert call.log["gateway_stats_caps_hit"] == ["undecodable_encoding"] and call.log["model"] == "gpt-4o"


def test_corrupt_compressed_body_stops_analysis_without_raising() -> None:
    packed = gzip.compress(JSON_BODY)
    broken = packed[:10] + b"\x00" * 20 + packed[30:]
    call = run_call(request=REQ, response=broken, resp_headers={"content-encoding": "gzip"}, chunk_size=8)
    assert "decode_error" in call.rec.caps_hit and not call.rec.usage.known and call.rec.finished


# =============================================================== unterminated final event (complete JSON)
def test_final_event_without_delimiter_is_taken_when_its_json_is_complete() -> None:
    body = sse(delta("Hel"), delta("lo")) + b"data: " + json.dumps(USAGE).encode()  # no blank line at the end
    for end in ("separate", "with_last", "abort"):
        log = run_call(request=REQ, response=body, content_type="text/event-stream", end=end).log
        assert (log["input_token"], log["output_token"]) == (7, 3), end


def test_final_event_with_incomplete_json_is_discarded_and_nothing_is_fabricated() -> None:
    """The #4145 shape: the stream stops inside an event. Earlier values stay; the tail is dropped."""
    first = dict(USAGE, usage={"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13})
    tail = b'data: {"usage":{"prompt_tokens":99,"completion_tokens":99,"total_tok'
    for end in ("separate", "abort"):
        call = run_call(request=REQ, response=sse(first) + tail, content_type="text/event-stream", end=end)
        assert (call.log["input_token"], call.log["output_token"], call.log["total_token"]) == (5, 8, 13), end
    call = run_call(request=REQ, response=sse(delta("x")) + tail, content_type="text/event-stream")
    assert not call.rec.usage.known and "input_token" not in call.log


# ======================================================================================== caps
def test_answer_cap_is_reported_in_record_and_ai_log() -> None:
    config = {"use_default_attributes": True, **limits(max_attribute_bytes=1000)}
    body = sse(*(delta("x" * 100) for _ in range(50)), USAGE, b"[DONE]")
    call = run_call(config, request=REQ, response=body, content_type="text/event-stream")
    rec, log = call.rec, call.log
    assert rec.answer == "x" * 1000 and log["answer"] == "x" * 1000
    assert "answer" in rec.caps_hit and "answer" in log["gateway_stats_caps_hit"]
    assert log["input_token"] == 7  # usage after the cap is still read


def test_reasoning_tool_call_and_append_attribute_caps() -> None:
    config = {
        "use_default_attributes": True,
        "attributes": [
            {
                "key": "all",
                "value_source": "response_streaming_body",
                "value": "choices.0.delta.content",
                "rule": "append",
                "apply_to_log": True,
            }
        ],
        **limits(max_attribute_bytes=64),
    }

    def d(**delta: Any) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta}]}

    body = sse(
        *(d(reasoning_content="r" * 10) for _ in range(10)),
        *(d(content="c" * 10) for _ in range(10)),
        d(
            tool_calls=[
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
            ]
        ),
        *(d(tool_calls=[{"index": 0, "function": {"arguments": "a" * 10}}]) for _ in range(10)),
        b"[DONE]",
    )
    call = run_call(config, request=REQ, response=body, content_type="text/event-stream")
    rec, log = call.rec, call.log
    assert rec.reasoning == "r" * 64 and rec.answer == "c" * 64
    assert rec.tool_calls is not None and rec.tool_calls[0]["function"]["arguments"] == "a" * 64
    assert log["all"] == "c" * 64
    for cap in ("reasoning", "answer", "tool_calls", "attribute:all"):
        assert cap in rec.caps_hit and cap in log["gateway_stats_caps_hit"], cap


def test_oversized_event_is_dropped_reported_and_the_stream_resynchronises() -> None:
    big = {
        "id": "chatcmpl-1",
        "choices": [{"delta": {"content": "z" * 5000}}],
        "usage": {"prompt_tokens": 99, "completion_tokens": 99},
    }
    body = sse(delta("a"), big, delta("b"), USAGE, b"[DONE]")
    for size in (None, 100, 4096):
        call = run_call(
            limits(max_event_bytes=2048),
            request=REQ,
            response=body,
            content_type="text/event-stream",
            chunk_size=size,
        )
        rec, log = call.rec, call.log
        assert rec.answer == "ab" and (log["input_token"], log["output_token"]) == (7, 3), size
        assert "sse_event" in rec.caps_hit and "sse_event" in log["gateway_stats_caps_hit"]


def test_oversized_json_body_is_not_parsed_and_is_reported() -> None:
    body = json.dumps(
        {"model": "m", "pad": "p" * 5000, "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    ).encode()
    call = run_call(limits(max_response_body_bytes=1024), request=REQ, response=body, chunk_size=300)
    assert "response_body" in call.rec.caps_hit and call.log["gateway_stats_caps_hit"] == ["response_body"]
    assert not call.rec.usage.known and call.log["model"] == "gpt-4o"  # nothing fabricated from a prefix


def test_memory_stays_bounded_for_an_endless_answer_stream() -> None:
    """20 MiB of streamed answer with a 64 KiB cap: the observer keeps about the cap, not the stream."""
    config = {"use_default_attributes": True, **limits(max_attribute_bytes=64 * 1024)}
    piece = sse(delta("y" * 4000)) * 16  # 64 KiB of events per transport chunk
    obs = start_call(config, request=REQ, content_type="text/event-stream")
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for i in range(320):  # 20 MiB
            obs.on_response_body(piece, False, (T_FIRST_CHUNK_MS + i) * MS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    obs.on_response_body(b"", True, 400 * MS)
    rec = obs.finish(400 * MS)
    assert peak - base < 2 * 1024 * 1024, peak - base
    assert len(rec.answer or "") == 64 * 1024 and "answer" in rec.caps_hit
    assert rec.response_body_bytes == 320 * len(piece)


def test_memory_stays_bounded_for_a_stream_that_never_delimits_an_event() -> None:
    obs = start_call(limits(max_event_bytes=64 * 1024), request=REQ, content_type="text/event-stream")
    obs.on_response_body(sse(USAGE), False, T_FIRST_CHUNK_MS * MS)
    chunk = b"data: " + b"q" * (256 * 1024)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for i in range(40):  # 10 MiB without a blank line
            obs.on_response_body(chunk, False, (T_FIRST_CHUNK_MS + 1 + i) * MS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rec = obs.finish(100 * MS, "aborted")
    assert peak - base < 2 * 1024 * 1024, peak - base
    assert rec.usage.input_tokens == 7 and "sse_event" in rec.caps_hit


# =========================================================================== huge request bodies
def test_huge_request_body_is_observed_with_a_bounded_prefix() -> None:
    """Never rejected (Higress answers 413, #3819/#4267): counted, marked, and the call still observed."""
    config = parse_config(limits(max_request_body_bytes=64 * 1024))
    obs = start_call(config, request=None, status=None)  # request headers only so far
    chunk = b'{"model":"gpt-4o","messages":[{"role":"user","content":"' + b"w" * (256 * 1024)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(48):  # 12 MiB request body
            assert obs.on_request_body(chunk, False, 1 * MS) is False
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    obs.on_request_body(b'"}]}', True, 2 * MS)
    assert peak - base < 1024 * 1024, peak - base
    obs.on_response_headers({":status": "200", "content-type": "application/json"}, {}, False, 10 * MS)
    obs.on_response_body(JSON_BODY, True, 20 * MS)
    rec = obs.finish(20 * MS)
    log = obs.ai_log()
    assert rec.request_body_bytes == 48 * len(chunk) + 4 and rec.request_body_truncated
    assert "request_body" in rec.caps_hit and log["gateway_stats_caps_hit"] == ["request_body"]
    assert rec.observed and (log["model"], log["input_token"], log["output_token"]) == (
        "gpt-4o-2024-08-06",
        7,
        3,
    )
    assert log["chat_id"] == "chatcmpl-2" and rec.answer == "Hello"  # the response side is fully analysed


def test_request_body_at_the_limit_is_still_parsed() -> None:
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "v" * 100}]}).encode()
    call = run_call(limits(max_request_body_bytes=len(body)), request=body, response=JSON_BODY)
    assert call.rec.request_model == "gpt-4o" and not call.rec.request_body_truncated
    assert "gateway_stats_caps_hit" not in call.log


# ===================================================================== durations, TTFT, disconnects
def test_durations_are_recorded_without_usage() -> None:
    """Higress records nothing when the upstream sends no usage (#2595, #2857)."""
    body = sse(delta("a"), delta("b"), b"[DONE]")
    call = run_call(
        request=REQ,
        response=body,
        content_type="text/event-stream",
        cuts=[len(sse(delta("a")))],
        end="with_last",
    )
    log = call.log
    assert "input_token" not in log
    assert (log["llm_first_token_duration"], log["llm_service_duration"]) == (
        T_FIRST_CHUNK_MS,
        T_FIRST_CHUNK_MS + 1,
    )


def test_time_to_first_content_is_separate_from_first_byte() -> None:
    """The first body bytes may carry no content (role-only chunk, Anthropic message_start, pings)."""
    preamble = (
        sse({"id": "chatcmpl-1", "choices": [{"delta": {"role": "assistant", "content": ""}}]})
        + b": keep-alive\n\n"
    )
    body = preamble + sse(delta("x"), USAGE, b"[DONE]")
    call = run_call(request=REQ, response=body, content_type="text/event-stream", cuts=[len(preamble)])
    log = call.log
    assert log["llm_first_token_duration"] == T_FIRST_CHUNK_MS  # Higress's field: the first byte
    assert log["llm_first_content_duration"] == T_FIRST_CHUNK_MS + 1  # ours: the first generated content


def test_client_disconnect_after_usage_keeps_usage_and_durations() -> None:
    body = sse(delta("Hel"), USAGE) + b'data: {"choices":[{"delta":{"content":"lo'
    call = run_call(request=REQ, response=body, content_type="text/event-stream", end="abort", chunk_size=20)
    rec, log = call.rec, call.log
    assert rec.finished and rec.end_reason == "aborted" and not rec.failed
    assert (log["input_token"], log["output_token"], log["total_token"]) == (7, 3, 10)
    assert (
        log["llm_service_duration"] == rec.service_duration_ms
        and log["llm_first_token_duration"] == T_FIRST_CHUNK_MS
    )
    assert rec.answer == "Hel"


def test_abort_before_any_response_is_a_failure_with_the_request_model() -> None:
    obs = start_call(request=REQ, status=None)
    rec = obs.finish(5 * MS, "aborted")
    assert rec.failed and rec.error_type == "aborted" and obs.ai_log()["model"] == "gpt-4o"
    assert obs.ai_log()["llm_service_duration"] == 5


# ===================================================================== truncation and span values
def test_truncation_is_utf8_safe_and_the_log_stays_valid_json() -> None:
    config = {
        "value_length_limit": 9,
        "attributes": [
            {"key": "q", "value_source": "request_body", "value": "messages.0.content", "apply_to_log": True}
        ],
    }
    req = {
        "model": "m",
        "messages": [{"role": "user", "content": "日本語のテキストです"}],
    }  # 3 bytes per character
    log = run_call(config, request=req, response=JSON_BODY).log
    assert log["q"] == "日 [truncated] す"  # 4 bytes each side: one whole character, never a split one
    assert "\ufffd" not in log["q"]


def test_unresolved_span_attributes_are_not_set() -> None:
    """No `"<nil>"` span values: an attribute that did not resolve is left out of the span."""
    config = {
        "attributes": [
            {"key": "a", "value_source": "request_header", "value": "x-absent", "apply_to_span": True},
            {
                "key": "b",
                "value_source": "request_body",
                "value": "nope",
                "apply_to_span": True,
                "trace_span_key": "gen_ai.b",
            },
            {
                "key": "c",
                "value_source": "fixed_value",
                "value": "v",
                "apply_to_span": True,
                "trace_span_key": "gen_ai.c",
            },
        ]
    }
    call = run_call(config, request=REQ, response=JSON_BODY)
    assert call.rec.span_attributes == {"gen_ai.c": "v"}
