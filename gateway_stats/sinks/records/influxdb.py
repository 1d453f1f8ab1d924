"""InfluxDB: line protocol over plain HTTP (urllib), shaped like AI DIAL's `analytics` measurement.

v1 (InfluxDB 1.x): `POST {url}/write?db={database}&precision=ns`; v2/v3: `POST
{url}/api/v2/write?org={org}&bucket={bucket}&precision=ns` with `Authorization: Token {token}`.
DIAL's tags and fields first, then ours (docs/records.md has the full mapping):

    analytics,model=…,deployment=…,project_id=<consumer>,upstream=<cluster>,language=…,topic=…,
      response_id=…,trace_id=…,core_span_id=…,route=…,provider=…,operation=…,outcome=…,stream=…
      user_hash="…",price=…,deployment_price=…,number_request_messages=…i,chat_id="<session>",
      prompt_tokens=…i,completion_tokens=…i,total_tokens=…i,…,duration_ms=…i,request_id="…" <ns>

Null values are left out (a tag with no value cannot exist in line protocol). Other row kinds register
their measurement with `register_point`.
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway_stats.records.config import InfluxStore
from gateway_stats.records.row import decimal_text
from gateway_stats.sinks.records.writer import Rejected

Point = tuple[dict[str, Any], dict[str, Any]]  # (tags, fields)
_POINTS: dict[str, tuple[str, Callable[[Mapping[str, Any]], Point]]] = {}


def register_point(kind: str, measurement: str, fn: Callable[[Mapping[str, Any]], Point]) -> None:
    """How rows of `kind` become points of `measurement` (e.g. feedback -> rate_analytics)."""
    _POINTS[kind] = (measurement, fn)


def call_point(r: Mapping[str, Any]) -> Point:
    model = r.get("response_model") or r.get("request_model")
    cost = r.get("cost")
    tags = {
        # AI DIAL's analytics tags
        "model": model,
        "deployment": r.get("request_model"),
        "project_id": r.get("consumer"),
        "upstream": r.get("cluster"),
        "language": r.get("language"),
        "topic": r.get("topic"),
        "response_id": r.get("response_id"),
        "trace_id": r.get("trace_id"),
        "core_span_id": r.get("span_id"),
        # ours
        "route": r.get("route"),
        "provider": r.get("provider"),
        "operation": r.get("operation"),
        "outcome": r.get("outcome"),
        "stream": "true" if r.get("stream") else "false",
        "currency": r.get("currency"),
    }
    price = float(cost) if isinstance(cost, Decimal) else None
    fields = {
        # AI DIAL's analytics fields
        "user_hash": r.get("user_hash"),
        "price": price,
        "deployment_price": price,
        "number_request_messages": r.get("request_messages"),
        "chat_id": r.get("session_id"),
        "prompt_tokens": r.get("input_tokens"),
        "completion_tokens": r.get("output_tokens"),
        # ours
        "request_id": r.get("request_id"),
        "status_code": r.get("status_code"),
        "error_type": r.get("error_type"),
        "total_tokens": r.get("total_tokens"),
        "cached_tokens": r.get("cached_tokens"),
        "cache_write_tokens": r.get("cache_write_tokens"),
        "reasoning_tokens": r.get("reasoning_tokens"),
        "cost": decimal_text(cost) if isinstance(cost, Decimal) else None,  # exact, as text
        "duration_ms": r.get("duration_ms"),
        "first_byte_ms": r.get("first_byte_ms"),
        "first_content_ms": r.get("first_content_ms"),
        "consumer": r.get("consumer"),
        "attributes": orjson.dumps(r["attributes"], default=str).decode() if r.get("attributes") else None,
    }
    return tags, fields


register_point("call", "analytics", call_point)


def feedback_point(r: Mapping[str, Any]) -> Point:
    """DIAL's `rate_analytics`: its tags and its two fields, then ours as fields."""
    tags = {
        # AI DIAL's rate_analytics tags
        "deployment": r.get("deployment") or r.get("model"),
        "project_id": r.get("consumer"),
        "title": None,  # DIAL's conversation title: not seen at the gateway
        "response_id": r.get("response_id"),
        "user_hash": r.get("user_hash"),
        "chat_id": r.get("session_id"),
        # ours
        "source": r.get("source"),
        "route": r.get("route"),
    }
    fields = {
        # AI DIAL's rate_analytics fields
        "dislike_count": r.get("dislike_count"),
        "like_count": r.get("like_count"),
        # ours
        "model": r.get("model"),
        "request_id": r.get("request_id"),
        "external_reference_id": r.get("external_reference_id"),
        "comment": r.get("comment"),
        "grader_feedback": r.get("grader_feedback"),
        "joined": r.get("joined"),
    }
    return tags, fields


