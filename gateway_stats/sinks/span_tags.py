"""The per-call values gateway-stats writes as their own dynamic-metadata keys for Envoy's request span.

An ext_proc server cannot edit Envoy's span, but Envoy's tracing `custom_tags` can copy dynamic
metadata onto it when the span ends (values from our last answer included). That tag list is fixed in
Envoy's config, so the keys are fixed here: the servicer writes them, `envoy-config` lists them.
The metadata key is the tag name, so `%DYNAMIC_METADATA(ns:gen_ai.request.model)%` works in access
logs too.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway_stats.core.record import CallRecord, Usage


def semconv_input_tokens(u: Usage) -> int | None:
    """Input tokens as the GenAI conventions count them: cached (read and written) tokens included.

    Only Anthropic reports input without its cache tokens; everyone else already includes them.
    """
    if u.input_tokens is None:
        return None
    if u.input_excludes_cache:
        return u.input_tokens + (u.cached_tokens or 0) + (u.cache_creation_tokens or 0)
    return u.input_tokens


def _known(v: str | None) -> str | None:
    return v if v and v != "unknown" else None


def _total(rec: CallRecord) -> int | None:
    u = rec.usage
    if u.total_tokens is not None:
        return u.total_tokens
    if u.known:
        return (u.input_tokens or 0) + (u.output_tokens or 0)
    return None


TAGS: tuple[tuple[str, Callable[[CallRecord], str | int | None]], ...] = (
    ("gen_ai.operation.name", lambda r: _known(r.operation)),
    ("gen_ai.provider.name", lambda r: _known(r.provider)),
    ("gen_ai.request.model", lambda r: r.request_model),
    ("gen_ai.response.model", lambda r: r.response_model),
    ("gen_ai.usage.input_tokens", lambda r: semconv_input_tokens(r.usage)),
    ("gen_ai.usage.output_tokens", lambda r: r.usage.output_tokens),
    ("gen_ai.usage.total_tokens", _total),
)

TAG_NAMES: tuple[str, ...] = tuple(name for name, _ in TAGS)


def tag_values(rec: CallRecord) -> dict[str, str | int]:
    """The tags known so far (a value never seen is left out, so Envoy prints no `-` tag)."""
    out: dict[str, str | int] = {}
    for name, get in TAGS:
        v = get(rec)
        if v is not None:
            out[name] = v
    return out
