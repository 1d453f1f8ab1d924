"""Tests for the mock LLM upstream (gateway_stats.testing.mockllm), driven in-process by an asyncio client."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import itertools
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import brotli
import orjson
import pytest

from gateway_stats.testing.mockllm import MockLLM, RequestRecord, expected

CHAT = "/v1/chat/completions"
MS = 1_000_000  # ns


# --------------------------------------------------------------------------------------------------
# A small raw HTTP/1.1 client (keep-alive, chunked and content-length, records every read)
# --------------------------------------------------------------------------------------------------


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes  # de-chunked, still content-encoded
    raw: bytes  # the bytes after the header block, chunk framing included
    chunks: list[bytes]  # payload of every HTTP chunk
    complete: bool  # terminating chunk / full content-length received
    reads: list[tuple[int, bytes]] = field(default_factory=list)  # (monotonic_ns, data) per socket read
    wire_len: int = 0  # bytes of this response on the wire, head included

    def json(self) -> Any:
        return orjson.loads(decode(self.body, self.headers.get("content-encoding", "")))

    @property
    def request_id(self) -> str:
        return self.headers["x-mock-request-id"]


def decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return zlib.decompress(body, 31)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        return bytes(brotli.decompress(body))
    return body


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.buf = bytearray()
        self.reads: list[tuple[int, bytes]] = []
        self.raw = bytearray()

    async def __aenter__(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        *,
        chunked: bool = False,
    ) -> None:
        hdr = {"host": "mock"}
        if isinstance(body, dict | list):
            body = orjson.dumps(body)
            hdr["content-type"] = "application/json"
        body = body or b""
        hdr.update(headers or {})
        if chunked:
            hdr["transfer-encoding"] = "chunked"
        elif body or method == "POST":
            hdr["content-length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdr.items()) + "\r\n"
        self.writer.write(head.encode())
        view = memoryview(body)
        step = 1 << 20
        for pos in range(0, len(body), step):
            piece = view[pos : pos + step]
            if chunked:
                self.writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                self.writer.write(piece)
            await self.writer.drain()
        if chunked:
            self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def _fill(self) -> bool:
        data = await self.reader.read(1 << 20)
        if not data:
            return False
        self.reads.append((time.monotonic_ns(), data))
        self.buf += data
        self.raw += data
        return True

    async def response(self) -> Resp:
        self.reads = []
        self.raw = bytearray()
        while (i := self.buf.find(b"\r\n\r\n")) < 0:
            if not await self._fill():
                raise EOFError("connection closed before the response head")
        head = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
        del self.buf[: i + 4]
        raw_start = len(self.raw) - len(self.buf)
        status = int(head[0].split(" ")[1])
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        chunks: list[bytes] = []
        complete = False
        body = bytearray()
        if status < 200 or status in (204, 304):
            complete = True
        elif "chunked" in headers.get("transfer-encoding", ""):
            while True:
                j = self.buf.find(b"\r\n")
                if j < 0:
                    if not await self._fill():
                        break
                    continue
                size = int(bytes(self.buf[:j]), 16)
                if size == 0:
                    while len(self.buf) < j + 4 and await self._fill():
                        pass
                    complete = bytes(self.buf[j : j + 4]) == b"\r\n\r\n"
                    del self.buf[: j + 4]
                    break
                eof = False
                while len(self.buf) < j + 2 + size + 2:
                    if not await self._fill():
                        eof = True
                        break
                if eof:
                    break
                chunk = bytes(self.buf[j + 2 : j + 2 + size])
                chunks.append(chunk)
                body += chunk
                del self.buf[: j + 2 + size + 2]
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n and await self._fill():
                pass
            complete = len(self.buf) >= n
            body += self.buf[:n]
            del self.buf[:n]
        else:
            while await self._fill():
                pass
            body += self.buf
            self.buf.clear()
        wire_len = len(self.raw) - len(self.buf)
        raw = bytes(self.raw[raw_start:wire_len])
        return Resp(status, headers, bytes(body), raw, chunks, complete, list(self.reads), wire_len)

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        *,
        chunked: bool = False,
    ) -> Resp:
        await self.send(method, path, headers, body, chunked=chunked)
        return await self.response()


async def one(
    mock: MockLLM,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
    *,
    chunked: bool = False,
) -> Resp:
    async with Client(mock.port) as c:
        return await c.request(method, path, headers, body, chunked=chunked)


def run(fn: Callable[[MockLLM], Awaitable[None]], **opts: Any) -> None:
    async def main() -> None:
        async with MockLLM(**opts) as mock:
            await asyncio.wait_for(fn(mock), 60)

    asyncio.run(main())


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event; accepts LF and CRLF."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        out.append((name, "\n".join(data)))
    return out


def json_events(resp: Resp) -> list[tuple[str | None, Any]]:
    text = decode(resp.body, resp.headers.get("content-encoding", "")).decode()
    return [(n, d if d == "[DONE]" else orjson.loads(d)) for n, d in sse_events(text)]


def chat_body(text: str = "What is the weather like in Paris today", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def without_created(resp: Resp) -> list[Any]:
    out = []
    for _, d in json_events(resp):
        if isinstance(d, dict):
            d.pop("created", None)
        out.append(d)
    return out


def record(mock: MockLLM, resp: Resp) -> RequestRecord:
    return mock.records[resp.request_id]


# --------------------------------------------------------------------------------------------------
# expected() — the pure ground truth
# --------------------------------------------------------------------------------------------------


def test_expected_defaults_and_overrides() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
        ],
    }
    t = expected(CHAT, {}, body)
    assert t.provider == "openai.chat" and not t.stream
    assert t.input_tokens == 2 + 3 + 7
    assert t.output_tokens == 5 and len(t.chunks) == 5 and t.answer == "".join(t.chunks)
    assert t.total_tokens == t.input_tokens + t.output_tokens
    assert t.model == t.request_model == "gpt-4o"
    assert t.chat_id.startswith("chatcmpl-")
    assert expected(CHAT, {}, orjson.dumps(body)) == t  # bytes and dict bodies agree; deterministic

    t2 = expected(
        CHAT,
        {
            "X-Mock-Input-Tokens": "100",
            "x-mock-events": "3",
            "X-Mock-Model": "served",
            "x-mock-cached-tokens": "40",
            "x-mock-reasoning-tokens": "2",
            "x-mock-chat-id": "cid-1",
        },
        body,
    )
    assert (t2.input_tokens, t2.output_tokens, t2.total_tokens) == (100, 3, 103)
    assert (t2.cached_tokens, t2.reasoning_tokens) == (40, 2)
    assert t2.model == "served" and t2.request_model == "gpt-4o" and t2.chat_id == "cid-1"
    assert t2.usage["prompt_tokens_details"] == {"cached_tokens": 40}
    assert t2.usage["completion_tokens_details"] == {"reasoning_tokens": 2}

    g = expected(
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"x-mock-reasoning-tokens": "4"},
        {"contents": [{"role": "user", "parts": [{"text": "a b"}]}]},
    )
    assert g.provider == "gemini" and g.stream and g.request_model == "gemini-2.5-flash"
    assert g.input_tokens == 9 and g.usage["totalTokenCount"] == 9 + 5 + 4 == g.total_tokens

    a = expected(
        "/v1/messages",
        {},
        {"model": "claude", "system": "x y", "messages": [{"role": "user", "content": "z"}]},
    )
    assert a.input_tokens == 10 and a.usage["input_tokens"] == 10 and a.finish_reason == "end_turn"

    s = expected(CHAT, {}, chat_body(stream=True))
    assert s.stream and not s.include_usage and not s.usage_reported
    with pytest.raises(ValueError):
        expected("/healthz", {}, None)


# --------------------------------------------------------------------------------------------------
# OpenAI chat
# --------------------------------------------------------------------------------------------------


def test_json_chat_matches_expected() -> None:
    async def go(mock: MockLLM) -> None:
        hdrs = {"x-mock-cached-tokens": "3", "x-mock-reasoning-tokens": "2", "x-mock-events": "7"}
        body = chat_body()
        r = await one(mock, "POST", CHAT, hdrs, body)
        t = expected(CHAT, hdrs, body)
        assert r.status == 200 and r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.body) and r.complete
        j = r.json()
        assert j["object"] == "chat.completion"
        assert j["id"] == t.chat_id and j["model"] == t.model == "gpt-4o-mini"
        assert j["choices"][0]["message"]["content"] == t.answer
        assert j["choices"][0]["finish_reason"] == "stop"
        assert j["usage"] == t.usage
        assert j["usage"]["prompt_tokens"] == t.input_tokens == 8 + 7
        assert j["usage"]["completion_tokens"] == t.output_tokens == 7
        assert j["usage"]["total_tokens"] == 22
        rec = record(mock, r)
        assert rec.truth == t and rec.status == 200 and rec.completed and not rec.stream
        assert len(rec.writes) == 1 and rec.writes[0][1:] == (0, rec.bytes_sent)

        r2 = await one(mock, "POST", CHAT, {"x-mock-model": "gpt-4o-2024-08-06"}, body)
        assert r2.json()["model"] == "gpt-4o-2024-08-06"

    run(go)


def test_keep_alive_many_requests_and_request_ids() -> None:
    async def go(mock: MockLLM) -> None:
        async with Client(mock.port) as c:
            ids = set()
            for i in range(60):
                hdrs = {"x-request-id": f"req-{i}"} if i % 2 else {}
                r = await c.request("POST", CHAT, hdrs, chat_body(f"hello number {i}"))
                assert r.status == 200 and r.json()["usage"]["prompt_tokens"] == 3 + 7
                ids.add(r.request_id)
                if i % 2:
                    assert r.request_id == f"req-{i}"
            assert len(ids) == 60 and set(mock.records) == ids

    run(go)


def test_chat_stream_events_and_usage() -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        hdrs = {"x-mock-events": "6", "x-mock-input-tokens": "321", "x-mock-cached-tokens": "21"}
        r = await one(mock, "POST", CHAT, hdrs, body)
        t = expected(CHAT, hdrs, body)
        assert r.status == 200 and r.complete
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        evs = [d for _, d in json_events(r)]
        assert evs[-1] == "[DONE]"
        content = evs[:6]
        assert [e["choices"][0]["delta"]["content"] for e in content] == list(t.chunks)
        assert content[0]["choices"][0]["delta"]["role"] == "assistant"
        assert all("role" not in e["choices"][0]["delta"] for e in content[1:])
        assert all(e["id"] == t.chat_id and e["object"] == "chat.completion.chunk" for e in evs[:-1])
        final, usage = evs[6], evs[7]
        assert final["choices"][0]["finish_reason"] == "stop" and final["choices"][0]["delta"] == {}
        assert usage["choices"] == [] and usage["usage"] == t.usage
        assert usage["usage"]["prompt_tokens"] == 321 and usage["usage"]["completion_tokens"] == 6
        assert len(evs) == 9
        rec = record(mock, r)
        assert rec.stream and rec.completed and rec.events_sent == 9
        # one write for the head, one per event, one for the terminating chunk
        assert len(rec.writes) == 1 + 9 + 1 and len(r.chunks) == 9

        # without include_usage: no usage chunk at all
        r2 = await one(mock, "POST", CHAT, {}, chat_body(stream=True))
        evs2 = [d for _, d in json_events(r2)]
        assert len(evs2) == 5 + 1 + 1 and all("usage" not in e for e in evs2[:-1])

    run(go)


@pytest.mark.parametrize("k", [1, 2])
def test_chat_tool_calls(k: int) -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body(
            stream=True,
            stream_options={"include_usage": True},
            tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
        )
        hdrs = {"x-mock-tools": str(k), "x-mock-events": "4"}
        t = expected(CHAT, hdrs, body)
        assert len(t.tool_calls) == k and t.output_tokens == 4 * k and t.finish_reason == "tool_calls"
        r = await one(mock, "POST", CHAT, hdrs, body)
        args: dict[int, str] = {}
        heads: dict[int, dict[str, Any]] = {}
        frags = 0
        for _, e in json_events(r):
            if e == "[DONE]" or not e["choices"]:
                continue
            for tc in e["choices"][0]["delta"].get("tool_calls", []):
                if "id" in tc:
                    heads[tc["index"]] = tc
                else:
                    frags += 1
                args[tc["index"]] = args.get(tc["index"], "") + tc["function"]["arguments"]
        assert frags == 4 * k
        for i, tc in enumerate(t.tool_calls):
            assert heads[i]["id"] == tc.id and heads[i]["function"]["name"] == "lookup" == tc.name
            assert heads[i]["type"] == "function"
            assert args[i] == tc.arguments and isinstance(orjson.loads(args[i]), dict)

        body.pop("stream")
        j = (await one(mock, "POST", CHAT, hdrs, body)).json()
        msg = j["choices"][0]["message"]
        assert msg["content"] is None and j["choices"][0]["finish_reason"] == "tool_calls"
        assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in msg["tool_calls"]] == [
            (tc.id, tc.name, tc.arguments) for tc in t.tool_calls
        ]

    run(go)


# --------------------------------------------------------------------------------------------------
# Transport scenarios
# --------------------------------------------------------------------------------------------------


def test_crlf_mode_really_uses_crlf() -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        r = await one(mock, "POST", CHAT, {"x-mock-crlf": "1"}, body)
        text = r.body
        assert text.count(b"\r\n\r\n") == 5 + 1 + 1 + 1
        assert text.count(b"\n") == text.count(b"\r\n")  # no bare LF anywhere
        assert text.endswith(b"data: [DONE]\r\n\r\n")
        plain = (await one(mock, "POST", CHAT, {}, body)).body
        assert b"\r\n" not in plain and plain.count(b"\n\n") == 8

    run(go)


def test_split_usage_makes_separate_paused_writes() -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        base = await one(mock, "POST", CHAT, {}, body)
        k, pause_ms = 4, 30
        r = await one(
            mock, "POST", CHAT, {"x-mock-split-usage": str(k), "x-mock-split-pause-ms": str(pause_ms)}, body
        )
        assert without_created(r) == without_created(base)  # same events, only the writes differ
        rb, bb = record(mock, r), record(mock, base)
        assert len(rb.writes) == len(bb.writes) + k - 1
        # the usage event is event #7 (5 content + final): writes 1..6 are events, 7..10 the usage pieces
        pieces = rb.writes[7 : 7 + k]
        assert len(r.chunks) == len(base.chunks) + k - 1
        assert all(not c.endswith(b"\n\n") for c in r.chunks[6 : 5 + k])  # only the last piece ends it
        usage_event = b"".join(r.chunks[6 : 6 + k])
        assert usage_event.startswith(b"data: {") and usage_event.endswith(b"}\n\n")
        assert orjson.loads(usage_event[6:])["usage"] == expected(CHAT, {}, body).usage
        for (t_prev, _, _), (t_next, _, _) in itertools.pairwise(pieces):
            assert t_next - t_prev >= pause_ms * MS
        # the client saw them as separate socket reads
        assert len(r.reads) >= k

    run(go)


@pytest.mark.parametrize(
    "hdrs",
    [
        {"x-mock-gzip": "1"},
        {"x-mock-encoding": "gzip"},
        {"x-mock-encoding": "deflate"},
        {"x-mock-encoding": "br"},
    ],
)
def test_compressed_json(hdrs: dict[str, str]) -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body()
        plain = await one(mock, "POST", CHAT, {}, body)
        r = await one(mock, "POST", CHAT, hdrs, body)
        enc = "gzip" if "x-mock-gzip" in hdrs else hdrs["x-mock-encoding"]
        assert r.headers["content-encoding"] == enc and int(r.headers["content-length"]) == len(r.body)
        assert r.body != plain.body
        a, b = r.json(), plain.json()
        a.pop("created")
        b.pop("created")
        assert a == b

    run(go)


@pytest.mark.parametrize("enc", ["gzip", "deflate", "br"])
def test_compressed_sse_flushes_every_event(enc: str) -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        r = await one(mock, "POST", CHAT, {"x-mock-encoding": enc}, body)
        assert r.headers["content-encoding"] == enc and r.complete
        if enc == "br":
            d: Any = brotli.Decompressor()
            feed: Callable[[bytes], bytes] = lambda b: bytes(d.process(b))  # noqa: E731
        else:
            z = zlib.decompressobj(31 if enc == "gzip" else 15)
            feed = z.decompress
        # every HTTP chunk but the compressor trailer decodes, on its own, to whole events
        for chunk in r.chunks[:-1]:
            out = feed(chunk)
            assert out.endswith(b"\n\n") and out.startswith(b"data: ")
        assert feed(r.chunks[-1]) == b""
        evs = json_events(r)
        assert evs[-1][1] == "[DONE]" and evs[-2][1]["usage"] == expected(CHAT, {}, body).usage

    run(go)


@pytest.mark.parametrize("rst", [False, True])
def test_abort_after_closes_without_final_chunk(rst: bool) -> None:
    async def go(mock: MockLLM) -> None:
        hdrs = {"x-mock-abort-after": "3", "x-mock-events": "10", "x-request-id": "ab"}
        if rst:
            hdrs["x-mock-abort-rst"] = "1"
        async with Client(mock.port) as c:
            await c.send("POST", CHAT, hdrs, chat_body(stream=True))
            try:
                r = await c.response()
                assert not r.complete and not r.raw.endswith(b"0\r\n\r\n")
                assert len(r.chunks) == 3 and r.status == 200
                assert not await c.reader.read()  # the connection is gone
            except ConnectionResetError:
                assert rst  # an RST may surface as a reset instead of an EOF
        rec = mock.records["ab"]
        assert rec.aborted and not rec.completed and rec.events_sent == 3
        assert len(rec.writes) == 1 + 3

    run(go)


def test_abort_after_all_events_still_lacks_terminator() -> None:
    async def go(mock: MockLLM) -> None:
        r = await one(
            mock, "POST", CHAT, {"x-mock-abort-after": "99", "x-mock-events": "2"}, chat_body(stream=True)
        )
        assert not r.complete and r.body.endswith(b"data: [DONE]\n\n") and not r.raw.endswith(b"0\r\n\r\n")

    run(go)


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_error_statuses(status: int) -> None:
    async def go(mock: MockLLM) -> None:
        for stream in (False, True):
            r = await one(mock, "POST", CHAT, {"x-mock-status": str(status)}, chat_body(stream=stream))
            assert r.status == status and r.headers["content-type"] == "application/json"
            err = r.json()["error"]
            assert set(err) == {"message", "type", "code"} and err["code"] == status
            assert record(mock, r).status == status
        r = await one(
            mock, "POST", CHAT, {"x-mock-status": str(status), "x-mock-status-empty": "1"}, chat_body()
        )
        assert r.status == status and r.body == b"" and r.headers["content-length"] == "0"
        t = expected(CHAT, {"x-mock-status": str(status)}, chat_body())
        assert t.status == status and not t.usage_reported
        a = await one(mock, "POST", "/v1/messages", {"x-mock-status": str(status)}, {"model": "claude"})
        assert a.status == status and a.json()["type"] == "error"

    run(go)


def test_big_request_bodies_content_length_and_chunked() -> None:
    big = os.urandom(1 << 16) * 320  # 20 MiB
    digest = hashlib.sha256(big).hexdigest()

    async def go(mock: MockLLM) -> None:
        async with Client(mock.port) as c:
            for chunked in (False, True):
                r = await c.request("POST", "/echo-size", {}, big, chunked=chunked)
                assert r.status == 200 and r.json() == {"bytes": len(big), "sha256": digest}
            # an LLM path accepts it too (answered as if the body were {}), then the connection is reusable
            prompt = orjson.dumps(chat_body("word " * (4 << 20)))
            for chunked in (False, True):
                r = await c.request("POST", CHAT, {"x-mock-input-tokens": "4194311"}, prompt, chunked=chunked)
                assert r.status == 200 and r.json()["usage"]["prompt_tokens"] == 4194311
                rec = record(mock, r)
                assert rec.request_bytes == len(prompt) and rec.body_truncated
                assert rec.request_sha256 == hashlib.sha256(prompt).hexdigest()
            assert (await c.request("GET", "/healthz")).body == b"ok"

    run(go)


def test_content_type_of_a_json_answer() -> None:
    async def go(mock: MockLLM) -> None:
        r = await one(mock, "POST", CHAT, {"x-mock-content-type": "text/plain; charset=utf-8"}, chat_body())
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.json()["usage"] == expected(CHAT, {}, chat_body()).usage  # the body is unchanged

    run(go)


def test_error_after_ends_the_stream_with_an_error_event() -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        r = await one(mock, "POST", CHAT, {"x-mock-error-after": "2", "x-mock-model": "resp-model"}, body)
        assert r.status == 200 and r.complete
        evs = json_events(r)
        assert len(evs) == 3 and [e["model"] for _, e in evs[:2]] == ["resp-model", "resp-model"]
        assert set(evs[2][1]) == {"error"} and evs[2][1]["error"]["code"] == 500
        a = await one(
            mock, "POST", "/v1/messages", {"x-mock-error-after": "1"}, {"model": "c", "stream": True}
        )
        assert a.body.count(b"event: ") == 2 and b'event: error\ndata: {"type":"error"' in a.body

    run(go)


def test_unterminated_final_event() -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body(stream=True)
        r1 = await one(mock, "POST", CHAT, {"x-mock-unterminated-final": "1"}, body)
        assert r1.complete and r1.body.endswith(b"}\n\ndata: [DONE]\n")
        r2 = await one(mock, "POST", CHAT, {"x-mock-unterminated-final": "2", "x-mock-crlf": "1"}, body)
        assert r2.complete and r2.body.endswith(b"}\r\n\r\ndata: [DONE]")
        a = await one(
            mock, "POST", "/v1/messages", {"x-mock-unterminated-final": "1"}, {"model": "c", "stream": True}
        )
        assert a.body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n')

    run(go)


def test_event_bytes_pads_one_content_event() -> None:
    async def go(mock: MockLLM) -> None:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        r = await one(mock, "POST", CHAT, {"x-mock-event-bytes": "300000"}, body)
        sizes = [len(c) for c in r.chunks]
        assert abs(max(sizes) - 300000) <= 2 and sorted(sizes)[-2] < 1000
        evs = json_events(r)
        assert (
            "".join(e["choices"][0]["delta"]["content"] for _, e in evs[:5])
            == expected(CHAT, {}, body).answer
        )
        assert evs[-2][1]["usage"]["completion_tokens"] == 5

    run(go)


# --------------------------------------------------------------------------------------------------
# Other providers
# --------------------------------------------------------------------------------------------------


def test_anthropic_messages() -> None:
    async def go(mock: MockLLM) -> None:
        body = {
            "model": "claude-sonnet-4",
            "system": "be nice",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
        }
        hdrs = {"x-mock-events": "4", "x-mock-cached-tokens": "11"}
        t = expected("/v1/messages", hdrs, body)
        r = await one(mock, "POST", "/v1/messages", hdrs, body)
        evs = json_events(r)
        names = [n for n, _ in evs]
        assert all(n == d["type"] for n, d in evs)
        assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 4 + [
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        start = evs[0][1]["message"]
        assert start["id"] == t.chat_id and start["model"] == "claude-sonnet-4"
        assert start["usage"]["input_tokens"] == t.input_tokens == 4 + 7
        assert start["usage"]["cache_read_input_tokens"] == 11
        deltas = [d["delta"] for n, d in evs if n == "content_block_delta"]
        assert (
            all(d["type"] == "text_delta" for d in deltas) and "".join(d["text"] for d in deltas) == t.answer
        )
        md = evs[-2][1]
        assert (
            md["usage"]["output_tokens"] == t.output_tokens == 4 and md["delta"]["stop_reason"] == "end_turn"
        )

        body["stream"] = False
        j = (await one(mock, "POST", "/v1/messages", hdrs, body)).json()
        assert j["type"] == "message" and j["content"][0]["text"] == t.answer
        assert j["usage"] == t.usage and j["usage"]["cache_read_input_tokens"] == 11

    run(go)


def test_anthropic_tool_use_stream() -> None:
    async def go(mock: MockLLM) -> None:
        body = {
            "model": "claude",
            "stream": True,
            "tools": [{"name": "get_stock", "input_schema": {}}],
            "messages": [{"role": "user", "content": "price?"}],
        }
        hdrs = {"x-mock-tools": "1", "x-mock-events": "6"}
        t = expected("/v1/messages", hdrs, body)
        evs = json_events(await one(mock, "POST", "/v1/messages", hdrs, body))
        block = next(d["content_block"] for n, d in evs if n == "content_block_start")
        assert block["type"] == "tool_use" and block["name"] == "get_stock" == t.tool_calls[0].name
        assert block["id"] == t.tool_calls[0].id
        parts = [d["delta"]["partial_json"] for n, d in evs if n == "content_block_delta"]
        assert len(parts) == 6 and "".join(parts) == t.tool_calls[0].arguments
        md = next(d for n, d in evs if n == "message_delta")
        assert md["delta"]["stop_reason"] == "tool_use" and md["usage"]["output_tokens"] == 6

    run(go)


def test_responses_api() -> None:
    async def go(mock: MockLLM) -> None:
        body = {
            "model": "gpt-5",
            "instructions": "short",
            "input": [{"role": "user", "content": "a b c"}],
            "stream": True,
        }
        hdrs = {"x-mock-reasoning-tokens": "9", "x-mock-cached-tokens": "2"}
        t = expected("/v1/responses", hdrs, body)
        assert t.input_tokens == 1 + 3 + 7
        r = await one(mock, "POST", "/v1/responses", hdrs, body)
        evs = json_events(r)
        names = [n for n, _ in evs]
        assert names[0] == "response.created" and names[-1] == "response.completed"
        assert all(n == d["type"] for n, d in evs)
        assert [d["sequence_number"] for _, d in evs] == list(range(len(evs)))
        deltas = [d["delta"] for n, d in evs if n == "response.output_text.delta"]
        assert "".join(deltas) == t.answer and len(deltas) == 5
        done = evs[-1][1]["response"]
        assert done["status"] == "completed" and done["usage"] == t.usage
        assert done["usage"]["input_tokens_details"]["cached_tokens"] == 2
        assert done["usage"]["output_tokens_details"]["reasoning_tokens"] == 9
        assert done["output"][0]["content"][0]["text"] == t.answer
        assert evs[0][1]["response"]["usage"] is None

        body["stream"] = False
        j = (await one(mock, "POST", "/v1/responses", hdrs, body)).json()
        assert j["object"] == "response" and j["output"][0]["content"][0]["text"] == t.answer
        assert j["usage"] == t.usage and j["id"] == t.chat_id

        hdrs_t = {"x-mock-tools": "1", "x-mock-events": "3"}
        body["stream"] = True
        tt = expected("/v1/responses", hdrs_t, body)
        evs = json_events(await one(mock, "POST", "/v1/responses", hdrs_t, body))
        frags = [d["delta"] for n, d in evs if n == "response.function_call_arguments.delta"]
        assert "".join(frags) == tt.tool_calls[0].arguments and len(frags) == 3
        assert evs[-1][1]["response"]["output"][0]["type"] == "function_call"

    run(go)


def test_gemini() -> None:
    async def go(mock: MockLLM) -> None:
        path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        body = {"contents": [{"role": "user", "parts": [{"text": "tell me a joke"}]}]}
        hdrs = {"x-mock-reasoning-tokens": "5", "x-mock-cached-tokens": "3", "x-mock-events": "4"}
        t = expected(path, hdrs, body)
        r = await one(mock, "POST", path, hdrs, body)
        assert r.headers["content-type"] == "text/event-stream"
        evs = [d for _, d in json_events(r)]
        assert len(evs) == 4
        assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in evs) == t.answer
        cands = [e["usageMetadata"]["candidatesTokenCount"] for e in evs]
        assert cands == sorted(cands) and cands[-1] == 4
        assert all(e["usageMetadata"]["promptTokenCount"] == t.input_tokens == 4 + 7 for e in evs)
        assert evs[-1]["usageMetadata"] == t.usage and t.usage["totalTokenCount"] == 11 + 4 + 5
        assert (
            evs[-1]["candidates"][0]["finishReason"] == "STOP"
            and evs[-1]["modelVersion"] == "gemini-2.5-flash"
        )
        assert "finishReason" not in evs[0]["candidates"][0]

        path_j = "/v1beta/models/gemini-2.5-flash:generateContent"
        tj = expected(path_j, hdrs, body)
        j = (await one(mock, "POST", path_j, hdrs, body)).json()
        assert j["candidates"][0]["content"]["parts"][0]["text"] == tj.answer
        assert j["usageMetadata"] == tj.usage and j["usageMetadata"]["thoughtsTokenCount"] == 5

        arr = (await one(mock, "POST", path.split("?")[0], hdrs, body)).json()  # no alt=sse: a JSON array
        assert isinstance(arr, list) and arr[-1]["usageMetadata"] == t.usage

    run(go)


def test_legacy_completions_and_embeddings() -> None:
    async def go(mock: MockLLM) -> None:
        body: dict[str, Any] = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test"}
        t = expected("/v1/completions", {}, body)
        j = (await one(mock, "POST", "/v1/completions", {}, body)).json()
        assert j["object"] == "text_completion" and j["choices"][0]["text"] == t.answer
        assert j["usage"]["prompt_tokens"] == 5 + 7 and j["usage"] == t.usage
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        evs = [d for _, d in json_events(await one(mock, "POST", "/v1/completions", {}, body))]
        assert "".join(e["choices"][0]["text"] for e in evs[:5]) == t.answer
        assert evs[-2]["usage"] == t.usage and evs[-1] == "[DONE]"

        eb = {"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"]}
        te = expected("/v1/embeddings", {}, eb)
        e = (await one(mock, "POST", "/v1/embeddings", {}, eb)).json()
        assert [d["index"] for d in e["data"]] == [0, 1] and all(len(d["embedding"]) == 8 for d in e["data"])
        assert (
            e["usage"] == {"prompt_tokens": 3 + 7, "total_tokens": 10} == te.usage and te.output_tokens == 0
        )

    run(go)


# --------------------------------------------------------------------------------------------------
# Records and timing ground truth
# --------------------------------------------------------------------------------------------------


def test_record_timestamps_first_byte_and_interval() -> None:
    async def go(mock: MockLLM) -> None:
        hdrs = {"x-mock-first-byte-ms": "80", "x-mock-interval-ms": "15", "x-request-id": "timed-1"}
        r = await one(mock, "POST", CHAT, hdrs, chat_body(stream=True))
        rec = mock.records["timed-1"]
        assert rec.t_request_start <= rec.t_request_received
        assert rec.t_first_byte is not None and rec.t_last_byte is not None
        assert rec.t_first_byte - rec.t_request_received >= 80 * MS
        ts = [w[0] for w in rec.writes]
        assert ts == sorted(ts) and ts[0] == rec.t_first_byte and ts[-1] == rec.t_last_byte
        offset = 0
        for _, off, n in rec.writes:
            assert off == offset and n > 0
            offset += n
        assert offset == rec.bytes_sent == r.wire_len
        event_ts = ts[1:-1]  # head first, terminating chunk last
        for a, b in itertools.pairwise(event_ts):
            assert b - a >= 15 * MS
        assert rec.writes[0][1] == 0 and rec.completed and not rec.aborted

        j = await one(mock, "POST", CHAT, {"x-mock-first-byte-ms": "50"}, chat_body())
        jr = record(mock, j)
        assert jr.t_first_byte is not None and jr.t_first_byte - jr.t_request_received >= 50 * MS

    run(go)


def test_records_http_api_and_bound() -> None:
    async def go(mock: MockLLM) -> None:
        async with Client(mock.port) as c:
            for i in range(8):
                await c.request("POST", CHAT, {"x-request-id": f"r{i}", "x-mock-events": "2"}, chat_body())
            assert list(mock.records) == [f"r{i}" for i in range(3, 8)]  # bounded to the last 5
            lst = (await c.request("GET", "/_mock/records")).json()
            assert [x["request_id"] for x in lst] == [f"r{i}" for i in range(3, 8)]
            assert (await c.request("GET", "/_mock/records?limit=2")).json()[0]["request_id"] == "r6"
            one_rec = await c.request("GET", "/_mock/records/r5")
            d = one_rec.json()
            assert d["truth"]["output_tokens"] == 2 and d["scenario"] == {"x-mock-events": "2"}
            assert d["writes"][0][1] == 0 and d["t_first_byte"] >= d["t_request_received"]
            assert (await c.request("GET", "/_mock/records/nope")).status == 404
            assert (await c.request("DELETE", "/_mock/records")).json() == {"deleted": 5}
            assert (await c.request("GET", "/_mock/records")).json() == []
            assert mock.records == {}

    run(go, max_records=5)


def test_healthz_unknown_paths_and_methods() -> None:
    async def go(mock: MockLLM) -> None:
        async with Client(mock.port) as c:
            h = await c.request("GET", "/healthz")
            assert h.status == 200 and h.body == b"ok"
            assert (await c.request("POST", "/v2/nothing", {}, {})).status == 404
            assert (await c.request("GET", CHAT)).status == 405
            r = await c.request("POST", CHAT, {"expect": "100-continue"}, chat_body())
            assert r.status == 100
            r = await c.response()
            assert r.status == 200 and r.json()["usage"]["prompt_tokens"] == 15
            r = await c.request("POST", CHAT, {"x-mock-status": "204"}, chat_body(stream=True))
            assert r.status == 204 and r.body == b"" and "content-length" not in r.headers
            assert (await c.request("GET", "/healthz")).body == b"ok"  # still in sync after the 204
        assert not any(rec.path == "/healthz" for rec in mock.records.values())

    run(go)


def test_stop_with_open_stream() -> None:
    async def go() -> None:
        mock = MockLLM()
        await mock.start()
        c = Client(mock.port)
        await c.__aenter__()
        await c.send(
            "POST", CHAT, {"x-mock-interval-ms": "1000", "x-mock-events": "50"}, chat_body(stream=True)
        )
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        await mock.stop()
        assert time.monotonic() - t0 < 5
        await c.__aexit__()

    asyncio.run(go())


def test_cli_main_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway_stats.testing.mockllm", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("mock-llm listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", CHAT, body=orjson.dumps(chat_body()), headers={"x-mock-events": "3"})
        resp = conn.getresponse()
        assert resp.status == 200 and orjson.loads(resp.read())["usage"]["completion_tokens"] == 3
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