register_point("feedback", "rate_analytics", feedback_point)

# ------------------------------------------------------------------------------- line protocol

_MEAS = str.maketrans({",": "\\,", " ": "\\ ", "\n": " ", "\r": " "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": " ", "\r": " "})
_STR = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r"})


def _field(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + str(v).translate(_STR) + '"'


def line(
    measurement: str,
    tags: Mapping[str, Any],
    fields: Mapping[str, Any],
    ts: dt.datetime | None,
    tiebreak: str = "",
) -> str | None:
    """One line of line protocol; None if it would have no field."""
    head = measurement.translate(_MEAS)
    for k in sorted(tags):  # sorted tags: InfluxDB's recommended (fastest) form
        v = tags[k]
        if v is None or v == "":
            continue
        head += f",{k.translate(_KEY)}={str(v).translate(_KEY)}"
    parts = []
    for k, v in fields.items():
        f = _field(v)
        if f is not None:
            parts.append(f"{k.translate(_KEY)}={f}")
    if not parts:
        return None
    out = f"{head} {','.join(parts)}"
    if ts is not None:
        out += f" {ts_ns}" if (ts_ns := timestamp_ns(ts, tiebreak)) else ""
    return out


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def timestamp_ns(ts: dt.datetime, tiebreak: str = "") -> int:
    """The call's start in ns. InfluxDB keeps one point per (series, timestamp): two calls of the same
    series starting in the same microsecond would overwrite each other, so the sub-microsecond digits
    are taken from the request id (deterministic, so a retried batch overwrites itself, not others)."""
    ns = ((ts - _EPOCH) // _US) * 1000
    if tiebreak:
        ns += zlib.crc32(tiebreak.encode()) % 1000
    return ns


def lines(kind: str, rows: list[dict[str, Any]]) -> bytes:
    measurement, fn = _POINTS[kind]
    out = []
    for r in rows:
        tags, fields = fn(r)
        tiebreak = str(r.get("via_request_id") or r.get("request_id") or "")
        ln = line(measurement, tags, fields, r.get("ts"), tiebreak)
        if ln is not None:
            out.append(ln)
    return ("\n".join(out) + "\n").encode()


class InfluxWriterStore:
    name = "influxdb"

    def __init__(self, cfg: InfluxStore) -> None:
        self.cfg = cfg
        if cfg.api == "v1":
            q = {"db": cfg.database or "", "precision": "ns"}
            self.write_url = f"{cfg.url}/write?{urlencode(q)}"
        else:
            q = {"org": cfg.org or "", "bucket": cfg.bucket or "", "precision": "ns"}
            self.write_url = f"{cfg.url}/api/v2/write?{urlencode(q)}"
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if cfg.token:
            self.headers["Authorization"] = f"Token {cfg.token}"

    def open(self) -> None:
        pass  # stateless HTTP: every batch is one POST

    def write(self, kind: str, rows: list[dict[str, Any]]) -> None:
        if kind not in _POINTS:
            raise Rejected(f"no InfluxDB measurement registered for row kind {kind!r}")
        body = lines(kind, rows)
        req = urllib.request.Request(self.write_url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_seconds) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace").strip()
            if 400 <= e.code < 500 and e.code not in (408, 429):
                raise Rejected(f"HTTP {e.code} from {self.cfg.url}: {detail}") from None
            raise OSError(f"HTTP {e.code} from {self.cfg.url}: {detail}") from None

    def maintain(self) -> None:
        pass  # retention is the bucket's / database's retention policy

    def close(self) -> None:
        pass
