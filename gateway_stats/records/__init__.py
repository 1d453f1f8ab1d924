"""Analytics records: the row contract and reading it back (docs/records.md).

One row per observed call (table `calls`): `schema.py` holds the columns, their types per store, the
schema version and the forward migrations; `row.py` builds a row from a finished `CallRecord`;
`config.py` parses the `gateway_stats.records` config block; `read.py` reads rows back from SQLite,
PostgreSQL or JSON lines; `load()` (`frame.py`) returns them as a Polars DataFrame (extra
`analytics`); `report.py` and `html.py` are `gateway-stats report`. The writing side (queue,
writer threads, one module per store) is `gateway_stats.sinks.records`.

May import `gateway_stats.core` and `gateway_stats.config`; never the gRPC adapter.
"""

from __future__ import annotations

from typing import Any


def load(*args: Any, **kwargs: Any) -> Any:
    """See `gateway_stats.records.frame.load` (imported lazily: Polars is an optional extra)."""
    from gateway_stats.records.frame import load as _load

    return _load(*args, **kwargs)


__all__ = ["load"]
