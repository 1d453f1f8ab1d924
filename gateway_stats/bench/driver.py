"""`make bench` / `python -m gateway_stats.bench`: every set-up, every workload, repeats, one report.

Order: for each repeat, for each set-up (plain Envoy first), start it, warm it up, run every
workload, stop it. The upstream lives for the whole run. Raw rows go to results.json, the tables to
results.md (and, with --write-doc, between the markers of docs/benchmarks.md). BENCH_QUICK=1 (or
--quick) is a smoke run of about two minutes: short loads, one repeat, numbers not to be quoted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import orjson

from gateway_stats.bench import probes, report, wrk
from gateway_stats.bench import profile as prof
from gateway_stats.bench.stacks import (
    BASES,
    DEFAULT_CONFIGS,
    DEFAULT_SIDECAR_CONFIG,
    REPO,
    BenchStack,
    SetUp,
    spawn,
)
from gateway_stats.bench.workloads import Workload, run, start_load, workloads
from gateway_stats.testing.procs import Proc, envoy_binary, free_port, wait_http

BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
PBEGIN, PEND = "<!-- bench-profile:begin -->", "<!-- bench-profile:end -->"
TBEGIN, TEND = "<!-- bench-transports:begin -->", "<!-- bench-transports:end -->"


def say(msg: str) -> None:
    print(msg, flush=True)


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ev = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=20).stdout
        envoy = ev.strip().split("version:", 1)[-1].strip().split("/")[1] if "version:" in ev else ev.strip()
    except (OSError, RuntimeError, IndexError, subprocess.TimeoutExpired):
        envoy = "?"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "?"
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "envoy": envoy,
        "commit": commit or "?",
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def start_upstream(workdir: Path) -> tuple[Proc, int]:
    port = free_port()
    p = spawn(
        "upstream",
        [sys.executable, "-m", "gateway_stats.bench.upstream", "--listen", f"127.0.0.1:{port}"],
        workdir,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=p.popen)
    return p, port


def _warm(stack: BenchStack, wrk_script: Path | None) -> None:
    """One second of light load: connections open, caches and code paths warm."""
    if wrk_script is not None:
        p = wrk.start(stack.envoy_port, 4, 1, wrk_script)
        p.communicate(timeout=30)
    else:
        cmd = [sys.executable, "-m", "gateway_stats.bench.client", "--port", str(stack.envoy_port)]
        subprocess.run([*cmd, "--conns", "4", "--duration", "1"], capture_output=True, timeout=30)
    sse = [sys.executable, "-m", "gateway_stats.bench.client", "--port", str(stack.envoy_port)]
    subprocess.run(
        [*sse, "--mode", "sse", "--conns", "2", "--duration", "0.3"], capture_output=True, timeout=30
    )


def _fmt_result(wl: Workload, r: dict[str, Any]) -> str:
    lat = r.get("latency_ms", {})
    s = f"{r['rps']:,.0f}/s p50 {lat.get('p50', 0):.2f} ms p99 {lat.get('p99', 0):.2f} ms"
    if wl.sse:
        s += f" ttfb {r.get('ttfb_ms', {}).get('p50', 0):.2f} chunk {r.get('chunk_ms', {}).get('p50', 0):.2f}"
    s += f" envoy {r['envoy_cpu_us']:.0f}µs"
    if r.get("proc_cpu_us") is not None:
        s += f" proc {r['proc_cpu_us']:.0f}µs rss {r['proc_rss_mb']:.0f}MB"
    if r.get("observed_pct") is not None:
        s += f" observed {r['observed_pct']:.2f}%"
    if r.get("shed"):
        s += f" shed {r['shed']:.0f}"
    obs = r.get("observed_latency_ms") or {}
    if obs:
        s += f" observed-calls p50 {obs.get('p50', 0):.2f} p99 {obs.get('p99', 0):.2f}"
    if r.get("errors") or r.get("non2xx"):
        s += f" errors {r.get('errors')} non2xx {r.get('non2xx')}"
    return s


def render(
    rows: list[dict[str, Any]],
    wls: list[Workload],
    configs: list[str],
    info: dict[str, str],
    args: argparse.Namespace,
) -> str:
    s = report.Summary(rows)
    reps = max((r["rep"] for r in rows), default=0) + 1
    out = [
        f"Run of {info['date']} "
        f"({'QUICK smoke run, not for quoting' if args.quick else f'{reps} repeats, medians'}); "
        f"command: `{info['command']}`.",
        "",
        f"Machine: {info['cpus']} vCPUs ({info['cpu']}), {info['memory']}, Linux {info['kernel']}, "
        f"Python {info['python']}, Envoy {info['envoy']} (one worker), wrk: {info['wrk']}; "
        f"commit {info['commit']}; "
        f"load average before the run {info['load_before']} (the machine is shared with other work).",
        "",
        "Cells: median over repeats; in brackets the same-run difference to plain Envoy (ms) or ratio (x). "
        "CPU is utime+stime from /proc per completed call; *added CPU* = Envoy + sidecar - plain Envoy. "
        "*observed* = ai_log lines carrying exactly the token counts the upstream sent ÷ calls completed "
        "(no-op: streams it saw to the end). *fail-open / timeouts / failed*: Envoy's ext_proc counters "
        "failure_mode_allowed / message_timeouts / streams_failed during the load.",
        "",
    ]
    for wl in wls:
        desc = wl.describe()
        if wl.knee:
            knees = [r["rate"] for r in rows if r["workload"] == wl.name and r.get("rate")]
            if knees:
                desc += f" (this run: {min(knees):,.0f} to {max(knees):,.0f} req/s over the repeats)"
        out += [
            f"### {wl.title}",
            "",
            desc + ".",
            "",
            report.workload_table(s, wl.name, configs, wl.sse, ids=wl.ids),
            "",
        ]
    out += [
        "### Sizing: calls per second per sidecar core",
        "",
        "1e6 / the sidecar's CPU µs per call (all its processes), medians: what one core of sidecar "
        "CPU handles for this realistic config on this machine.",
        "",
        report.sizing_table(s),
        "",
        "### Targets (issue 15)",
        "",
        report.targets_table(report.targets15(s)),
        "",
        "### Targets (issue 6)",
        "",
        report.targets_table(report.targets(s)),
        "",
    ]
    return "\n".join(out)


def write_between(doc: Path, begin: str, end: str, body: str, title: str) -> None:
    text = doc.read_text() if doc.exists() else f"# {title}\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    doc.write_text(f"{head}{begin}\n{body.rstrip()}\n{end}{tail}")


def run_profile(
    args: argparse.Namespace, outdir: Path, up_port: int, wrk_script: Path | None, command: str
) -> str:
    d = args.duration or 8.0
    wls = [w for w in workloads(False, wrk_script is not None, d) if w.name in ("json-16", "sse-16")]
    kinds = [k.strip() for k in args.profile_config.split(",") if k.strip()]
    seconds = max(1, int(d - 1.5))
    parts = [
        f"py-spy at {args.profile_rate} Hz on `gateway-stats serve`, {seconds} s inside each {d:g} s load; "
        f"command: `{command}`. *busy threads* = samples / (rate x seconds): how many of the sidecar's "
        "threads were running Python on average (py-spy skips idle threads).",
        "",
    ]
    for kind in kinds:
        stack = BenchStack(kind, outdir / f"profile-{kind}", up_port, Path(args.sidecar_config))
        if stack.setup.workers > 1:
            raise SystemExit("bench-profile samples one process: profile set-ups without -wN")
        stack.start()
        try:
            _warm(stack, wrk_script)
            assert stack.processor is not None
            for wl in wls:
                raw = outdir / f"profile-{kind}-{wl.name}.txt"
                load = start_load(stack, wl, wrk_script)
                time.sleep(0.5)
                cpu0 = probes.cpu_seconds(stack.processor.pid)
                spy = prof.record(stack.processor.pid, seconds, raw, args.profile_rate)
                text = prof.wait_recorded(spy, raw)
                cpu = probes.cpu_seconds(stack.processor.pid) - cpu0
                load.communicate(timeout=120)
                p = prof.summarise(text, f"{report.label(kind)}: {wl.title}")
                busy = p.samples / (args.profile_rate * seconds)
                md = prof.to_markdown(
                    p, extra=f", {busy:.2f} busy threads, sidecar CPU {cpu / seconds:.2f} cores"
                )
                say(md)
                parts += [md, ""]
        finally:
            stack.stop()
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway_stats.bench", description=__doc__)
    ap.add_argument(
        "--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0")
    )
    env = os.environ.get
    ap.add_argument(
        "--repeats", type=int, default=int(env("BENCH_REPEATS", "0")) or None, help="default 3 (quick: 1)"
    )
    ap.add_argument(
        "--duration",
        type=float,
        default=float(env("BENCH_DURATION", "0")) or None,
        help="seconds per timed load (default 6; quick 1.5)",
    )
    ap.add_argument(
        "--configs",
        default=env("BENCH_CONFIGS") or ",".join(DEFAULT_CONFIGS),
        help=f"comma list of set-ups: {', '.join(BASES)}, gateway-stats ones with -wN / -shed / -unix "
        f"suffixes (default {','.join(DEFAULT_CONFIGS)})",
    )
    ap.add_argument("--workloads", default="", help="comma list of workload names (default: all)")
    ap.add_argument("--sidecar-config", default=str(DEFAULT_SIDECAR_CONFIG))
    ap.add_argument("--out", default="", help="directory for logs and results (default run/bench/<time>)")
    ap.add_argument(
        "--write-doc", default="", help="put the tables into this markdown file (between markers)"
    )
    ap.add_argument("--no-warm", dest="warm", action="store_false", help="skip the warm-up loads")
    ap.add_argument("--no-wrk", dest="no_wrk", action="store_true", help="JSON loads with the Python client")
    ap.add_argument("--render", default="", help="only re-render the tables of an earlier results.json")
    ap.add_argument("--profile", action="store_true", help="profile the sidecar with py-spy instead")
    ap.add_argument("--profile-config", default="inline,observe", help="set-ups to profile (comma list)")
    ap.add_argument("--profile-rate", type=int, default=200)
    ap.add_argument(
        "--knee-from", default="inline", help="set-up whose JSON-16 throughput sets the json-knee rate"
    )
    ap.add_argument(
        "--transports",
        action="store_true",
        help="compare gRPC transports (no-op and gateway-stats; aio/uvloop/threads, TCP/Unix) instead",
    )
    args = ap.parse_args(argv)

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        try:
            SetUp.parse(c)
        except ValueError as e:
            ap.error(str(e))
    if "plain" not in configs:
        configs.insert(0, "plain")
    if args.render:
        saved = orjson.loads(Path(args.render).read_bytes())
        rows_, info_ = saved["rows"], saved["machine"]
        names = list(dict.fromkeys(r["workload"] for r in rows_))
        wls_ = [w for w in workloads(False, True) if w.name in names]
        if saved.get("workloads"):
            wls_ = [Workload(**w) for w in saved["workloads"]]
        cfgs = report.Summary(rows_).configs()  # the baselines first, as a live run lists them
        md = render(rows_, wls_, cfgs, info_, argparse.Namespace(quick=bool(saved.get("quick"))))
        say(md)
        if args.write_doc:
            write_between(Path(args.write_doc), BEGIN, END, md, "gateway-stats benchmarks")
        return 0

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    outdir = Path(args.out) if args.out else REPO / "run" / "bench" / stamp
    outdir.mkdir(parents=True, exist_ok=True)
    have_wrk = wrk.available() and not args.no_wrk
    if not have_wrk and not args.no_wrk:
        say("wrk not found (apt-get install wrk): JSON loads use the Python client, which saturates sooner")
    wrk_script = wrk.write_script(outdir) if have_wrk else None
    info = machine()
    info["wrk"] = "yes" if have_wrk else "no (JSON loads by the Python client)"
    info["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = os.environ.get("BENCH_COMMAND") or " ".join(
        ["python -m gateway_stats.bench", *(sys.argv[1:] if argv is None else argv)]
    )
    info["command"] = ("BENCH_QUICK=1 " if os.environ.get("BENCH_QUICK", "") not in ("", "0") else "") + cmd

    upstream, up_port = start_upstream(outdir)
    t_start = time.monotonic()
    try:
        if args.profile:
            md = run_profile(args, outdir, up_port, wrk_script, info["command"])
            (outdir / "profile.md").write_text(md)
            if args.write_doc:
                write_between(Path(args.write_doc), PBEGIN, PEND, md, "gateway-stats benchmarks")
            say(f"profile in {outdir}/profile.md")
            return 0
        if args.transports:
            from gateway_stats.bench import transports

            reps = args.repeats or (1 if args.quick else 3)
            trows = transports.run_transports(
                outdir,
                up_port,
                upstream.pid,
                Path(args.sidecar_config),
                wrk_script,
                reps,
                args.duration or (1.5 if args.quick else 6.0),
                say,
            )
            md = (
                f"Run of {info['date']} ({reps} repeats, medians); command: `{info['command']}`; "
                f"commit {info['commit']}; load average before the run {info['load_before']}. "
                "JSON chat, 16 connections, wrk; inline Envoy, one worker.\n\n" + transports.table(trows)
            )
            (outdir / "transports.json").write_bytes(orjson.dumps({"machine": info, "rows": trows}))
            (outdir / "transports.md").write_text(md)
            say("\n" + md)
            if args.write_doc and not args.quick:
                write_between(Path(args.write_doc), TBEGIN, TEND, md, "gateway-stats benchmarks")
            return 0
        wls = workloads(args.quick, have_wrk, args.duration)
        if args.workloads:
            keep = {w.strip() for w in args.workloads.split(",")}
            wls = [w for w in wls if w.name in keep]
        repeats = args.repeats or (1 if args.quick else 3)
        say(
            f"gateway-stats bench: {len(configs)} set-ups x {len(wls)} workloads x {repeats} repeats; "
            f"logs in {outdir}"
        )
        rows: list[dict[str, Any]] = []
        # The knee workload's rate is the knee set-up's JSON-16 throughput of the same repeat: it runs first.
        order = configs
        if any(w.knee for w in wls) and args.knee_from in configs:
            order = [args.knee_from, *(c for c in configs if c != args.knee_from)]
        for rep in range(repeats):
            knee: float | None = None
            for cfg in order:
                stack = BenchStack(cfg, outdir / f"r{rep}-{cfg}", up_port, Path(args.sidecar_config))
                try:
                    stack.start()
                    if args.warm:
                        _warm(stack, wrk_script)
                    for wl in wls:
                        if wl.knee:
                            if knee is None:
                                continue
                            wl = replace(wl, rate=knee)
                        r = run(stack, wl, upstream.pid, up_port, wrk_script)
                        r.update(config=cfg, workload=wl.name, rep=rep, rate=wl.rate or None)
                        rows.append(r)
                        if cfg == args.knee_from and wl.name == "json-16":
                            knee = round(r["rps"])
                        say(f"[{rep + 1}/{repeats}] {cfg:<14} {wl.name:<14} {_fmt_result(wl, r)}")
                finally:
                    stack.stop()
                    stack.cleanup_logs()
        info["elapsed_s"] = f"{time.monotonic() - t_start:.0f}"
        md = render(rows, wls, configs, info, args)
        (outdir / "results.json").write_bytes(
            orjson.dumps(
                {"machine": info, "rows": rows, "workloads": [asdict(w) for w in wls], "quick": args.quick},
                option=orjson.OPT_INDENT_2,
            )
        )
        (outdir / "results.md").write_text(md)
        say("\n" + md)
        if args.write_doc and not args.quick:
            write_between(Path(args.write_doc), BEGIN, END, md, "gateway-stats benchmarks")
            say(f"tables written to {args.write_doc}")
        say(f"done in {info['elapsed_s']} s; raw results in {outdir}/results.json")
        return 0
    finally:
        upstream.stop()
