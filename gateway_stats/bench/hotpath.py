"""The sidecar's own cost per call, without gRPC or Envoy: the real servicer fed realistic messages.

`python -m gateway_stats.bench.hotpath [--calls N] [--sse] [--profile]` builds the ProcessingRequest
messages Envoy sends for one canned call (the bench's chat request and its JSON or SSE answer), drives
`ExtProcServicer.Process` with them N times on one event loop, and prints the process CPU time per
call (best and median of 5 rounds; CPU time and the best round, because the machine is shared).
`--profile` prints the top functions by cumulative time. `--cold` evicts the CPU caches (writes a
32 MB buffer) before every message, as Envoy and the other processes do between our messages on a
shared machine, and leaves that eviction's own time out. What grpc.aio itself costs per message is
not in here: the bench (`make bench`) measures the whole.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway_stats._proto.envoy.config.core.v3 import base_pb2 as core
from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from gateway_stats.bench import canned
from gateway_stats.config.store import ConfigStore
from gateway_stats.envoy.runtime import Runtime
from gateway_stats.envoy.servicer import ATTR_NS, ExtProcServicer

REPO = Path(__file__).resolve().parents[2]


def _headers(pairs: list[tuple[str, str]]) -> core.HeaderMap:
    return core.HeaderMap(headers=[core.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs])


def messages(sse: bool) -> list[pb.ProcessingRequest]:
    """What Envoy 1.40 sends for one call with deploy/envoy.yaml's processing mode."""
    body = canned.SSE_REQUEST if sse else canned.JSON_REQUEST
    req_h = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(
            headers=_headers(
                [
                    (":authority", "127.0.0.1:10000"),
                    (":path", canned.PATH),
                    (":method", "POST"),
                    (":scheme", "http"),
                    ("content-type", "application/json"),
                    ("user-agent", "gateway-stats-bench/1"),
                    ("authorization", "Bearer sk-bench"),
                    ("x-session-id", "bench-session"),
                    ("content-length", str(len(body))),
                    ("x-forwarded-proto", "http"),
                    ("x-request-id", "5b0e6b4e-3c1d-4a8e-9a43-2f0b5b6c7d8e"),
                ]
            )
        )
    )
    attrs = req_h.attributes[ATTR_NS].fields
    attrs["xds.route_name"].string_value = "llm"
    attrs["xds.cluster_name"].string_value = "llm_upstream"
    attrs["xds.virtual_host_name"].string_value = "llm"
    attrs["request.id"].string_value = "5b0e6b4e-3c1d-4a8e-9a43-2f0b5b6c7d8e"
    req_b = pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True))
    ctype = "text/event-stream" if sse else "application/json"
    resp_pairs = [(":status", "200"), ("content-type", ctype), ("date", "Mon, 23 Nov 2026 17:00:00 GMT")]
    if not sse:
        resp_pairs.append(("content-length", str(len(canned.JSON_RESPONSE))))
    resp_h = pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=_headers(resp_pairs)))
    resp_h.attributes[ATTR_NS].fields["response.code"].number_value = 200
    out = [req_h, req_b, resp_h]
    if sse:
        events = [e % (1_000_000 + i) for i, e in enumerate(canned.sse_events(20))] + [canned.SSE_DONE]
        for ev in events:
            out.append(pb.ProcessingRequest(response_body=pb.HttpBody(body=ev)))
        out.append(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"", end_of_stream=True)))
    else:
        last = pb.HttpBody(body=canned.JSON_RESPONSE, end_of_stream=True)
        out.append(pb.ProcessingRequest(response_body=last))
    return out


class _Ctx:
    """The little of grpc.aio.ServicerContext the servicer uses."""

    def invocation_metadata(self) -> tuple[Any, ...]:
        return ()


_JUNK = bytearray()
_evict_seconds = 0.0


def _evict() -> None:
    """Write one byte per cache line of a 32 MB buffer: larger than the caches, so they hold none of ours."""
    global _evict_seconds
    t0 = time.process_time()
    if not _JUNK:
        _JUNK.extend(bytes(32 << 20))
    _JUNK[::64] = b"\x01" * (len(_JUNK) // 64)
    _evict_seconds += time.process_time() - t0


async def _feed(msgs: list[pb.ProcessingRequest], cold: bool = False) -> AsyncIterator[pb.ProcessingRequest]:
    for m in msgs:
        if cold:
            _evict()
        yield m


async def run_calls(
    servicer: ExtProcServicer, msgs: list[pb.ProcessingRequest], n: int, cold: bool = False
) -> None:
    ctx: Any = _Ctx()
    for _ in range(n):
        async for _answer in servicer.Process(_feed(msgs, cold), ctx):
            pass
    servicer.flush()  # the sinks' batch belongs to these calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--sse", action="store_true", help="the SSE answer instead of the JSON one")
    p.add_argument("--config", default=str(REPO / "config" / "gateway-stats.yaml"))
    p.add_argument("--profile", action="store_true")
    p.add_argument("--cold", action="store_true", help="evict the CPU caches before every message")
    args = p.parse_args(argv)
    store = ConfigStore(args.config)
    # No records writer: its thread would write a database into the working directory; the bench
    # (`make bench`, inline vs inline-norecords) measures what it costs.
    cfg = store.current
    store.current = replace(cfg, extensions=replace(cfg.extensions, records=None))
    rt = Runtime(store)
    servicer = ExtProcServicer(rt)
    msgs = messages(args.sse)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(run_calls(servicer, msgs, 200))  # warm up
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        loop.run_until_complete(run_calls(servicer, msgs, args.calls))
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        return 0
    global _evict_seconds
    rounds = []
    for _ in range(5):
        _evict_seconds = 0.0
        t0 = time.process_time()
        loop.run_until_complete(run_calls(servicer, msgs, args.calls, args.cold))
        rounds.append((time.process_time() - t0 - _evict_seconds) / args.calls * 1e6)
    kind = "SSE" if args.sse else "JSON"
    cold = " (caches evicted before each message)" if args.cold else ""
    best, med = min(rounds), statistics.median(rounds)
    print(
        f"{kind} call, {len(msgs)} messages: {best:.1f} µs CPU per call ({best / len(msgs):.1f} µs per "
        f"message){cold}, best of 5 x {args.calls}; median {med:.1f} µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
