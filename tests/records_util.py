"""Helpers shared by the records tests: records from the sans-IO driver, fake stores, server fixtures."""

from __future__ import annotations

import json
import math
import threading
import time
from decimal import Decimal
from typing import Any

from driver import run_call, sse
from prometheus_client import CollectorRegistry

from gateway_stats.core.record import CallRecord
from gateway_stats.records import report
from gateway_stats.records.config import RecordsConfig, parse_records
from gateway_stats.sinks.records.writer import RecordsMetrics, RecordsSink

DAY = 86400.0


def chat_json(model: str, inp: int, out: int, cid: str = "chatcmpl-x") -> bytes:
    return json.dumps(
        {
            "id": cid,
            "model": model,
            "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out},
        }
    ).encode()


def make_record(
    *,
    model: str = "gpt-4o",
    inp: int = 10,
    out: int = 5,
    status: int = 200,
    consumer: str = "alice",
    route: str = "llm",
    wall: float | None = None,
    duration_ms: int = 100,
    first_content_ms: int | None = None,
    stream: bool = False,
    cost: Decimal | None = None,
    currency: str = "USD",
    end: str = "separate",
    cid: str = "chatcmpl-x",
) -> CallRecord:
    """A finished record as the observer makes it, with chosen times, consumer, cost."""
    if stream:
        body = sse(
            {"id": cid, "model": model, "choices": [{"delta": {"content": "hi"}}]},
            {
                "id": cid,
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": inp, "completion_tokens": out},
            },
            b"[DONE]",
        )
        call = run_call(
            request={"model": model, "stream": True, "messages": [{"role": "user", "content": "q"}]},
            response=body,
            content_type="text/event-stream",
            status=status,
            route=route,
            req_headers={"x-mse-consumer": consumer},
            end=end,
        )
    else:
        call = run_call(
            request={"model": model, "messages": [{"role": "user", "content": "q"}]},
            response=chat_json(model, inp, out, cid),
            status=status,
            route=route,
            req_headers={"x-mse-consumer": consumer},
            end=end,
        )
    rec = call.rec
    rec.wall_start = time.time() if wall is None else wall
    rec.t_end = rec.t_start + duration_ms * 1_000_000
    if first_content_ms is not None:
        rec.t_first_content = rec.t_start + first_content_ms * 1_000_000
    # the test decides the cost (the pricing engine priced the record already when its model is known)
    rec.cost, rec.cost_currency = cost, (currency if cost is not None else None)
    return rec


class FakeStore:
    """A store whose behaviour the test drives: fail N times, block, reject."""

    name = "fake"

    def __init__(self, fail: int = 0, exc: Exception | None = None) -> None:
        self.fail = fail
        self.exc = exc or OSError("store down")
        self.rows: list[tuple[str, dict[str, Any]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.opens = 0
        self.attempts = 0
        self.threads: set[str] = set()

    def open(self) -> None:
        self.opens += 1

    def write(self, kind: str, rows: list[dict[str, Any]]) -> None:
        self.threads.add(threading.current_thread().name)
        self.gate.wait(30)
        self.attempts += 1
        if self.fail:
            self.fail -= 1
            raise self.exc
        self.rows.extend((kind, r) for r in rows)

    def maintain(self) -> None:
        pass

    def close(self) -> None:
        pass


def hand_sql_figures(q: Any, by: str, ph: str, day_sql: str) -> dict[str, dict[str, Any]]:
    """The report's figures in plain SQL (one query per figure; percentiles by ORDER BY ... OFFSET)."""
    key = {
        "model": "COALESCE(response_model, request_model, '(none)')",
        "route": "COALESCE(route, '(none)')",
        "consumer": "COALESCE(consumer, '(none)')",
        "day": day_sql,
    }[by]
    out: dict[str, dict[str, Any]] = {}
    for k, calls, errors, tin, tout in q(
        f"SELECT {key}, count(*), sum(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END), "
        f"sum(input_tokens), sum(output_tokens) FROM calls GROUP BY 1"
    ):

        def pct(col: str, cond: str, p: float, k: Any = k) -> int | None:
            n = q(f"SELECT count(*) FROM calls WHERE {key} = {ph} AND {col} IS NOT NULL {cond}", k)[0][0]
            if not n:
                return None
            off = math.ceil(p * n) - 1
            return q(
                f"SELECT {col} FROM calls WHERE {key} = {ph} AND {col} IS NOT NULL {cond} "
                f"ORDER BY {col} LIMIT 1 OFFSET {off}",
                k,
            )[0][0]

        stream = "AND stream = 1" if ph == "?" else "AND stream"
        costs = q(f"SELECT currency, cost FROM calls WHERE {key} = {ph} AND cost IS NOT NULL", k)
        cost: dict[str, Decimal] = {}
        for cur, c in costs:
            cost[cur] = cost.get(cur, Decimal(0)) + Decimal(str(c))
        out[str(k)] = {
            "calls": calls,
            "errors_pct": round(100.0 * errors / calls, 1),
            "tokens_in": tin or 0,
            "tokens_out": tout or 0,
            "cost": {c: str(v) for c, v in cost.items()},
            "p50_ms": pct("duration_ms", "", 0.5),
            "p95_ms": pct("duration_ms", "", 0.95),
            "ttft_p50_ms": pct("first_content_ms", stream, 0.5),
            "ttft_p95_ms": pct("first_content_ms", stream, 0.95),
        }
    return out


def assert_report_equals_sql(src: str, q: Any, ph: str, day_sql: str) -> None:
    for by in report.BY:
        rep = json.loads(report.to_json(report.build(src, by)))
        want = hand_sql_figures(q, by, ph, day_sql)
        got = {r["key"]: {k: r[k] for k in next(iter(want.values()))} for r in rep["rows"]}
        for r in got.values():
            r["cost"] = {c: str(Decimal(v)) for c, v in r["cost"].items()}
        for w in want.values():
            w["cost"] = {c: str(Decimal(v)) for c, v in w["cost"].items()}
        assert got == want, by
        assert rep["total"]["calls"] == q("SELECT count(*) FROM calls")[0][0]


def sink_for(cfg: RecordsConfig, stores: list[Any] | None = None) -> tuple[RecordsSink, CollectorRegistry]:
    reg = CollectorRegistry()
    return RecordsSink(cfg, RecordsMetrics(reg), stores), reg


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


def write_rows(cfg: dict[str, Any], recs: list[Any]) -> None:
    """Write `recs` through a records sink built from `cfg` and check every store wrote them all."""
    rc = parse_records({**cfg, "flush_interval_ms": 10, "batch_size": 1000})
    assert rc is not None
    sink, _ = sink_for(rc)
    for r in recs:
        sink.emit(r, {})
    sink.close()
    for w in sink.writers:
        assert w.written == len(recs), (w.name, w.dropped)
