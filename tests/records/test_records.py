"""Records: the config block, the row, load(), and the report (table, CSV, JSON, HTML in headless Chromium)
against SQL written by hand on the same rows, in SQLite and in a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from records_util import DAY, assert_report_equals_sql, make_record
from records_util import write_rows as _write_rows

from gateway_stats.cli import main as cli_main
from gateway_stats.config import ConfigError, parse_config
from gateway_stats.records import load, report, schema
from gateway_stats.records.config import parse_records
from gateway_stats.records.read import Filters, fetch, parse_since
from gateway_stats.records.row import call_row, outcome
from gateway_stats.testing.servers import chromium_check

REPO = Path(__file__).resolve().parents[2]


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
