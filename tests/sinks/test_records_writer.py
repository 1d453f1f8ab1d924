"""The records writer (bounded queue, batching, retry with backoff, counted drops, drain, enrichers, other
row kinds) and each store against its real server: SQLite (WAL, migrations, several processes,
retention), JSON lines (rotation), PostgreSQL, InfluxDB (line protocol, v1 and v2 request shapes)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from records_util import DAY, FakeStore, make_record, sample, sink_for
from records_util import write_rows as _write_rows

from gateway_stats.records import load, schema
from gateway_stats.records.config import RecordsConfig, parse_records
from gateway_stats.records.read import fetch
from gateway_stats.sinks.records import influxdb
from gateway_stats.sinks.records.sqlite import SqliteWriterStore, connect
from gateway_stats.sinks.records.writer import Rejected

REPO = Path(__file__).resolve().parents[2]


def test_emit_never_blocks_full_queue_drops_are_counted() -> None:
    store = FakeStore()
    store.gate.clear()  # the store hangs
    sink, reg = sink_for(RecordsConfig(queue_size=20, batch_size=5, flush_interval_ms=10), [store])
    rec = make_record()
    worst = 0.0
    for _ in range(200):
        t0 = time.perf_counter()
        sink.emit(rec, {})
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.005, worst  # a put, never a wait
    dropped = sample(reg, "gateway_stats_records_dropped_total", sink="fake", reason="queue_full")
    assert 170 <= dropped <= 180  # 20 queued + the batch the thread took out
    assert sample(reg, "gateway_stats_records_queue_depth", sink="fake") == 20
    store.gate.set()
    sink.close()
    assert len(store.rows) == 200 - dropped
    assert sample(reg, "gateway_stats_records_written_total", sink="fake") == 200 - dropped
    assert sample(reg, "gateway_stats_records_write_seconds_count", sink="fake") >= 1


def test_failed_writes_are_retried_with_backoff_then_dropped() -> None:
    store = FakeStore(fail=2)
    sink, reg = sink_for(RecordsConfig(batch_size=10, flush_interval_ms=10, max_retries=3), [store])
    for _ in range(3):
        sink.emit(make_record(), {})
    t0 = time.monotonic()
    sink.close()
    assert len(store.rows) == 3 and store.attempts == 3  # two failures, then the same batch went in
    assert time.monotonic() - t0 >= 0.2 + 0.4 - 0.05  # backoff 0.2 s then 0.4 s
    assert sample(reg, "gateway_stats_records_dropped_total", sink="fake", reason="write_failed") == 0

    down = FakeStore(fail=100)
    sink, reg = sink_for(RecordsConfig(flush_interval_ms=10, max_retries=1), [down])
    sink.emit(make_record(), {})
    sink.close()
    assert down.attempts == 2 and not down.rows
    assert sample(reg, "gateway_stats_records_dropped_total", sink="fake", reason="write_failed") == 1

    rejecting = FakeStore(fail=1, exc=Rejected("HTTP 400"))
    sink, reg = sink_for(RecordsConfig(flush_interval_ms=10), [rejecting])
    sink.emit(make_record(), {})
    sink.close()
    assert rejecting.attempts == 1  # never retried
    assert sample(reg, "gateway_stats_records_dropped_total", sink="fake", reason="rejected") == 1


def test_close_flushes_the_queue_and_counts_what_misses_the_deadline() -> None:
    store = FakeStore()
    sink, reg = sink_for(RecordsConfig(batch_size=1000, flush_interval_ms=60_000), [store])
    for _ in range(500):
        sink.emit(make_record(), {})
    assert not store.rows  # still waiting for its flush interval
    sink.close()
    assert len(store.rows) == 500
    assert sample(reg, "gateway_stats_records_dropped_total", sink="fake", reason="shutdown") == 0

    stuck = FakeStore(fail=1000)
    sink, reg = sink_for(
        RecordsConfig(flush_interval_ms=60_000, max_retries=1000, drain_seconds=0.5), [stuck]
    )
    for _ in range(7):
        sink.emit(make_record(), {})
    t0 = time.monotonic()
    sink.close()
    assert time.monotonic() - t0 < 3
    assert sample(reg, "gateway_stats_records_dropped_total", sink="fake", reason="shutdown") == 7


def test_enrichers_run_once_per_record_in_a_writer_thread() -> None:
    a, b = FakeStore(), FakeStore()
    b.name = "fake2"
    sink, _ = sink_for(RecordsConfig(flush_interval_ms=10), [a, b])
    seen: list[str] = []

    def language(rec: Any) -> None:
        seen.append(threading.current_thread().name)
        rec.language = "de"

    def broken(rec: Any) -> None:
        raise RuntimeError("model not loaded")

    sink.add_enricher(broken)
    sink.add_enricher(language)
    for _ in range(4):
        sink.emit(make_record(), {})
    sink.close()
    assert len(seen) == 4 and all(n.startswith("records-") for n in seen)
    assert [r["language"] for _, r in a.rows] == ["de"] * 4 == [r["language"] for _, r in b.rows]


def test_another_row_kind_goes_through_the_same_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the feedback issue plugs in: a table registered under a kind, rows submitted ready-made."""
    fb = schema.Table(
        "feedback", "feedback", (schema.Column("ts", "timestamp", ""), schema.Column("like_count", "int", ""))
    )
    monkeypatch.setitem(schema.TABLES, "feedback", fb)
    monkeypatch.setattr(influxdb, "_POINTS", dict(influxdb._POINTS))  # the registration stays in this test
    influxdb.register_point("feedback", "rate_analytics", lambda r: ({}, {"like_count": r["like_count"]}))
    rc = parse_records({"jsonl": str(tmp_path / "r.jsonl"), "flush_interval_ms": 10})
    assert rc is not None
    sink, _ = sink_for(rc)
    ts = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert sink.submit("feedback", {"ts": ts, "like_count": 1})
    sink.emit(make_record(), {})
    sink.close()
    kinds = [json.loads(ln)["kind"] for ln in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(kinds) == ["call", "feedback"]
    assert fetch(tmp_path / "r.jsonl", table="feedback")[0]["like_count"] == 1
    assert influxdb.lines("feedback", [{"ts": ts, "like_count": 1}]).startswith(
        b"rate_analytics like_count=1i "
    )


def test_sqlite_schema_version_and_forward_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.db"
    rc = parse_records({"sqlite": str(db), "flush_interval_ms": 10})
    assert rc is not None
    sink, _ = sink_for(rc)
    sink.emit(make_record(), {})
    sink.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT version FROM gateway_stats_schema").fetchall() == [(schema.SCHEMA_VERSION,)]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(calls)")}
    assert types["cost"] == "TEXT" and types["ts"] == "TEXT" and list(types) == list(schema.CALLS.names)
    idx = {r[1] for r in con.execute("PRAGMA index_list(calls)")}
    assert {"calls_ts", "calls_model_ts", "calls_consumer_ts"} <= idx
    con.close()
    # a later version adds a column: an existing database is migrated forward, its rows kept
    nxt = schema.SCHEMA_VERSION + 1
    v_next = schema.Migration(nxt, "test", ("ALTER TABLE calls ADD COLUMN extra_col TEXT",), ())
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, v_next))
    store = SqliteWriterStore(rc.sqlite)  # type: ignore[arg-type]
    store.open()
    store.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT version FROM gateway_stats_schema").fetchall() == [(nxt,)]
    assert "extra_col" in {r[1] for r in con.execute("PRAGMA table_info(calls)")}
    assert con.execute("SELECT count(*) FROM calls").fetchone()[0] == 1


