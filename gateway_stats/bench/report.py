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
    "inline": "Envoy + gateway-stats, inline",
    "inline-norecords": "Envoy + gateway-stats, inline, records off",
    "inline-analytics": "Envoy + gateway-stats, inline, + language and topic",
    "inline-nolua": "Envoy + gateway-stats, inline, no Lua",
    "observe": "Envoy + gateway-stats, observability mode",
}

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
        for p in self.rows:
            if p["workload"] == r["workload"] and p["config"] == "plain" and p["rep"] == r["rep"]:
                return p
        return None

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


def workload_table(s: Summary, wl: str, configs: list[str], sse: bool) -> str:
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
        cells = [LABELS.get(cfg, cfg), _rate(s, wl, cfg)]
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
    obs = s.med("json-rate", "observe", "observed_pct")
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


def targets_table(ts: list[Target]) -> str:
    lines = ["| target | measured (median) | met |", "|---|---|---|"]
    for t in ts:
        met = "n/a" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(f"| {t.text} | {t.measured} | {met} |")
    return "\n".join(lines)
