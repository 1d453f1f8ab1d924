"""`gateway-stats demo`: a real Envoy, gateway-stats and the mock LLM, real traffic, then the results."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import re
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway_stats.testing.procs import Stack, complete_lines

TRAFFIC: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
    (
        "chat, JSON",
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What does Envoy do?"}]},
        {},
    ),
    (
        "chat, SSE stream with include_usage",
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name three colours"},
            ],
        },
        {"x-mock-events": "6", "x-mock-interval-ms": "20"},
    ),
    ("embeddings", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello gateway"}, {}),
    (
        "anthropic messages, SSE",
        "/v1/messages",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "Say hi"}],
        },
        {"x-mock-events": "4"},
    ),
    (
        "gemini generateContent, SSE, with thoughts and cached tokens",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "Why is the sky blue?"}]}]},
        {"x-mock-events": "5", "x-mock-reasoning-tokens": "40", "x-mock-cached-tokens": "3"},
    ),
    (
        "a model no price source knows",
        "/v1/chat/completions",
        {"model": "my-private-model", "messages": [{"role": "user", "content": "hi"}]},
        {},
    ),
    (
        "upstream error 429",
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "again"}]},
        {"x-mock-status": "429"},
    ),
]


def _send(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        h = {"content-type": "application/json", "x-mse-consumer": "demo-team", **headers}
        conn.request("POST", path, body=json.dumps(body).encode(), headers=h)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _wait_lines(path: Path, n: int, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = complete_lines(path)
        if len(lines) >= n:
            break
        time.sleep(0.1)
    return lines


def _metrics_excerpt(url: str) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    keep = (
        "route_upstream_model_consumer_metric_",
        "gen_ai_client_token_usage_sum",
        "gen_ai_client_operation_duration_seconds_count",
        "gateway_stats_calls",
        "gateway_stats_records",
        "gateway_stats_cost_total",
        "gateway_stats_unpriced_calls_total",
    )
    return [ln for ln in text.splitlines() if ln.startswith(keep)]


def _costs(lines: list[str]) -> list[str]:
    """One line per call: its model and the exact cost of its ai_log (numbers read as Decimals)."""
    out = []
    for ln in lines:
        try:
            ai = json.loads(json.loads(ln)["ai_log"], parse_float=Decimal)
        except (ValueError, KeyError, TypeError):
            continue
        model = ai.get("model", "?")
        if ai.get("cost") is not None:
            what = f"{ai['cost']:f} {ai.get('cost_currency', '')}"
        elif "cost" in ai:
            what = "cost: null — no price for this model (gateway_stats_unpriced_calls_total)"
        else:
            what = "no usage reported: not priced"
        out.append(f"  {model:<24} {what}")
    return out


def _cost_by_model(url: str) -> str:
    """`sum by (ai_model, currency) (gateway_stats_cost_total)`, summed exactly from the scrape."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    sums: dict[tuple[str, str], Decimal] = {}
    for ln in text.splitlines():
        m = re.match(r"^gateway_stats_cost_total\{(.*)\} (\S+)$", ln)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (labels.get("ai_model", ""), labels.get("currency", ""))
        sums[key] = sums.get(key, Decimal(0)) + Decimal(m.group(2))
    if not sums:
        return "Cost by model: (nothing priced)"
    parts = [f"{model} {total:f} {cur}" for (model, cur), total in sorted(sums.items())]
    totals: dict[str, Decimal] = {}
    for (_, cur), v in sums.items():
        totals[cur] = totals.get(cur, Decimal(0)) + v
    total = ", ".join(f"{v:f} {cur}" for cur, v in sorted(totals.items()))
    return f"Cost by model (gateway_stats_cost_total): {'; '.join(parts)} — total {total}"


