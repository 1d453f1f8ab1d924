"""The mock's HTTP/1.1 server: :class:`MockLLM`, its per-request :class:`RequestRecord` and ``/_mock/``.

A small asyncio server with no framework, so the mock controls every byte and the timing of every write.
For each request it reads the body (any size: streamed, counted, hashed; the first ``max_parse_bytes``
kept), asks ``truth`` what to answer, builds the body with ``bodies`` and sends it shaped by the
request's scenario (``scenarios``), recording the monotonic time, wire offset and size of every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
import time
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from gateway_stats.testing.bodies import (
    _gemini_chunks,
    build_events,
    build_json,
    error_body,
    stream_error_event,
)
from gateway_stats.testing.scenarios import (
    _DEFAULT_SCENARIO,
    _compress,
    _Encoder,
    _pad_event,
    _Scenario,
    _split_bytes,
)
from gateway_stats.testing.truth import Truth, _int, _truth, provider_for_path

__all__ = ["DEFAULT_MAX_PARSE_BYTES", "DEFAULT_MAX_RECORDS", "MockLLM", "RequestRecord"]

DEFAULT_MAX_RECORDS = 10_000
DEFAULT_MAX_PARSE_BYTES = 64 * 1024


@dataclass(slots=True)
class RequestRecord:
    """Ground-truth timing of one request.  Timestamps are ``time.monotonic_ns()``.

    ``writes`` has one ``(t_ns, byte_offset, nbytes)`` per write of the response on the wire (status line
    and headers at offset 0; chunked framing and compression included in the sizes).
    """

    request_id: str
    method: str
    path: str  # request target, query included
    provider: str | None
    stream: bool
    scenario: dict[str, str]  # the x-mock-* request headers
    request_bytes: int = 0
    request_sha256: str = ""
    body_truncated: bool = False  # body bigger than max_parse_bytes: answered as if it were {}
    status: int = 0
    t_request_start: int = 0  # request head parsed
    t_request_received: int = 0  # whole request (body included) read
    t_first_byte: int | None = None
    t_last_byte: int | None = None
    writes: list[tuple[int, int, int]] = field(default_factory=list)
    bytes_sent: int = 0
    events_sent: int = 0  # SSE events written completely
    completed: bool = False  # the whole response was written
    aborted: bool = False  # the mock aborted the connection on purpose (x-mock-abort-after)
    client_disconnected: bool = False
    truth: Truth | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "provider": self.provider,
            "stream": self.stream,
            "scenario": self.scenario,
            "request_bytes": self.request_bytes,
            "request_sha256": self.request_sha256,
            "body_truncated": self.body_truncated,
            "status": self.status,
            "t_request_start": self.t_request_start,
            "t_request_received": self.t_request_received,
            "t_first_byte": self.t_first_byte,
            "t_last_byte": self.t_last_byte,
            "writes": self.writes,
            "bytes_sent": self.bytes_sent,
            "events_sent": self.events_sent,
            "completed": self.completed,
            "aborted": self.aborted,
            "client_disconnected": self.client_disconnected,
            "truth": self.truth.to_dict() if self.truth is not None else None,
        }


class _BadRequest(Exception):
    pass


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@lru_cache(maxsize=1024)
def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    i = 0
    while i < len(lines) and not lines[i]:
        i += 1
    if i == len(lines):
        raise _BadRequest("empty request")
    parts = lines[i].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest("bad request line")
    headers: dict[str, str] = {}
    for line in lines[i + 1 :]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("bad header line")
        name = name.strip().lower()
        value = value.strip()
        prev = headers.get(name)
        headers[name] = value if prev is None else f"{prev}, {value}"
    return parts[0], parts[1], parts[2], headers


class MockLLM:
    """The mock upstream.  ``await start()`` binds (``self.port`` is then the real port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_parse_bytes: int = DEFAULT_MAX_PARSE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.max_records = max_records
        self.max_parse_bytes = max_parse_bytes
        self.records: dict[str, RequestRecord] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.Task[Any], asyncio.StreamWriter]] = set()
        self._seq = 0
        self._id_prefix = f"mock-{int(time.time() * 1000) % 10**9:09d}-"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_conn, self.host, self.port, limit=1 << 20)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._conns)
        for task, writer in tasks:
            writer.transport.abort()
            task.cancel()
        if tasks:
            await asyncio.gather(*(t for t, _ in tasks), return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def __aenter__(self) -> MockLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def clear_records(self) -> int:
        n = len(self.records)
        self.records.clear()
        return n

    def _add_record(self, rec: RequestRecord) -> None:
        records = self.records
        if rec.request_id in records:
            del records[rec.request_id]
        records[rec.request_id] = rec
        while len(records) > self.max_records:
            del records[next(iter(records))]

    # -- connection loop ---------------------------------------------------------------------------

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        conn = (task, writer) if task is not None else None
        if conn is not None:
            self._conns.add(conn)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    await self._plain(writer, 431, b"request header too large\n", False)
                    return
                t0 = time.monotonic_ns()
                try:
                    method, target, version, headers = _parse_head(head)
                    if not await self._handle(reader, writer, method, target, version, headers, t0):
                        return
                except _BadRequest as e:
                    await self._plain(writer, 400, f"{e}\n".encode(), False)
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:
            # Only stop() cancels these top-level connection tasks; end quietly (the 3.11 streams
            # callback would log a cancelled handler task as an error).
            return
        finally:
            if conn is not None:
                self._conns.discard(conn)
            writer.close()

    async def _read_body(
        self, reader: asyncio.StreamReader, headers: dict[str, str]
    ) -> tuple[bytes, int, str]:
        """Read the whole body; keep its first ``max_parse_bytes`` bytes, count and hash all of it."""
        limit = self.max_parse_bytes
        te = headers.get("transfer-encoding")
        if te is not None and "chunked" in te.lower():
            h = hashlib.sha256()
            kept = bytearray()
            total = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadRequest("bad chunk size") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                remaining = size
                while remaining:
                    data = await reader.read(min(remaining, 1 << 18))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    remaining -= len(data)
                    total += len(data)
                    h.update(data)
                    if len(kept) < limit:
                        kept += data[: limit - len(kept)]
                if await reader.readexactly(2) != b"\r\n":
                    raise _BadRequest("bad chunk terminator")
            return bytes(kept), total, h.hexdigest()
        cl = headers.get("content-length")
        if not cl:
            return b"", 0, _EMPTY_SHA256
        try:
            n = int(cl)
        except ValueError:
            raise _BadRequest("bad content-length") from None
        if n < 0:
            raise _BadRequest("bad content-length")
        if n <= limit:
            body = await reader.readexactly(n) if n else b""
            return body, n, hashlib.sha256(body).hexdigest()
        h = hashlib.sha256()
        kept = bytearray()
        remaining = n
        while remaining:
            data = await reader.read(min(remaining, 1 << 18))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            h.update(data)
            if len(kept) < limit:
                kept += data[: limit - len(kept)]
        return bytes(kept), n, h.hexdigest()

    @staticmethod
    def _send(rec: RequestRecord, writer: asyncio.StreamWriter, data: bytes) -> None:
        ts = time.monotonic_ns()
        writer.write(data)
        if rec.t_first_byte is None:
            rec.t_first_byte = ts
        rec.writes.append((ts, rec.bytes_sent, len(data)))
        rec.bytes_sent += len(data)
        rec.t_last_byte = ts

    async def _plain(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        keep_alive: bool,
        ctype: bytes = b"text/plain",
    ) -> None:
        writer.write(
            b"%scontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
            % (_status_line(status), ctype, len(body), b"" if keep_alive else b"connection: close\r\n", body)
        )
        await writer.drain()

    async def _handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        version: str,
        headers: dict[str, str],
        t0: int,
    ) -> bool:
        conn = headers.get("connection", "").lower()
        http11 = version == "HTTP/1.1"
        keep_alive = ("close" not in conn) if http11 else ("keep-alive" in conn)
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body, nbytes, sha = await self._read_body(reader, headers)
        t1 = time.monotonic_ns()
        path = target.partition("?")[0]

        if path.startswith("/_mock/"):
            await self._control(writer, method, path, target, keep_alive)
            return keep_alive
        if path == "/healthz":
            await self._plain(writer, 200, b"ok", keep_alive)
            return keep_alive

        scen = {k: v for k, v in headers.items() if k.startswith("x-mock-")}
        sc = _Scenario.parse(scen) if scen else _DEFAULT_SCENARIO
        rid = headers.get("x-request-id")
        if not rid:
            self._seq += 1
            rid = f"{self._id_prefix}{self._seq}"
        provider = provider_for_path(path)
        rec = RequestRecord(rid, method, target, provider, False, scen, nbytes, sha)
        rec.body_truncated = nbytes > len(body)
        rec.t_request_start = t0
        rec.t_request_received = t1
        self._add_record(rec)
        try:
            return await self._respond(
                writer, rec, sc, method, path, target, headers, body, http11, keep_alive
            )
        except ConnectionError:
            rec.client_disconnected = True
            raise

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        rec: RequestRecord,
        sc: _Scenario,
        method: str,
        path: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        http11: bool,
        keep_alive: bool,
    ) -> bool:
        provider = rec.provider
        obj: Any = {}
        truth: Truth | None = None
        status = _int(headers.get("x-mock-status"), 200, 200, 999)
        if provider is not None:
            if not rec.body_truncated and body:
                try:
                    obj = orjson.loads(body)
                except orjson.JSONDecodeError:
                    obj = {}
                if not isinstance(obj, dict):
                    obj = {}
            truth = _truth(provider, target, headers, obj)
            rec.truth = truth
            rec.stream = truth.stream
            if method != "POST" and status < 400:
                status = 405
        elif path == "/echo-size" or path.endswith("/rate"):  # /rate: DIAL's feedback call, answered 200
            pass
        elif status < 400:
            status = 404

        if sc.first_byte_s:
            await asyncio.sleep(sc.first_byte_s)
        rec.status = status

        if status >= 400:
            if sc.status_empty:
                payload = b""
            else:
                msg = None if status not in (404, 405) or "x-mock-status" in headers else f"{method} {path}"
                payload = orjson.dumps(error_body(status, provider, msg))
            return await self._send_json(writer, rec, sc, status, payload, keep_alive)
        if status in (204, 304):
            return await self._send_json(writer, rec, sc, status, b"", keep_alive)
        if truth is None:  # /echo-size, /rate
            payload = orjson.dumps({"bytes": rec.request_bytes, "sha256": rec.request_sha256})
            return await self._send_json(writer, rec, sc, status, payload, keep_alive)
        if not truth.stream:
            return await self._send_json(
                writer, rec, sc, status, orjson.dumps(build_json(truth, obj, sc.created)), keep_alive
            )
        if truth.provider == "gemini" and "alt=sse" not in target.partition("?")[2]:
            # streamGenerateContent without alt=sse: a JSON array of the chunks.
            payload = orjson.dumps(_gemini_chunks(truth))
            return await self._send_json(writer, rec, sc, status, payload, keep_alive)
        return await self._send_sse(writer, rec, sc, status, truth, http11, keep_alive)

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        rec: RequestRecord,
        sc: _Scenario,
        status: int,
        payload: bytes,
        keep_alive: bool,
    ) -> bool:
        extra = b""
        if status in (204, 304):  # these never carry a body
            payload = b""
        else:
            extra = b"content-length: %d\r\n" % len(payload)
        if sc.encoding and payload:
            payload = _compress(sc.encoding, payload)
            extra = b"content-length: %d\r\ncontent-encoding: %s\r\n" % (len(payload), sc.encoding.encode())
        if status == 429:
            extra += b"retry-after: 1\r\n"
        if not keep_alive:
            extra += b"connection: close\r\n"
        ctype = sc.content_type.encode("latin-1", "replace") or b"application/json"
        head = b"%scontent-type: %s\r\nx-mock-request-id: %s\r\n%s\r\n" % (
            _status_line(status),
            ctype,
            rec.request_id.encode("latin-1", "replace"),
            extra,
        )
        self._send(rec, writer, head + payload)
        await writer.drain()
        rec.completed = True
        return keep_alive

    async def _send_sse(
        self,
        writer: asyncio.StreamWriter,
        rec: RequestRecord,
        sc: _Scenario,
        status: int,
        truth: Truth,
        http11: bool,
        keep_alive: bool,
    ) -> bool:
        events, usage_idx, first_idx = build_events(truth, sc.created)
        if 0 <= sc.error_after < len(events):  # the stream fails mid-way: an error event ends it
            events = [*events[: sc.error_after], stream_error_event(truth.provider)]
            usage_idx = -1
        if sc.event_bytes and first_idx >= 0:
            events[first_idx] = _pad_event(events[first_idx], sc.event_bytes)
        if sc.crlf:
            events = [e.replace(b"\n", b"\r\n") for e in events]
        if sc.unterminated and events:
            last = events[-1]
            if sc.unterminated >= 2:
                last = last.rstrip(b"\r\n")
            else:
                last = last[:-2] if last.endswith(b"\r\n") else last[:-1]
            events[-1] = last
        chunked = http11
        if not chunked:
            keep_alive = False
        enc = _Encoder(sc.encoding) if sc.encoding else None
        head = (
            b"%scontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-mock-request-id: %s\r\n"
            % (
                _status_line(status),
                rec.request_id.encode("latin-1", "replace"),
            )
        )
        if chunked:
            head += b"transfer-encoding: chunked\r\n"
        if enc is not None:
            head += b"content-encoding: %s\r\n" % sc.encoding.encode()
        if not keep_alive:
            head += b"connection: close\r\n"
        self._send(rec, writer, head + b"\r\n")
        await writer.drain()

        for i, event in enumerate(events):
            if i == sc.abort_after:
                if sc.abort_mid_event:  # the upstream dies inside an event (paced like the others)
                    if sc.interval_s:
                        await asyncio.sleep(sc.interval_s)
                    await self._emit(writer, rec, enc, chunked, event[: len(event) // 2])
                    if sc.interval_s:
                        await asyncio.sleep(sc.interval_s)
                await self._abort(writer, rec, sc)
                return False
            if i and sc.interval_s:
                await asyncio.sleep(sc.interval_s)
            if i == usage_idx and sc.split_usage > 1:
                for j, piece in enumerate(_split_bytes(event, sc.split_usage)):
                    if j and sc.split_pause_s:
                        await asyncio.sleep(sc.split_pause_s)
                    await self._emit(writer, rec, enc, chunked, piece)
            else:
                await self._emit(writer, rec, enc, chunked, event)
            rec.events_sent += 1
        if sc.abort_after >= len(events):
            await self._abort(writer, rec, sc)
            return False
        tail = enc.finish() if enc is not None else b""
        if chunked:
            if tail:
                tail = b"%x\r\n%s\r\n" % (len(tail), tail)
            tail += b"0\r\n\r\n"
        if tail:
            self._send(rec, writer, tail)
            await writer.drain()
        rec.completed = True
        return keep_alive

    async def _emit(
        self,
        writer: asyncio.StreamWriter,
        rec: RequestRecord,
        enc: _Encoder | None,
        chunked: bool,
        payload: bytes,
    ) -> None:
        if enc is not None:
            payload = enc.chunk(payload)
        if not payload:
            return
        if chunked:
            payload = b"%x\r\n%s\r\n" % (len(payload), payload)
        self._send(rec, writer, payload)
        await writer.drain()

    @staticmethod
    async def _abort(writer: asyncio.StreamWriter, rec: RequestRecord, sc: _Scenario) -> None:
        await writer.drain()
        rec.aborted = True
        if sc.abort_rst:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    # -- control API --------------------------------------------------------------------------------

    async def _control(
        self, writer: asyncio.StreamWriter, method: str, path: str, target: str, keep_alive: bool
    ) -> None:
        ctype = b"application/json"
        if path in ("/_mock/records", "/_mock/records/"):
            if method == "GET":
                recs = list(self.records.values())
                limit = parse_qs(target.partition("?")[2]).get("limit")
                if limit:
                    n = _int(limit[0], len(recs))
                    recs = recs[len(recs) - n :] if n else []
                payload = orjson.dumps([r.to_dict() for r in recs])
                await self._plain(writer, 200, payload, keep_alive, ctype)
            elif method == "DELETE":
                await self._plain(
                    writer, 200, orjson.dumps({"deleted": self.clear_records()}), keep_alive, ctype
                )
            else:
                await self._plain(writer, 405, orjson.dumps(error_body(405)), keep_alive, ctype)
            return
        if path.startswith("/_mock/records/"):
            rid = unquote(path[len("/_mock/records/") :])
            rec = self.records.get(rid)
            if rec is None:
                await self._plain(
                    writer, 404, orjson.dumps(error_body(404, None, f"no record {rid}")), keep_alive, ctype
                )
            elif method == "GET":
                await self._plain(writer, 200, orjson.dumps(rec.to_dict()), keep_alive, ctype)
            elif method == "DELETE":
                del self.records[rid]
                await self._plain(writer, 200, orjson.dumps({"deleted": 1}), keep_alive, ctype)
            else:
                await self._plain(writer, 405, orjson.dumps(error_body(405)), keep_alive, ctype)
            return
        await self._plain(
            writer, 404, orjson.dumps(error_body(404, None, f"no such endpoint {path}")), keep_alive, ctype
        )
