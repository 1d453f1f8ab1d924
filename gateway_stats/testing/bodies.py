"""Response bodies: what the mock sends for a :class:`Truth` -- JSON objects, SSE events, error bodies.

Pure functions of the truth (no I/O, no timing), so a test can build the exact bytes the mock would send
and compare what the gateway saw with them.  The server (``mock_server``) frames, encodes and times these
per the request's scenario (``scenarios``).
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway_stats.testing.truth import Truth, _int, _split_text, _usage

__all__ = ["EMBEDDING_DIM", "build_events", "build_json", "error_body", "stream_error_event"]

EMBEDDING_DIM = 8


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _named(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


_DONE = b"data: [DONE]\n\n"


def _chat_message(t: Truth) -> dict[str, Any]:
    if t.tool_calls:
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}
                for tc in t.tool_calls
            ],
            "refusal": None,
        }
    return {"role": "assistant", "content": t.answer, "refusal": None}


def _embedding(index: int, dim: int) -> list[float]:
    return [round(((index * 31 + j * 17) % 200) / 100.0 - 1.0, 4) for j in range(dim)]


def _responses_output(t: Truth) -> list[dict[str, Any]]:
    if t.tool_calls:
        return [
            {
                "type": "function_call",
                "id": f"fc_{tc.id[5:]}",
                "call_id": tc.id,
                "name": tc.name,
                "arguments": tc.arguments,
                "status": "completed",
            }
            for tc in t.tool_calls
        ]
    return [
        {
            "type": "message",
            "id": "msg_" + t.chat_id.removeprefix("resp_"),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": t.answer, "annotations": []}],
        }
    ]


def _responses_object(t: Truth, created: int, done: bool) -> dict[str, Any]:
    return {
        "id": t.chat_id,
        "object": "response",
        "created_at": created,
        "status": "completed" if done else "in_progress",
        "model": t.model,
        "output": _responses_output(t) if done else [],
        "usage": t.usage if done else None,
    }


def _anthropic_content(t: Truth) -> list[dict[str, Any]]:
    if t.tool_calls:
        return [
            {"type": "tool_use", "id": tc.id, "name": tc.name, "input": orjson.loads(tc.arguments)}
            for tc in t.tool_calls
        ]
    return [{"type": "text", "text": t.answer}]


def _gemini_chunks(t: Truth) -> list[dict[str, Any]]:
    """The streamGenerateContent chunk objects, with cumulative usageMetadata."""
    out: list[dict[str, Any]] = []
    parts_list: list[list[dict[str, Any]]]
    if t.tool_calls:
        parts_list = [
            [{"functionCall": {"name": tc.name, "args": orjson.loads(tc.arguments)}}] for tc in t.tool_calls
        ]
    else:
        parts_list = [[{"text": c}] for c in t.chunks] or [[{"text": ""}]]
    m = len(parts_list)
    for i, parts in enumerate(parts_list):
        last = i == m - 1
        usage = (
            t.usage
            if last
            else _usage(
                "gemini", t.input_tokens, t.output_tokens * (i + 1) // m, t.cached_tokens, t.reasoning_tokens
            )[0]
        )
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if last:
            cand["finishReason"] = t.finish_reason
        out.append(
            {"candidates": [cand], "usageMetadata": usage, "modelVersion": t.model, "responseId": t.chat_id}
        )
    return out


def build_json(t: Truth, body: Mapping[str, Any], created: int | None = None) -> dict[str, Any]:
    """The non-streaming response object for ``t`` (``body`` only matters for embeddings)."""
    if created is None:
        created = int(time.time())
    p = t.provider
    if p == "openai.chat":
        return {
            "id": t.chat_id,
            "object": "chat.completion",
            "created": created,
            "model": t.model,
            "system_fingerprint": "fp_mock",
            "choices": [
                {"index": 0, "message": _chat_message(t), "logprobs": None, "finish_reason": t.finish_reason}
            ],
            "usage": t.usage,
        }
    if p == "openai.completions":
        return {
            "id": t.chat_id,
            "object": "text_completion",
            "created": created,
            "model": t.model,
            "choices": [{"text": t.answer, "index": 0, "logprobs": None, "finish_reason": t.finish_reason}],
            "usage": t.usage,
        }
    if p == "openai.embeddings":
        inp = body.get("input")
        count = len(inp) if isinstance(inp, list) and inp and not isinstance(inp[0], int) else 1
        dim = _int(str(body.get("dimensions", EMBEDDING_DIM)), EMBEDDING_DIM, 1, 4096)
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i in range(count):
            vec = _embedding(i, dim)
            emb: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": t.model, "usage": t.usage}
    if p == "openai.responses":
        return _responses_object(t, created, True)
    if p == "anthropic.messages":
        return {
            "id": t.chat_id,
            "type": "message",
            "role": "assistant",
            "model": t.model,
            "content": _anthropic_content(t),
            "stop_reason": t.finish_reason,
            "stop_sequence": None,
            "usage": t.usage,
        }
    # gemini
    if t.tool_calls:
        parts: list[dict[str, Any]] = [
            {"functionCall": {"name": tc.name, "args": orjson.loads(tc.arguments)}} for tc in t.tool_calls
        ]
    else:
        parts = [{"text": t.answer}]
    return {
        "candidates": [
            {"content": {"parts": parts, "role": "model"}, "finishReason": t.finish_reason, "index": 0}
        ],
        "usageMetadata": t.usage,
        "modelVersion": t.model,
        "responseId": t.chat_id,
    }


def build_events(t: Truth, created: int | None = None) -> tuple[list[bytes], int, int]:
    """SSE events (LF line endings) for a streaming ``t``.

    Returns ``(events, usage_index, first_content_index)``: the index of the event carrying the final
    usage (the last event before ``[DONE]`` when the stream has no usage) and of the first delta event
    (-1 when there is none).
    """
    if created is None:
        created = int(time.time())
    p = t.provider
    ev: list[bytes] = []
    first = -1
    if p in ("openai.chat", "openai.completions"):
        chat = p == "openai.chat"
        base: dict[str, Any] = {
            "id": t.chat_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": t.model,
        }
        if chat:
            base["system_fingerprint"] = "fp_mock"

        def chunk(delta: dict[str, Any] | str, finish: str | None = None) -> bytes:
            d = dict(base)
            if chat:
                d["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            else:
                d["choices"] = [{"text": delta, "index": 0, "logprobs": None, "finish_reason": finish}]
            if t.include_usage:
                d["usage"] = None
            return _sse(d)

        if t.tool_calls:
            for i, tc in enumerate(t.tool_calls):
                head: dict[str, Any] = {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": tc.id,
                            "type": "function",
                            "function": {"name": tc.name, "arguments": ""},
                        }
                    ]
                }
                if i == 0:
                    head = {"role": "assistant", "content": None, **head}
                ev.append(chunk(head))
                for frag in _split_text(tc.arguments, t.events):
                    if first < 0:
                        first = len(ev)
                    ev.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}))
        else:
            for i, c in enumerate(t.chunks):
                if first < 0:
                    first = len(ev)
                if chat:
                    ev.append(chunk({"role": "assistant", "content": c} if i == 0 else {"content": c}))
                else:
                    ev.append(chunk(c))
        ev.append(chunk({} if chat else "", t.finish_reason))
        usage_idx = len(ev) - 1
        if t.include_usage:
            d = dict(base)
            d["choices"] = []
            d["usage"] = t.usage
            ev.append(_sse(d))
            usage_idx = len(ev) - 1
        ev.append(_DONE)
        return ev, usage_idx, first

    if p == "openai.responses":
        seq = 0

        def named(name: str, obj: dict[str, Any]) -> bytes:
            nonlocal seq
            obj = {"type": name, "sequence_number": seq, **obj}
            seq += 1
            return _named(name, obj)

        ev.append(named("response.created", {"response": _responses_object(t, created, False)}))
        ev.append(named("response.in_progress", {"response": _responses_object(t, created, False)}))
        for oi, item in enumerate(_responses_output(t)):
            if item["type"] == "function_call":
                ev.append(
                    named(
                        "response.output_item.added",
                        {"output_index": oi, "item": {**item, "arguments": "", "status": "in_progress"}},
                    )
                )
                for frag in _split_text(item["arguments"], t.events):
                    if first < 0:
                        first = len(ev)
                    ev.append(
                        named(
                            "response.function_call_arguments.delta",
                            {"item_id": item["id"], "output_index": oi, "delta": frag},
                        )
                    )
                ev.append(
                    named(
                        "response.function_call_arguments.done",
                        {"item_id": item["id"], "output_index": oi, "arguments": item["arguments"]},
                    )
                )
            else:
                loc = {"item_id": item["id"], "output_index": oi, "content_index": 0}
                ev.append(
                    named(
                        "response.output_item.added",
                        {"output_index": oi, "item": {**item, "status": "in_progress", "content": []}},
                    )
                )
                ev.append(
                    named(
                        "response.content_part.added",
                        {**loc, "part": {"type": "output_text", "text": "", "annotations": []}},
                    )
                )
                for c in t.chunks:
                    if first < 0:
                        first = len(ev)
                    ev.append(named("response.output_text.delta", {**loc, "delta": c, "logprobs": []}))
                ev.append(named("response.output_text.done", {**loc, "text": t.answer, "logprobs": []}))
                ev.append(named("response.content_part.done", {**loc, "part": item["content"][0]}))
            ev.append(named("response.output_item.done", {"output_index": oi, "item": item}))
        ev.append(named("response.completed", {"response": _responses_object(t, created, True)}))
        return ev, len(ev) - 1, first

    if p == "anthropic.messages":
        start_usage = dict(t.usage)
        start_usage["output_tokens"] = 1
        message: dict[str, Any] = {
            "id": t.chat_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": t.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        ev.append(_named("message_start", {"type": "message_start", "message": message}))
        blocks: list[tuple[dict[str, Any], str, list[str]]]
        if t.tool_calls:
            blocks = [
                (
                    {"type": "tool_use", "id": tc.id, "name": tc.name, "input": {}},
                    "input_json_delta",
                    _split_text(tc.arguments, t.events),
                )
                for tc in t.tool_calls
            ]
        else:
            blocks = [({"type": "text", "text": ""}, "text_delta", list(t.chunks))]
        for bi, (block, kind, pieces) in enumerate(blocks):
            ev.append(
                _named(
                    "content_block_start",
                    {"type": "content_block_start", "index": bi, "content_block": block},
                )
            )
            if bi == 0:
                ev.append(_named("ping", {"type": "ping"}))
            key = "text" if kind == "text_delta" else "partial_json"
            for piece in pieces:
                if first < 0:
                    first = len(ev)
                ev.append(
                    _named(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": bi, "delta": {"type": kind, key: piece}},
                    )
                )
            ev.append(_named("content_block_stop", {"type": "content_block_stop", "index": bi}))
        ev.append(
            _named(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": t.finish_reason, "stop_sequence": None},
                    "usage": {"output_tokens": t.output_tokens},
                },
            )
        )
        usage_idx = len(ev) - 1
        ev.append(_named("message_stop", {"type": "message_stop"}))
        return ev, usage_idx, first

    if p == "gemini":
        ev = [_sse(c) for c in _gemini_chunks(t)]
        return ev, len(ev) - 1, 0 if (t.chunks or t.tool_calls) else -1
    raise ValueError(f"{p} has no streaming form")


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def stream_error_event(provider: str) -> bytes:
    """The SSE error event a stream ends with when it fails mid-way (HTTP status already 200)."""
    if provider == "anthropic.messages":
        return _named("error", error_body(529, provider, "mock error: overloaded mid-stream"))
    return _sse(error_body(500, provider, "mock error: failed mid-stream"))


def error_body(status: int, provider: str | None = None, message: str | None = None) -> dict[str, Any]:
    """The JSON error body sent for ``status`` (``{"error": {"message", "type", "code"}}``)."""
    err = {
        "message": message or f"mock error: HTTP {status}",
        "type": _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
        "code": status,
    }
    if provider == "anthropic.messages":
        return {"type": "error", "error": err}
    return {"error": err}
