"""Tables and targets from the raw measurements: medians over repeats, each set-up beside plain Envoy.

Ratios and added latencies are taken per repeat against plain Envoy of the same repeat, then the
median of those is shown, so a slow moment of the shared machine hits both sides of a comparison.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]

LABELS = {
    "plain": "plain Envoy",
    "noop": "Envoy + naive no-op (inline)",
    "noop-observe": "Envoy + naive no-op (observability mode)",
    "noop-stop": "Envoy + no-op ending each call at its request headers (a shed call's floor)",
    "inline": "Envoy + gateway-stats, inline",
    "inline-norecords": "Envoy + gateway-stats, inline, records off",
    "inline-analytics": "Envoy + gateway-stats, inline, + language and topic",
    "inline-lua": "Envoy + gateway-stats, inline, Lua copy to wasm.ai_log",
    "observe": "Envoy + gateway-stats, observability mode",
}


def label(name: str) -> str:
    """A set-up's name for tables: its base label plus what its suffixes change (stacks.SetUp)."""
    from gateway_stats.bench.stacks import SetUp

    try:
        su = SetUp.parse(name)
    except ValueError:
        return name
    text = LABELS.get(su.base, su.base)
    extra = []
    if su.workers > 1:
        extra.append(f"{su.workers} workers")
    if su.shed:
        extra.append("shedding on")
    if su.unix:
        extra.append("Unix socket")
    return text + (f" ({', '.join(extra)})" if extra else "")


# The reference figures (Higress ai-statistics WASM inside Envoy, measured beside plain Envoy).
WASM = {"json1_p50": 0.48, "sse_ttfb": 0.99, "sse_total": 2.36, "json16_cpu": 235.0}
NAIVE_JSON16_RPS = 2550.0


def dig(r: Row, key: str) -> float | None:
    v: Any = r
    for part in key.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    return float(v) if isinstance(v, int | float) else None


def _added_cpu(r: Row, plain: Row | None) -> float | None:
    if plain is None:
        return None
    own = (dig(r, "envoy_cpu_us") or 0.0) + (dig(r, "proc_cpu_us") or 0.0)
    return own - (dig(plain, "envoy_cpu_us") or 0.0)


def _msgs_per_call(r: Row) -> float | None:
    """Messages Envoy sent to the processor per completed call (its stream_msgs_sent counter)."""
    sent, n = dig(r, "envoy_ext_proc.stream_msgs_sent"), dig(r, "requests")
    return None if not sent or not n else sent / n


def _proc_per_msg(r: Row) -> float | None:
    m, cpu = _msgs_per_call(r), dig(r, "proc_cpu_us")
    return None if not m or cpu is None else cpu / m


@dataclass
class Summary:
    rows: list[Row]

    def reps(self, wl: str, cfg: str) -> list[Row]:
        return [r for r in self.rows if r["workload"] == wl and r["config"] == cfg]

    def plain_of(self, r: Row) -> Row | None:
        return self.other_of(r, "plain")

    def other_of(self, r: Row, cfg: str) -> Row | None:
        for p in self.rows:
            if p["workload"] == r["workload"] and p["config"] == cfg and p["rep"] == r["rep"]:
                return p
        return None

    def configs(self) -> list[str]:
        """Set-ups in run order, the baselines first (a run measures `inline` first: the knee needs it)."""
        seen = list(dict.fromkeys(r["config"] for r in self.rows))
        first = [c for c in ("plain", "noop") if c in seen]
        return first + [c for c in seen if c not in first]

    def vs(self, wl: str, cfg: str, other: str, key: str, how: str = "ratio") -> float | None:
        """Median over repeats of (cfg's key) / or - (other set-up's key), same workload and repeat."""
        vals = []
        for r in self.reps(wl, cfg):
            o = self.other_of(r, other)
            a, b = dig(r, key), (dig(o, key) if o else None)
            if a is None or b is None or (how == "ratio" and not b):
                continue
            vals.append(a / b if how == "ratio" else a - b)
        return statistics.median(vals) if vals else None

    def med(self, wl: str, cfg: str, key: str) -> float | None:
        vals = [v for r in self.reps(wl, cfg) if (v := dig(r, key)) is not None]
        return statistics.median(vals) if vals else None

    def med_of(self, wl: str, cfg: str, fn: Callable[[Row, Row | None], float | None]) -> float | None:
        vals = [v for r in self.reps(wl, cfg) if (v := fn(r, self.plain_of(r))) is not None]
        return statistics.median(vals) if vals else None

    def delta(self, wl: str, cfg: str, key: str) -> float | None:
        def d(r: Row, p: Row | None) -> float | None:
            a, b = dig(r, key), (dig(p, key) if p else None)
            return None if a is None or b is None else a - b

        return self.med_of(wl, cfg, d)

    def ratio(self, wl: str, cfg: str, key: str) -> float | None:
        def q(r: Row, p: Row | None) -> float | None:
            a, b = dig(r, key), (dig(p, key) if p else None)
            return None if a is None or not b else a / b

        return self.med_of(wl, cfg, q)

    def added_cpu(self, wl: str, cfg: str) -> float | None:
        return self.med_of(wl, cfg, _added_cpu)


