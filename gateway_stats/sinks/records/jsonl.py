"""JSON lines (`records.jsonl: PATH`): one object per row, for AiCore-style file analytics and log shippers.

Each line is `{"kind": "call", <every column>}` with `ts` as ISO 8601 UTC text, `cost` as exact decimal
text and `attributes` as an object. Rotated by size: when a batch would take the file past `max_bytes`,
`PATH` becomes `PATH.1` (`PATH.1` becomes `PATH.2`, ... up to `backups`). Rotation is per process:
with several workers, give each its own file.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson

from gateway_stats.records.config import JsonlStore
from gateway_stats.records.row import decimal_text, iso


def _default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return decimal_text(v)
    if isinstance(v, dt.datetime):
        return iso(v)
    return str(v)


def dumps(kind: str, row: dict[str, Any]) -> bytes:
    doc = {"kind": kind, **row}
    ts = doc.get("ts")
    if isinstance(ts, dt.datetime):
        doc["ts"] = iso(ts)
    return orjson.dumps(doc, default=_default) + b"\n"


class JsonlWriterStore:
    name = "jsonl"

    def __init__(self, cfg: JsonlStore) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)
        self.fh: IO[bytes] | None = None
        self.size = 0

    def open(self) -> None:
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "ab")  # noqa: SIM115 - lives as long as the store
        self.size = self.fh.tell()

    def _rotate(self) -> None:
        assert self.fh is not None
        self.fh.close()
        n = self.cfg.backups
        if n <= 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(n - 1, 0, -1):
                src = Path(f"{self.path}.{i}")
                if src.exists():
                    os.replace(src, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        self.fh = open(self.path, "ab")  # noqa: SIM115
        self.size = 0

    def write(self, kind: str, rows: list[dict[str, Any]]) -> None:
        data = b"".join(dumps(kind, r) for r in rows)
        if self.size and self.size + len(data) > self.cfg.max_bytes:
            self._rotate()
        assert self.fh is not None
        self.fh.write(data)
        self.fh.flush()
        self.size += len(data)

    def maintain(self) -> None:
        pass

    def close(self) -> None:
        if self.fh is not None:
            fh, self.fh = self.fh, None
            fh.close()
