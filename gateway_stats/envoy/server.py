"""Process wiring for `gateway-stats serve`: gRPC server, health, side HTTP, config reload, drain."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from gateway_stats.config import Config
from gateway_stats.config.store import ConfigStore
from gateway_stats.envoy.addresses import grpc_target, split_host_port
from gateway_stats.envoy.http_side import SideHTTP
from gateway_stats.envoy.listen import ListenSecurity, add_port
from gateway_stats.envoy.memtrace import start_if_asked, watch_rss
from gateway_stats.envoy.runtime import Runtime
from gateway_stats.envoy.servicer import SERVICE_NAME, ExtProcServicer
from gateway_stats.envoy.shedding import Shedder
from gateway_stats.envoy.workers import WorkerSpec

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # BUFFERED bodies can be large; Python's default is 4 MB


@dataclass
class ServeOptions:
    config_path: str | None
    grpc_address: str = "127.0.0.1:18080"
    metrics_address: str = "127.0.0.1:19090"
    drain_seconds: float = 10.0
    ai_log_file: str | None = None
    config_poll_seconds: float = 2.0
    listen: ListenSecurity = field(default_factory=ListenSecurity)
    health_address: str | None = None  # /healthz and /readyz on their own port (no auth)
    metrics_token_file: str | None = None  # bearer token required on /metrics
    max_rss_mib: float = 0.0  # drain and exit (for a restart) past this RSS; 0 = no limit
    worker: WorkerSpec | None = None  # set in a worker of `serve --workers N` (workers.py)


class Sidecar:
    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.runtime: Runtime | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.side: SideHTTP | None = None
        self.health_side: SideHTTP | None = None
        self.health_port: int = 0
        self.health: health_aio.HealthServicer | None = None
        self.grpc_port: int = 0
        self.metrics_port: int = 0
        self._stop = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._snapshots: asyncio.Task[None] | None = None
        self.servicer: ExtProcServicer | None = None
        self._monitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        worker = self.opts.worker
        if worker is not None:  # one of N processes behind the same addresses
            self.opts.grpc_address = worker.grpc_address
            self.opts.metrics_address = worker.metrics_address
        store = ConfigStore(
            self.opts.config_path, on_change=self._on_config, poll_interval=self.opts.config_poll_seconds
        )
        rt = Runtime(store, ai_log_file=self.opts.ai_log_file)
        self.runtime = rt
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_concurrent_streams", 100_000),
                ("grpc.so_reuseport", 1 if worker is not None else 0),
            ]
        )
        shedder = Shedder(lambda: rt.config.extensions.overload)
        rt.self_metrics.per_message.lag = lambda: shedder.lag
        self.servicer = ExtProcServicer(rt, shedder)
        self.servicer.add_to_server(server)
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        self.health = health
        target = grpc_target(self.opts.grpc_address)
        port = add_port(server, target, self.opts.listen)
        if not target.startswith("unix:") and port == 0:
            raise OSError(f"cannot listen on gRPC address {self.opts.grpc_address}")
        self.grpc_port = port
        await server.start()
        self.grpc_server = server
        for svc in ("", SERVICE_NAME):
            await health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        host, mport = split_host_port(self.opts.metrics_address)
        render = rt.render_metrics
        if worker is not None:
            from gateway_stats.envoy.aggregate import WorkerMetrics

            shared = WorkerMetrics(rt, worker)
            render = shared.render
            self._snapshots = asyncio.create_task(shared.run())
        ready = (lambda: rt.ready and worker.all_started()) if worker is not None else (lambda: rt.ready)
        token = None
        if self.opts.metrics_token_file:
            with open(self.opts.metrics_token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        split = self.opts.health_address is not None
        self.side = SideHTTP(
            render, ready, {"/v1/feedback": rt.handle_feedback}, token=token, health=not split
        )
        self.metrics_port = await self.side.start(host, mport, reuse_port=worker is not None)
        if split:
            assert self.opts.health_address is not None
            hhost, hport = split_host_port(self.opts.health_address)
            self.health_side = SideHTTP(render, ready, metrics=False)
            self.health_port = await self.health_side.start(hhost, hport, reuse_port=worker is not None)
        self._watch = asyncio.create_task(store.watch())
        self._monitor = asyncio.create_task(shedder.monitor())
        rt.start()
        rt.ready = True
        if worker is not None:
            worker.mark_ready()
        log.info(
            "gateway-stats serving ext_proc on %s (port %s), metrics on http://%s:%s/metrics, config %s",
            self.opts.grpc_address,
            port,
            host,
            self.metrics_port,
            store.current.source,
        )

    def _on_config(self, cfg: Config) -> None:
        log.info("config reloaded from %s", cfg.source)
        if self.runtime is not None:
            try:
                self.runtime.reconfigure(cfg)
            except Exception:
                log.exception("applying the reloaded config (tracing) failed; spans unchanged")

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        """Drain: stop taking new streams, give in-flight ones `drain_seconds`, then close."""
        rt = self.runtime
        if rt is not None:
            rt.ready = False
        if self.health is not None:
            with contextlib.suppress(Exception):
                await self.health.enter_graceful_shutdown()
        for task in (self._watch, self._snapshots, self._monitor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.grpc_server is not None:
            log.info("draining in-flight streams for up to %.1fs", self.opts.drain_seconds)
            await self.grpc_server.stop(self.opts.drain_seconds)
        if self.servicer is not None:
            self.servicer.flush()  # the calls that ended last, before the sinks close
        if self.side is not None:
            await self.side.stop()
        if self.health_side is not None:
            await self.health_side.stop()
        if rt is not None:
            rt.close()


def _tune_gc() -> None:
    """Per call we allocate many short-lived objects (parsed JSON, dicts) and no long-lived cycles:
    move what start-up created out of the collector's sight and collect the young generation less
    often, so full collections do not rescan grpc's and our long-lived objects under load."""
    if os.environ.get("GATEWAY_STATS_GC_DEFAULT"):
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


async def serve(opts: ServeOptions) -> int:
    if opts.worker is not None:
        opts.worker.die_with_supervisor()
    sidecar = Sidecar(opts)
    await sidecar.start()
    _tune_gc()
    memtrace = start_if_asked()  # GATEWAY_STATS_MEMTRACE: soak diagnostics only
    rss_watch = (
        asyncio.create_task(watch_rss(opts.max_rss_mib, sidecar.request_stop)) if opts.max_rss_mib else None
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sidecar.request_stop)
    await sidecar.wait()
    log.info("signal received: shutting down")
    for task in (memtrace, rss_watch):
        if task is not None:
            task.cancel()
    await sidecar.stop()
    return 0