def _records_report(stack: Stack, workdir: Path, n: int, since: float) -> None:
    """The analytics records of the demo's own calls: the report, and the HTML page's path."""
    from gateway_stats.config import load_config
    from gateway_stats.records import html, report
    from gateway_stats.records.read import fetch

    rc = load_config(stack.config_path).extensions.records if stack.config_path else None
    if rc is None or rc.sqlite is None:
        return
    db = Path(rc.sqlite.path)
    db = db if db.is_absolute() else workdir / db
    deadline = time.monotonic() + 10
    rows: list[Any] = []
    while time.monotonic() < deadline:  # the writer batches every 200 ms
        with contextlib.suppress(Exception):
            rows = [r for r in fetch(db) if r["ts"].timestamp() >= since]
        if len(rows) >= n:
            break
        time.sleep(0.1)
    rep = report.build(db, "model", dt.datetime.fromtimestamp(since, dt.UTC))
    print(f"\nAnalytics records ({db}), one row per call; `gateway-stats report --db {db}`:")
    report.render_table(rep)
    page = workdir / "report.html"
    page.write_text(html.render(rep, "gateway-stats demo report"), encoding="utf-8")
    print(f"HTML report (opens offline): {page.resolve()}")


def run_demo(keep_running: bool | None = None, workdir: Path | None = None) -> int:
    if keep_running is None:
        keep_running = sys.stdin.isatty() and sys.stdout.isatty()
    workdir = workdir or Path.cwd() / "run" / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    for f in ("access.log",):
        with contextlib.suppress(OSError):
            (workdir / f).unlink()
    config = Path(__file__).resolve().parent.parent / "config" / "gateway-stats.yaml"
    stack = Stack(workdir, config_path=str(config) if config.exists() else None)
    print("gateway-stats demo: starting the mock LLM, gateway-stats and Envoy 1.40 on loopback ...")
    try:
        started = time.time()  # run/demo/records.db keeps earlier runs: report this run's calls
        stack.start()
        print(f"  Envoy        http://127.0.0.1:{stack.envoy_port}  (admin :{stack.admin_port})")
        print(f"  gateway-stats gRPC 127.0.0.1:{stack.grpc_port}, metrics {stack.metrics_url}")
        print(f"  mock LLM     http://127.0.0.1:{stack.mock_port}")
        print(f"  config       {stack.config_path or '(built-in default)'}")
        print(f"  logs         {workdir}/\n")
        print("Sending traffic through Envoy:")
        for label, path, body, headers in TRAFFIC:
            status, data = _send(stack.envoy_port, path, body, headers)
            print(f"  {status}  POST {path:<24} {label} ({len(data)} bytes)")
        lines = _wait_lines(stack.access_log, len(TRAFFIC))
        print(f"\nEnvoy access log ({stack.access_log}), one line per call, with the parsed ai_log:")
        for ln in lines:
            print(f"\n  {ln}")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                ai = json.loads(json.loads(ln)["ai_log"])
                short = {
                    k: (v[:60] + "…" if isinstance(v, str) and len(v) > 60 else v) for k, v in ai.items()
                }
                print("  → " + json.dumps(short, ensure_ascii=False, sort_keys=True))
        print("\nCost of each call (the ai_log's exact `cost`; prices from genai-prices, built in):")
        for ln in _costs(lines):
            print(ln)
        print(_cost_by_model(stack.metrics_url))
        print(f"\nExcerpt of {stack.metrics_url}:")
        for ln in _metrics_excerpt(stack.metrics_url):
            print(f"  {ln}")
        _records_report(stack, workdir, len(TRAFFIC), started)
        if keep_running:
            print(
                "\nStill running. Send your own call through Envoy:\n"
                f"  curl -s http://127.0.0.1:{stack.envoy_port}/v1/chat/completions \\\n"
                "    -H 'content-type: application/json' \\\n"
                '    -d \'{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},'
                '"messages":[{"role":"user","content":"hi"}]}\'\n'
                f"  tail -f {stack.access_log}\n"
                f"  curl -s {stack.metrics_url}\n"
                "Press Ctrl-C to stop everything."
            )
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        else:
            print("\nDone (not a terminal, so not staying up; `gateway-stats demo --keep-running` to stay).")
        ok = len(lines) >= 3
        return 0 if ok else 1
    except Exception as e:
        print(f"demo failed: {e}", file=sys.stderr)
        for p in stack.procs.values():
            tail = p.log_text()[-2000:]
            if tail:
                print(f"--- {p.name} log (tail) ---\n{tail}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        print("Stopped Envoy, gateway-stats and the mock LLM.")
