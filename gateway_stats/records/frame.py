"""`load()`: the records as a Polars DataFrame (AiCore's `polars_from_db` filters), from any store.

Needs the optional extra: `pip install 'gateway-stats[analytics]'`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway_stats.records import schema
from gateway_stats.records.read import Filters, as_datetime, fetch


def _polars() -> Any:
    try:
        import polars as pl
    except ImportError as e:
        raise ImportError("load() needs Polars: pip install 'gateway-stats[analytics]'") from e
    return pl


def polars_schema(table: schema.Table, cost_scale: int = 12) -> dict[str, Any]:
    pl = _polars()
    types = {
        "text": pl.String,
        "int": pl.Int64,
        "bool": pl.Boolean,
        "timestamp": pl.Datetime("us", "UTC"),
        "decimal": pl.Decimal(38, cost_scale),
        "json": pl.String,
    }
    return {c.name: types[c.type] for c in table.columns}


def load(
    source: str | Path,
    start: dt.datetime | dt.date | str | None = None,
    end: dt.datetime | dt.date | str | None = None,
    provider: str | None = None,
    model: str | None = None,
    consumer: str | None = None,
    min_tokens: int | None = None,
    max_latency_ms: int | None = None,
    *,
    table: str = "calls",
) -> Any:
    """Rows of `table` from a SQLite file, a PostgreSQL DSN or a JSON-lines file, as a Polars DataFrame.

    `start` (inclusive) and `end` (exclusive) bound `ts` (naive values are UTC); `model` matches the
    response model, else the request model; `min_tokens` bounds `total_tokens`, `max_latency_ms`
    bounds `duration_ms`. Columns and types are the contract of docs/records.md: `ts` is
    Datetime(us, UTC), `cost` Decimal (exact; scale = the largest seen, at least 2), `attributes` JSON text.
    """
    pl = _polars()
    t = next(x for x in schema.TABLES.values() if x.name == table)
    f = Filters(
        start=as_datetime(start),
        end=as_datetime(end),
        provider=provider,
        model=model,
        consumer=consumer,
        min_tokens=min_tokens,
        max_latency_ms=max_latency_ms,
    )
    rows = fetch(source, f, table=table)
    scale = 2
    for c in t.columns:
        if c.type == "decimal":
            for r in rows:
                v = r.get(c.name)
                if isinstance(v, Decimal):
                    exp = v.as_tuple().exponent
                    if isinstance(exp, int):
                        scale = max(scale, -exp)
    scale = min(scale, 30)
    sch = polars_schema(t, scale)
    return pl.DataFrame({c: [r.get(c) for r in rows] for c in t.names}, schema=sch)
