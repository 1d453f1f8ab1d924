"""`python -m gateway_stats.bench --transports`: the gRPC transports we can run here, in one run.

Each variant is the same Envoy (inline, one worker) under the same JSON load (16 connections, wrk),
with the side stream served by: the naive no-op on grpc.aio with the stock asyncio loop (the bench's
floor), on grpc.aio with uvloop, on grpcio's threaded server (a thread per open stream); and
gateway-stats itself on grpc.aio with uvloop (what `serve` runs) and with the stock loop
(`serve --no-uvloop`); each over TCP loopback and over a Unix socket. Cells are medians over the
repeats; the ratios are per repeat against the floor (no-op, asyncio, TCP) of the same repeat.

gateway-stats has no threaded variant: its servicer is a coroutine, and the no-op rows show what the
threaded server costs per call before any analysis is added.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway_stats.bench.stacks import BenchStack
from gateway_stats.bench.workloads import Workload, run


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    setup: str  # stacks.SetUp name
    args: tuple[str, ...] = ()


VARIANTS = (
    Variant("noop-aio-tcp", "no-op, grpc.aio + asyncio loop, TCP (the floor)", "noop"),
    Variant("noop-uvloop-tcp", "no-op, grpc.aio + uvloop, TCP", "noop", ("--loop", "uvloop")),
    Variant(
        "noop-threads-tcp", "no-op, grpcio threaded server (64 threads), TCP", "noop", ("--threads", "64")
    ),
    Variant("noop-aio-unix", "no-op, grpc.aio + asyncio loop, Unix socket", "noop-unix"),
    Variant("noop-uvloop-unix", "no-op, grpc.aio + uvloop, Unix socket", "noop-unix", ("--loop", "uvloop")),
    Variant(
        "noop-threads-unix",
        "no-op, grpcio threaded server (64 threads), Unix socket",
        "noop-unix",
        ("--threads", "64"),
    ),
    Variant("gs-uvloop-tcp", "gateway-stats, grpc.aio + uvloop, TCP (`serve`)", "inline"),
    Variant(
        "gs-aio-tcp",
        "gateway-stats, grpc.aio + asyncio loop, TCP (`serve --no-uvloop`)",
        "inline",
        ("--no-uvloop",),
    ),
    Variant("gs-uvloop-unix", "gateway-stats, grpc.aio + uvloop, Unix socket", "inline-unix"),
    Variant(
        "gs-aio-unix", "gateway-stats, grpc.aio + asyncio loop, Unix socket", "inline-unix", ("--no-uvloop",)
    ),
)
FLOOR = "noop-aio-tcp"


def run_transports(
    outdir: Path,
    up_port: int,
    upstream_pid: int,
    sidecar_config: Path,
    wrk_script: Path | None,
    repeats: int,
    duration: float,
    say: Any,
) -> list[dict[str, Any]]:
    wl = Workload("json-16", "JSON chat, 16 connections", 16, duration, use_wrk=wrk_script is not None)
    rows: list[dict[str, Any]] = []
    for rep in range(repeats):
        for v in VARIANTS:
            stack = BenchStack(v.setup, outdir / f"t{rep}-{v.name}", up_port, sidecar_config)
            stack.processor_args = list(v.args)
            try:
                stack.start()
                from gateway_stats.bench.driver import _warm

                _warm(stack, wrk_script)
                r = run(stack, wl, upstream_pid, up_port, wrk_script)
            finally:
                stack.stop()
                stack.cleanup_logs()
            r.update(variant=v.name, rep=rep)
            rows.append(r)
            say(
                f"[{rep + 1}/{repeats}] {v.name:<18} {r['rps']:,.0f} req/s, "
                f"sidecar {r['proc_cpu_us']:.0f} µs/call, p50 {r['latency_ms'].get('p50', 0):.2f} ms"
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    def med(name: str, key: str) -> float | None:
        vals = [r[key] for r in rows if r["variant"] == name and r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def vs_floor(name: str, key: str) -> float | None:
        vals = []
        for r in rows:
            if r["variant"] != name:
                continue
            f = next((x for x in rows if x["variant"] == FLOOR and x["rep"] == r["rep"]), None)
            if f and f.get(key) and r.get(key) is not None:
                vals.append(r[key] / f[key])
        return statistics.median(vals) if vals else None

    lines = [
        "| transport | req/s (x floor) | p50 ms | sidecar CPU µs/call (x floor) | Envoy CPU µs/call |",
        "|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        rps, cpu = med(v.name, "rps"), med(v.name, "proc_cpu_us")
        if rps is None:
            continue
        p50 = statistics.median(r["latency_ms"]["p50"] for r in rows if r["variant"] == v.name)
        qr, qc = vs_floor(v.name, "rps"), vs_floor(v.name, "proc_cpu_us")
        lines.append(
            f"| {v.label} | {rps:,.0f} (x{qr or 0:.2f}) | {p50:.2f} | {cpu or 0:,.0f} (x{qc or 0:.2f}) "
            f"| {med(v.name, 'envoy_cpu_us') or 0:,.0f} |"
        )
    return "\n".join(lines)
