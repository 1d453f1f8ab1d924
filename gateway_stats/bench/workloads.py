"""The workloads and how one of them is run and measured against one set-up.

A measurement brackets the load with snapshots: CPU (utime+stime) of Envoy, the processor and the
upstream, Envoy's ext_proc counters, and where the ai_log lines stand; RSS is sampled while the load
runs. Afterwards it waits until the processor's counts stop moving (observability mode lags
behind the traffic) and charges the processor's CPU up to that point, so deferred work is paid for.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway_stats.bench import canned, probes, wrk
from gateway_stats.bench.client import percentiles
from gateway_stats.bench.stacks import BenchStack


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    conns: int
    duration: float
    sse: bool = False
    events: int = 20
    interval_ms: float = 10.0
    rate: float = 0.0  # requests/s over all connections; 0 = closed loop
    once: bool = False  # one long stream per connection
    ramp: float = 0.0
    use_wrk: bool = False
    ids: bool = False  # per-request ids: latency of the calls that were observed (see canned.ID_HEADER)
    knee: bool = False  # fixed rate = the knee set-up's JSON-16 throughput of the same repeat

    @property
    def output_tokens(self) -> int:
        return canned.completion_tokens(self.sse, self.events)

    def describe(self) -> str:
        if self.once:
            return (
                f"{self.conns} concurrent SSE streams (started over {self.ramp:g} s), each {self.events} "
                f"content deltas + finish + usage + [DONE], {self.interval_ms:g} ms apart"
            )
        load = f"{self.conns} connection{'s' if self.conns > 1 else ''}, {self.duration:g} s"
        if self.knee:
            load = (
                f"fixed rate = the inline set-up's JSON-16 throughput of the same repeat (its knee), over "
                f"{self.conns} connections, {self.duration:g} s"
            )
        elif self.rate:
            load = f"fixed {self.rate:,.0f} req/s over {self.conns} connections, {self.duration:g} s"
        what = (
            f"SSE chat, {self.events} content deltas + finish + usage + [DONE], {self.interval_ms:g} ms apart"
            if self.sse
            else "JSON chat"
        )
        tool = "wrk" if self.use_wrk else "bench client"
        return f"{what}; {load}; {tool}"


RATE_STEPS = (500, 1000, 2000)


def workloads(quick: bool, have_wrk: bool, duration: float | None = None) -> list[Workload]:
    d = duration or (1.5 if quick else 6.0)
    long = (
        Workload("sse-long", "", 200, 0, sse=True, events=10, interval_ms=100, once=True, ramp=0.5)
        if quick
        else Workload("sse-long", "", 1000, 0, sse=True, events=30, interval_ms=200, once=True, ramp=2.0)
    )
    return [
        Workload("json-1", "JSON chat, 1 connection", 1, d, use_wrk=have_wrk),
        Workload("json-16", "JSON chat, 16 connections (saturated)", 16, d, use_wrk=have_wrk),
        *(
            Workload(f"json-rate-{r}", f"JSON chat at a fixed {r:,} req/s", 16, d, rate=r, ids=True)
            for r in RATE_STEPS
        ),
        Workload("json-knee", "JSON chat at the inline knee", 16, d, rate=0, ids=True, knee=True),
        Workload("sse-16", "SSE chat, 16 connections", 16, d, sse=True, events=20, interval_ms=10),
        Workload(
            long.name,
            f"{long.conns:,} concurrent long SSE streams",
            long.conns,
            long.duration,
            sse=True,
            events=long.events,
            interval_ms=long.interval_ms,
            once=True,
            ramp=long.ramp,
        ),
    ]


def client_command(wl: Workload, port: int) -> list[str]:
    argv = [sys.executable, "-m", "gateway_stats.bench.client", "--port", str(port)]
    argv += [
        "--mode",
        "sse" if wl.sse else "json",
        "--conns",
        str(wl.conns),
        "--duration",
        f"{wl.duration:g}",
    ]
    argv += ["--events", str(wl.events), "--interval-ms", f"{wl.interval_ms:g}"]
    if wl.rate:
        argv += ["--rate", f"{wl.rate:g}"]
    if wl.once:
        argv += ["--once", "--ramp", f"{wl.ramp:g}"]
    if wl.ids:
        argv.append("--ids")
    return argv


def start_load(stack: BenchStack, wl: Workload, wrk_script: Path | None) -> subprocess.Popen[str]:
    if wl.use_wrk and wrk_script is not None:
        return wrk.start(stack.envoy_port, wl.conns, wl.duration, wrk_script)
    return subprocess.Popen(client_command(wl, stack.envoy_port), stdout=subprocess.PIPE, text=True)


SHED = "gateway_stats_calls_shed_total"


def _observed_latency(per: dict[str, list[int]], logged: set[int]) -> dict[str, Any]:
    """Latency of the calls whose ai_log line exists (observed) and of the others (not observed)."""
    seen: list[int] = []
    unseen: list[int] = []
    for i, us in zip(per["ids"], per["latency_us"], strict=True):
        (seen if i in logged else unseen).append(us * 1000)
    return {
        "observed_latency_ms": percentiles(seen),
        "unobserved_latency_ms": percentiles(unseen),
        "unobserved_calls": len(unseen),
    }


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _observed_now(stack: BenchStack) -> int:
    if stack.is_noop:
        return probes.noop_count(stack.noop_count_file)
    if stack.is_gateway_stats:
        return sum(probes.sidecar_records(stack.metrics_port).values())
    return 0


def _settle(stack: BenchStack, proc: int | None, ai_path: Path | None) -> tuple[float, float, float]:
    """Wait until the processor's count and the ai_log file stop moving for 0.75 s (max 30 s).

    Returns (seconds waited, processor CPU when the counts last moved, peak processor RSS). With
    workers, the processor is the supervisor and its workers (their CPU and RSS summed)."""
    last = (_observed_now(stack), probes.file_size(ai_path))
    cpu = probes.tree_cpu_seconds(proc) if proc else 0.0
    rss = 0.0
    t0 = stable_since = time.monotonic()
    while time.monotonic() - stable_since < 0.75 and time.monotonic() - t0 < 30:
        time.sleep(0.25)
        if proc:
            rss = max(rss, probes.tree_rss_mb(proc))
        now = (_observed_now(stack), probes.file_size(ai_path))
        if now != last:
            last = now
            stable_since = time.monotonic()
            if proc:
                cpu = probes.tree_cpu_seconds(proc)  # deferred work belongs to this load
    return time.monotonic() - t0, cpu, rss


def run(
    stack: BenchStack, wl: Workload, upstream_pid: int, upstream_port: int, wrk_script: Path | None
) -> dict[str, Any]:
    envoy = stack.procs["envoy"].pid
    proc = stack.processor.pid if stack.processor is not None else None
    ai_path = stack.ai_log_path
    _settle(stack, proc, ai_path)  # nothing from the warm-up or the previous load is still arriving
    rec0 = probes.sidecar_records(stack.metrics_port) if stack.is_gateway_stats else {}
    ai_off = probes.file_size(ai_path)
    ext0 = probes.envoy_ext_proc_stats(stack.admin_port)
    obs0 = _observed_now(stack)
    up0 = probes.upstream_counts(upstream_port)
    shed0 = probes.sidecar_counter(stack.metrics_port, SHED) if stack.is_gateway_stats else 0.0
    c_env0, c_up0 = probes.cpu_seconds(envoy), probes.cpu_seconds(upstream_pid)
    c_proc0 = probes.tree_cpu_seconds(proc) if proc else 0.0  # the worker child included
    c_kids0 = _children_cpu()

    popen = start_load(stack, wl, wrk_script)
    rss_proc = rss_envoy = 0.0
    while True:  # communicate() keeps reading the output (per-request latencies can exceed a pipe buffer)
        if proc:
            rss_proc = max(rss_proc, probes.tree_rss_mb(proc))
        rss_envoy = max(rss_envoy, probes.rss_mb(envoy))
        try:
            out, _ = popen.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            continue
    c_env1, c_up1 = probes.cpu_seconds(envoy), probes.cpu_seconds(upstream_pid)
    c_proc1 = probes.tree_cpu_seconds(proc) if proc else 0.0
    c_kids1 = _children_cpu()
    if popen.returncode != 0:
        raise RuntimeError(f"load generator failed ({popen.returncode}): {out[-2000:]}")
    res = wrk.parse(out) if wl.use_wrk and wrk_script is not None else dict(orjson.loads(out))

    settle_s, c_proc_settled, rss_late = _settle(stack, proc, ai_path)
    if proc:
        c_proc1 = max(c_proc1, c_proc_settled)
        rss_proc = max(rss_proc, rss_late)

    n = res["requests"] or 1
    ext1 = probes.envoy_ext_proc_stats(stack.admin_port)
    ext = {k: ext1.get(k, 0) - ext0.get(k, 0) for k in ext1}
    up1 = probes.upstream_counts(upstream_port)
    rec1 = probes.sidecar_records(stack.metrics_port) if stack.is_gateway_stats else {}
    r: dict[str, Any] = {
        **res,
        "envoy_cpu_us": (c_env1 - c_env0) / n * 1e6,
        "proc_cpu_us": (c_proc1 - c_proc0) / n * 1e6 if proc else None,
        "upstream_cpu_us": (c_up1 - c_up0) / n * 1e6,
        "client_cpu_us": (c_kids1 - c_kids0) / n * 1e6,
        "proc_rss_mb": rss_proc if proc else None,
        "envoy_rss_mb": rss_envoy,
        "envoy_ext_proc": ext,
        "upstream_served": {k: up1.get(k, 0) - up0.get(k, 0) for k in up1},
        "settle_s": round(settle_s, 2),
        "processor_count": _observed_now(stack) - obs0 if proc else None,
        "sidecar_records": {k: rec1.get(k, 0) - rec0.get(k, 0) for k in rec1},
    }
    per = r.pop("per_request", None)
    if stack.is_gateway_stats:
        r["shed"] = probes.sidecar_counter(stack.metrics_port, SHED) - shed0
    if stack.is_gateway_stats and ai_path is not None:
        good, lines = probes.count_exact_ai_logs(ai_path, ai_off, canned.PROMPT_TOKENS, wl.output_tokens)
        r["observed"] = good
        r["ai_log_lines"] = lines
        if per is not None:
            r.update(_observed_latency(per, probes.logged_chat_ids(ai_path, ai_off)))
    elif stack.noop_sees_calls:
        r["observed"] = r["processor_count"]
    else:
        r["observed"] = None
    r["observed_pct"] = None if r["observed"] is None else 100.0 * r["observed"] / n
    return r
