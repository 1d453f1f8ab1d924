"""Ground truth: what the mock answers for a request, computed from the request alone.

The server builds every answer from :func:`expected` (via ``_truth``), and tests call the same function
without a server, so a test checks the gateway against the very numbers the mock sends.  Here: the
:class:`Truth` and :class:`ToolCall` records, the path -> provider recogniser, token counting and each
provider's native usage object.  No I/O.

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

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

__all__ = [
    "DEFAULT_EVENTS",
    "ToolCall",
    "Truth",
    "expected",
    "provider_for_path",
]

DEFAULT_EVENTS = 5
MAX_EVENTS = 100_000
MAX_TOOLS = 64
DEFAULT_MODEL = "mock-model"
INPUT_TOKENS_BASE = 7

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
