"""Records: the row, the config block, the writer (queue, batching, retry, drops, drain), each store
against its real server, load(), and the report against SQL written by hand on the same rows."""

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
from prometheus_client import CollectorRegistry
from records_util import DAY, FakeStore, assert_report_equals_sql, make_record

from gateway_stats.cli import main as cli_main
from gateway_stats.config import ConfigError, parse_config
from gateway_stats.records import load, report, schema
from gateway_stats.records.config import RecordsConfig, parse_records
from gateway_stats.records.read import Filters, fetch, parse_since
from gateway_stats.records.row import call_row, outcome
from gateway_stats.sinks.records import influxdb
from gateway_stats.sinks.records.sqlite import SqliteWriterStore, connect
from gateway_stats.sinks.records.writer import RecordsMetrics, RecordsSink, Rejected
from gateway_stats.testing.servers import chromium_check

REPO = Path(__file__).resolve().parents[1]


def sink_for(cfg: RecordsConfig, stores: list[Any] | None = None) -> tuple[RecordsSink, CollectorRegistry]:
    reg = CollectorRegistry()
    return RecordsSink(cfg, RecordsMetrics(reg), stores), reg


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


# ------------------------------------------------------------------------------------------ config


def test_config_block_parses_and_names_bad_fields() -> None:
    cfg = parse_config(
        {
            "gateway_stats": {
                "records": {
                    "sqlite": "r.db",
                    "postgres": {"dsn": "postgresql://u@h/db", "max_age_days": 7},
                    "jsonl": {"path": "r.jsonl", "max_bytes": 2048, "backups": 2},
                    "max_age_days": 30,
                    "batch_size": 100,
                }
            }
        }
    )
    rc = cfg.extensions.records
    assert rc is not None and rc.enabled
    assert rc.sqlite is not None and rc.sqlite.path == "r.db" and rc.sqlite.max_age_days == 30
    assert rc.postgres is not None and rc.postgres.max_age_days == 7
    assert rc.jsonl is not None and rc.jsonl.backups == 2 and rc.batch_size == 100
    assert parse_config({}).extensions.records is None

    bad = {
        "records": {
            "sqlite": 3,
            "postgress": "x",
            "queue_size": 0,
            "influxdb": {"url": "ftp://x", "bucket": "b"},
            "jsonl": {"max_bytes": 10},
        }
    }
    with pytest.raises(ConfigError) as e:
        parse_config({"gateway_stats": bad}, "f.yaml")
    text = str(e.value)
    assert (
        "f.yaml: gateway_stats.records.sqlite: expected a string (path) or a mapping, got integer 3" in text
    )
    assert "gateway_stats.records.postgress: unknown field (did you mean 'postgres'?)" in text
    assert "gateway_stats.records.queue_size: must be >= 1, got 0" in text
    assert "gateway_stats.records.influxdb.url: expected an http:// or https:// URL" in text
    assert "gateway_stats.records.jsonl.path: required field is missing" in text


def test_influx_settings_fall_back_to_dials_variables() -> None:
    env = {
        "INFLUX_URL": "http://influx:8086/",
        "INFLUX_ORG": "acme",
        "INFLUX_BUCKET": "llm",
        "INFLUX_API_KEY": "t0k",
    }
    rc = parse_records({"influxdb": True}, env=env)
    assert rc is not None and rc.influxdb is not None
    i = rc.influxdb
    assert (i.url, i.org, i.bucket, i.token, i.api) == ("http://influx:8086", "acme", "llm", "t0k", "v2")
    rc = parse_records({"influxdb": {"database": "calls", "url": "http://127.0.0.1:8086"}}, env={})
    assert rc is not None and rc.influxdb is not None and rc.influxdb.api == "v1"
    with pytest.raises(ConfigError, match=r"influxdb.url: required \(or set INFLUX_URL\)"):
        parse_records({"influxdb": {}}, env={})
    with pytest.raises(ConfigError, match=r"influxdb.org: required for the v2 API \(or set INFLUX_ORG\)"):
        parse_records({"influxdb": {"url": "http://x", "bucket": "b"}}, env={})


# --------------------------------------------------------------------------------------------- row


