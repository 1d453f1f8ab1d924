"""SQLite, the default store: one file, WAL mode, batched transactions, safe for several processes.

Several `serve` workers may write the same file: WAL lets the report read while they write, each batch
is one `BEGIN IMMEDIATE` transaction (writers queue on the lock instead of failing half-way),
`busy_timeout` makes a writer wait for another's commit, and a batch that still meets
`database is locked` is retried by the writer with backoff. The schema is created and migrated under the
same lock, so exactly one process migrates.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from gateway_stats.records import schema
from gateway_stats.records.config import SqliteStore
from gateway_stats.records.row import decimal_text, iso

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
_CONVERT = frozenset({"timestamp", "bool", "decimal", "json"})  # types sqlite_value changes


def sqlite_value(col: schema.Column, v: Any) -> Any:
    if v is None:
        return None
    t = col.type
    if t == "timestamp":
        return iso(v) if isinstance(v, dt.datetime) else str(v)
    if t == "bool":
        return 1 if v else 0
    if t == "decimal":
        return decimal_text(v) if isinstance(v, Decimal) else str(v)
    if t == "json":
        return v if isinstance(v, str) else orjson.dumps(v, default=str).decode()
    return v


def connect(path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    else:
        con = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
    con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return con


def migrate(con: sqlite3.Connection) -> int:
    """Bring the database to schema.SCHEMA_VERSION (forward only); returns the version found."""
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {schema.VERSION_TABLE} (version INTEGER NOT NULL)")
        row = con.execute(f"SELECT version FROM {schema.VERSION_TABLE}").fetchone()
        found = int(row[0]) if row else 0
        todo = schema.pending(found)
        for m in todo:
            for stmt in m.statements("sqlite"):
                con.execute(stmt)
        if todo:
            if row:
                con.execute(f"UPDATE {schema.VERSION_TABLE} SET version = ?", (todo[-1].version,))
            else:
                con.execute(f"INSERT INTO {schema.VERSION_TABLE} (version) VALUES (?)", (todo[-1].version,))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if found > schema.SCHEMA_VERSION:
        log.warning(
            "records sqlite: the database is at schema version %d, newer than ours (%d); "
            "writing the columns we know",
            found,
            schema.SCHEMA_VERSION,
        )
    return found


class SqliteWriterStore:
    name = "sqlite"

    def __init__(self, cfg: SqliteStore) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)
        self.con: sqlite3.Connection | None = None
        self._sql: dict[str, tuple[str, tuple[schema.Column, ...]]] = {}

    def open(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(self.path)
        try:
            for _ in range(50):  # switching to WAL needs a moment without other writers
                try:
                    con.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e):
                        raise
                    time.sleep(0.05)
            con.execute("PRAGMA synchronous=NORMAL")
            migrate(con)
        except BaseException:
            con.close()
            raise
        self.con = con

    def _insert(self, kind: str) -> tuple[str, tuple[schema.Column, ...]]:
        """One INSERT ... SELECT over `json_each(?)`: the whole batch is one JSON array bound once.

        sqlite3's executemany releases and re-takes the GIL around every row, and each hand-over makes
        the event loop thread (which serves Envoy) wait; one statement for the batch lets SQLite parse
        and insert every row with the GIL released. Arrays hold the values in column order."""
        got = self._sql.get(kind)
        if got is None:
            t = schema.table_for(kind)
            picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(t.names)))
            sql = f"INSERT INTO {t.name} ({', '.join(t.names)}) SELECT {picks} FROM json_each(?)"
            got = self._sql[kind] = (sql, t.columns)
        return got

    @staticmethod
    def _json_values(cols: tuple[schema.Column, ...], r: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for c in cols:
            v = r.get(c.name)
            if v is not None and c.type in _CONVERT:
                v = sqlite_value(c, v)
            out.append(v)
        return out

    def write(self, kind: str, rows: list[dict[str, Any]]) -> None:
        con = self.con
        assert con is not None
        sql, cols = self._insert(kind)
        values = []
        for i, r in enumerate(rows):
            if i and not i % 16:
                time.sleep(0)  # hand the GIL to the event loop now and then (see writer.YIELD_EVERY)
            values.append(self._json_values(cols, r))
        payload = orjson.dumps(values, default=str).decode()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(sql, (payload,))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def maintain(self) -> None:
        days = self.cfg.max_age_days
        if not days or self.con is None:
            return
        cutoff = iso(dt.datetime.now(dt.UTC) - dt.timedelta(days=days))
        total = 0
        for t in schema.TABLES.values():
            while True:  # in slices, so other writers are never locked out for long
                con = self.con
                con.execute("BEGIN IMMEDIATE")
                try:
                    n = con.execute(
                        f"DELETE FROM {t.name} WHERE rowid IN "
                        f"(SELECT rowid FROM {t.name} WHERE {t.time_column} < ? LIMIT 5000)",
                        (cutoff,),
                    ).rowcount
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                total += n
                if n < 5000:
                    break
        if total:
            log.info("records sqlite: retention removed %d rows older than %d days", total, days)

    def close(self) -> None:
        if self.con is not None:
            con, self.con = self.con, None
            con.close()