def _f(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def _ms(s: Summary, wl: str, cfg: str, key: str) -> str:
    v = s.med(wl, cfg, key)
    if v is None:
        return "-"
    if cfg == "plain":
        return _f(v)
    d = s.delta(wl, cfg, key)
    return f"{_f(v)} ({'-' if d is None else f'{d:+.2f}'})"


def _rate(s: Summary, wl: str, cfg: str) -> str:
    v = s.med(wl, cfg, "rps")
    if v is None:
        return "-"
    if cfg == "plain":
        return _f(v, 0)
    q = s.ratio(wl, cfg, "rps")
    unsent = s.med(wl, cfg, "unsent")
    more = f"; {unsent:,.0f} never sent" if unsent else ""
    return f"{_f(v, 0)} (x{_f(q)}{more})"


def _cpu(s: Summary, wl: str, cfg: str) -> list[str]:
    env = s.med(wl, cfg, "envoy_cpu_us")
    q = s.ratio(wl, cfg, "envoy_cpu_us")
    env_s = _f(env, 0) if cfg == "plain" else f"{_f(env, 0)} (x{_f(q, 1)})"
    proc = s.med(wl, cfg, "proc_cpu_us")
    msgs = s.med_of(wl, cfg, lambda r, _p: _msgs_per_call(r))
    per_msg = s.med_of(wl, cfg, lambda r, _p: _proc_per_msg(r))
    added = None if cfg == "plain" else s.added_cpu(wl, cfg)
    return [
        env_s,
        _f(proc, 0),
        _f(msgs, 1),
        _f(per_msg, 0),
        "-" if added is None else f"{added:+,.0f}",
    ]


def _observed(s: Summary, wl: str, cfg: str) -> str:
    pct = s.med(wl, cfg, "observed_pct")
    if pct is None:
        return "-"
    return f"{pct:.2f} %" if pct < 99.995 else "100 %"


def _failopen(s: Summary, wl: str, cfg: str) -> str:
    if cfg == "plain":
        return "-"
    fo = s.med(wl, cfg, "envoy_ext_proc.failure_mode_allowed")
    to = s.med(wl, cfg, "envoy_ext_proc.message_timeouts")
    fa = s.med(wl, cfg, "envoy_ext_proc.streams_failed")
    return f"{_f(fo, 0)} / {_f(to, 0)} / {_f(fa, 0)}"


def _observed_lat(s: Summary, wl: str, cfg: str) -> list[str]:
    """Latency of the calls that were observed (ai_log line joined by request id), + vs plain's calls."""
    if cfg == "plain":
        return ["-", "-"]
    out = []
    for q in ("p50", "p99"):
        v = s.med(wl, cfg, f"observed_latency_ms.{q}")
        d = s.med_of(wl, cfg, lambda r, p, q=q: _obs_delta(r, p, q))  # type: ignore[misc]
        out.append("-" if v is None else f"{_f(v)} ({'-' if d is None else f'{d:+.2f}'})")
    return out


def _obs_delta(r: Row, p: Row | None, q: str) -> float | None:
    a, b = dig(r, f"observed_latency_ms.{q}"), (dig(p, f"latency_ms.{q}") if p else None)
    return None if a is None or b is None else a - b


def _shed(s: Summary, wl: str, cfg: str) -> str:
    shed = s.med(wl, cfg, "shed")
    if shed is None:
        return "-"
    un = s.med_of(wl, cfg, lambda r, _p: _unobserved(r))
    return f"{_f(shed, 0)} / {_f(un, 0)}"


def _unobserved(r: Row) -> float | None:
    n, obs = dig(r, "requests"), dig(r, "observed")
    return None if n is None or obs is None else max(0.0, n - obs)


def workload_table(s: Summary, wl: str, configs: list[str], sse: bool, ids: bool = False) -> str:
    head = ["set-up", "streams/s" if sse else "req/s (x plain)"]
    if sse:
        head += [
            "TTFB p50 ms (+Δ)",
            "TTFB p99",
            "total p50 ms (+Δ)",
            "total p99",
            "later chunks p50 ms (+Δ)",
            "p99",
        ]
    else:
        head += ["p50 ms (+Δ)", "p99 ms (+Δ)"]
    if ids:
        head += ["observed calls p50 ms (+Δ)", "observed calls p99 ms (+Δ)", "shed counted / not observed"]
    head += [
        "Envoy CPU µs/call (x plain)",
        "sidecar CPU µs/call",
        "ext_proc msgs/call",
        "sidecar CPU µs/msg",
        "added CPU µs/call",
        "sidecar RSS MB",
        "observed",
        "Envoy fail-open / timeouts / failed",
        "client + upstream CPU µs/call",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cfg in configs:
        if not s.reps(wl, cfg):
            continue
        cells = [label(cfg), _rate(s, wl, cfg)]
        if sse:
            cells += [
                _ms(s, wl, cfg, "ttfb_ms.p50"),
                _ms(s, wl, cfg, "ttfb_ms.p99"),
                _ms(s, wl, cfg, "latency_ms.p50"),
                _ms(s, wl, cfg, "latency_ms.p99"),
                _ms(s, wl, cfg, "chunk_ms.p50"),
                _ms(s, wl, cfg, "chunk_ms.p99"),
            ]
        else:
            cells += [_ms(s, wl, cfg, "latency_ms.p50"), _ms(s, wl, cfg, "latency_ms.p99")]
        if ids:
            cells += [*_observed_lat(s, wl, cfg), _shed(s, wl, cfg)]
        cells += _cpu(s, wl, cfg)
        cells += [_f(s.med(wl, cfg, "proc_rss_mb"), 0), _observed(s, wl, cfg), _failopen(s, wl, cfg)]
        other = [v for k in ("client_cpu_us", "upstream_cpu_us") if (v := s.med(wl, cfg, k)) is not None]
        cells.append(_f(sum(other), 0) if other else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class Target:
    text: str
    measured: str
    met: bool | None  # None: not measured in this run


def _le(v: float | None, limit: float) -> bool | None:
    return None if v is None else v <= limit


def targets(s: Summary) -> list[Target]:
    out: list[Target] = []

    def add(text: str, v: float | None, limit: float, unit: str = "ms", signed: bool = True) -> None:
        m = "-" if v is None else (f"{v:+.2f} {unit}" if signed else f"{v:,.1f} {unit}")
        out.append(Target(text, m, _le(v, limit)))

    add(
        "observe: JSON 1 conn, added p50 ≤ +0.48 ms (WASM)",
        s.delta("json-1", "observe", "latency_ms.p50"),
        0.48,
    )
    add(
        "observe: SSE 16 conns, added TTFB p50 ≤ +0.99 ms (WASM)",
        s.delta("sse-16", "observe", "ttfb_ms.p50"),
        0.99,
    )
    obs = s.med("json-rate-1000", "observe", "observed_pct")
    out.append(
        Target(
            "observe: ≥ 99.9 % of calls observed at 1,000 req/s",
            "-" if obs is None else f"{obs:.2f} %",
            None if obs is None else obs >= 99.9,
        )
    )
    add("inline: JSON 1 conn, added p50 ≤ +1.0 ms", s.delta("json-1", "inline", "latency_ms.p50"), 1.0)
    add("inline: SSE TTFB added p50 ≤ +2.0 ms", s.delta("sse-16", "inline", "ttfb_ms.p50"), 2.0)
    add("inline: SSE total added p50 ≤ +2.36 ms (WASM)", s.delta("sse-16", "inline", "latency_ms.p50"), 2.36)
    add("inline: later chunks added p50 ≤ +0.5 ms", s.delta("sse-16", "inline", "chunk_ms.p50"), 0.5)
    # Below the naive no-op everywhere: every latency figure of every workload, same run.
    worse: list[str] = []
    compared = 0
    for wl in sorted({r["workload"] for r in s.rows}):
        for key in ("latency_ms.p50", "latency_ms.p99", "ttfb_ms.p50", "ttfb_ms.p99", "chunk_ms.p50"):
            a, b = s.med(wl, "inline", key), s.med(wl, "noop", key)
            if a is None or b is None:
                continue
            compared += 1
            if a > b:
                worse.append(f"{wl} {key.replace('_ms', '')} {a:.2f} > {b:.2f}")
    out.append(
        Target(
            "inline: below the naive no-op everywhere (every p50/p99 latency)",
            f"{compared - len(worse)}/{compared} below" + (f"; above: {', '.join(worse)}" if worse else ""),
            None if not compared else not worse,
        )
    )
    rps_i, rps_n = s.med("json-16", "inline", "rps"), s.med("json-16", "noop", "rps")
    out.append(
        Target(
            "inline: JSON 16 conns throughput ≥ the naive no-op's (same run; issue: ~2,550 req/s)",
            "-" if rps_i is None else f"{rps_i:,.0f} vs {'-' if rps_n is None else f'{rps_n:,.0f}'} req/s",
            None if rps_i is None or rps_n is None else rps_i >= rps_n,
        )
    )
    add(
        "inline: JSON 16 conns, Envoy + sidecar CPU added per call ≤ 2 x WASM's +235 µs",
        s.added_cpu("json-16", "inline"),
        2 * WASM["json16_cpu"],
        "µs",
    )
    for cfg in ("inline", "observe"):
        pct = s.med("sse-long", cfg, "observed_pct")
        rss = s.med("sse-long", cfg, "proc_rss_mb")
        out.append(
            Target(
                f"{cfg}: long concurrent SSE streams all observed, sidecar RSS ≤ 200 MB",
                "-" if pct is None else f"{pct:.2f} % observed, {_f(rss, 0)} MB",
                None if pct is None or rss is None else pct >= 100.0 and rss <= 200,
            )
        )
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} %"


def targets15(s: Summary) -> list[Target]:
    """Issue 15's done-when list, per set-up (same run, medians of same-repeat comparisons)."""
    from gateway_stats.bench.stacks import SetUp

    out: list[Target] = []
    cfgs = s.configs()
    parsed = {c: SetUp.parse(c) for c in cfgs}
    inline = [c for c in cfgs if parsed[c].base == "inline" and not parsed[c].shed]
    shed = [c for c in cfgs if parsed[c].base == "inline" and parsed[c].shed]
    observe = [c for c in cfgs if parsed[c].base == "observe"]
    for c in inline:
        a, b = s.med("json-16", c, "rps"), s.med("json-16", "noop", "rps")
        q = s.vs("json-16", c, "noop", "rps")
        out.append(
            Target(
                f"{c}: JSON 16 conns throughput ≥ the naive no-op's",
                "-" if a is None or b is None else f"{a:,.0f} vs {b:,.0f} req/s (x{_f(q)})",
                None if q is None else q >= 1.0,
            )
        )
    for c in inline:
        d50 = s.delta("json-rate-1000", c, "latency_ms.p50")
        d99 = s.delta("json-rate-1000", c, "latency_ms.p99")
        obs = s.med("json-rate-1000", c, "observed_pct")
        met = None if d50 is None or d99 is None or obs is None else d50 <= 5 and d99 <= 25 and obs >= 99.995
        out.append(
            Target(
                f"{c}: JSON at a fixed 1,000 req/s, added p50 ≤ 5 ms and p99 ≤ 25 ms, 100 % observed",
                "-" if met is None else f"{d50:+.2f} / {d99:+.2f} ms, {_pct(obs)}",
                met,
            )
        )
    for c in shed:
        for wl in ("json-rate-2000", "json-16"):
            if not s.reps(wl, c):
                continue
            d99 = s.med_of(wl, c, lambda r, p: _obs_delta(r, p, "p99"))
            if wl == "json-16":
                d99 = None  # closed loop: no per-call ids; latency of all calls below
            shed_n, un = s.med(wl, c, "shed"), s.med_of(wl, c, lambda r, _p: _unobserved(r))
            to = s.med(wl, c, "envoy_ext_proc.message_timeouts")
            fa = s.med(wl, c, "envoy_ext_proc.streams_failed")
            counted = shed_n is not None and un is not None and abs(shed_n - un) <= max(1.0, 0.001 * un)
            clean = to == 0 and fa == 0
            lat = "" if d99 is None else f"observed calls' added p99 {d99:+.2f} ms; "
            ok: bool | None = None
            if shed_n is not None:
                ok = counted and clean and (d99 is None or d99 <= 25)
            out.append(
                Target(
                    f"{c} ({wl}): above the knee, observed calls' added p99 ≤ 25 ms, every shed call "
                    "counted, no Envoy timeout or failed stream",
                    f"{lat}shed {_f(shed_n, 0)} / not observed {_f(un, 0)}; timeouts {_f(to, 0)}, "
                    f"failed {_f(fa, 0)}; observed {_pct(s.med(wl, c, 'observed_pct'))}",
                    ok,
                )
            )
    for c in observe:
        pct, rate = s.med("json-knee", c, "observed_pct"), s.med("json-knee", c, "rps")
        out.append(
            Target(
                f"{c}: at the inline knee, ≥ 99 % observed",
                "-" if pct is None else f"{_pct(pct)} at {rate:,.0f} req/s",
                None if pct is None else pct >= 99.0,
            )
        )
    # The CPU ratio at the load, then with both serving the same rate: at 16 connections the
    # no-op runs at about twice our rate, and CPU per call falls as the rate rises.
    cpu_loads = (
        ("json-16", "sidecar CPU per JSON call (16 conns) ≤ 1.3 x the naive no-op's"),
        ("json-rate-500", "the same at an equal fixed 500 req/s (not the issue's load; for comparison)"),
    )
    for wl, what in cpu_loads:
        for c in inline:
            if wl != "json-16" and not s.reps(wl, c):
                continue
            q = s.vs(wl, c, "noop", "proc_cpu_us")
            a, b = s.med(wl, c, "proc_cpu_us"), s.med(wl, "noop", "proc_cpu_us")
            out.append(
                Target(
                    f"{c}: {what}",
                    "-" if q is None else f"{_f(a, 0)} vs {_f(b, 0)} µs (x{_f(q)})",
                    None if q is None else q <= 1.3,
                )
            )
    return out


def sizing_table(s: Summary) -> str:
    """Calls per second one core of sidecar CPU handles: 1e6 / sidecar CPU µs per call."""
    lines = [
        "| set-up | sidecar CPU µs/call, JSON 16 conns | calls/s per sidecar core (JSON) "
        "| sidecar CPU µs/call, JSON 1,000 req/s | calls/s per core there | SSE 16 conns µs/call "
        "| SSE streams/s per core |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in s.configs():
        if c == "plain":
            continue
        cells = [label(c)]
        for wl in ("json-16", "json-rate-1000", "sse-16"):
            us = s.med(wl, c, "proc_cpu_us")
            cells += [_f(us, 0), "-" if not us else f"{1e6 / us:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(ts: list[Target]) -> str:
    lines = ["| target | measured (median) | met |", "|---|---|---|"]
    for t in ts:
        met = "n/a" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(f"| {t.text} | {t.measured} | {met} |")
    return "\n".join(lines)
