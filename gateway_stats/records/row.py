"""Building a `calls` row from a finished CallRecord, and the value conventions every store shares.

A row is a plain dict keyed by the column names of `schema.CALLS`, holding Python values: `ts` a UTC
`datetime`, `cost` a `Decimal` (exact) or None, `stream` a bool, `attributes` a dict. Each store turns
them into its own types (`sqlite_value`, the PostgreSQL driver, JSON lines, line protocol).
Built in the records writer's thread, never on the request path.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from gateway_stats.core.feedback import Feedback
from gateway_stats.core.record import CallRecord

UTC = dt.UTC


def outcome(rec: CallRecord) -> str:
    """ok | error | aborted. An HTTP error status is an error even if the stream was cut afterwards."""
    if rec.status_code is not None and rec.status_code >= 400:
        return "error"
    if rec.end_reason not in ("", "complete"):
        return "aborted"
    return "error" if rec.failed else "ok"


def _traceparent_ids(tp: str | None) -> tuple[str, str] | None:
    if not tp:
        return None
    parts = tp.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    return parts[1].lower(), parts[2].lower()


def trace_ids(rec: CallRecord) -> tuple[str | None, str | None, str | None]:
    """(trace id, span id, parent span id) of the call.

    With tracing on, the tracing sink stores its span's ids in `rec.extra` (`trace_id`, `span_id`).
    Otherwise the call's span is the closest W3C parent: Envoy's ext_proc span when Envoy traces (and
    it is in the request's trace), else the caller's own `traceparent`.
    """
    envoy = _traceparent_ids(rec.envoy_traceparent)
    own = _traceparent_ids(rec.traceparent)
    parent = envoy if envoy and (not own or envoy[0] == own[0]) else own
    tid = rec.extra.get("trace_id")
    sid = rec.extra.get("span_id")
    if isinstance(tid, str) and isinstance(sid, str):
        return tid, sid, parent[1] if parent else None
    if parent:
        return parent[0], parent[1], None
    return None, None, None


def timestamp(wall: float) -> dt.datetime:
    """Epoch seconds as a UTC datetime, to the millisecond (the precision every store keeps)."""
    t = dt.datetime.fromtimestamp(wall, UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def call_row(rec: CallRecord) -> dict[str, Any]:
    u = rec.usage
    total = u.total_tokens
    if total is None and u.input_tokens is not None and u.output_tokens is not None:
        total = u.input_tokens + u.output_tokens
    trace_id, span_id, _ = trace_ids(rec)
    return {
        "ts": timestamp(rec.wall_start),
        "request_id": rec.request_id,
        "route": rec.route or None,
        "cluster": rec.cluster or None,
        "virtual_host": rec.virtual_host or None,
        "provider": rec.provider,
        "operation": rec.operation,
        "request_model": rec.request_model,
        "response_model": rec.response_model,
        "stream": rec.is_stream,
        "status_code": rec.status_code,
        "outcome": outcome(rec),
        "error_type": rec.error_type,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "total_tokens": total,
        "cached_tokens": u.cached_tokens,
        "cache_write_tokens": u.cache_creation_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "cost": rec.cost,
        "currency": rec.cost_currency if rec.cost is not None else None,
        "duration_ms": rec.service_duration_ms,
        "first_byte_ms": rec.first_token_duration_ms,
        "first_content_ms": rec.first_content_duration_ms,
        "consumer": rec.consumer,
        "session_id": rec.session_id,
        "response_id": rec.chat_id,
        "user_hash": rec.user_hash,
        "trace_id": trace_id,
        "span_id": span_id,
        "request_messages": rec.request_messages,
        "language": rec.language,
        "topic": rec.topic,
        "attributes": dict(rec.attributes),
    }


def feedback_row(fb: Feedback) -> dict[str, Any]:
    """A `feedback` row (schema.FEEDBACK) from feedback already joined to the rated call."""
    return {
        "ts": timestamp(fb.ts),
        "source": fb.source,
        "response_id": fb.response_id,
        "request_id": fb.request_id,
        "external_reference_id": fb.external_reference_id,
        "rating": fb.rating,
        "like_count": fb.like_count,
        "dislike_count": fb.dislike_count,
        "comment": fb.comment,
        "grader_feedback": fb.grader_feedback,
        "deployment": fb.deployment,
        "model": fb.model,
        "route": fb.route or None,
        "consumer": fb.consumer,
        "user_hash": fb.user_hash,
        "session_id": fb.session_id,
        "joined": fb.joined,
        "via_request_id": fb.via_request_id,
    }


# ------------------------------------------------------------------------------ value conventions


def iso(ts: dt.datetime) -> str:
    """`2026-12-02T04:20:51.123Z`: sorts as text, and SQLite's date functions read it."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def decimal_text(d: Decimal) -> str:
    """The exact decimal without exponent notation (Decimal('1E-7') -> '0.0000001')."""
    return format(d, "f")
