"""`make soak`: steady mixed load through the real Envoy for a configurable time, sampling the processor.

    python -m gateway_stats.bench.soak --minutes 30 --out soak/            # gateway-stats (the default)
    python -m gateway_stats.bench.soak --minutes 10 --processor noop       # the naive no-op floor
    python -m gateway_stats.bench.soak --env MALLOC_ARENA_MAX=2 ...        # environment for the processor

The load is a fixed rate (no coordinated omission, no saturation: a soak looks for drift, not limits)
of a repeating mix: JSON chat (40 %), SSE streams (30 %), upstream errors 500/429 (10 %), upstream
aborts mid-stream (10 %) and clients that hang up mid-stream (10 %), over 20 model names (so metric
series exist but stay bounded). Once a second it samples the processor's RSS, open fds and threads
(/proc), the metric series it holds and its open streams (/metrics), and Envoy's requests active and
pending on the gateway_stats cluster (the queue in front of the processor).

Writes to --out: samples.csv, soak.png (matplotlib, `pip install -e '.[soak]'`; skipped with a note
without it) and verdict.md: per curve, the least-squares slope after warm-up (per hour and per 10,000
calls) and whether it is flat (the drift it predicts over the measured window is under the curve's
tolerance). Exit status 0 when every curve is flat and no client call failed unexpectedly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_stats.testing import procs
from gateway_stats.testing.procs import Stack

MODELS = [f"soak-model-{i}" for i in range(20)]
# kind, weight: 10 slots per cycle
MIX = ["json"] * 4 + ["sse"] * 3 + ["error", "upstream_abort", "client_abort"]

# Curves sampled, and the absolute drift over the window under which a curve counts as flat anyway
# (besides a drift under 2 % of its mean level).
CURVES = {
    "rss_mib": 1.0,
    "fds": 2.0,
    "threads": 1.0,
    "series": 1.0,
    "active_streams": 5.0,
    "envoy_rq_active": 5.0,
    "envoy_rq_pending": 1.0,
}


@dataclass
class Counters:
    sent: int = 0
    ok: int = 0
    expected_failures: int = 0  # upstream errors and aborts, client aborts: as the mix asks
    unexpected: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _request(kind: str, n: int) -> tuple[bytes, bool]:
    """The raw HTTP/1.1 request for call number `n` of `kind`, and whether it streams."""
    stream = kind in ("sse", "upstream_abort", "client_abort")
    body: dict[str, Any] = {
        "model": MODELS[n % len(MODELS)],
        "messages": [{"role": "user", "content": f"soak call {n}"}],
    }
    headers = {"x-mock-events": "8"}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        headers["x-mock-interval-ms"] = "2"
    if kind == "error":
        headers["x-mock-status"] = "500" if n % 2 else "429"
    elif kind == "upstream_abort":
        headers["x-mock-abort-after"] = "3"
        headers["x-mock-abort-rst"] = "1" if n % 2 else "0"
    elif kind == "client_abort":
        headers["x-mock-events"] = "40"
        headers["x-mock-interval-ms"] = "20"
    raw = json.dumps(body).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\ncontent-type: application/json\r\n"
        f"content-length: {len(raw)}\r\nconnection: close\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    return head.encode() + raw, stream


async def _call(port: int, kind: str, n: int, c: Counters) -> None:
    req, _ = _request(kind, n)
    c.sent += 1
    c.by_kind[kind] = c.by_kind.get(kind, 0) + 1
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        writer.write(req)
        if kind == "client_abort":
            await asyncio.wait_for(reader.readuntil(b"data: "), 10)
            writer.transport.abort()  # gone mid-stream
            c.expected_failures += 1
            return
        data = await asyncio.wait_for(reader.read(), 30)
        status = data[9:12]
        if kind == "error":
            good = status in (b"500", b"429")
        elif kind == "upstream_abort":
            # A truncated stream as the upstream sent it; or 502 when the reset came while Envoy still
            # held the response headers for our answer (docs/reliability.md, "upstream resets").
            good = status in (b"200", b"502")
            if status == b"502":
                c.by_kind["upstream_abort_502"] = c.by_kind.get("upstream_abort_502", 0) + 1
        else:
            good = status == b"200" and (b"[DONE]" in data if kind == "sse" else b'"usage"' in data)
        if not good:
            c.unexpected += 1
            print(f"soak: {kind} call answered {data[:40]!r}", file=sys.stderr)
        elif kind in ("error", "upstream_abort"):
            c.expected_failures += 1
        else:
            c.ok += 1
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        if kind == "upstream_abort":
            c.expected_failures += 1
        else:
            c.unexpected += 1
            print(f"soak: {kind} call failed: {exc!r}", file=sys.stderr)
    except TimeoutError:
        c.unexpected += 1
        print(f"soak: {kind} call timed out", file=sys.stderr)
    finally:
        if writer is not None:
            writer.close()


async def _load(port: int, rate: float, until: float, c: Counters, mix: list[str]) -> None:
    interval = 1.0 / rate
    start = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    while True:
        at = start + n * interval
        if at >= until:
            break
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) < 500:  # a stuck stack must not grow the load without bound
            t = asyncio.create_task(_call(port, mix[n % len(mix)], n, c))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)


# ----------------------------------------------------------------------------------------- sampling
def _proc_status(pid: int) -> tuple[float, int, int]:
    rss = threads = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss / 1024.0, threads, len(os.listdir(f"/proc/{pid}/fd"))


def _scrape(url: str) -> dict[str, float]:
    out = {"series": 0.0, "active_streams": 0.0}
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("gateway_stats_metric_series{"):
            out["series"] += float(line.rpartition(" ")[2])
        elif line.startswith("gateway_stats_active_streams "):
            out["active_streams"] = float(line.rpartition(" ")[2])
    return out


async def _sample(
    stack: Stack, pid: int, noop: bool, until: float, c: Counters, rows: list[dict[str, float]]
) -> None:
    t0 = time.monotonic()
    while time.monotonic() < until:
        rss, threads, fds = _proc_status(pid)
        row: dict[str, float] = {
            "t": time.monotonic() - t0,
            "calls": c.sent,
            "rss_mib": rss,
            "threads": threads,
        }
        row["fds"] = fds
        if noop:
            row.update(series=0.0, active_streams=0.0)
        else:
            row.update(await asyncio.to_thread(_scrape, stack.metrics_url))
        row["envoy_rq_active"] = await asyncio.to_thread(
            stack.envoy_stat, "cluster.gateway_stats.upstream_rq_active"
        )
        row["envoy_rq_pending"] = await asyncio.to_thread(
            stack.envoy_stat, "cluster.gateway_stats.upstream_rq_pending_active"
        )
        rows.append(row)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - row["t"])))


# ----------------------------------------------------------------------------------------- analysis
def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def verdict(rows: list[dict[str, float]], warmup_s: float) -> tuple[bool, list[dict[str, Any]]]:
    post = [r for r in rows if r["t"] >= warmup_s]
    out = []
    flat_all = True
    if len(post) < 10:
        return False, [{"curve": "-", "note": "too few samples after warm-up"}]
    window = post[-1]["t"] - post[0]["t"]
    calls = post[-1]["calls"] - post[0]["calls"]
    ts = [r["t"] for r in post]
    for curve, tol in CURVES.items():
        ys = [r[curve] for r in post]
        s = slope(ts, ys)  # per second
        mean = sum(ys) / len(ys)
        drift = s * window
        flat = abs(drift) <= max(tol, 0.02 * abs(mean))
        flat_all = flat_all and flat
        per_10k = s * window / calls * 10_000 if calls else 0.0
        out.append(
            {
                "curve": curve,
                "first": ys[0],
                "last": ys[-1],
                "mean": mean,
                "slope_per_hour": s * 3600,
                "slope_per_10k_calls": per_10k,
                "drift_over_window": drift,
                "flat": flat,
            }
        )
    return flat_all, out


def write_outputs(out: Path, rows: list[dict[str, float]], meta: dict[str, Any], warmup_s: float) -> bool:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "samples.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    flat, table = verdict(rows, warmup_s)
    chart = _chart(out / "soak.png", rows, warmup_s, meta)
    ok = flat and meta["unexpected_failures"] == 0
    lines = [
        f"# Soak: {meta['processor']}, {meta['minutes']:g} min at {meta['rate']:g} calls/s",
        "",
        f"- command: `{meta['command']}`",
        f"- calls: {meta['calls']} ({meta['by_kind']}); ok {meta['ok']}, expected failures (errors and "
        f"aborts in the mix) {meta['expected_failures']}, "
        f"**unexpected failures {meta['unexpected_failures']}**",
        f"- processor environment: {meta['env'] or '(default)'}; mix: {meta['mix']}",
        f"- warm-up excluded from the slopes: first {warmup_s:.0f} s; chart: {chart}",
        "",
        "| curve | first | last | mean | slope / hour | slope / 10k calls | drift over window | flat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        if "note" in r:
            lines.append(f"| {r['curve']} | {r['note']} | | | | | | no |")
            continue
        mark = "yes" if r["flat"] else "NO"
        lines.append(
            f"| {r['curve']} | {r['first']:.1f} | {r['last']:.1f} | {r['mean']:.1f} "
            f"| {r['slope_per_hour']:+.2f} | {r['slope_per_10k_calls']:+.3f} "
            f"| {r['drift_over_window']:+.2f} | {mark} |"
        )
    lines += ["", f"**Verdict: {'every curve flat after warm-up' if ok else 'NOT flat (see above)'}.**", ""]
    (out / "verdict.md").write_text("\n".join(lines))
    (out / "verdict.json").write_text(json.dumps({"ok": ok, "meta": meta, "curves": table}, indent=1))
    print("\n".join(lines))
    return ok


def _chart(path: Path, rows: list[dict[str, float]], warmup_s: float, meta: dict[str, Any]) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "not drawn (pip install -e '.[soak]' for matplotlib)"
    t = [r["t"] / 60 for r in rows]
    panels = [
        ("RSS MiB", ["rss_mib"]),
        ("open fds / threads", ["fds", "threads"]),
        ("metric series", ["series"]),
        (
            "queues: open streams, Envoy active / pending",
            ["active_streams", "envoy_rq_active", "envoy_rq_pending"],
        ),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 11), sharex=True)
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for k in keys:
            ax.plot(t, [r[k] for r in rows], label=k, linewidth=1)
        ax.axvline(warmup_s / 60, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(
        f"soak: {meta['processor']}, {meta['rate']:g} calls/s, {meta['calls']} calls (warm-up dotted)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path.name)


# ------------------------------------------------------------------------------------------- driver
async def _run(a: argparse.Namespace, stack: Stack, pid: int) -> tuple[Counters, list[dict[str, float]]]:
    c = Counters()
    rows: list[dict[str, float]] = []
    until = time.monotonic() + a.minutes * 60
    sampler = asyncio.create_task(_sample(stack, pid, a.processor == "noop", until, c, rows))
    mix = [k for k in MIX if k in a.mix.split(",")] if a.mix else MIX
    await _load(stack.envoy_port, a.rate, until, c, mix)
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    return c, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=100.0, help="calls per second")
    p.add_argument("--processor", choices=["gateway-stats", "noop"], default="gateway-stats")
    p.add_argument("--config", default="config/gateway-stats.yaml", help="gateway-stats config ('' for none)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="processor environment")
    p.add_argument("--warmup", type=float, default=None, help="seconds excluded from slopes (default 20 %%)")
    p.add_argument("--out", default="soak")
    p.add_argument("--mix", default="", help="only these kinds of the mix, comma-separated (json,sse,...)")
    a = p.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in a.env)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    noop = a.processor == "noop"
    config = str(Path(a.config).resolve()) if a.config and not noop and Path(a.config).exists() else None
    stack = Stack(workdir, config_path=config, with_sidecar=not noop, sidecar_env=env)
    noop_proc = None
    try:
        if noop:
            stack.grpc_port = procs.free_port()
            noop_proc = procs._spawn(
                "noop",
                [
                    sys.executable,
                    "-m",
                    "gateway_stats.bench.noop",
                    "--listen",
                    f"127.0.0.1:{stack.grpc_port}",
                ],
                workdir,
                env,
            )
            procs.wait_port(stack.grpc_port, proc=noop_proc.popen)
        stack.start()
        pid = noop_proc.pid if noop_proc is not None else stack.procs["gateway-stats"].pid
        c, rows = asyncio.run(_run(a, stack, pid))
    finally:
        stack.stop()
        if noop_proc is not None:
            noop_proc.stop(signal.SIGTERM)
    meta = {
        "processor": a.processor,
        "minutes": a.minutes,
        "rate": a.rate,
        "calls": c.sent,
        "by_kind": c.by_kind,
        "ok": c.ok,
        "expected_failures": c.expected_failures,
        "unexpected_failures": c.unexpected,
        "env": " ".join(a.env),
        "mix": a.mix or "all",
        "command": " ".join(
            ["python -m gateway_stats.bench.soak", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    warmup = a.warmup if a.warmup is not None else 0.2 * a.minutes * 60
    return 0 if write_outputs(Path(a.out), rows, meta, warmup) else 1


if __name__ == "__main__":
    raise SystemExit(main())
