"""Mock LLM upstream for the demo, the end-to-end tests behind Envoy and the benchmarks.

A small asyncio HTTP/1.1 server (no framework) that answers like OpenAI (chat completions, legacy
completions, embeddings, Responses API), Anthropic (messages) and Gemini (generateContent /
streamGenerateContent).  The request decides everything:

* the path picks the provider shape (suffix match, so ``/openai/v1/chat/completions`` works too);
* the JSON body gives ``model``, ``stream`` and ``stream_options.include_usage``;
* optional ``x-mock-*`` request headers pick the scenario (see ``SCENARIO_HEADERS``).

Endpoints: ``POST`` ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``,
``/v1/messages``, ``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent[?alt=sse]``;
``GET /healthz``; ``POST /echo-size`` (``{"bytes", "sha256"}`` of the whole request body); ``GET
/_mock/records[?limit=N]``, ``GET|DELETE /_mock/records/{request_id}``, ``DELETE /_mock/records``.
Request bodies of any size are accepted (streamed, counted and hashed); only the first
``max_parse_bytes`` are kept for parsing.  SSE answers use chunked encoding, JSON ones Content-Length;
every answer carries ``x-mock-request-id`` (the record key: ``x-request-id`` if sent, else generated).

Every answer is deterministic: :func:`expected` returns the ground truth (:class:`Truth`) for a request
without talking to the server, and the server builds its responses from that very function.  The server
also keeps a bounded :class:`RequestRecord` per request with the monotonic timestamp, wire offset and size
of every response write, readable in-process (``MockLLM.records``) or over HTTP (``/_mock/records``).

Token semantics (all deterministic):

* input tokens = ``x-mock-input-tokens``, else the number of whitespace-separated words in all the
  prompt texts of the body, plus 7;
* output tokens = ``x-mock-output-tokens``, else the number of content deltas: ``x-mock-events`` words
  (default 5), or with ``x-mock-tools: K`` K tool calls of ``x-mock-events`` argument fragments each;
* cached / reasoning tokens = ``x-mock-cached-tokens`` / ``x-mock-reasoning-tokens`` (default 0).

Each provider reports them in its native fields, verbatim: OpenAI ``prompt_tokens`` = input,
``completion_tokens`` = output, details carry cached/reasoning; Anthropic ``input_tokens`` = input and
``cache_read_input_tokens`` = cached; Gemini ``promptTokenCount`` = input, ``candidatesTokenCount`` =
output, ``thoughtsTokenCount`` = reasoning, ``cachedContentTokenCount`` = cached (only when > 0) and
``totalTokenCount`` = input + output + reasoning (Gemini counts thoughts outside the candidates); every
other total is input + output.  ``Truth.usage`` is the exact native usage object the mock sends.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import signal
import socket
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import brotli
import orjson

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_MAX_PARSE_BYTES",
    "DEFAULT_MAX_RECORDS",
    "SCENARIO_HEADERS",
    "MockLLM",
    "RequestRecord",
    "ToolCall",
    "Truth",
    "expected",
    "main",
    "provider_for_path",
]

DEFAULT_EVENTS = 5
MAX_EVENTS = 100_000
MAX_TOOLS = 64
DEFAULT_MODEL = "mock-model"
DEFAULT_MAX_RECORDS = 10_000
DEFAULT_MAX_PARSE_BYTES = 64 * 1024
DEFAULT_SPLIT_PAUSE_MS = 20.0
INPUT_TOKENS_BASE = 7
EMBEDDING_DIM = 8

SCENARIO_HEADERS: dict[str, str] = {
    "x-mock-events": "N content deltas (words, or argument fragments per tool call); default 5",
    "x-mock-input-tokens": "reported input/prompt tokens; default words in the prompt + 7",
    "x-mock-output-tokens": "reported output tokens; default the number of content deltas",
    "x-mock-cached-tokens": "reported cached input tokens; default 0",
    "x-mock-reasoning-tokens": "reported reasoning/thinking tokens; default 0",
    "x-mock-model": "model name in the RESPONSE (the request model is echoed otherwise)",
    "x-mock-chat-id": "response id (chatcmpl-/cmpl-/resp_/msg_/responseId) verbatim",
    "x-mock-tools": "K > 0: answer with K tool calls instead of text",
    "x-mock-interval-ms": "delay between SSE events (float ms)",
    "x-mock-first-byte-ms": "delay before the response headers and first byte (float ms)",
    "x-mock-status": "HTTP status; >= 400 gives a JSON error body",
    "x-mock-status-empty": "1: the error response has an empty body",
    "x-mock-crlf": "1: SSE lines end with CRLF",
    "x-mock-split-usage": "K: the usage-carrying SSE event is sent as K separate writes",
    "x-mock-split-pause-ms": "pause between those writes (float ms); default 20",
    "x-mock-gzip": "1: same as x-mock-encoding: gzip",
    "x-mock-encoding": "gzip | deflate | br content-encoding (SSE: flushed per event)",
    "x-mock-abort-after": "N: after N SSE events abort the connection (no terminating chunk)",
    "x-mock-abort-rst": "1: make that abort a TCP RST (SO_LINGER 0) instead of a FIN",
    "x-mock-unterminated-final": "1: last SSE event lacks the blank line; 2: lacks every trailing newline",
    "x-mock-event-bytes": "N: pad the first content SSE event to about N bytes",
    "x-mock-created": "N: the `created` timestamp (default: now), for byte-for-byte comparisons",
}

_ANSWER_TEXT = (
    "Hello from the mock LLM upstream this answer is fully deterministic and its token counts are known"
)
_WORDS = tuple(_ANSWER_TEXT.split())
_CITIES = ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Perth")

_PROMPT_FIELDS: dict[str, tuple[str, ...]] = {
    "openai.chat": ("messages",),
    "openai.completions": ("prompt",),
    "openai.embeddings": ("input",),
    "openai.responses": ("instructions", "input"),
    "anthropic.messages": ("system", "messages"),
    "gemini": ("systemInstruction", "system_instruction", "contents"),
}
_ID_PREFIX = {
    "openai.chat": "chatcmpl-",
    "openai.completions": "cmpl-",
    "openai.embeddings": "emb-",
    "openai.responses": "resp_",
    "anthropic.messages": "msg_",
    "gemini": "",
}
_TOOL_ID_PREFIX = {"anthropic.messages": "toolu_"}


# --------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the JSON text of the arguments, exactly as the fragments concatenate

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class Truth:
    """What the mock answers for a request (independent of timing/transport scenario headers)."""

    provider: str  # openai.chat | openai.completions | openai.embeddings | openai.responses |
    #                anthropic.messages | gemini
    stream: bool
    include_usage: bool  # stream_options.include_usage (OpenAI chat / completions)
    usage_reported: bool  # whether the response carries usage at all
    status: int
    request_model: str
    model: str  # the model in the response
    chat_id: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    answer: str  # the full text answer ("" with tool calls / embeddings)
    chunks: tuple[str, ...]  # the text deltas, in order
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str  # native: stop/tool_calls, end_turn/tool_use, STOP, completed
    events: int  # x-mock-events (deltas per text answer or per tool call)
    usage: dict[str, Any] = field(hash=False, compare=True)  # native usage object, final values

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "stream": self.stream,
            "include_usage": self.include_usage,
            "usage_reported": self.usage_reported,
            "status": self.status,
            "request_model": self.request_model,
            "model": self.model,
            "chat_id": self.chat_id,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "answer": self.answer,
            "chunks": list(self.chunks),
            "tool_calls": [tc.to_dict() for tc in self.tool_calls],
            "finish_reason": self.finish_reason,
            "events": self.events,
            "usage": self.usage,
        }


def _int(value: str | None, default: int, lo: int = 0, hi: int = 1 << 62) -> int:
    if value is None:
        return default
    try:
        v = int(value.strip())
    except ValueError:
        return default
    return lo if v < lo else hi if v > hi else v


def _float(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        v = float(value.strip())
    except ValueError:
        return default
    return v if v > 0.0 else 0.0


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


def provider_for_path(path: str) -> str | None:
    """The provider shape served at ``path`` (query string ignored), or None."""
    path = path.partition("?")[0]
    if "/models/" in path and (":generateContent" in path or ":streamGenerateContent" in path):
        return "gemini"
    if path.endswith("/chat/completions"):
        return "openai.chat"
    if path.endswith("/completions"):
        return "openai.completions"
    if path.endswith("/embeddings"):
        return "openai.embeddings"
    if path.endswith("/responses"):
        return "openai.responses"
    if path.endswith("/messages"):
        return "anthropic.messages"
    return None


def _count_words(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj.split())
    if isinstance(obj, list):
        return sum(_count_words(x) for x in obj)
    if isinstance(obj, dict):
        n = 0
        for key in ("content", "text", "parts"):
            v = obj.get(key)
            if v is not None:
                n += _count_words(v)
        return n
    if isinstance(obj, int) and not isinstance(obj, bool):
        return 1  # token-id prompts (completions / embeddings)
    return 0


def _prompt_words(provider: str, body: Mapping[str, Any]) -> int:
    return sum(_count_words(body.get(k)) for k in _PROMPT_FIELDS[provider])


@lru_cache(maxsize=256)
def _text_chunks(n: int) -> tuple[str, ...]:
    return tuple(_WORDS[i % len(_WORDS)] if i == 0 else " " + _WORDS[i % len(_WORDS)] for i in range(n))


@lru_cache(maxsize=256)
def _text_answer(n: int) -> str:
    return "".join(_text_chunks(n))


def _split_text(text: str, n: int) -> list[str]:
    """Split ``text`` into ``n`` contiguous non-empty pieces (fewer if the text is shorter)."""
    n = max(1, min(n, len(text)))
    q, r = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        size = q + (1 if i < r else 0)
        out.append(text[pos : pos + size])
        pos += size
    return out


def _tool_names(provider: str, body: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    tools = body.get("tools")
    if not isinstance(tools, list):
        return names
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if provider == "gemini":
            decls = tool.get("functionDeclarations") or tool.get("function_declarations") or []
            names.extend(d["name"] for d in decls if isinstance(d, dict) and isinstance(d.get("name"), str))
            continue
        fn = tool.get("function")
        name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
        if isinstance(name, str):
            names.append(name)
    return names


def _usage(provider: str, inp: int, out: int, cached: int, reasoning: int) -> tuple[dict[str, Any], int]:
    if provider in ("openai.chat", "openai.completions"):
        total = inp + out
        return {
            "prompt_tokens": inp,
            "completion_tokens": out,
            "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }, total
    if provider == "openai.embeddings":
        return {"prompt_tokens": inp, "total_tokens": inp}, inp
    if provider == "openai.responses":
        total = inp + out
        return {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": total,
        }, total
    if provider == "anthropic.messages":
        return {
            "input_tokens": inp,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": out,
        }, inp + out + cached  # Anthropic sends no total; Higress adds the cache tokens
    total = inp + out + reasoning  # gemini
    usage: dict[str, Any] = {
        "promptTokenCount": inp,
        "candidatesTokenCount": out,
        "totalTokenCount": total,
        "thoughtsTokenCount": reasoning,
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
    return usage, total


def _truth(provider: str, path: str, h: Mapping[str, str], body: Mapping[str, Any]) -> Truth:
    """Core of :func:`expected`; ``h`` has lower-case names, ``body`` is the parsed JSON object."""
    if provider == "gemini":
        base = path.partition("?")[0]
        request_model = base.rpartition("/models/")[2].partition(":")[0] or DEFAULT_MODEL
        stream = ":streamGenerateContent" in base
    else:
        m = body.get("model")
        request_model = m if isinstance(m, str) and m else DEFAULT_MODEL
        stream = body.get("stream") is True and provider != "openai.embeddings"
    model = h.get("x-mock-model") or request_model
    include_usage = False
    if stream and provider in ("openai.chat", "openai.completions"):
        so = body.get("stream_options")
        include_usage = isinstance(so, dict) and so.get("include_usage") is True
    status = _int(h.get("x-mock-status"), 200, 200, 999)
    n = _int(h.get("x-mock-events"), DEFAULT_EVENTS, 0, MAX_EVENTS)
    k = (
        0
        if provider in ("openai.completions", "openai.embeddings")
        else _int(h.get("x-mock-tools"), 0, 0, MAX_TOOLS)
    )
    inp_h = h.get("x-mock-input-tokens")
    inp = _int(inp_h, -1, 0) if inp_h is not None else -1
    if inp < 0:
        inp = _prompt_words(provider, body) + INPUT_TOKENS_BASE
    cached = _int(h.get("x-mock-cached-tokens"), 0)
    reasoning = _int(h.get("x-mock-reasoning-tokens"), 0)

    digest = hashlib.sha256(f"{path.partition('?')[0]}|{model}|{inp}|{n}|{k}".encode()).hexdigest()
    chat_id = h.get("x-mock-chat-id") or _ID_PREFIX[provider] + digest[:24]

    tool_calls: tuple[ToolCall, ...] = ()
    if provider == "openai.embeddings":
        chunks: tuple[str, ...] = ()
        out = 0
        finish = ""
    elif k:
        chunks = ()
        names = _tool_names(provider, body) or ["get_weather"]
        words = _text_answer(max(n, 1))
        prefix = _TOOL_ID_PREFIX.get(provider, "call_")
        calls = []
        for i in range(k):
            args = {"city": _CITIES[i % len(_CITIES)], "unit": "celsius", "note": words}
            calls.append(
                ToolCall(f"{prefix}{digest[24:40]}{i}", names[i % len(names)], orjson.dumps(args).decode())
            )
        tool_calls = tuple(calls)
        out = k * n
        finish = {"openai.chat": "tool_calls", "anthropic.messages": "tool_use", "gemini": "STOP"}.get(
            provider, "completed"
        )
    else:
        chunks = _text_chunks(n)
        out = n
        finish = {"openai.chat": "stop", "openai.completions": "stop", "anthropic.messages": "end_turn"}.get(
            provider, "STOP" if provider == "gemini" else "completed"
        )
    out_h = h.get("x-mock-output-tokens")
    if out_h is not None:
        out = _int(out_h, out)
    usage, total = _usage(provider, inp, out, cached, reasoning)
    usage_reported = status < 400 and (
        not stream or provider not in ("openai.chat", "openai.completions") or include_usage
    )
    return Truth(
        provider=provider,
        stream=stream,
        include_usage=include_usage,
        usage_reported=usage_reported,
        status=status,
        request_model=request_model,
        model=model,
        chat_id=chat_id,
        input_tokens=inp,
        output_tokens=out,
        total_tokens=total,
        cached_tokens=cached,
        reasoning_tokens=reasoning if provider != "openai.embeddings" else 0,
        answer=_text_answer(n) if chunks else "",
        chunks=chunks,
        tool_calls=tool_calls,
        finish_reason=finish,
        events=n,
        usage=usage,
    )


def expected(
    request_path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | Mapping[str, Any] | None = None,
) -> Truth:
    """Ground truth for a request: what the mock answers at ``request_path`` (may include the query).

    ``headers`` may use any case; ``body`` is the raw JSON (bytes/str) or the already-decoded object.
    Raises ValueError for paths that are not an LLM API.  The server parses at most ``max_parse_bytes``
    (64 KiB by default) of a request body: for bigger bodies it answers as if the body were ``{}``, so pass
    ``{}`` here too (and use ``x-mock-input-tokens`` to control the counts).
    """
    provider = provider_for_path(request_path)
    if provider is None:
        raise ValueError(f"not an LLM path: {request_path!r}")
    h = {k.lower(): v for k, v in (headers or {}).items()}
    obj: Any
    if body is None:
        obj = {}
    elif isinstance(body, bytes | bytearray | memoryview | str):
        try:
            obj = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            obj = {}
    else:
        obj = body
    if not isinstance(obj, Mapping):
        obj = {}
    return _truth(provider, request_path, h, obj)


# --------------------------------------------------------------------------------------------------
# Response bodies
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RequestRecord:
    """Ground-truth timing of one request.  Timestamps are ``time.monotonic_ns()``.

    ``writes`` has one ``(t_ns, byte_offset, nbytes)`` per write of the response on the wire (status line
    and headers at offset 0; chunked framing and compression included in the sizes).
    """

    request_id: str
    method: str
    path: str  # request target, query included
    provider: str | None
    stream: bool
    scenario: dict[str, str]  # the x-mock-* request headers
    request_bytes: int = 0
    request_sha256: str = ""
    body_truncated: bool = False  # body bigger than max_parse_bytes: answered as if it were {}
    status: int = 0
    t_request_start: int = 0  # request head parsed
    t_request_received: int = 0  # whole request (body included) read
    t_first_byte: int | None = None
    t_last_byte: int | None = None
    writes: list[tuple[int, int, int]] = field(default_factory=list)
    bytes_sent: int = 0
    events_sent: int = 0  # SSE events written completely
    completed: bool = False  # the whole response was written
    aborted: bool = False  # the mock aborted the connection on purpose (x-mock-abort-after)
    client_disconnected: bool = False
    truth: Truth | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "provider": self.provider,
            "stream": self.stream,
            "scenario": self.scenario,
            "request_bytes": self.request_bytes,
            "request_sha256": self.request_sha256,
            "body_truncated": self.body_truncated,
            "status": self.status,
            "t_request_start": self.t_request_start,
            "t_request_received": self.t_request_received,
            "t_first_byte": self.t_first_byte,
            "t_last_byte": self.t_last_byte,
            "writes": self.writes,
            "bytes_sent": self.bytes_sent,
            "events_sent": self.events_sent,
            "completed": self.completed,
            "aborted": self.aborted,
            "client_disconnected": self.client_disconnected,
            "truth": self.truth.to_dict() if self.truth is not None else None,
        }


class _BadRequest(Exception):
    pass


class _Encoder:
    """Streaming content-encoder, flushed per write so every SSE event decodes on arrival."""

    __slots__ = ("_br", "_z")

    def __init__(self, kind: str) -> None:
        self._br: Any = None
        self._z: Any = None
        if kind == "br":
            self._br = brotli.Compressor()
        else:
            self._z = zlib.compressobj(6, zlib.DEFLATED, 31 if kind == "gzip" else 15)

    def chunk(self, data: bytes) -> bytes:
        if self._br is not None:
            return bytes(self._br.process(data) + self._br.flush())
        return bytes(self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH))

    def finish(self) -> bytes:
        if self._br is not None:
            return bytes(self._br.finish())
        return bytes(self._z.flush())


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "br":
        return bytes(brotli.compress(data))
    z = zlib.compressobj(6, zlib.DEFLATED, 31 if kind == "gzip" else 15)
    return z.compress(data) + z.flush()


@dataclass(slots=True)
class _Scenario:
    first_byte_s: float = 0.0
    interval_s: float = 0.0
    status_empty: bool = False
    crlf: bool = False
    split_usage: int = 1
    split_pause_s: float = DEFAULT_SPLIT_PAUSE_MS / 1000.0
    encoding: str = ""
    abort_after: int = -1
    abort_rst: bool = False
    unterminated: int = 0
    event_bytes: int = 0
    created: int | None = None  # fixed `created` timestamp, so two answers can be compared byte for byte

    @classmethod
    def parse(cls, h: Mapping[str, str]) -> _Scenario:
        enc = (h.get("x-mock-encoding") or "").strip().lower()
        if enc not in ("gzip", "deflate", "br"):
            enc = "gzip" if _flag(h.get("x-mock-gzip")) else ""
        return cls(
            first_byte_s=_float(h.get("x-mock-first-byte-ms"), 0.0) / 1000.0,
            interval_s=_float(h.get("x-mock-interval-ms"), 0.0) / 1000.0,
            status_empty=_flag(h.get("x-mock-status-empty")),
            crlf=_flag(h.get("x-mock-crlf")),
            split_usage=_int(h.get("x-mock-split-usage"), 1, 1, 1 << 20),
            split_pause_s=_float(h.get("x-mock-split-pause-ms"), DEFAULT_SPLIT_PAUSE_MS) / 1000.0,
            encoding=enc,
            abort_after=_int(h.get("x-mock-abort-after"), -1, 0),
            abort_rst=_flag(h.get("x-mock-abort-rst")),
            unterminated=_int(h.get("x-mock-unterminated-final"), 0, 0, 2),
            event_bytes=_int(h.get("x-mock-event-bytes"), 0, 0, 1 << 31),
            created=_int(h.get("x-mock-created"), 0) or None,
        )


_DEFAULT_SCENARIO = _Scenario()
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_PAD_KEY = b'"x_mock_padding":"'


@lru_cache(maxsize=1024)
def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


def _pad_event(event: bytes, target: int) -> bytes:
    pos = event.find(b"data: {")
    extra = target - len(event) - len(_PAD_KEY) - 2
    if pos < 0 or extra <= 0:
        return event
    pos += 7
    return event[:pos] + _PAD_KEY + b"x" * extra + b'",' + event[pos:]


def _split_bytes(data: bytes, k: int) -> list[bytes]:
    k = max(1, min(k, len(data)))
    q, r = divmod(len(data), k)
    out, pos = [], 0
    for i in range(k):
        size = q + (1 if i < r else 0)
        out.append(data[pos : pos + size])
        pos += size
    return out


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    i = 0
    while i < len(lines) and not lines[i]:
        i += 1
    if i == len(lines):
        raise _BadRequest("empty request")
    parts = lines[i].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest("bad request line")
    headers: dict[str, str] = {}
    for line in lines[i + 1 :]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("bad header line")
        name = name.strip().lower()
        value = value.strip()
        prev = headers.get(name)
        headers[name] = value if prev is None else f"{prev}, {value}"
    return parts[0], parts[1], parts[2], headers


class MockLLM:
    """The mock upstream.  ``await start()`` binds (``self.port`` is then the real port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_parse_bytes: int = DEFAULT_MAX_PARSE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.max_records = max_records
        self.max_parse_bytes = max_parse_bytes
        self.records: dict[str, RequestRecord] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.Task[Any], asyncio.StreamWriter]] = set()
        self._seq = 0
        self._id_prefix = f"mock-{int(time.time() * 1000) % 10**9:09d}-"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_conn, self.host, self.port, limit=1 << 20)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._conns)
        for task, writer in tasks:
            writer.transport.abort()
            task.cancel()
        if tasks:
            await asyncio.gather(*(t for t, _ in tasks), return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def __aenter__(self) -> MockLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def clear_records(self) -> int:
        n = len(self.records)
        self.records.clear()
        return n

    def _add_record(self, rec: RequestRecord) -> None:
        records = self.records
        if rec.request_id in records:
            del records[rec.request_id]
        records[rec.request_id] = rec
        while len(records) > self.max_records:
            del records[next(iter(records))]

    # -- connection loop ---------------------------------------------------------------------------

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        conn = (task, writer) if task is not None else None
        if conn is not None:
            self._conns.add(conn)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    await self._plain(writer, 431, b"request header too large\n", False)
                    return
                t0 = time.monotonic_ns()
                try:
                    method, target, version, headers = _parse_head(head)
                    if not await self._handle(reader, writer, method, target, version, headers, t0):
                        return
                except _BadRequest as e:
                    await self._plain(writer, 400, f"{e}\n".encode(), False)
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:
            # Only stop() cancels these top-level connection tasks; end quietly (the 3.11 streams
            # callback would log a cancelled handler task as an error).
            return
        finally:
            if conn is not None:
                self._conns.discard(conn)
            writer.close()

    async def _read_body(
        self, reader: asyncio.StreamReader, headers: dict[str, str]
    ) -> tuple[bytes, int, str]:
        """Read the whole body; keep its first ``max_parse_bytes`` bytes, count and hash all of it."""
        limit = self.max_parse_bytes
        te = headers.get("transfer-encoding")
        if te is not None and "chunked" in te.lower():
            h = hashlib.sha256()
            kept = bytearray()
            total = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadRequest("bad chunk size") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                remaining = size
                while remaining:
                    data = await reader.read(min(remaining, 1 << 18))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    remaining -= len(data)
                    total += len(data)
                    h.update(data)
                    if len(kept) < limit:
                        kept += data[: limit - len(kept)]
                if await reader.readexactly(2) != b"\r\n":
                    raise _BadRequest("bad chunk terminator")
            return bytes(kept), total, h.hexdigest()
        cl = headers.get("content-length")
        if not cl:
            return b"", 0, _EMPTY_SHA256
        try:
            n = int(cl)
        except ValueError:
            raise _BadRequest("bad content-length") from None
        if n < 0:
            raise _BadRequest("bad content-length")
        if n <= limit:
            body = await reader.readexactly(n) if n else b""
            return body, n, hashlib.sha256(body).hexdigest()
        h = hashlib.sha256()
        kept = bytearray()
        remaining = n
        while remaining:
            data = await reader.read(min(remaining, 1 << 18))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            h.update(data)
            if len(kept) < limit:
                kept += data[: limit - len(kept)]
        return bytes(kept), n, h.hexdigest()

    @staticmethod
    def _send(rec: RequestRecord, writer: asyncio.StreamWriter, data: bytes) -> None:
        ts = time.monotonic_ns()
        writer.write(data)
        if rec.t_first_byte is None:
            rec.t_first_byte = ts
        rec.writes.append((ts, rec.bytes_sent, len(data)))
        rec.bytes_sent += len(data)
        rec.t_last_byte = ts

    async def _plain(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        keep_alive: bool,
        ctype: bytes = b"text/plain",
    ) -> None:
        writer.write(
            b"%scontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
            % (_status_line(status), ctype, len(body), b"" if keep_alive else b"connection: close\r\n", body)
        )
        await writer.drain()

    async def _handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        version: str,
        headers: dict[str, str],
        t0: int,
    ) -> bool:
        conn = headers.get("connection", "").lower()
        http11 = version == "HTTP/1.1"
        keep_alive = ("close" not in conn) if http11 else ("keep-alive" in conn)
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body, nbytes, sha = await self._read_body(reader, headers)
        t1 = time.monotonic_ns()
        path = target.partition("?")[0]

        if path.startswith("/_mock/"):
            await self._control(writer, method, path, target, keep_alive)
            return keep_alive
        if path == "/healthz":
            await self._plain(writer, 200, b"ok", keep_alive)
            return keep_alive

        scen = {k: v for k, v in headers.items() if k.startswith("x-mock-")}
        sc = _Scenario.parse(scen) if scen else _DEFAULT_SCENARIO
        rid = headers.get("x-request-id")
        if not rid:
            self._seq += 1
            rid = f"{self._id_prefix}{self._seq}"
        provider = provider_for_path(path)
        rec = RequestRecord(rid, method, target, provider, False, scen, nbytes, sha)
        rec.body_truncated = nbytes > len(body)
        rec.t_request_start = t0
        rec.t_request_received = t1
        self._add_record(rec)
        try:
            return await self._respond(
                writer, rec, sc, method, path, target, headers, body, http11, keep_alive
            )
        except ConnectionError:
            rec.client_disconnected = True
            raise

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        rec: RequestRecord,
        sc: _Scenario,
        method: str,
        path: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        http11: bool,
        keep_alive: bool,
    ) -> bool:
        provider = rec.provider
        obj: Any = {}
        truth: Truth | None = None
        status = _int(headers.get("x-mock-status"), 200, 200, 999)
        if provider is not None:
            if not rec.body_truncated and body:
                try:
                    obj = orjson.loads(body)
                except orjson.JSONDecodeError:
                    obj = {}
                if not isinstance(obj, dict):
                    obj = {}
            truth = _truth(provider, target, headers, obj)
            rec.truth = truth
            rec.stream = truth.stream
            if method != "POST" and status < 400:
                status = 405
        elif path == "/echo-size":
            pass
        elif status < 400:
            status = 404

        if sc.first_byte_s:
            await asyncio.sleep(sc.first_byte_s)
        rec.status = status

        if status >= 400:
            if sc.status_empty:
                payload = b""
            else:
                msg = None if status not in (404, 405) or "x-mock-status" in headers else f"{method} {path}"
                payload = orjson.dumps(error_body(status, provider, msg))
            return await self._send_json(writer, rec, sc, status, payload, keep_alive)
        if status in (204, 304):
            return await self._send_json(writer, rec, sc, status, b"", keep_alive)
        if truth is None:  # /echo-size
            payload = orjson.dumps({"bytes": rec.request_bytes, "sha256": rec.request_sha256})
            return await self._send_json(writer, rec, sc, status, payload, keep_alive)
        if not truth.stream:
            return await self._send_json(
                writer, rec, sc, status, orjson.dumps(build_json(truth, obj, sc.created)), keep_alive
            )
        if truth.provider == "gemini" and "alt=sse" not in target.partition("?")[2]:
            # streamGenerateContent without alt=sse: a JSON array of the chunks.
            payload = orjson.dumps(_gemini_chunks(truth))
            return await self._send_json(writer, rec, sc, status, payload, keep_alive)
        return await self._send_sse(writer, rec, sc, status, truth, http11, keep_alive)

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        rec: RequestRecord,
        sc: _Scenario,
        status: int,
        payload: bytes,
        keep_alive: bool,
    ) -> bool:
        extra = b""
        if status in (204, 304):  # these never carry a body
            payload = b""
        else:
            extra = b"content-length: %d\r\n" % len(payload)
        if sc.encoding and payload:
            payload = _compress(sc.encoding, payload)
            extra = b"content-length: %d\r\ncontent-encoding: %s\r\n" % (len(payload), sc.encoding.encode())
        if status == 429:
            extra += b"retry-after: 1\r\n"
        if not keep_alive:
            extra += b"connection: close\r\n"
        head = b"%scontent-type: application/json\r\nx-mock-request-id: %s\r\n%s\r\n" % (
            _status_line(status),
            rec.request_id.encode("latin-1", "replace"),
            extra,
        )
        self._send(rec, writer, head + payload)
        await writer.drain()
        rec.completed = True
        return keep_alive

    async def _send_sse(
        self,
        writer: asyncio.StreamWriter,
        rec: RequestRecord,
        sc: _Scenario,
        status: int,
        truth: Truth,
        http11: bool,
        keep_alive: bool,
    ) -> bool:
        events, usage_idx, first_idx = build_events(truth, sc.created)
        if sc.event_bytes and first_idx >= 0:
            events[first_idx] = _pad_event(events[first_idx], sc.event_bytes)
        if sc.crlf:
            events = [e.replace(b"\n", b"\r\n") for e in events]
        if sc.unterminated and events:
            last = events[-1]
            if sc.unterminated >= 2:
                last = last.rstrip(b"\r\n")
            else:
                last = last[:-2] if last.endswith(b"\r\n") else last[:-1]
            events[-1] = last
        chunked = http11
        if not chunked:
            keep_alive = False
        enc = _Encoder(sc.encoding) if sc.encoding else None
        head = (
            b"%scontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-mock-request-id: %s\r\n"
            % (
                _status_line(status),
                rec.request_id.encode("latin-1", "replace"),
            )
        )
        if chunked:
            head += b"transfer-encoding: chunked\r\n"
        if enc is not None:
            head += b"content-encoding: %s\r\n" % sc.encoding.encode()
        if not keep_alive:
            head += b"connection: close\r\n"
        self._send(rec, writer, head + b"\r\n")
        await writer.drain()

        for i, event in enumerate(events):
            if i == sc.abort_after:
                await self._abort(writer, rec, sc)
                return False
            if i and sc.interval_s:
                await asyncio.sleep(sc.interval_s)
            if i == usage_idx and sc.split_usage > 1:
                for j, piece in enumerate(_split_bytes(event, sc.split_usage)):
                    if j and sc.split_pause_s:
                        await asyncio.sleep(sc.split_pause_s)
                    await self._emit(writer, rec, enc, chunked, piece)
            else:
                await self._emit(writer, rec, enc, chunked, event)
            rec.events_sent += 1
        if sc.abort_after >= len(events):
            await self._abort(writer, rec, sc)
            return False
        tail = enc.finish() if enc is not None else b""
        if chunked:
            if tail:
                tail = b"%x\r\n%s\r\n" % (len(tail), tail)
            tail += b"0\r\n\r\n"
        if tail:
            self._send(rec, writer, tail)
            await writer.drain()
        rec.completed = True
        return keep_alive

    async def _emit(
        self,
        writer: asyncio.StreamWriter,
        rec: RequestRecord,
        enc: _Encoder | None,
        chunked: bool,
        payload: bytes,
    ) -> None:
        if enc is not None:
            payload = enc.chunk(payload)
        if not payload:
            return
        if chunked:
            payload = b"%x\r\n%s\r\n" % (len(payload), payload)
        self._send(rec, writer, payload)
        await writer.drain()

    @staticmethod
    async def _abort(writer: asyncio.StreamWriter, rec: RequestRecord, sc: _Scenario) -> None:
        await writer.drain()
        rec.aborted = True
        if sc.abort_rst:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    # -- control API --------------------------------------------------------------------------------

    async def _control(
        self, writer: asyncio.StreamWriter, method: str, path: str, target: str, keep_alive: bool
    ) -> None:
        ctype = b"application/json"
        if path in ("/_mock/records", "/_mock/records/"):
            if method == "GET":
                recs = list(self.records.values())
                limit = parse_qs(target.partition("?")[2]).get("limit")
                if limit:
                    n = _int(limit[0], len(recs))
                    recs = recs[len(recs) - n :] if n else []
                payload = orjson.dumps([r.to_dict() for r in recs])
                await self._plain(writer, 200, payload, keep_alive, ctype)
            elif method == "DELETE":
                await self._plain(
                    writer, 200, orjson.dumps({"deleted": self.clear_records()}), keep_alive, ctype
                )
            else:
                await self._plain(writer, 405, orjson.dumps(error_body(405)), keep_alive, ctype)
            return
        if path.startswith("/_mock/records/"):
            rid = unquote(path[len("/_mock/records/") :])
            rec = self.records.get(rid)
            if rec is None:
                await self._plain(
                    writer, 404, orjson.dumps(error_body(404, None, f"no record {rid}")), keep_alive, ctype
                )
            elif method == "GET":
                await self._plain(writer, 200, orjson.dumps(rec.to_dict()), keep_alive, ctype)
            elif method == "DELETE":
                del self.records[rid]
                await self._plain(writer, 200, orjson.dumps({"deleted": 1}), keep_alive, ctype)
            else:
                await self._plain(writer, 405, orjson.dumps(error_body(405)), keep_alive, ctype)
            return
        await self._plain(
            writer, 404, orjson.dumps(error_body(404, None, f"no such endpoint {path}")), keep_alive, ctype
        )


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway_stats.testing.mockllm",
        description="Mock LLM upstream (OpenAI / Anthropic / Gemini shapes) with x-mock-* scenario headers.",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8081", type=_split_hostport, help="HOST:PORT (port 0: any)"
    )
    parser.add_argument("--max-records", type=int, default=DEFAULT_MAX_RECORDS)
    parser.add_argument(
        "--max-parse-bytes",
        type=int,
        default=DEFAULT_MAX_PARSE_BYTES,
        help="bodies bigger than this are read and counted but answered as if they were {}",
    )
    args = parser.parse_args(argv)
    host, port = args.listen

    async def run() -> None:
        mock = MockLLM(host, port, max_records=args.max_records, max_parse_bytes=args.max_parse_bytes)
        await mock.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        print(f"mock-llm listening on {host}:{mock.port}", flush=True)
        try:
            await stop.wait()
        finally:
            await mock.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
