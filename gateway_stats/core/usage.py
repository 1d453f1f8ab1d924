"""Model, token usage, chat id and failure from one parsed JSON document (a body or one SSE event).

Implements the Higress extraction matrix (first existing path wins; the last usage-bearing
document of a call wins, values are never summed), plus the provider details Higress misses:
Anthropic cache tokens and Gemini thoughts tokens. Plain dict walks, no path engine: this runs
for every usage-bearing event.
"""

from __future__ import annotations

from typing import Any

from gateway_stats.core.record import CallRecord


def _dig(doc: dict[str, Any], *keys: str) -> Any:
    cur: Any = doc
    for k in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(k)
        if cur is None:
            return None
    return cur


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def response_model(doc: dict[str, Any]) -> str | None:
    for v in (
        doc.get("model"),
        _dig(doc, "body", "model"),
        _dig(doc, "response", "model"),
        _dig(doc, "message", "model"),
        doc.get("modelVersion"),
    ):
        if isinstance(v, str) and v:
            return v
    return None


def chat_id(doc: dict[str, Any]) -> str | None:
    for v in (doc.get("id"), _dig(doc, "response", "id"), doc.get("responseId"), _dig(doc, "message", "id")):
        if isinstance(v, str) and v:
            return v
    return None


def has_usage(doc: dict[str, Any]) -> bool:
    return (
        "usage" in doc
        or "usageMetadata" in doc
        or isinstance(_dig(doc, "response", "usage"), dict)
        or isinstance(_dig(doc, "message", "usage"), dict)
    )


def apply_usage(doc: dict[str, Any], rec: CallRecord) -> bool:
    """Overwrite rec.usage from `doc` if it carries usage. Returns True when something was taken."""
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        usage = None
    resp_usage = _dig(doc, "response", "usage")
    if not isinstance(resp_usage, dict):
        resp_usage = None
    msg_usage = _dig(doc, "message", "usage")
    if not isinstance(msg_usage, dict):
        msg_usage = None
    meta = doc.get("usageMetadata")
    if not isinstance(meta, dict):
        meta = None
    if usage is None and resp_usage is None and msg_usage is None and meta is None:
        return False

    def first(*cands: tuple[dict[str, Any] | None, str]) -> int | None:
        for src, key in cands:
            if src is not None and key in src:
                v = _int(src[key])
                if v is not None:
                    return v
        return None

    inp = first(
        (usage, "prompt_tokens"),
        (usage, "input_tokens"),
        (resp_usage, "input_tokens"),
        (meta, "promptTokenCount"),
        (msg_usage, "input_tokens"),
    )
    out = first(
        (usage, "completion_tokens"),
        (usage, "output_tokens"),
        (resp_usage, "output_tokens"),
        (meta, "candidatesTokenCount"),
        (msg_usage, "output_tokens"),
    )
    total = first((usage, "total_tokens"), (resp_usage, "total_tokens"), (meta, "totalTokenCount"))
    u = rec.usage
    src = usage or resp_usage or msg_usage
    # Anthropic: message_delta carries cumulative output only; keep the input from message_start.
    if inp is not None:
        u.input_tokens = inp
    if out is not None:
        u.output_tokens = out

    cache_read = first((src, "cache_read_input_tokens"), (meta, "cachedContentTokenCount"))
    cache_creation = first((src, "cache_creation_input_tokens"))
    if cache_read is not None:
        u.cached_tokens = cache_read
    if cache_creation is not None:
        u.cache_creation_tokens = cache_creation

    in_details = None
    out_details = None
    if src is not None:
        in_details = src.get("prompt_tokens_details") or src.get("input_tokens_details")
        out_details = src.get("completion_tokens_details") or src.get("output_tokens_details")
    if in_details is None and usage is not None and _is_anthropic_usage(usage):
        # Higress: an Anthropic body's cache fields are its input details, as sent (zeros included)
        in_details = {k: usage[k] for k in _ANTHROPIC_CACHE_FIELDS if k in usage}
    # A details map in a later event replaces the earlier one; an event without details keeps it.
    if isinstance(in_details, dict):
        u.input_token_details = in_details
        c = _int(in_details.get("cached_tokens"))
        if c is not None:
            u.cached_tokens = c
    if isinstance(out_details, dict):
        u.output_token_details = out_details
        r = _int(out_details.get("reasoning_tokens"))
        if r is not None:
            u.reasoning_tokens = r
    if meta is not None:
        thoughts = _int(meta.get("thoughtsTokenCount"))
        if thoughts is not None:
            u.reasoning_tokens = thoughts
            u.output_token_details = {"thoughts_token_count": thoughts}  # Higress keeps Gemini's name
        if cache_read is not None:
            u.input_token_details = {"cached_tokens": cache_read}

    if total is not None:
        u.total_tokens = total
    elif u.input_tokens is not None or u.output_tokens is not None:
        total = (u.input_tokens or 0) + (u.output_tokens or 0)
        if _is_anthropic_usage(src):
            u.input_excludes_cache = True
        if u.input_excludes_cache:  # Anthropic input_tokens excludes cache reads and writes
            total += (u.cached_tokens or 0) + (u.cache_creation_tokens or 0)
        u.total_tokens = total
    return True


_ANTHROPIC_CACHE_FIELDS = ("cache_creation_input_tokens", "cache_read_input_tokens")


def _is_anthropic_usage(src: dict[str, Any] | None) -> bool:
    return src is not None and ("cache_read_input_tokens" in src or "cache_creation_input_tokens" in src)


def error_of(doc: dict[str, Any]) -> tuple[str, str | None] | None:
    """A root-level `error` that is not null/"" marks a failure (Higress). Returns (type, message)."""
    err = doc.get("error")
    if err is None or err == "":
        if doc.get("type") == "error":  # Anthropic stream error event: {"type":"error","error":{...}}
            return ("error", None)
        return None
    if isinstance(err, dict):
        etype = err.get("type") or err.get("code") or err.get("status") or "error"
        msg = err.get("message")
        return (str(etype), msg if isinstance(msg, str) else None)
    return ("error", str(err))