def test_sqlite_several_processes_write_one_file(tmp_path: Path) -> None:
    """`serve --workers N`: N writers on one file, while a reader reads; no row lost, none doubled."""
    db = tmp_path / "shared.db"
    script = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(REPO / "tests")!r})
        from prometheus_client import CollectorRegistry
        from records_util import make_record
        from gateway_stats.records.config import parse_records
        from gateway_stats.sinks.records.writer import RecordsMetrics, RecordsSink
        sink = RecordsSink(parse_records({{"sqlite": {str(db)!r}, "batch_size": 25, "flush_interval_ms": 5}}),
                           RecordsMetrics(CollectorRegistry()))
        for i in range(400):
            sink.emit(make_record(consumer=sys.argv[1]), {{}})
        sink.close()
        w = sink.writers[0]
        print(w.written, sum(w.dropped.values()))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, f"w{i}"], stdout=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    reads = 0
    while any(p.poll() is None for p in procs):
        if db.exists():
            try:
                con = connect(db, read_only=True)
                con.execute("SELECT count(*) FROM calls").fetchone()
                con.close()
                reads += 1
            except sqlite3.OperationalError:
                pass  # the table does not exist yet
        time.sleep(0.01)
    outs = [p.communicate()[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs == [["400", "0"]] * 3
    con = sqlite3.connect(db)
    assert dict(con.execute("SELECT consumer, count(*) FROM calls GROUP BY consumer").fetchall()) == {
        "w0": 400,
        "w1": 400,
        "w2": 400,
    }
    assert reads > 0


def test_sqlite_retention(tmp_path: Path) -> None:
    rc = parse_records(
        {"sqlite": {"path": str(tmp_path / "r.db"), "max_age_days": 3}, "flush_interval_ms": 10}
    )
    assert rc is not None and rc.sqlite is not None
    sink, _ = sink_for(rc)
    now = time.time()
    for age in (0, 1, 5, 10):
        sink.emit(make_record(wall=now - age * DAY), {})
    sink.close()
    store = SqliteWriterStore(rc.sqlite)
    store.open()
    store.maintain()
    store.close()
    assert len(fetch(tmp_path / "r.db")) == 2


def test_jsonl_rotates_by_size_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    rc = parse_records({"jsonl": {"path": str(path), "max_bytes": 4096, "backups": 3}, "batch_size": 1})
    assert rc is not None
    sink, _ = sink_for(rc)
    for i in range(12):
        sink.emit(make_record(inp=i + 1, cost=Decimal("0.0000001")), {})
        time.sleep(0.005)
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "r.jsonl.1" in files and all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    first = json.loads(path.read_text().splitlines()[0])
    assert first["kind"] == "call" and first["cost"] == "0.0000001" and first["ts"].endswith("Z")
    rows = fetch(path)
    kept = sum(len(p.read_text().splitlines()) for p in tmp_path.iterdir())
    assert len(rows) == kept and rows == sorted(rows, key=lambda r: r["ts"])


def test_postgres_store_exact_cost_json_attributes_and_migrations(postgres: Any) -> None:
    rec = make_record(cost=Decimal("0.000000123456789"), currency="EUR")
    rec.attributes = {"question": "hi", "n": [1, 2]}
    _write_rows({"postgres": postgres.dsn}, [rec, make_record()])
    rows = postgres.query("SELECT cost, currency, attributes, stream, ts FROM calls ORDER BY cost NULLS LAST")
    assert rows[0][0] == Decimal("0.000000123456789") and rows[0][1] == "EUR"
    assert rows[0][2] == {"question": "hi", "n": [1, 2]} and rows[0][3] is False
    assert rows[1][0] is None and rows[0][4].tzinfo is not None
    assert postgres.query("SELECT version FROM gateway_stats_schema") == [(schema.SCHEMA_VERSION,)]
    types = dict(
        postgres.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'calls'"
        )
    )
    assert (
        types["cost"] == "numeric"
        and types["ts"] == "timestamp with time zone"
        and types["stream"] == "boolean"
    )
    assert len(types) == len(schema.CALLS.columns)
    df = load(postgres.dsn)
    assert Decimal("0.000000123456789") in df["cost"].to_list()
    postgres.query("TRUNCATE calls")


def test_line_protocol_escapes_and_types() -> None:
    ts = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    ln = influxdb.line(
        "analytics",
        {"model": "gpt 4,o=x", "empty": "", "none": None},
        {"s": 'a "q" \\ b\nc', "i": 3, "f": 0.5, "b": True, "n": None},
        ts,
    )
    assert (
        ln == 'analytics,model=gpt\\ 4\\,o\\=x s="a \\"q\\" \\\\ b\\nc",i=3i,f=0.5,b=true 1767323045678901000'
    )
    assert influxdb.line("m", {"a": "1"}, {"x": None}, ts) is None


def test_influx_v2_request_shape() -> None:
    got: list[tuple[str, dict[str, str], bytes]] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append((self.path, dict(self.headers), body))
            self.send_response(204 if len(got) > 1 else 503)  # the first attempt fails: retried
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        rc = parse_records(
            {"influxdb": {"url": url, "org": "my org", "bucket": "llm"}, "flush_interval_ms": 10},
            env={"INFLUX_API_KEY": "s3cret"},
        )
        assert rc is not None
        rec = make_record(model="gpt-4o", inp=7, out=3, cost=Decimal("0.25"))
        rec.session_id, rec.request_messages, rec.user_hash = "conv-1", 3, "ab12"
        sink, reg = sink_for(rc)
        sink.emit(rec, {})
        sink.close()
    finally:
        srv.shutdown()
    assert len(got) == 2 and got[0][2] == got[1][2]
    path, headers, body = got[1]
    assert path == "/api/v2/write?org=my+org&bucket=llm&precision=ns"
    assert headers["Authorization"] == "Token s3cret"
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert text.startswith("analytics,") and text.endswith("\n") and text.count("\n") == 1
    tags = dict(kv.split("=", 1) for kv in text.split(" ", 1)[0].split(",")[1:])
    assert tags["model"] == "gpt-4o" and tags["deployment"] == "gpt-4o" and tags["project_id"] == "alice"
    assert tags["response_id"] == "chatcmpl-x" and tags["outcome"] == "ok"
    fields = text.split(" ")[1]
    for want in (
        'user_hash="ab12"',
        "price=0.25",
        "deployment_price=0.25",
        "number_request_messages=3i",
        'chat_id="conv-1"',
        "prompt_tokens=7i",
        "completion_tokens=3i",
        'cost="0.25"',
    ):
        assert want in fields.split(","), want
    assert sample(reg, "gateway_stats_records_written_total", sink="influxdb") == 1


def test_influx_v1_real_server(influx: Any) -> None:
    influx.query("CREATE DATABASE unit")
    recs = [make_record(model="m1", inp=3, out=2), make_record(model="m2", inp=30, out=20, status=500)]
    _write_rows({"influxdb": {"url": influx.url, "database": "unit"}}, recs)
    pts = influx.points("analytics", "unit")
    assert sorted((p["model"], p["prompt_tokens"], p["completion_tokens"], p["outcome"]) for p in pts) == [
        ("m1", 3, 2, "ok"),
        ("m2", 30, 20, "error"),
    ]
    # a bad database name is a permanent 404: rejected and counted, never retried forever
    rc = parse_records({"influxdb": {"url": influx.url, "database": "nope"}, "flush_interval_ms": 10})
    assert rc is not None
    sink, reg = sink_for(rc)
    sink.emit(recs[0], {})
    sink.close()
    assert sample(reg, "gateway_stats_records_dropped_total", sink="influxdb", reason="rejected") == 1
