"""Helpers shared by the records tests: records from the sans-IO driver, fake stores, server fixtures."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from typing import Any

from driver import run_call, sse

from gateway_stats.core.record import CallRecord

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
    if cost is not None:
        rec.cost, rec.cost_currency = cost, currency
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