def test_row_carries_every_column_with_the_records_values() -> None:
    rec = make_record(model="gpt-4o", inp=12, out=4, cost=Decimal("0.000123"), duration_ms=250, stream=True)
    rec.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    rec.attributes = {"user": "u1", "n": 2}
    row = call_row(rec)
    assert set(row) == set(schema.CALLS.names)
    assert row["input_tokens"] == 12 and row["output_tokens"] == 4 and row["total_tokens"] == 16
    assert row["cost"] == Decimal("0.000123") and row["currency"] == "USD"
    assert row["stream"] is True and row["outcome"] == "ok" and row["duration_ms"] == 250
    assert row["consumer"] == "alice" and row["request_messages"] == 1
    assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and row["span_id"] == "b7ad6b7169203331"
    assert row["attributes"] == {"user": "u1", "n": 2}
    assert row["ts"].tzinfo is not None
    # the tracing sink's own span wins when tracing is on
    rec.extra.update(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="00f067aa0ba902b7")
    assert call_row(rec)["span_id"] == "00f067aa0ba902b7"


def test_outcome() -> None:
    assert outcome(make_record()) == "ok"
    assert outcome(make_record(status=429)) == "error"
    assert outcome(make_record(stream=True, end="abort")) == "aborted"


def test_request_messages_counts_history_and_embedding_inputs() -> None:
    from driver import run_call

    chat = run_call(
        request={"model": "m", "messages": [{"role": "system", "content": "s"}] * 3}, response=b"{}"
    )
    assert chat.rec.request_messages == 3
    emb = run_call(path="/v1/embeddings", request={"model": "e", "input": ["a", "b"]}, response=b"{}")
    assert emb.rec.request_messages == 2
    one = run_call(path="/v1/embeddings", request={"model": "e", "input": "a"}, response=b"{}")
    assert one.rec.request_messages == 1


# ------------------------------------------------------------------------------------------ writer


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


# ------------------------------------------------------------------------------------------ SQLite


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
    v2 = schema.Migration(2, "test", ("ALTER TABLE calls ADD COLUMN extra_col TEXT",), ())
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, v2))
    store = SqliteWriterStore(rc.sqlite)  # type: ignore[arg-type]
    store.open()
    store.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT version FROM gateway_stats_schema").fetchall() == [(2,)]
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


# -------------------------------------------------------------------------------- JSON lines, load


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


def _write_rows(cfg: dict[str, Any], recs: list[Any]) -> None:
    rc = parse_records({**cfg, "flush_interval_ms": 10, "batch_size": 1000})
    assert rc is not None
    sink, _ = sink_for(rc)
    for r in recs:
        sink.emit(r, {})
    sink.close()
    for w in sink.writers:
        assert w.written == len(recs), (w.name, w.dropped)


