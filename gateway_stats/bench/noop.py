"""The floor: the naive no-op ext_proc processor anyone would write first in grpc.aio.

It answers CONTINUE to every message and looks at nothing; Envoy runs it with headers SENT, the
request body BUFFERED and the response body STREAMED (the issue's reference). Whatever gateway-stats
costs beyond this is the price of its analysis. It counts the streams that reached the response's
end of stream and writes the number to --count-file ten times a second, so the bench can say how many
calls it saw. `--loop uvloop` and `--threads` (grpcio's threaded server, a thread per open stream)
are for the transport comparison (`python -m gateway_stats.bench --transports`); the floor of
`make bench` is the plain grpc.aio one on the stock asyncio loop.

`--stop-after-headers` (the bench's `noop-stop` set-up) answers the request headers with a mode
override that turns every other phase off and ends the stream: one message per call, the least a
call can cost the side stream. It splits the no-op's cost into its per-stream and per-message parts,
and it is the floor of a call gateway-stats sheds (envoy/shedding.py), which answers the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc

from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from gateway_stats.envoy.answers import ALL_OFF

# Built here, not taken from gateway_stats.envoy.servicer: the floor runs none of gateway-stats' code.
_CONTINUE = {
    "request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
    "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
    "request_body": pb.ProcessingResponse(request_body=pb.BodyResponse()),
    "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse()),
    "request_trailers": pb.ProcessingResponse(request_trailers=pb.TrailersResponse()),
    "response_trailers": pb.ProcessingResponse(response_trailers=pb.TrailersResponse()),
}
# --stop-after-headers answers with the very mode override a shed call gets (a protobuf constant).
_STOP = pb.ProcessingResponse(request_headers=pb.HeadersResponse(), mode_override=ALL_OFF)


class NoopProcessor(pb_grpc.ExternalProcessorServicer):
    def __init__(self, stop_after_headers: bool = False) -> None:
        self.completed = 0
        self.stop_after_headers = stop_after_headers

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        async for req in request_iterator:
            phase = req.WhichOneof("request")
            if phase is None:
                continue
            if self.stop_after_headers and phase == "request_headers":
                self.completed += 1  # streams ended here (the bench waits on this count to settle)
                if not req.observability_mode:
                    yield _STOP
                return
            if (phase == "response_body" and req.response_body.end_of_stream) or (
                phase == "response_headers" and req.response_headers.end_of_stream
            ):
                self.completed += 1
            if not req.observability_mode:
                yield _CONTINUE[phase]


class ThreadedNoop(pb_grpc.ExternalProcessorServicer):
    """The same no-op for grpcio's threaded server: a blocking generator per stream."""

    def __init__(self) -> None:
        self.completed = 0
        self._lock = threading.Lock()

    def Process(self, request_iterator: Iterator[pb.ProcessingRequest], context: Any) -> Iterator[Any]:
        for req in request_iterator:
            phase = req.WhichOneof("request")
            if phase is None:
                continue
            if (phase == "response_body" and req.response_body.end_of_stream) or (
                phase == "response_headers" and req.response_headers.end_of_stream
            ):
                with self._lock:
                    self.completed += 1
            if not req.observability_mode:
                yield _CONTINUE[phase]


def serve_threads(address: str, count_file: str | None, threads: int) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads),
        options=[("grpc.max_concurrent_streams", 100_000), ("grpc.so_reuseport", 0)],
    )
    proc = ThreadedNoop()
    pb_grpc.add_ExternalProcessorServicer_to_server(proc, server)
    if server.add_insecure_port(address) == 0 and not address.startswith("unix:"):
        raise OSError(f"cannot listen on {address}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"noop ext_proc processor (threaded, {threads} threads) on {address}", flush=True)
    last = -1
    while not stop.wait(0.1):
        if count_file and proc.completed != last:
            last = proc.completed
            with open(count_file + ".tmp", "w") as fh:
                fh.write(str(last))
            os.replace(count_file + ".tmp", count_file)
    server.stop(1)


async def _write_count(proc: NoopProcessor, path: str) -> None:
    last = -1
    while True:
        if proc.completed != last:
            last = proc.completed
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(str(last))
            os.replace(tmp, path)
        await asyncio.sleep(0.1)


async def serve(address: str, count_file: str | None, stop_after_headers: bool = False) -> None:
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000), ("grpc.so_reuseport", 0)])
    proc = NoopProcessor(stop_after_headers)
    pb_grpc.add_ExternalProcessorServicer_to_server(proc, server)
    if server.add_insecure_port(address) == 0 and not address.startswith("unix:"):
        raise OSError(f"cannot listen on {address}")
    await server.start()
    writer = asyncio.create_task(_write_count(proc, count_file)) if count_file else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"noop ext_proc processor on {address}", flush=True)
    await stop.wait()
    if writer is not None:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    await server.stop(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="naive no-op ext_proc processor (the bench floor)")
    p.add_argument("--listen", default="127.0.0.1:18080")
    p.add_argument("--count-file", help="where to write the number of completed streams")
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    p.add_argument("--threads", type=int, default=0, help="grpcio's threaded server with this many threads")
    p.add_argument(
        "--stop-after-headers",
        action="store_true",
        help="turn each call's other phases off at its request headers and end the stream (grpc.aio)",
    )
    a = p.parse_args(argv)
    if a.threads and a.stop_after_headers:
        p.error("--stop-after-headers runs on grpc.aio only")
    if a.threads:
        serve_threads(a.listen, a.count_file, a.threads)
        return 0
    if a.loop == "uvloop":
        import uvloop

        uvloop.run(serve(a.listen, a.count_file, a.stop_after_headers))
    else:
        asyncio.run(serve(a.listen, a.count_file, a.stop_after_headers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
