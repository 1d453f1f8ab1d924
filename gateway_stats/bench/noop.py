"""The floor: the naive no-op ext_proc processor anyone would write first in grpc.aio.

It answers CONTINUE to every message and looks at nothing; Envoy runs it with headers SENT, the
request body BUFFERED and the response body STREAMED (the issue's reference). Whatever gateway-stats
costs beyond this is the price of its analysis. It counts the streams that reached the response's
end of stream and writes the number to --count-file ten times a second, so the bench can say how many
calls it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import grpc

from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

# Built here, not imported from gateway_stats.envoy.servicer: the floor loads nothing of gateway-stats.
_CONTINUE = {
    "request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
    "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
    "request_body": pb.ProcessingResponse(request_body=pb.BodyResponse()),
    "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse()),
    "request_trailers": pb.ProcessingResponse(request_trailers=pb.TrailersResponse()),
    "response_trailers": pb.ProcessingResponse(response_trailers=pb.TrailersResponse()),
}


class NoopProcessor(pb_grpc.ExternalProcessorServicer):
    def __init__(self) -> None:
        self.completed = 0

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        async for req in request_iterator:
            phase = req.WhichOneof("request")
            if phase is None:
                continue
            if (phase == "response_body" and req.response_body.end_of_stream) or (
                phase == "response_headers" and req.response_headers.end_of_stream
            ):
                self.completed += 1
            if not req.observability_mode:
                yield _CONTINUE[phase]


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


async def serve(address: str, count_file: str | None) -> None:
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000), ("grpc.so_reuseport", 0)])
    proc = NoopProcessor()
    pb_grpc.add_ExternalProcessorServicer_to_server(proc, server)
    if server.add_insecure_port(address) == 0:
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
    a = p.parse_args(argv)
    asyncio.run(serve(a.listen, a.count_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
