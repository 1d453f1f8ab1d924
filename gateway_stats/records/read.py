"""Reading rows back from a store: SQLite file, PostgreSQL DSN, or JSON-lines file, with filters.

`fetch()` returns plain dicts with the row's Python values (`ts` an aware UTC datetime, `cost` a
Decimal, `stream` a bool, `attributes` JSON text) whatever the store, so `load()` and the report read
every store the same way. Filters are pushed into the SQL where there is SQL.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from gateway_stats.records import schema
from gateway_stats.records.row import UTC, iso, parse_iso

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`7d`, `12h`, `30m`, `2w`, `90s` before now, or an ISO date/time (UTC if no zone)."""
    m = _DURATION.match(text)
    now = now or dt.datetime.now(UTC)
    if m:
        return now - dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        return parse_iso(text.strip())
    except ValueError:
        raise ValueError(f"expected a duration like 7d, 12h, 30m or an ISO date, got {text!r}") from None


def as_datetime(v: dt.datetime | dt.date | str | None) -> dt.datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        return parse_iso(v)
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    return dt.datetime(v.year, v.month, v.day, tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    provider: str | None = None
    model: str | None = None  # matches the response model, else the request model
    consumer: str | None = None
    min_tokens: int | None = None  # total_tokens >= this
    max_latency_ms: int | None = None  # duration_ms <= this

    def sql(self, dialect: str) -> tuple[str, list[Any]]:
        ph = "?" if dialect == "sqlite" else "%s"
        where: list[str] = []
        args: list[Any] = []

        def ts(v: dt.datetime) -> Any:
            return iso(v) if dialect == "sqlite" else v

        if self.start is not None:
            where.append(f"ts >= {ph}")
            args.append(ts(self.start))
        if self.end is not None:
            where.append(f"ts < {ph}")
            args.append(ts(self.end))
        if self.provider is not None:
            where.append(f"provider = {ph}")
            args.append(self.provider)
        if self.model is not None:
            where.append(f"COALESCE(response_model, request_model) = {ph}")
            args.append(self.model)
        if self.consumer is not None:
            where.append(f"consumer = {ph}")
            args.append(self.consumer)
        if self.min_tokens is not None:
            where.append(f"total_tokens >= {ph}")
            args.append(self.min_tokens)
        if self.max_latency_ms is not None:
            where.append(f"duration_ms <= {ph}")
            args.append(self.max_latency_ms)
        return (" WHERE " + " AND ".join(where)) if where else "", args

    def keep(self, r: dict[str, Any]) -> bool:
        ts = r.get("ts")
        if self.start is not None and (ts is None or ts < self.start):
            return False
        if self.end is not None and (ts is None or ts >= self.end):
            return False
        if self.provider is not None and r.get("provider") != self.provider:
            return False
        if self.model is not None and (r.get("response_model") or r.get("request_model")) != self.model:
            return False
        if self.consumer is not None and r.get("consumer") != self.consumer:
            return False
        if self.min_tokens is not None and (
            r.get("total_tokens") is None or r["total_tokens"] < self.min_tokens
        ):
            return False
        return not (
            self.max_latency_ms is not None
            and (r.get("duration_ms") is None or r["duration_ms"] > self.max_latency_ms)
        )


def kind_of(source: str) -> str:
    """sqlite | postgres | jsonl, from the source's spelling."""
    if source.startswith(("postgresql://", "postgres://")) or ("=" in source and " " in source.strip()):
        return "postgres"
    if source.endswith((".jsonl", ".ndjson", ".json")) or re.search(r"\.jsonl\.\d+$", source):
        return "jsonl"
    return "sqlite"


def _normalise(table: schema.Table, r: dict[str, Any]) -> dict[str, Any]:
    for c in table.columns:
        v = r.get(c.name)
        if v is None:
            continue
        if c.type == "timestamp" and not isinstance(v, dt.datetime):
            r[c.name] = parse_iso(str(v))
        elif c.type == "timestamp":
            r[c.name] = v.astimezone(UTC)
        elif c.type == "decimal" and not isinstance(v, Decimal):
            r[c.name] = Decimal(str(v))
        elif c.type == "bool":
            r[c.name] = bool(v)
        elif c.type == "json" and not isinstance(v, str):
            r[c.name] = orjson.dumps(v).decode()
    return r


def fetch(
    source: str | Path,
    filters: Filters | None = None,
    *,
    table: str = "calls",
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows of `table` matching `filters`, oldest first."""
    return list(iter_rows(source, filters, table=table, columns=columns))


def iter_rows(
    source: str | Path,
    filters: Filters | None = None,
    *,
    table: str = "calls",
    columns: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    filters = filters or Filters()
    t = next((x for x in schema.TABLES.values() if x.name == table), None)
    if t is None:
        raise ValueError(f"unknown table {table!r}")
    cols = list(columns or t.names)
    src = str(source)
    kind = kind_of(src)
    if kind == "jsonl":
        yield from _jsonl_rows(Path(src), t, cols, filters)
        return
    where, args = filters.sql(kind)
    sql = f"SELECT {', '.join(cols)} FROM {t.name}{where} ORDER BY {t.time_column}"
    if kind == "sqlite":
        from gateway_stats.sinks.records.sqlite import connect

        if not Path(src).exists():
            raise FileNotFoundError(f"no such SQLite database: {src}")
        con = connect(src, read_only=True)
        try:
            cur = con.execute(sql, args)
            for values in cur:
                yield _normalise(t, dict(zip(cols, values, strict=True)))
        finally:
            con.close()
    else:
        from gateway_stats.sinks.records.postgres import connect as pg_connect

        con = pg_connect(src)
        try:
            with con.cursor() as cur:
                cur.execute(sql, args)
                for values in cur:
                    yield _normalise(t, dict(zip(cols, values, strict=True)))
        finally:
            con.close()


def _jsonl_rows(path: Path, t: schema.Table, cols: list[str], filters: Filters) -> Iterator[dict[str, Any]]:
    """The file and its rotated siblings (oldest first); lines of other kinds are skipped."""
    files = sorted(
        path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0
    )
    files = [p for p in files if p.suffix[1:].isdigit()] + ([path] if path.exists() else [])
    if not files:
        raise FileNotFoundError(f"no such JSON-lines file: {path}")
    rows: list[dict[str, Any]] = []
    for p in files:
        with open(p, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a torn last line of a file being written
                if doc.get("kind", t.kind) != t.kind:
                    continue
                r = _normalise(t, {c: doc.get(c) for c in t.names})
                if filters.keep(r):
                    rows.append({c: r.get(c) for c in cols})
    rows.sort(key=lambda r: r.get(t.time_column) or dt.datetime.min.replace(tzinfo=UTC))
    yield from rows
