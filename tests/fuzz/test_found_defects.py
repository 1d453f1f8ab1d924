"""Regression tests for defects found by probing the core as an attacker would (issue 16).

Each test here failed on the code before its fix (the commit that adds the test says how).
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from typing import Any

import brotli
import pytest

from gateway_stats.config import default_config, parse_text
from gateway_stats.core.observer import CallObserver

MS = 1_000_000
MiB = 1 << 20


def _started(
    path: str = "/v1/chat/completions", body: dict[str, Any] | None = None, cfg: Any = None
) -> CallObserver:
    obs = CallObserver(cfg or default_config())
    obs.on_request_headers({":method": "POST", ":path": path, ":authority": "llm.local"}, {}, False, 0)
    obs.on_request_body(json.dumps(body or {"model": "m", "stream": True}).encode(), True, MS)
    return obs


# ------------------------------------------------------------------ unhashable JSON values
@pytest.mark.parametrize("bad_type", [[], ["message_stop"], {}, {"a": 1}, [[1]]])
@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/responses",
        "/v1/unknown",
        "/v1beta/models/g:streamGenerateContent",
    ],
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
                "type": w,
                "id": w,
                "model": w,
                "error": {"type": w, "message": w},
                "status": w,
                "stop_reason": w,
                "choices": [{"finish_reason": w, "message": {"content": w, "tool_calls": [w]}}],
                "content": [{"type": w, "text": w}],
                "output": [{"type": w}],
                "candidates": [{"finishReason": w}],
                "usage": {"prompt_tokens": w, "completion_tokens": w, "prompt_tokens_details": w},
            }
            obs.on_response_body(json.dumps(doc).encode(), True, 3 * MS)
            obs.finish(4 * MS)
            obs.ai_log()


# ------------------------------------------------------------------ decompression bombs
def _gzip_zeros(total: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    out = [c.compress(block) for _ in range(total // MiB)]
    out.append(c.flush())
    return b"".join(out)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return _gzip_zeros(512 * MiB)  # ~0.5 MB on the wire


def _peak_while(obs: CallObserver, wire: bytes, step: int) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for i in range(0, len(wire), step):
            obs.on_response_body(wire[i : i + step], False, 3 * MS)
        obs.on_response_body(b"", True, 4 * MS)
        obs.finish(5 * MS)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("content_type", ["application/json", "text/event-stream"])
def test_gzip_bomb_peak_memory_is_bounded(gzip_bomb: bytes, content_type: str) -> None:
    """Was: ~150 MiB peak for 512 MiB of zeros in 0.5 MB of gzip (64 KiB wire chunks)."""
    assert len(gzip_bomb) < 600_000
    obs = _started()
    obs.on_response_headers(
        {":status": "200", "content-type": content_type, "content-encoding": "gzip"}, {}, False, 2 * MS
    )
    peak = _peak_while(obs, gzip_bomb, 64 * 1024)
    limits = default_config().extensions.limits
    cap = limits.max_response_body_bytes if content_type == "application/json" else limits.max_event_bytes
    assert peak < cap + 4 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert {"response_body", "decode_ratio"} & set(obs.record.caps_hit) or content_type != "application/json"


def test_gzip_bomb_in_one_chunk_is_bounded(gzip_bomb: bytes) -> None:
    obs = _started()
    obs.on_response_headers(
        {":status": "200", "content-type": "application/json", "content-encoding": "gzip"}, {}, False, 2 * MS
    )
    peak = _peak_while(obs, gzip_bomb, len(gzip_bomb))
    assert peak < default_config().extensions.limits.max_response_body_bytes + 4 * MiB + len(gzip_bomb)


def test_brotli_bomb_is_bounded() -> None:
    wire = brotli.compress(bytes(256 * MiB), quality=5)
    assert len(wire) < 100_000
    for ct in ("application/json", "text/event-stream"):
        obs = _started()
        obs.on_response_headers(
            {":status": "200", "content-type": ct, "content-encoding": "br"}, {}, False, 2 * MS
        )
        peak = _peak_while(obs, wire, 4096)
        assert peak < default_config().extensions.limits.max_response_body_bytes + 4 * MiB, ct


def test_small_limit_caps_decoded_body() -> None:
    cfg = parse_text("gateway_stats: {limits: {max_response_body_bytes: 65536}}")
    obs = _started(cfg=cfg)
    obs.on_response_headers(
        {":status": "200", "content-type": "application/json", "content-encoding": "gzip"}, {}, False, 2 * MS
    )
    wire = gzip.compress(b" " * (4 * MiB) + b"{}")
    peak = _peak_while(obs, wire, 1 << 20)
    assert peak < 2 * MiB
    assert "response_body" in obs.record.caps_hit


def test_compressed_answers_still_decode_exactly() -> None:
    """The bounded decoders give the same bytes as a one-shot decompress, for every split."""
    body = json.dumps(
        {
            "id": "c1",
            "model": "m",
            "choices": [{"message": {"content": "y" * 300_000}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }
    ).encode()
    for enc, wire in (
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", zlib.compress(body, wbits=-15) if False else _raw_deflate(body)),
        ("br", brotli.compress(body)),
    ):
        for step in (1, 7, 1000, len(wire)):
            obs = _started()
            obs.on_response_headers(
                {":status": "200", "content-type": "application/json", "content-encoding": enc},
                {},
                False,
                2 * MS,
            )
            for i in range(0, len(wire), step):
                obs.on_response_body(wire[i : i + step], False, 3 * MS)
            obs.on_response_body(b"", True, 4 * MS)
            rec = obs.finish(5 * MS)
            assert rec.usage.total_tokens == 3, (enc, step)
            assert rec.answer == "y" * 300_000, (enc, step)


def _raw_deflate(body: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(body) + c.flush()


# ------------------------------------------------------------------ digits that int() refuses
@pytest.mark.parametrize("value", ["²", "٣" * 2 + "²", "9" * 5000])
@pytest.mark.parametrize("header", [":status", "content-length"])
def test_unicode_or_huge_digits_in_headers_do_not_raise(header: str, value: str) -> None:
    """Found by test_no_exception_escapes_any_phase_sequence: ':status: ²' passed str.isdigit() and
    int('²') raised ValueError out of on_response_headers (so did 5000 digits: int's 4300-digit limit)."""
    obs = _started(body={"model": "m"})
    hdrs = {":status": "200", "content-type": "application/json", header: value}
    obs.on_response_headers(hdrs, {}, False, 2 * MS)
    obs.on_response_body(b'{"usage": {"prompt_tokens": 2}}', True, 3 * MS)
    rec = obs.finish(4 * MS)
    assert rec.usage.input_tokens == 2


@pytest.mark.parametrize("value", ["²", "9" * 5000, " 12 "])
def test_unicode_or_huge_digits_in_token_attributes_do_not_raise(value: str) -> None:
    """Same class in Extraction._usage_from_attributes: an `input_token` attribute read from the body."""
    cfg = parse_text(
        "attributes:\n- {key: input_token, value_source: response_body, value: n, apply_to_log: true}\n"
    )
    obs = _started(body={"model": "m"}, cfg=cfg)
    obs.on_response_headers({":status": "200", "content-type": "application/json"}, {}, False, 2 * MS)
    obs.on_response_body(json.dumps({"n": value}).encode(), True, 3 * MS)
    rec = obs.finish(4 * MS)
    assert rec.usage.input_tokens == (12 if value == " 12 " else None)
