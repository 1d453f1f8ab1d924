"""Minimal grpcio reproducer for the RSS growth of a grpc.aio bidi-streaming server (docs/reliability.md).

Self-contained on purpose (grpcio only: no protobuf, no Envoy, no gateway-stats), so it can go into an
upstream report as is. The server is the shape of any ext_proc processor: one bidi stream per call, a
few small messages each way. The client opens STREAMS streams (CONCURRENCY at a time), each sending
MESSAGES messages and reading as many answers. The server prints one JSON line every --every streams:
its RSS, the Python heap tracemalloc sees (with --tracemalloc), and what glibc's malloc_trim(0) gives
back at the end.

    python -m gateway_stats.bench.rss_repro --streams 200000
    MALLOC_ARENA_MAX=2 python -m gateway_stats.bench.rss_repro --streams 200000
    python -m gateway_stats.bench.rss_repro --streams 200000 --trim-every 20000
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

METHOD = "/repro.Processor/Process"
ANSWER = b"\x0a\x00"  # a tiny serialized answer, like an ext_proc CONTINUE


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def malloc_trim() -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except OSError:
        return False


async def serve(port_file: str, every: int, total: int, trace: bool, trim_every: int) -> None:
    if trace:
        tracemalloc.start()
    done = 0
    finished = asyncio.Event()

    def report(event: str) -> None:
        line = {"event": event, "streams": done, "rss_kib": rss_kib(), "grpc": grpc.__version__}
        if trace:
            line["py_traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
        print(json.dumps(line), flush=True)

    async def process(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        nonlocal done
        try:
            async for _ in requests:
                yield ANSWER
        finally:  # every stream that ends, cancelled or not
            done += 1
            if done % every == 0:
                report("sample")
                if trim_every and done % trim_every == 0:
                    malloc_trim()
            if done >= total:
                finished.set()

    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000)])
    handler = grpc.method_handlers_generic_handler(
        "repro.Processor", {"Process": grpc.stream_stream_rpc_method_handler(process)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, finished.set)  # the client is done
    report("start")
    with open(port_file, "w") as fh:
        fh.write(str(port))
    await finished.wait()
    await asyncio.sleep(0.5)
    report("end")
    import gc

    gc.collect()
    report("after_gc")
    malloc_trim()
    report("after_malloc_trim")
    await server.stop(1)


async def client(
    port: int,
    total: int,
    concurrency: int,
    messages: int,
    cancel_every: int,
    timeout: float | None,
    after_last: bool = False,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.stream_stream(METHOD)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:

                async def reqs() -> AsyncIterator[bytes]:
                    for k in range(messages):
                        yield b"\x0a\x04" + (i * messages + k).to_bytes(4, "little")

                c = call(reqs(), timeout=timeout)  # Envoy sends grpc-timeout (grpc_service.timeout)
                if cancel_every and i % cancel_every == 0:
                    if after_last:
                        # What Envoy's ext_proc filter does at the end of every call: all messages
                        # sent and answered, then RST_STREAM (Envoy's upstream_rq_tx_reset).
                        n = 0
                        async for _ in c:
                            n += 1
                            if n == messages:
                                c.cancel()
                                break
                        return
                    # Like Envoy when a client or upstream goes away: RST_STREAM mid-call.
                    async for _ in c:
                        c.cancel()
                        break
                    return
                async for _ in c:
                    pass

        batch = 2000
        for start in range(0, total, batch):
            await asyncio.gather(*(one(i) for i in range(start, min(total, start + batch))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="grpc.aio bidi server RSS reproducer")
    p.add_argument("--streams", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--messages", type=int, default=4)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--trim-every", type=int, default=0, help="call malloc_trim(0) every N streams")
    p.add_argument("--cancel-every", type=int, default=0, help="the client cancels every Nth stream mid-call")
    p.add_argument("--after-last", action="store_true", help="cancel only once every answer has arrived")
    p.add_argument("--timeout", type=float, default=0.0, help="per-call deadline (grpc-timeout), 0 = none")
    p.add_argument("--role", choices=["run", "server", "client"], default="run")
    p.add_argument("--port-file", default="")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    if a.role == "server":
        asyncio.run(serve(a.port_file, a.every, a.streams, a.tracemalloc, a.trim_every))
        return 0
    if a.role == "client":
        timeout = a.timeout or None
        asyncio.run(
            client(a.port, a.streams, a.concurrency, a.messages, a.cancel_every, timeout, a.after_last)
        )
        return 0
    import tempfile

    port_file = os.path.join(tempfile.mkdtemp(), "port")
    base = [sys.executable, "-m", "gateway_stats.bench.rss_repro", "--streams", str(a.streams)]
    srv_args = [*base, "--role", "server", "--port-file", port_file, "--every", str(a.every)]
    if a.tracemalloc:
        srv_args.append("--tracemalloc")
    if a.trim_every:
        srv_args += ["--trim-every", str(a.trim_every)]
    srv = subprocess.Popen(srv_args)
    deadline = time.monotonic() + 20
    pf = Path(port_file)
    while not pf.exists() or not pf.read_text():
        if time.monotonic() > deadline or srv.poll() is not None:
            srv.kill()
            raise SystemExit("server did not start")
        time.sleep(0.05)
    port = int(pf.read_text())
    cli = [*base, "--role", "client", "--port", str(port), "--concurrency", str(a.concurrency)]
    cli += ["--messages", str(a.messages), "--cancel-every", str(a.cancel_every), "--timeout", str(a.timeout)]
    if a.after_last:
        cli.append("--after-last")
    subprocess.run(cli, check=True)
    time.sleep(1.0)
    srv.send_signal(signal.SIGUSR1)
    return srv.wait(60)


if __name__ == "__main__":
    raise SystemExit(main())
