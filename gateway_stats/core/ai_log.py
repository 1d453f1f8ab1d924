"""The Higress `ai_log` object: same keys and JSON types as the ai-statistics plugin.

Built from the record (never from raw bytes), serialised with sorted keys. For Envoy's text
access-log format the JSON is stored pre-escaped as the body of a JSON string, so the line
`{"ai_log":"%FILTER_STATE(wasm.ai_log:PLAIN)%"}` (or `%DYNAMIC_METADATA(ns:ai_log)%`) is valid JSON.
Our own additions are listed in EXTRA_KEYS and never rename a Higress key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from gateway_stats.core.attributes import truncate_for_log
from gateway_stats.core.record import CallRecord

# Keys gateway-stats adds beyond Higress (documented in docs/ai_log.md).
EXTRA_KEYS = ("llm_first_content_duration", "gateway_stats_caps_hit", "cost", "cost_currency", "language")


def api_name(route: str) -> str:
    """Higress: the first three `@`-separated parts of the route name, else "-"."""
    parts = route.split("@")
    if len(parts) >= 3:
        return "@".join(parts[:3])
    return "-"


def build_ai_log(rec: CallRecord, value_length_limit: int = 32000) -> dict[str, Any]:
    d: dict[str, Any] = {"api": api_name(rec.route)}
    if rec.session_id:
        d["session_id"] = rec.session_id
    d["chat_round"] = rec.chat_round  # Higress writes it for every call, 0 when there are no user messages
    if rec.response_observed and rec.t_response_headers:  # response side (Higress: not before it)
        d["response_type"] = rec.response_type
    if rec.chat_id:
        d["chat_id"] = rec.chat_id
    model = rec.model
    if model:
        d["model"] = model
    u = rec.usage
    if u.known:
        d["input_token"] = u.input_tokens or 0
        d["output_token"] = u.output_tokens or 0
        d["total_token"] = (
            u.total_tokens if u.total_tokens is not None else d["input_token"] + d["output_token"]
        )
    # Higress logs both maps, empty when the usage carried no details
    if u.input_token_details is not None or u.known:
        d["input_token_details"] = u.input_token_details if u.input_token_details is not None else {}
    if u.output_token_details is not None or u.known:
        d["output_token_details"] = u.output_token_details if u.output_token_details is not None else {}
    if rec.is_stream:
        ft = rec.first_token_duration_ms
        if ft is not None:
            d["llm_first_token_duration"] = ft
        fc = rec.first_content_duration_ms
        if fc is not None:
            d["llm_first_content_duration"] = fc
    if (rec.finished or rec.t_end) and rec.response_observed:
        sd = rec.service_duration_ms
        if sd is not None:
            d["llm_service_duration"] = sd
    if rec.tool_calls:
        d["tool_calls"] = rec.tool_calls
    for key in rec.log_keys:
        if key not in rec.attributes:
            continue  # not resolved yet (a response-side key before the response): Higress has no key either
        v = rec.attributes[key]
        if v is None and d.get(key) is not None:
            continue  # an unresolved attribute (e.g. `model` from another API's path) never blanks our field
        d[key] = truncate_for_log(v, value_length_limit)
    if rec.cost is not None:
        d["cost"] = rec.cost  # an exact Decimal, written as a JSON number by dumps()
        d["cost_currency"] = rec.cost_currency
    elif u.known and "unpriced_reason" in rec.extra:
        d["cost"] = None  # usage but no price: never a silent 0
    if rec.caps_hit:
        d["gateway_stats_caps_hit"] = list(rec.caps_hit)
    if rec.language and rec.extra.get("language_in_ai_log"):  # opt-in: analytics.language.ai_log
        d["language"] = rec.language
    return d


def decimal_text(d: Decimal) -> str:
    """An exact Decimal as JSON number text, in plain notation (0.00325, not 3.25E-3)."""
    return format(d.normalize(), "f")


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return orjson.Fragment(decimal_text(obj).encode())  # written verbatim: no float in between
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: dict[str, Any]) -> bytes:
    """Sorted keys, compact, UTF-8 (non-ASCII kept as is, like Go's encoder without HTML escaping)."""
    return orjson.dumps(obj, default=_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def escaped(obj: dict[str, Any]) -> str:
    """The JSON text escaped as the body of a JSON string (what the text access-log format prints raw)."""
    return escaped_bytes(obj).decode()


def escaped_bytes(obj: dict[str, Any]) -> bytes:
    """`escaped` as UTF-8 bytes. orjson's output holds no raw control character (they are escaped inside
    its strings), so quoting it again only needs its backslashes and quotes escaped."""
    return dumps(obj).replace(b"\\", b"\\\\").replace(b'"', b'\\"')


def escaped_value(v: Any) -> str:
    """An `as_separate_log_field` value for a `"%…%"` access-log slot: strings as their text, other
    values as JSON text, unresolved as empty; escaped so the line stays valid JSON."""
    if v is None:
        return ""
    text = v if isinstance(v, str) else dumps(v).decode()
    return orjson.dumps(text).decode()[1:-1]
