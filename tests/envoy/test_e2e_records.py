"""Records end to end through a real Envoy 1.40: every observed call becomes one row in SQLite,
PostgreSQL, InfluxDB and JSON lines with the mock upstream's true tokens; a PostgreSQL outage never
touches traffic; SIGTERM under load loses no accepted row.

PostgreSQL 15 and InfluxDB 1.x are real servers started by the conftest fixtures (Debian packages;
skipped locally when missing, failed under CI=1).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from conftest import metric_value, metrics_text, post, wait_for
from records_util import assert_report_equals_sql

from gateway_stats.records.read import fetch
from gateway_stats.testing.mockllm import expected
from gateway_stats.testing.procs import Stack

CHAT = "/v1/chat/completions"


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# (path, body, headers): one distinct request model per call, so rows are matched by request_model.
CALLS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    (CHAT, {"model": "m-json", "messages": msgs("one two three")}, {"x-mse-consumer": "alice"}),
    (
        CHAT,
        {
            "model": "m-sse",
            "messages": msgs("stream"),
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {"x-mse-consumer": "alice", "x-mock-events": "6", "x-mock-cached-tokens": "2"},
    ),
    (
        "/v1/messages",
        {"model": "m-anthropic", "max_tokens": 50, "messages": msgs("hi there"), "stream": True},
        {"x-mse-consumer": "bob", "x-mock-events": "4"},
    ),
    (
        "/v1beta/models/m-gemini:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        {},
    ),
    ("/v1/embeddings", {"model": "m-embed", "input": ["a b", "c"]}, {"x-mse-consumer": "bob"}),
    ("/v1/responses", {"model": "m-responses", "input": "say hi"}, {"x-mock-reasoning-tokens": "3"}),
    (CHAT, {"model": "m-error", "messages": msgs("fail")}, {"x-mock-status": "429"}),
]
ABORTED = {"model": "m-aborted", "max_tokens": 50, "messages": msgs("long answer"), "stream": True}


# One price for every call on Envoy's route (a pricing override by route), so each row's exact cost
# is known from the mock's true tokens.
PRICE_IN, PRICE_OUT = Decimal("0.0000013"), Decimal("0.0000071")
PRICING = {
    "builtin": False,
    "overrides": [
        {"route": "llm", "input_cost_per_token": str(PRICE_IN), "output_cost_per_token": str(PRICE_OUT)}
    ],
    "currency": "EUR",
}


# Envoy skips the sidecar for the rest of a call whose answer takes longer than message_timeout (200 ms
# by default): on a loaded test machine that would cut what the sidecar sees, not what these tests check.
PATIENT: dict[str, object] = {"message_timeout_ms": 2000}


def write_config(path: Path, records: dict[str, Any], pricing: dict[str, Any] | None = None) -> str:
    ext: dict[str, Any] = {"records": records}
    if pricing:
        ext["pricing"] = pricing
    path.write_text(yaml.safe_dump({"gateway_stats": ext}))
    return str(path)


def aborted_call(port: int) -> None:
    """An Anthropic stream the client hangs up on after 3 events."""
    body = json.dumps(ABORTED).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"x-mock-events: 40\r\nx-mock-interval-ms: 50\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(65536)
    s.close()


def rows_of(source: Path | str) -> list[dict[str, Any]]:
    """The rows so far; none while the store or its table does not exist yet."""
    try:
        return fetch(source)
    except Exception:
        return []


def test_every_call_is_one_row_in_every_store(stack_factory, postgres, influx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    postgres.query("CREATE DATABASE e2e")
    influx.query("CREATE DATABASE e2e")
    pg_dsn = postgres.dsn.rsplit("/", 1)[0] + "/e2e"
    db, jl = tmp_path / "records.db", tmp_path / "records.jsonl"
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "sqlite": str(db),
            "postgres": pg_dsn,
            "influxdb": {"url": influx.url, "database": "e2e"},
            "jsonl": str(jl),
            "flush_interval_ms": 50,
        },
        PRICING,
    )
    st: Stack = stack_factory(config_path=cfg, envoy_extra=PATIENT)
    for path, body, headers in CALLS:
        status, _, _ = post(st.envoy_port, path, body, headers)
        assert status == expected(path, headers, body).status
    aborted_call(st.envoy_port)
    n = len(CALLS) + 1

    wait_for(lambda: len(rows_of(db)) == n, timeout=15, what=f"{n} rows in SQLite")
    wait_for(lambda: len(rows_of(pg_dsn)) == n, timeout=15, what=f"{n} rows in PostgreSQL")
    wait_for(lambda: len(influx.points("analytics", "e2e")) == n, timeout=15, what=f"{n} points in InfluxDB")
    wait_for(lambda: len(rows_of(jl)) == n, timeout=15, what=f"{n} JSON lines")

    stores = {"sqlite": fetch(db), "postgres": fetch(pg_dsn), "jsonl": fetch(jl)}
    by_model = {k: {r["request_model"]: r for r in rows} for k, rows in stores.items()}
    points = {p["deployment"]: p for p in influx.points("analytics", "e2e")}
    for path, body, headers in CALLS:
        t = expected(path, headers, body)
        rows = [by_model[k][t.request_model] for k in stores]
        for col in ("input_tokens", "output_tokens", "total_tokens", "outcome", "status_code", "cost", "ts"):
            assert len({str(r[col]) for r in rows}) == 1, (t.request_model, col, [r[col] for r in rows])
        r = rows[0]
        if t.usage_reported:
            assert (r["input_tokens"], r["output_tokens"] or 0, r["total_tokens"]) == (
                t.input_tokens,
                t.output_tokens,
                t.total_tokens,
            ), t.request_model
            assert (r["cached_tokens"] or 0) == t.cached_tokens and (
                r["reasoning_tokens"] or 0
            ) == t.reasoning_tokens
            assert r["outcome"] == "ok" and r["status_code"] == 200
            assert r["response_model"] == t.model and r["stream"] is t.stream
        else:
            assert r["outcome"] == "error" and r["status_code"] == 429 and r["input_tokens"] is None
        # cost: the pricing engine's exact Decimal, the same in every store (and in InfluxDB below)
        if t.usage_reported and not t.cached_tokens and not t.reasoning_tokens:
            assert r["cost"] == t.input_tokens * PRICE_IN + t.output_tokens * PRICE_OUT, t.request_model
            assert r["currency"] == "EUR"
        elif t.usage_reported:  # cache reads / reasoning: billed by the engine's own rules, still exact
            assert isinstance(r["cost"], Decimal) and r["cost"] > 0 and r["currency"] == "EUR"
        else:
            assert r["cost"] is None and r["currency"] is None  # no usage: not priced, never 0
        assert r["duration_ms"] is not None and r["ts"] is not None and r["request_id"]
        p = points[t.request_model]
        assert (p.get("prompt_tokens"), p.get("completion_tokens")) == (r["input_tokens"], r["output_tokens"])
        assert p["project_id"] == r["consumer"] and p["outcome"] == r["outcome"]
        if r["cost"] is not None:
            assert Decimal(p["cost"]) == r["cost"] and p["price"] == float(r["cost"]) == p["deployment_price"]
    a = by_model["sqlite"]["m-aborted"]
    truth = expected("/v1/messages", {"x-mock-events": "40"}, ABORTED)
    assert a["outcome"] == "aborted" and a["stream"] is True
    assert a["input_tokens"] == truth.input_tokens and (a["output_tokens"] or 0) < truth.output_tokens
    assert by_model["sqlite"]["m-embed"]["request_messages"] == 2
    assert by_model["postgres"]["m-json"]["consumer"] == "alice"
    assert by_model["sqlite"]["m-gemini"]["provider"] == "gcp.gemini"

    # the report over these rows equals SQL run by hand, on both SQL stores
    con = sqlite3.connect(db)
    assert_report_equals_sql(str(db), lambda s, *a: con.execute(s, a).fetchall(), "?", "date(ts)")
    pgq = _pg(pg_dsn)
    assert_report_equals_sql(pg_dsn, pgq, "%s", "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')")

    text = metrics_text(st)
    for sink in ("sqlite", "postgres", "influxdb", "jsonl"):
        assert metric_value(text, "gateway_stats_records_written_total", sink=sink) == n
        assert metric_value(text, "gateway_stats_records_dropped_total", sink=sink) == 0
        assert f'gateway_stats_records_queue_depth{{sink="{sink}"}} 0.0' in text
        assert metric_value(text, "gateway_stats_records_write_seconds_count", sink=sink) >= 1


def _pg(dsn: str) -> Any:
    import psycopg

    def q(sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn) as con:
            return list(con.execute(sql, args or None).fetchall())

    return q


class Load:
    """A few client threads sending JSON chat calls through Envoy until stopped."""

    def __init__(self, port: int, threads: int = 3) -> None:
        self.port = port
        self.results: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                status, _, _ = post(self.port, CHAT, {"model": "m-load", "messages": msgs("hi")})
            except Exception:
                status = -1
            self.results.append((status, time.monotonic() - t0))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_postgres_down_mid_load_traffic_unaffected_drops_counted_rows_resume(  # type: ignore[no-untyped-def]
    stack_factory, postgres, tmp_path: Path
) -> None:
    postgres.query("CREATE DATABASE outage")
    pg_dsn = postgres.dsn.rsplit("/", 1)[0] + "/outage"
    db = tmp_path / "records.db"
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "sqlite": str(db),
            "postgres": pg_dsn,
            "queue_size": 100,
            "batch_size": 20,
            "flush_interval_ms": 50,
            "max_retries": 2,
        },
    )
    st: Stack = stack_factory(config_path=cfg, envoy_extra=PATIENT)
    with Load(st.envoy_port) as load:
        wait_for(lambda: len(rows_of(pg_dsn)) >= 30, timeout=20, what="rows in PostgreSQL")
        dropped_before = metric_value(
            metrics_text(st), "gateway_stats_records_dropped_total", sink="postgres"
        )
        postgres.stop()
        at_stop = len(load.results)
        down_since = time.monotonic()
        wait_for(
            lambda: (
                metric_value(metrics_text(st), "gateway_stats_records_dropped_total", sink="postgres")
                > dropped_before + 20
                and time.monotonic() - down_since > 2.0
            ),
            timeout=30,
            what="rows dropped and counted while PostgreSQL is down",
        )
        during = len(load.results) - at_stop
        outage = time.monotonic() - down_since
        postgres.start()
        restarted = len(load.results)
        written_before = metric_value(
            metrics_text(st), "gateway_stats_records_written_total", sink="postgres"
        )
        wait_for(
            lambda: (
                metric_value(metrics_text(st), "gateway_stats_records_written_total", sink="postgres")
                > written_before + 20
            ),
            timeout=30,
            what="rows written again after PostgreSQL came back",
        )
    text = metrics_text(st)
    calls = sum(
        metric_value(text, "gateway_stats_records_total", end_reason=e) for e in ("complete", "aborted")
    )

    def settled() -> bool:  # the last rows reached their stores (or were counted as dropped)
        t = metrics_text(st)
        done = metric_value(t, "gateway_stats_records_written_total", sink="postgres") + metric_value(
            t, "gateway_stats_records_dropped_total", sink="postgres"
        )
        return done == calls and len(rows_of(db)) == calls

    wait_for(settled, timeout=15, what="every call written or counted as dropped")
    text = metrics_text(st)
    statuses = {s for s, _ in load.results}
    slowest = max(d for _, d in load.results)
    dropped = {
        r: metric_value(text, "gateway_stats_records_dropped_total", sink="postgres", reason=r)
        for r in ("queue_full", "write_failed")
    }
    pg_rows = len(fetch(pg_dsn))
    print(
        f"\nPostgreSQL outage: {len(load.results)} calls ({during} in {outage:.1f} s while it was down, "
        f"{len(load.results) - restarted} after the restart), statuses {statuses}, "
        f"slowest {slowest * 1000:.0f} ms; "
        f"postgres rows {pg_rows}, dropped {dropped}; sqlite rows {len(rows_of(db))} of {calls:.0f} calls"
    )
    assert statuses == {200} and during > 50
    assert slowest < 3.0  # never waited on the database (its connect timeout alone is 5 s)
    assert sum(dropped.values()) > dropped_before + 20
    assert pg_rows + sum(dropped.values()) == calls  # every call either written or counted as dropped
    assert metric_value(text, "gateway_stats_records_dropped_total", sink="sqlite") == 0


def test_sigterm_under_load_loses_no_accepted_row(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, jl = tmp_path / "records.db", tmp_path / "records.jsonl"
    # a long flush interval, so rows are still queued when SIGTERM arrives
    cfg = write_config(
        tmp_path / "config.yaml",
        {"sqlite": str(db), "jsonl": str(jl), "flush_interval_ms": 2000, "batch_size": 100_000},
    )
    st: Stack = stack_factory(config_path=cfg, envoy_extra=PATIENT)
    sidecar = st.procs["gateway-stats"]
    with Load(st.envoy_port, threads=4) as load:
        wait_for(lambda: len(load.results) >= 150, timeout=30, what="traffic flowing")
        queued = metric_value(metrics_text(st), "gateway_stats_records_queue_depth", sink="sqlite")
        sidecar.popen.send_signal(signal.SIGTERM)
        assert sidecar.popen.wait(30) == 0
        at_exit = len(load.results)
        wait_for(lambda: len(load.results) >= at_exit + 20, timeout=30, what="traffic after the sidecar left")
    statuses = {s for s, _ in load.results}
    log = sidecar.log_text()
    figures = {}
    for sink in ("sqlite", "jsonl"):
        m = re.search(rf"records {sink}: (\d+) accepted, (\d+) written, dropped: (\S+)", log)
        assert m, log[-3000:]
        figures[sink] = (int(m.group(1)), int(m.group(2)), m.group(3))
    rows = {"sqlite": len(fetch(db)), "jsonl": len(fetch(jl))}
    print(
        f"\nSIGTERM under load: {len(load.results)} calls, statuses {statuses}; "
        f"{queued:.0f} rows queued just before the signal; accepted/written/dropped {figures}; rows {rows}"
    )
    assert statuses == {200}  # fail-open while it drained and after it left
    assert queued > 0
    for sink, (accepted, written, dropped) in figures.items():
        assert accepted == written == rows[sink] and dropped == "0", sink
    assert rows["sqlite"] >= 150
