"""The `gateway_stats.records` config block: which stores get a row per call, and the writer's knobs.

    gateway_stats:
      records:
        sqlite: records.db                  # or {path: …, max_age_days: 30}
        postgres: postgresql://user@host/db # or {dsn: …, max_age_days: 30}
        influxdb: {url: http://influx:8086, org: acme, bucket: llm, token: …}   # v2; or {database: …} v1
        jsonl: records.jsonl                # or {path: …, max_bytes: 104857600, backups: 5}
        max_age_days: 90                    # retention of the SQL stores (default: keep everything)
        queue_size: 10000                   # per store; beyond it rows are dropped and counted
        batch_size: 500
        flush_interval_ms: 200
        max_retries: 5                      # then the batch is dropped (counted, reason write_failed)
        drain_seconds: 10                   # on SIGTERM, time given to flush what is queued

`parse_records(value, path, source)` validates it and raises `ConfigError` naming each bad field, in the
style of the config package (`config/schema.py`). InfluxDB fields left out come from AI DIAL's
variables `INFLUX_URL`, `INFLUX_ORG`, `INFLUX_BUCKET`, `INFLUX_API_KEY` (read when the config is parsed).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

RECORDS_FIELDS = (
    "sqlite",
    "postgres",
    "influxdb",
    "jsonl",
    "max_age_days",
    "queue_size",
    "batch_size",
    "flush_interval_ms",
    "max_retries",
    "drain_seconds",
)
SQLITE_FIELDS = ("path", "max_age_days")
POSTGRES_FIELDS = ("dsn", "max_age_days")
INFLUX_FIELDS = ("url", "org", "bucket", "database", "token", "timeout_seconds")
JSONL_FIELDS = ("path", "max_bytes", "backups")
INFLUX_ENV = {"url": "INFLUX_URL", "org": "INFLUX_ORG", "bucket": "INFLUX_BUCKET", "token": "INFLUX_API_KEY"}


@dataclass(frozen=True, slots=True)
class SqliteStore:
    path: str
    max_age_days: int | None = None


@dataclass(frozen=True, slots=True)
class PostgresStore:
    dsn: str
    max_age_days: int | None = None


@dataclass(frozen=True, slots=True)
class InfluxStore:
    url: str
    org: str | None = None
    bucket: str | None = None  # v2 API (/api/v2/write): org + bucket
    database: str | None = None  # v1 API (/write?db=)
    token: str | None = field(default=None, repr=False)
    timeout_seconds: float = 5.0

    @property
    def api(self) -> str:
        return "v1" if self.database else "v2"


@dataclass(frozen=True, slots=True)
class JsonlStore:
    path: str
    max_bytes: int = 100 << 20
    backups: int = 5


@dataclass(frozen=True, slots=True)
class RecordsConfig:
    sqlite: SqliteStore | None = None
    postgres: PostgresStore | None = None
    influxdb: InfluxStore | None = None
    jsonl: JsonlStore | None = None
    queue_size: int = 10_000
    batch_size: int = 500
    flush_interval_ms: int = 200
    max_retries: int = 5
    drain_seconds: float = 10.0

    @property
    def enabled(self) -> bool:
        return any(s is not None for s in (self.sqlite, self.postgres, self.influxdb, self.jsonl))


def _describe(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "mapping"
    if isinstance(v, list):
        return "list"
    name = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(v), type(v).__name__)
    text = repr(v)
    return f"{name} {text if len(text) <= 60 else text[:57] + '...'}"


class _Errors:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.source}: {path}: {message}")

    def fields(self, m: Mapping[Any, Any], path: str, known: Sequence[str]) -> None:
        for k in m:
            if not isinstance(k, str):
                self.add(path, f"field names must be strings, got {_describe(k)}")
            elif k not in known:
                guess = difflib.get_close_matches(k.lower(), known, n=1, cutoff=0.6)
                hint = f"did you mean '{guess[0]}'?" if guess else f"known fields: {', '.join(known)}"
                self.add(f"{path}.{k}", f"unknown field ({hint})")

    def string(self, m: Mapping[str, Any], key: str, path: str) -> str | None:
        v = m.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            self.add(f"{path}.{key}", f"expected a non-empty string, got {_describe(v)}")
            return None
        return v

    def integer(self, m: Mapping[str, Any], key: str, path: str, minimum: int = 1) -> int | None:
        v = m.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.add(f"{path}.{key}", f"expected an integer, got {_describe(v)}")
            return None
        if v < minimum:
            self.add(f"{path}.{key}", f"must be >= {minimum}, got {v}")
            return None
        return v

    def number(self, m: Mapping[str, Any], key: str, path: str) -> float | None:
        v = m.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            self.add(f"{path}.{key}", f"expected a positive number, got {_describe(v)}")
            return None
        return float(v)


def _store_mapping(
    e: _Errors, v: object, path: str, main: str, known: Sequence[str]
) -> dict[str, Any] | None:
    """A store given as a plain string (its path / DSN) or as a mapping with `main` and options."""
    if isinstance(v, str):
        if not v:
            e.add(path, "must not be empty")
            return None
        return {main: v}
    if not isinstance(v, dict):
        e.add(path, f"expected a string ({main}) or a mapping, got {_describe(v)}")
        return None
    e.fields(v, path, known)
    if not isinstance(v.get(main), str) or not v.get(main):
        e.add(
            f"{path}.{main}", "required field is missing" if main not in v else "expected a non-empty string"
        )
        return None
    return v


def _kw(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _influx(e: _Errors, v: object, path: str, env: Mapping[str, str]) -> InfluxStore | None:
    if v is True or v == {}:
        m: dict[str, Any] = {}
    elif isinstance(v, dict):
        m = v
        e.fields(m, path, INFLUX_FIELDS)
    else:
        e.add(path, f"expected a mapping (url, org, bucket, token) or true, got {_describe(v)}")
        return None
    got = {k: e.string(m, k, path) for k in ("url", "org", "bucket", "database", "token")}
    for k, var in INFLUX_ENV.items():
        if got[k] is None and env.get(var):
            got[k] = env[var]
    url = got["url"]
    if not url:
        e.add(f"{path}.url", "required (or set INFLUX_URL)")
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        e.add(f"{path}.url", f"expected an http:// or https:// URL, got {url!r}")
        return None
    if got["database"] and m.get("bucket"):
        e.add(
            path, "set either database (InfluxDB 1.x /write) or bucket (InfluxDB 2/3 /api/v2/write), not both"
        )
        return None
    if not got["database"]:
        if not got["bucket"]:
            e.add(
                f"{path}.bucket",
                "required for the v2 API (or set INFLUX_BUCKET, or database: for InfluxDB 1.x)",
            )
            return None
        if not got["org"]:
            e.add(f"{path}.org", "required for the v2 API (or set INFLUX_ORG)")
            return None
    return InfluxStore(
        url=url.rstrip("/"),
        org=got["org"],
        bucket=None if got["database"] else got["bucket"],
        database=got["database"],
        token=got["token"],
        **_kw(timeout_seconds=e.number(m, "timeout_seconds", path)),
    )


def parse_records(
    value: object,
    path: str = "gateway_stats.records",
    source: str = "<string>",
    env: Mapping[str, str] | None = None,
) -> RecordsConfig | None:
    """Validate the `records` block; None when absent. Raises ConfigError listing every problem."""
    from gateway_stats.config import ConfigError  # imported late: the config package imports this module

    if value is None:
        return None
    env = os.environ if env is None else env
    e = _Errors(source)
    if not isinstance(value, dict):
        raise ConfigError([f"{source}: {path}: expected a mapping, got {_describe(value)}"])
    e.fields(value, path, RECORDS_FIELDS)
    max_age = e.integer(value, "max_age_days", path)
    sqlite = postgres = influx = jsonl = None
    if value.get("sqlite") is not None:
        m = _store_mapping(e, value["sqlite"], f"{path}.sqlite", "path", SQLITE_FIELDS)
        if m is not None:
            own = e.integer(m, "max_age_days", f"{path}.sqlite")
            sqlite = SqliteStore(m["path"], own or max_age)
    if value.get("postgres") is not None:
        m = _store_mapping(e, value["postgres"], f"{path}.postgres", "dsn", POSTGRES_FIELDS)
        if m is not None:
            own = e.integer(m, "max_age_days", f"{path}.postgres")
            postgres = PostgresStore(m["dsn"], own or max_age)
    if value.get("influxdb") is not None:
        influx = _influx(e, value["influxdb"], f"{path}.influxdb", env)
    if value.get("jsonl") is not None:
        m = _store_mapping(e, value["jsonl"], f"{path}.jsonl", "path", JSONL_FIELDS)
        if m is not None:
            jsonl = JsonlStore(
                m["path"],
                **_kw(
                    max_bytes=e.integer(m, "max_bytes", f"{path}.jsonl", minimum=1024),
                    backups=e.integer(m, "backups", f"{path}.jsonl", minimum=0),
                ),
            )
    cfg = RecordsConfig(
        sqlite=sqlite,
        postgres=postgres,
        influxdb=influx,
        jsonl=jsonl,
        **_kw(
            queue_size=e.integer(value, "queue_size", path),
            batch_size=e.integer(value, "batch_size", path),
            flush_interval_ms=e.integer(value, "flush_interval_ms", path),
            max_retries=e.integer(value, "max_retries", path, minimum=0),
            drain_seconds=e.number(value, "drain_seconds", path),
        ),
    )
    if e.items:
        raise ConfigError(e.items)
    return cfg
