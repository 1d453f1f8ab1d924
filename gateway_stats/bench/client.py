"""The bench's own load client, for what wrk cannot measure: SSE timings and a fixed request rate.

Run as a subprocess (`python -m gateway_stats.bench.client ...`, one JSON result on stdout) so its
CPU is its own and the driver can sample /proc meanwhile. For SSE it times, per stream, the first
event (TTFB: what a user waits for the first token), the whole answer, and the trip of every later
event from the upstream's write (`sent_ns`, CLOCK_MONOTONIC is system-wide) to its arrival here.
Fixed-rate JSON latency is measured from each request's scheduled time, so a slow answer that
delays the next send is not hidden (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway_stats.bench import canned
from gateway_stats.bench.httpwire import HEAD_END, ChunkedDecoder, parse_head


class Response:
    """Incremental parse of one HTTP/1.1 response, timing SSE events as their bytes arrive."""

    __slots__ = (
        "buf",
        "decoder",
        "delays",
        "done",
        "first_event_ns",
        "head_done",
        "left",
        "rest",
        "sse",
        "sse_buf",
        "status",
    )

    def __init__(self, delays: array[int]) -> None:
        self.buf = b""
        self.head_done = False
        self.status = 0
        self.decoder: ChunkedDecoder | None = None
        self.left = -1
        self.sse = False
        self.sse_buf = b""
        self.first_event_ns = 0
        self.delays = delays
        self.done = False
        self.rest = b""

    def feed(self, data: bytes, now: int) -> None:
        if not self.head_done:
            self.buf += data
            i = self.buf.find(HEAD_END)
            if i < 0:
                return
            start, h = parse_head(self.buf[:i])
            self.status = int(start.split(b" ", 2)[1])
            data = self.buf[i + 4 :]
            self.buf = b""
            self.head_done = True
            self.sse = h.get(b"content-type", b"").startswith(b"text/event-stream")
            if h.get(b"transfer-encoding", b"").lower() == b"chunked":
                self.decoder = ChunkedDecoder()
            else:
                self.left = int(h.get(b"content-length", b"0") or 0)
        if self.decoder is not None:
            payload = self.decoder.feed(data)
            if self.decoder.done:
                self.done = True
                self.rest = self.decoder.rest
        else:
            payload = data[: self.left]
            self.rest = data[self.left :]
            self.left -= len(payload)
            self.done = self.left <= 0
        if self.sse and payload:
            self._events(payload, now)

    def _events(self, payload: bytes, now: int) -> None:
        buf = self.sse_buf + payload if self.sse_buf else payload
        start = 0
        key = canned.SENT_KEY
        while True:
            j = buf.find(b"\n\n", start)
            if j < 0:
                break
            k = buf.find(key, start, j)
            if k >= 0:
                k += len(key)
                sent = int(buf[k : buf.index(b"}", k)])
                if self.first_event_ns == 0:
                    self.first_event_ns = now
                else:
                    self.delays.append(now - sent)
            start = j + 2
        self.sse_buf = buf[start:]


@dataclass
class Results:
    ok: int = 0
    non2xx: int = 0
    errors: int = 0
    total_ns: array[int] = field(default_factory=lambda: array("q"))
    ttfb_ns: array[int] = field(default_factory=lambda: array("q"))
    delays_ns: array[int] = field(default_factory=lambda: array("q"))
    incomplete_sse: int = 0
    unsent: int = 0
    ids: array[int] = field(default_factory=lambda: array("q"))  # with --ids: id of each total_ns entry
    next_id: int = 0


_ID_SLOT = b"@" * canned.ID_DIGITS


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes, res: Results, t0: int
) -> bool:
    """Send one request, read its whole answer; False if the connection is no longer usable."""
    bench_id = -1
    if _ID_SLOT in req:  # --ids: a fresh x-bench-id per request
        bench_id = res.next_id
        res.next_id += 1
        req = req.replace(_ID_SLOT, b"%0*d" % (canned.ID_DIGITS, bench_id), 1)
    writer.write(req)
    r = Response(res.delays_ns)
    while not r.done:
        data = await reader.read(262144)
        now = time.monotonic_ns()
        if not data:
            res.errors += 1
            return False
        r.feed(data, now)
    end = time.monotonic_ns()
    if 200 <= r.status < 300:
        res.ok += 1
        res.total_ns.append(end - t0)
        if bench_id >= 0:
            res.ids.append(bench_id)
        if r.sse:
            if r.first_event_ns:
                res.ttfb_ns.append(r.first_event_ns - t0)
            else:
                res.incomplete_sse += 1
    else:
        res.non2xx += 1
    return True


async def _worker(
    host: str,
    port: int,
    req: bytes,
    res: Results,
    deadline: float,
    start_at: float,
    *,
    once: bool,
    period: float | None,
    offset: float,
    timeout: float,
    grace: float = 0.0,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    nxt = loop.time() + offset
    try:
        while True:
            if period is not None:
                if nxt >= deadline:
                    return
                if loop.time() > deadline + grace:
                    # Overloaded: what is still due was never sent; bounded time beats completeness.
                    res.unsent += int((deadline - nxt) / period) + 1
                    return
                await asyncio.sleep(max(0.0, nxt - loop.time()))
                # Latency counts from the scheduled time: a late send is part of the wait.
                t0 = time.monotonic_ns() - int(max(0.0, loop.time() - nxt) * 1e9)
                nxt += period
            else:
                if not once and loop.time() >= deadline:
                    return
                t0 = time.monotonic_ns()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                if not await asyncio.wait_for(_exchange(conn[0], conn[1], req, res, t0), timeout):
                    conn[1].close()
                    conn = None
            except (TimeoutError, OSError, ValueError):
                res.errors += 1
                if conn is not None:
                    conn[1].close()
                    conn = None
                await asyncio.sleep(0.01)
            if once:
                return
    finally:
        if conn is not None:
            conn[1].close()
            with contextlib.suppress(Exception):
                await conn[1].wait_closed()


def percentiles(values: array[int] | list[int]) -> dict[str, float]:
    """p50/p90/p99/max in ms (nearest rank)."""
    if not values:
        return {}
    s = sorted(values)
    n = len(s)

    def at(p: float) -> float:
        return s[max(0, min(n - 1, math.ceil(p / 100 * n) - 1))] / 1e6

    return {"p50": at(50), "p90": at(90), "p99": at(99), "max": s[-1] / 1e6, "n": n}


async def run(a: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stream = a.mode == "sse"
    extra = f"{canned.ID_HEADER.decode()}: {_ID_SLOT.decode()}\r\n" if a.ids else ""
    req = canned.request_bytes(a.port, stream=stream, events=a.events, interval_ms=a.interval_ms, extra=extra)
    res = Results()
    t_start = loop.time()
    deadline = t_start + a.duration
    period = a.conns / a.rate if a.rate else None
    tasks = [
        asyncio.create_task(
            _worker(
                "127.0.0.1",
                a.port,
                req,
                res,
                deadline,
                t_start + (a.ramp * i / a.conns if a.ramp else 0.0),
                once=a.once,
                period=period,
                offset=(period * i / a.conns) if period else 0.0,
                timeout=a.timeout,
                grace=max(2.0, a.duration / 2),
            )
        )
        for i in range(a.conns)
    ]
    await asyncio.gather(*tasks)
    elapsed = loop.time() - t_start
    if a.once:
        elapsed = a.duration if elapsed < a.duration else elapsed
    out: dict[str, Any] = {}
    if a.ids:  # each completed request's id and latency (µs), for the driver to join with ai_log lines
        out["per_request"] = {"ids": list(res.ids), "latency_us": [t // 1000 for t in res.total_ns]}
    return out | {
        "requests": res.ok,
        "non2xx": res.non2xx,
        "errors": res.errors,
        "incomplete_sse": res.incomplete_sse,
        "unsent": res.unsent,
        "elapsed_s": elapsed,
        "rps": res.ok / elapsed if elapsed > 0 else 0.0,
        "latency_ms": percentiles(res.total_ns),
        "ttfb_ms": percentiles(res.ttfb_ns),
        "chunk_ms": percentiles(res.delays_ns),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="gateway-stats bench client (SSE timings, fixed-rate JSON)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["json", "sse"], default="json")
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of load (new requests stop after)")
    p.add_argument("--rate", type=float, default=0.0, help="requests/s over all connections (0: closed loop)")
    p.add_argument("--events", type=int, default=20, help="SSE content deltas per answer")
    p.add_argument("--interval-ms", type=float, default=10.0, help="SSE gap between events")
    p.add_argument("--once", action="store_true", help="one request per connection (long streams)")
    p.add_argument("--ramp", type=float, default=0.0, help="spread connection starts over this many s")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request cap in s")
    p.add_argument("--ids", action="store_true", help="x-bench-id per request; report per-request latency")
    a = p.parse_args(argv)
    out = asyncio.run(run(a))
    sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
