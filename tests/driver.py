"""Drive the sans-IO CallObserver with phase events exactly as the servicer does, without gRPC or Envoy.

The servicer calls, per ext_proc message: on_request_headers(headers, attributes, end_of_stream, now),
on_request_body(chunk, end_of_stream, now), on_response_headers(...), on_response_body(...), and
finish(now, "complete") once a message carries end_of_stream (or finish(now, "aborted") when the gRPC
stream ends early). `run_call` replays one exchange that way on a fixed clock, so durations are exact:
request headers at 0 ms, request body at 1 ms, response headers at 10 ms, body chunk i at 20 + i ms.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_stats.config import Config, default_config, parse_config
from gateway_stats.core.observer import CallObserver
from gateway_stats.core.record import CallRecord

MS = 1_000_000
T_RESPONSE_HEADERS_MS = 10
T_FIRST_CHUNK_MS = 20


def sse(*events: Any, crlf: bool = False) -> bytes:
    """SSE bytes: each event is a JSON-able doc, raw bytes (e.g. b"[DONE]"), or (event_name, doc)."""
    nl = b"\r\n" if crlf else b"\n"
    out = []
    for ev in events:
        name = None
        if isinstance(ev, tuple):
            name, ev = ev
        data = ev if isinstance(ev, bytes) else json.dumps(ev).encode()
        head = b"event: " + name.encode() + nl if name else b""
        out.append(head + b"data: " + data + nl + nl)
    return b"".join(out)


def as_config(config: Config | Mapping[str, Any] | None) -> Config:
    if config is None:
        return default_config()
    if isinstance(config, Config):
        return config
    return parse_config(dict(config))


@dataclass
class Call:
    obs: CallObserver
    changed: list[bool] = field(default_factory=list)  # return value of each response-body call

    @property
    def rec(self) -> CallRecord:
        return self.obs.record

    @property
    def log(self) -> dict[str, Any]:
        return self.obs.ai_log()


def split(body: bytes, *, size: int | None = None, cuts: Sequence[int] = ()) -> list[bytes]:
    """The body as the chunks Envoy would hand over: every `size` bytes, or at the given offsets."""
    if size:
        return [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    if cuts:
        edges = [0, *sorted(cuts), len(body)]
        return [body[a:b] for a, b in itertools.pairwise(edges)]
    return [body]


def start_call(
    config: Config | Mapping[str, Any] | None = None,
    *,
    path: str = "/v1/chat/completions",
    request: Any = None,
    status: int | None = 200,
    content_type: str = "application/json",
    req_headers: Mapping[str, str] | None = None,
    resp_headers: Mapping[str, str] | None = None,
    route: str = "route-1",
    cluster: str = "cluster-1",
    headers_only: bool = False,
) -> CallObserver:
    """Request headers (0 ms), request body (1 ms) and, unless `status` is None, response headers (10 ms).

    `request`: a dict (sent as JSON), raw bytes, or None (no body: end_of_stream on the headers).
    `headers_only`: the response has no body (end_of_stream on the response headers).
    """
    obs = CallObserver(as_config(config))
    headers = {":method": "POST", ":path": path, ":authority": "llm.example.com", **(req_headers or {})}
    attrs = {"xds.route_name": route, "xds.cluster_name": cluster, "request.id": "req-1"}
    body = request if isinstance(request, bytes) or request is None else json.dumps(request).encode()
    obs.on_request_headers(headers, attrs, body is None, 0)
    if body is not None:
        obs.on_request_body(body, True, 1 * MS)
    if status is not None:
        rh = {":status": str(status), "content-type": content_type, **(resp_headers or {})}
        obs.on_response_headers(rh, {}, headers_only, T_RESPONSE_HEADERS_MS * MS)
    return obs


def run_call(
    config: Config | Mapping[str, Any] | None = None,
    *,
    response: bytes | None = b"",
    chunk_size: int | None = None,
    cuts: Sequence[int] = (),
    end: str = "separate",
    **kw: Any,
) -> Call:
    """Replay one whole exchange (see `start_call` for the request side and the response headers).

    `response`: the body bytes, or None for a headers-only answer. Body chunk i is fed at 20 + i ms.
    `end`: "separate" (a trailing empty end_of_stream message, as Envoy sends after a chunked body),
    "with_last" (end_of_stream on the last data chunk), or "abort" (the side stream ends before any
    end_of_stream; finish(now, "aborted") as the servicer does).
    """
    obs = start_call(config, headers_only=response is None, **kw)
    call = Call(obs)
    t = T_RESPONSE_HEADERS_MS * MS
    if response is not None:
        chunks = split(response, size=chunk_size, cuts=cuts)
        for i, chunk in enumerate(chunks):
            t = (T_FIRST_CHUNK_MS + i) * MS
            last = i == len(chunks) - 1
            call.changed.append(obs.on_response_body(chunk, last and end == "with_last", t))
        if end == "separate":
            t += MS
            call.changed.append(obs.on_response_body(b"", True, t))
    obs.finish(t, "aborted" if end == "abort" else "complete")
    return call


# Hand-built events for tests that drive the observer step by step.
def chat_chunk(
    content: str | None = None,
    *,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    model: str = "gpt-4o-mini",
) -> bytes:
    doc: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model}
    if usage is not None:
        doc["choices"] = []
        doc["usage"] = usage
    else:
        delta = {"content": content} if content is not None else {}
        doc["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def start(obs: CallObserver, body: dict[str, Any], path: str = "/v1/chat/completions", t: int = 0) -> None:
    obs.on_request_headers(
        {":method": "POST", ":path": path, ":authority": "llm.local", "x-mse-consumer": "team-a"},
        {"xds.route_name": "r1", "xds.cluster_name": "c1", "request.id": "rid-1"},
        False,
        t,
    )
    obs.on_request_body(json.dumps(body).encode(), True, t + 1 * MS)