def test_load_filters_like_aicore(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    now = time.time()
    recs = [
        make_record(model="gpt-4o", inp=100, out=10, consumer="a", wall=now - 1 * DAY, duration_ms=300),
        make_record(model="gpt-4o", inp=5, out=1, consumer="b", wall=now - 2 * DAY, duration_ms=900),
        make_record(model="claude-3", inp=50, out=50, consumer="a", wall=now - 3 * DAY, duration_ms=120),
        make_record(model="claude-3", inp=1, out=1, consumer="a", wall=now - 9 * DAY, cost=Decimal("1.5")),
    ]
    db, jl = tmp_path / "r.db", tmp_path / "r.jsonl"
    _write_rows({"sqlite": str(db), "jsonl": str(jl)}, recs)
    for src in (db, jl):
        df = load(src)
        assert df.height == 4 and df.schema["ts"] == pl.Datetime("us", "UTC")
        assert df.schema["cost"].is_decimal() and df["cost"].to_list()[0] == Decimal("1.5")
        start = dt.datetime.fromtimestamp(now - 5 * DAY, dt.UTC)
        assert load(src, start=start).height == 3
        assert load(src, start=start, model="gpt-4o").height == 2
        assert load(src, consumer="a", min_tokens=50).height == 2
        assert load(src, max_latency_ms=300).height == 3
        assert (
            load(src, provider="openai", end=dt.datetime.fromtimestamp(now - 2.5 * DAY, dt.UTC)).height == 2
        )


# ------------------------------------------------------------------------------------- PostgreSQL


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


# --------------------------------------------------------------------------------------- InfluxDB


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


# ----------------------------------------------------------------------------------------- report


def report_recs() -> list[Any]:
    now = time.time()
    recs = []
    models = ["gpt-4o", "gpt-4o-mini", "claude-3"]
    for i in range(45):
        recs.append(
            make_record(
                model=models[i % 3],
                inp=10 + i,
                out=1 + i % 7,
                consumer=("alice", "bob", "carol", "dave")[i % 4],
                route=("chat", "embed")[i % 2],
                wall=now - (i % 5) * DAY - 60,
                duration_ms=50 + (i * 37) % 900,
                stream=i % 3 == 0,
                first_content_ms=10 + (i * 13) % 200,
                status=500 if i % 9 == 4 else 200,
                cost=None if i % 4 == 3 else Decimal("0.00001") * (i + 1),
                end="abort" if i == 6 else "separate",
            )
        )
    return recs


def test_report_figures_equal_hand_written_sql(tmp_path: Path, postgres: Any) -> None:
    db = tmp_path / "r.db"
    postgres.query("TRUNCATE calls") if postgres.query("SELECT to_regclass('calls') IS NOT NULL")[0][
        0
    ] else None
    _write_rows({"sqlite": str(db), "postgres": postgres.dsn}, report_recs())
    con = sqlite3.connect(db)
    assert_report_equals_sql(str(db), lambda s, *a: con.execute(s, a).fetchall(), "?", "date(ts)")
    assert_report_equals_sql(
        postgres.dsn,
        lambda s, *a: postgres.query(s, *a),
        "%s",
        "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    )
    # exact money in PostgreSQL: SUM over NUMERIC, by hand
    rep = report.build(postgres.dsn, "model")
    for g in rep.groups:
        (want,) = postgres.query(
            "SELECT sum(cost) FROM calls WHERE COALESCE(response_model, request_model) = %s", g.key
        )[0]
        assert g.cost["USD"] == want


def test_report_cli_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    _write_rows({"sqlite": str(db)}, report_recs())
    assert cli_main(["report", "--db", str(db), "--by", "consumer", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("consumer,calls,errors_pct,tokens_in,tokens_out,cost,p50_ms")
    assert {ln.split(",")[0] for ln in lines[1:]} == {"alice", "bob", "carol", "dave", "total"}
    assert cli_main(["report", "--db", str(db), "--since", "2d", "--by", "day", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["rows"]) == 2 and doc["by"] == "day"
    assert cli_main(["report", "--db", str(db), "--since", "30d"]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o-mini" in out and "total" in out and "TTFT p95 ms" in out
    assert cli_main(["report", "--db", str(tmp_path / "missing.db")]) == 1
    assert cli_main(["report", "--db", str(db), "--since", "soon"]) == 2
    assert parse_since("2026-01-02") == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert len(fetch(db, Filters(consumer="bob"))) == 11


def test_html_report_renders_in_chromium_with_data_and_no_console_errors(
    tmp_path: Path, chromium: str
) -> None:
    db = tmp_path / "r.db"
    _write_rows({"sqlite": str(db)}, report_recs())
    page = tmp_path / "report.html"
    assert cli_main(["report", "--db", str(db), "--html", str(page), "--format", "json"]) == 0
    text = page.read_text()
    assert (
        "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    )  # offline
    got = chromium_check(page)
    assert got.console == [], got.console
    assert 'data-rendered="1"' in got.dom
    marks = int(got.dom.split('data-marks="', 1)[1].split('"', 1)[0])
    charts = got.dom.split("<figure")[1:]
    assert len(charts) == 4 and all('class="bar"' in c for c in charts)  # every chart has bars
    assert marks == got.dom.count('class="bar"') > 20
    assert got.dom.count("<tr>") >= 4  # header + 3 models
    # the check itself catches a broken page
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert any("undefinedFunction" in ln for ln in chromium_check(bad).console)


def test_docs_list_every_column_with_its_types() -> None:
    doc = (REPO / "docs" / "records.md").read_text()
    for c in schema.CALLS.columns:
        nn = " NOT NULL" if c.not_null else ""
        want = f"| `{c.name}` | {schema.SQLITE_TYPES[c.type]}{nn} | {schema.POSTGRES_TYPES[c.type]}{nn} |"
        assert want in doc, c.name
    assert f"now **{schema.SCHEMA_VERSION}**" in doc
