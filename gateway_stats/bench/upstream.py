"""The bench's mock LLM: canned OpenAI JSON and SSE answers from a bare asyncio Protocol.

The bundled mockllm is built for truth and scenarios (it records every write); here the upstream
must cost as little as possible, since it shares two cores with Envoy, the sidecar and the load
generator, and the same upstream serves every set-up. POST bodies asking `"stream":true` get
`x-bench-events` content deltas `x-bench-interval-ms` apart; each event carries `sent_ns`, the
monotonic clock (system-wide on Linux) just before its write, so the client can time every chunk's
trip through Envoy. GET /_bench/stats answers the counts served.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

from gateway_stats.bench import canned
from gateway_stats.bench.httpwire import HEAD_END, LAST_CHUNK, ChunkedDecoder, chunk, parse_head

_JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nopenai-processing-ms: 1\r\n"
    b"x-request-id: req_bench\r\nContent-Length: %d\r\n\r\n" % len(canned.JSON_RESPONSE)
)
_JSON_ANSWER = _JSON_HEAD + canned.JSON_RESPONSE
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
    b"x-request-id: req_bench\r\nTransfer-Encoding: chunked\r\n\r\n"
)


class Counts:
    def __init__(self) -> None:
        self.json = 0
        self.sse = 0
        self.sse_done = 0
        self.connections = 0


class _Conn(asyncio.Protocol):
    """One keep-alive connection: requests are served one after the other (Envoy never pipelines)."""

    def __init__(self, counts: Counts, templates: dict[int, list[bytes]]) -> None:
        self.counts = counts
        self.templates = templates
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False
        self.head: tuple[bytes, dict[bytes, bytes]] | None = None
        self.chunked: ChunkedDecoder | None = None
        self.body_left = 0
        self.body = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.counts.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._advance()

    def _advance(self) -> None:
        while not self.busy and self.transport is not None:
            if self.head is None:
                i = self.buf.find(HEAD_END)
                if i < 0:
                    return
                self.head = parse_head(self.buf[:i])
                self.buf = self.buf[i + 4 :]
                h = self.head[1]
                self.body = b""
                if h.get(b"transfer-encoding", b"").lower() == b"chunked":
                    self.chunked = ChunkedDecoder()
                else:
                    self.chunked = None
                    self.body_left = int(h.get(b"content-length", b"0") or 0)
            if self.chunked is not None:
                self.body += self.chunked.feed(self.buf)
                if not self.chunked.done:
                    self.buf = b""
                    return
                self.buf = self.chunked.rest
            else:
                if len(self.buf) < self.body_left:
                    return
                self.body = self.buf[: self.body_left]
                self.buf = self.buf[self.body_left :]
            head, self.head = self.head, None
            self._respond(head[0], head[1], self.body)

    def _respond(self, start: bytes, h: dict[bytes, bytes], body: bytes) -> None:
        assert self.transport is not None
        method, _, rest = start.partition(b" ")
        target = rest.partition(b" ")[0]
        if method == b"GET":
            if target.startswith(b"/_bench/stats"):
                c = self.counts
                doc = b'{"json":%d,"sse":%d,"sse_done":%d,"connections":%d}' % (
                    c.json,
                    c.sse,
                    c.sse_done,
                    c.connections,
                )
            else:
                doc = b'{"ok":true}'
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(doc), doc)
            )
            return
        if b'"stream":true' not in body:
            self.counts.json += 1
            bench_id = h.get(canned.ID_HEADER)
            if bench_id is not None and len(bench_id) == canned.ID_DIGITS:
                self.transport.write(_JSON_HEAD + canned.json_response_for(bench_id))
            else:
                self.transport.write(_JSON_ANSWER)
            return
        self.counts.sse += 1
        n = int(h.get(b"x-bench-events", b"20"))
        interval = float(h.get(b"x-bench-interval-ms", b"10")) / 1000.0
        events = self.templates.get(n)
        if events is None:
            events = self.templates[n] = canned.sse_events(n)
        self.busy = True
        self.transport.write(_SSE_HEAD)
        self._event(events, 0, self.loop.time(), interval)

    def _event(self, events: list[bytes], i: int, start: float, interval: float) -> None:
        self.timer = None
        t = self.transport
        if t is None:
            return
        if i < len(events):
            t.write(chunk(events[i] % time.monotonic_ns()))
            self.timer = self.loop.call_at(
                start + (i + 1) * interval, self._event, events, i + 1, start, interval
            )
            return
        t.write(chunk(canned.SSE_DONE) + LAST_CHUNK)
        self.counts.sse_done += 1
        self.busy = False
        self._advance()


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    counts = Counts()
    templates: dict[int, list[bytes]] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(counts, templates), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="gateway-stats bench upstream (canned OpenAI answers)")
    p.add_argument("--listen", default="127.0.0.1:8081")
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    asyncio.run(serve(host, int(port)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
