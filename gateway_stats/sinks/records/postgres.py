"""PostgreSQL (psycopg 3): the same `calls` table, for teams. `pip install 'gateway-stats[records]'`.

Each batch is one transaction (`executemany`, pipelined by psycopg). The schema is created and migrated
inside a transaction holding an advisory lock, so several sidecars starting at once migrate exactly
once. Connection loss, a restart or a stopped server surface as a failed write: the writer closes the
connection, backs off and reconnects; rows queue (bounded) meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from gateway_stats.records import schema
from gateway_stats.records.config import PostgresStore

log = logging.getLogger(__name__)

ADVISORY_KEY = 0x67617465  # "gate": serialises schema migrations across processes
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 30_000


def connect(dsn: str) -> Any:
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the PostgreSQL records store needs psycopg: pip install 'gateway-stats[records]'"
        ) from e
    return psycopg.connect(
        dsn,
        connect_timeout=CONNECT_TIMEOUT_S,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        application_name="gateway-stats",
        autocommit=True,  # every write is an explicit `with con.transaction()` block
    )


def migrate(con: Any) -> int:
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_KEY,))
        con.execute(f"CREATE TABLE IF NOT EXISTS {schema.VERSION_TABLE} (version INTEGER NOT NULL)")
        row = con.execute(f"SELECT version FROM {schema.VERSION_TABLE}").fetchone()
        found = int(row[0]) if row else 0
        todo = schema.pending(found)
        for m in todo:
            for stmt in m.statements("postgres"):
                con.execute(stmt)
        if todo:
            if row:
                con.execute(f"UPDATE {schema.VERSION_TABLE} SET version = %s", (todo[-1].version,))
            else:
                con.execute(f"INSERT INTO {schema.VERSION_TABLE} (version) VALUES (%s)", (todo[-1].version,))
    if found > schema.SCHEMA_VERSION:
        log.warning(
            "records postgres: the database is at schema version %d, newer than ours (%d); "
            "writing the columns we know",
            found,
            schema.SCHEMA_VERSION,
        )
    return found


class PostgresWriterStore:
    name = "postgres"

    def __init__(self, cfg: PostgresStore) -> None:
        self.cfg = cfg
        self.con: Any = None
        self._sql: dict[str, tuple[str, tuple[schema.Column, ...]]] = {}

    def open(self) -> None:
        con = connect(self.cfg.dsn)
        try:
            migrate(con)
        except BaseException:
            con.close()
            raise
        self.con = con

    def _insert(self, kind: str) -> tuple[str, tuple[schema.Column, ...]]:
        got = self._sql.get(kind)
        if got is None:
            t = schema.table_for(kind)
            sql = f"INSERT INTO {t.name} ({', '.join(t.names)}) VALUES ({', '.join('%s' for _ in t.names)})"
            got = self._sql[kind] = (sql, t.columns)
        return got

    def write(self, kind: str, rows: list[dict[str, Any]]) -> None:
        from psycopg.types.json import Jsonb

        sql, cols = self._insert(kind)
        params = [
            tuple(
                Jsonb(r.get(c.name)) if c.type == "json" and r.get(c.name) is not None else r.get(c.name)
                for c in cols
            )
            for r in rows
        ]
        con = self.con
        with con.transaction(), con.cursor() as cur:
            cur.executemany(sql, params)

    def maintain(self) -> None:
        days = self.cfg.max_age_days
        if not days or self.con is None:
            return
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        total = 0
        for t in schema.TABLES.values():
            with self.con.transaction():
                total += self.con.execute(
                    f"DELETE FROM {t.name} WHERE {t.time_column} < %s", (cutoff,)
                ).rowcount
        if total:
            log.info("records postgres: retention removed %d rows older than %d days", total, days)

    def close(self) -> None:
        if self.con is not None:
            con, self.con = self.con, None
            with contextlib.suppress(Exception):
                con.close()
