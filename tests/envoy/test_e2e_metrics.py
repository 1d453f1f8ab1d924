"""Metrics through the real Envoy: Higress series parity, a real Prometheus answering PromQL, self-metrics.

Truth comes from the mock (`mockllm.expected()` for tokens and models, its request records for when the
first byte left it); durations Higress would report come from the `ai_log` Envoy wrote for each call.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
from bisect import bisect_left
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import ai_logs, metric_value, metrics_text, post, wait_for

from gateway_stats.config import HIGRESS_METRIC_PREFIX, HIGRESS_METRICS
from gateway_stats.core.buckets import DURATION_BUCKETS
from gateway_stats.testing import procs
from gateway_stats.testing.mockllm import expected
from gateway_stats.testing.procs import Stack

H = HIGRESS_METRIC_PREFIX
ROUTE, CLUSTER = "llm", "llm_upstream"  # the route and cluster names of the generated Envoy bootstrap
CHAT = "/v1/chat/completions"


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# --------------------------------------------------------------------------------- Higress parity

# The fixed traffic script: (path, body, headers). Tokens, models and status come from the mock's truth.
SCRIPT: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    (
        CHAT,
        {"model": "gpt-4o-mini", "messages": msgs("one two three")},
        {"x-mse-consumer": "alice", "x-mock-input-tokens": "11", "x-mock-output-tokens": "7"},
    ),
    (
        CHAT,
        {
            "model": "gpt-4o-mini",
            "messages": msgs("stream please"),
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {"x-mse-consumer": "alice", "x-mock-events": "4", "x-mock-first-byte-ms": "30"},
    ),
    (CHAT, {"model": "qwen-max", "messages": msgs("hello")}, {"x-mock-model": "qwen-max-0919"}),
    (
        "/v1/messages",
        {"model": "claude-3-5-haiku", "max_tokens": 64, "messages": msgs("hi there"), "stream": True},
        {"x-mse-consumer": "bob", "x-mock-events": "6"},
    ),
    (
        CHAT,
        {"model": "gpt-4o-mini", "messages": msgs("fail")},
        {"x-mse-consumer": "alice", "x-mock-status": "503"},
    ),
    # A stream without include_usage: Higress records nothing for it; we record its durations (documented).
    (
        CHAT,
        {"model": "gpt-4o-mini", "messages": msgs("no usage"), "stream": True},
        {"x-mse-consumer": "alice"},
    ),
]


def flush_access_log(st: Stack) -> None:
    """Envoy flushes its access log every 10 s; reopening the logs flushes them now."""
    req = urllib.request.Request(f"http://127.0.0.1:{st.admin_port}/reopen_logs", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def higress_series(text: str) -> dict[tuple[str, str], str]:
    """{(name, label text): value} of the Higress families, read from the exposition as is."""
    out: dict[tuple[str, str], str] = {}
    for ln in text.splitlines():
        if ln.startswith(H):
            head, _, val = ln.rpartition(" ")
            name, _, labels = head.partition("{")
            out[(name, "{" + labels)] = val
    return out


def test_higress_series_match_the_plugin_for_a_fixed_script(stack_factory) -> None:  # type: ignore[no-untyped-def]
    st: Stack = stack_factory()
    for i, (path, body, headers) in enumerate(SCRIPT):
        status, _, _ = post(st.envoy_port, path, body, {**headers, "x-mock-chat-id": f"parity-{i}"})
        assert status == expected(path, headers, body).status

    def logs() -> list[dict[str, Any]] | None:
        flush_access_log(st)
        got = ai_logs(st)
        return got if len(got) == len(SCRIPT) else None

    by_id = {d.get("chat_id"): d for d in wait_for(logs, what="one ai_log per call")}

    # What the Higress plugin records (spec §6): per call WITH usage, tokens and durations in ms and counts;
    # a failure counts under the request model. A counter exists once incremented by more than 0 (Envoy).
    higress: dict[tuple[str, str], int] = defaultdict(int)
    ours: dict[tuple[str, str], int] = defaultdict(int)
    for i, (path, body, headers) in enumerate(SCRIPT):
        t = expected(path, headers, body)
        failed = t.status >= 400
        log = by_id.get(None if failed else f"parity-{i}")  # the mock's error body carries no id
        assert log is not None, i
        labels = _labels(t.request_model if failed else t.model, headers.get("x-mse-consumer", "none"))
        durations = [("llm_service_duration", log["llm_service_duration"]), ("llm_duration_count", 1)]
        if t.stream:
            durations += [
                ("llm_first_token_duration", log["llm_first_token_duration"]),
                ("llm_stream_duration_count", 1),
            ]
        tokens = [
            ("input_token", t.input_tokens),
            ("output_token", t.output_tokens),
            ("total_token", t.total_tokens),
        ]
        if t.usage_reported:
            for name, v in tokens + durations:
                if v > 0:
                    higress[(H + name, labels)] += v
                    ours[(H + name, labels)] += v
        else:  # deliberate difference (spec §9): durations and counts also without usage
            for name, v in durations:
                if v > 0:
                    ours[(H + name, labels)] += v
        if failed:
            higress[(H + "llm_failure_count", labels)] += 1
            ours[(H + "llm_failure_count", labels)] += 1

    # the sidecar finalises a record a moment after Envoy logs the line
    want_calls = sum(v for (n, _), v in ours.items() if n == H + "llm_duration_count")
    wait_for(
        lambda: metric_value(metrics_text(st), H + "llm_duration_count") == want_calls,
        what="every call in the metrics",
    )
    text = metrics_text(st)
    got = higress_series(text)

    # name for name, label for label: exactly the series the plugin would have
    assert set(got) == set(higress)
    # values: tokens and failures equal Higress', durations add only the calls Higress skips (no usage)
    assert {k: int(v) for k, v in got.items()} == dict(ours)
    for k, v in higress.items():
        if k[0].removeprefix(H) in ("input_token", "output_token", "total_token", "llm_failure_count"):
            assert int(got[k]) == v, k
    assert int(got[(H + "llm_duration_count", _labels("gpt-4o-mini", "alice"))]) == 4  # Higress: 2
    assert (
        int(got[(H + "input_token", _labels("gpt-4o-mini", "alice"))])
        == 11 + expected(*_call(1)).input_tokens
    )

    # the exposition itself: `# TYPE <name> counter` (no HELP, no _total), then its samples
    lines = text.splitlines()
    for name in {n for n, _ in got}:
        i = lines.index(f"# TYPE {name} counter")
        assert lines[i + 1].startswith(name + "{") and not lines[i - 1].startswith(f"# HELP {name}")
    assert {n for n, _ in got} == {H + n for n in HIGRESS_METRICS}  # the script exercises all eight


def _call(i: int) -> tuple[str, dict[str, str], dict[str, Any]]:
    path, body, headers = SCRIPT[i]
    return path, headers, body


def _labels(model: str, consumer: str) -> str:
    return f'{{ai_route="{ROUTE}",ai_cluster="{CLUSTER}",ai_model="{model}",ai_consumer="{consumer}"}}'


# ------------------------------------------------------------------------------------ Prometheus


def prometheus_binary() -> str:
    exe = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail(
            "no prometheus binary: .ci/run installs Debian's `prometheus` package; in CI this test must run"
        )
    pytest.skip("prometheus is not installed (apt-get install prometheus); CI installs it and runs this test")


def promql(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(query)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.load(r)
    assert doc["status"] == "success", doc
    return doc["data"]["result"]  # type: ignore[no-any-return]


def scalar(port: int, query: str) -> float | None:
    res = promql(port, query)
    return float(res[0]["value"][1]) if res else None


def by_label(port: int, query: str, label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in promql(port, query)}


def test_real_prometheus_answers_match_the_mock(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    exe = prometheus_binary()
    st: Stack = stack_factory()
    port = procs.free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: gateway-stats\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{st.metrics_port}']}}]\n"
    )
    prom = procs._spawn(
        "prometheus",
        [
            exe,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        tmp_path,
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=30, proc=prom.popen)
        calls: list[tuple[dict[str, Any], dict[str, str]]] = []
        for model, base in (("m-alpha", 100), ("m-beta", 300)):
            for i in range(3):
                tokens = {"x-mock-input-tokens": str(base + 7 * i), "x-mock-output-tokens": str(20 + i)}
                calls.append(({"model": model, "messages": msgs("json")}, dict(tokens)))
                body = {
                    "model": model,
                    "messages": msgs("s"),
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                calls.append((body, {**tokens, "x-mock-first-byte-ms": "250", "x-mock-events": "3"}))
        calls.append(({"model": "m-alpha", "messages": msgs("e")}, {"x-mock-status": "503"}))
        calls.append(({"model": "m-alpha", "messages": msgs("e")}, {"x-mock-status": "503"}))
        calls.append(({"model": "m-beta", "messages": msgs("e")}, {"x-mock-status": "429"}))
        for i, (_, h) in enumerate(calls):
            h["x-mock-chat-id"] = f"prom-{i}"
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda c: post(st.envoy_port, CHAT, c[0], c[1])[0], calls))
        truths = [expected(CHAT, h, b) for b, h in calls]
        assert statuses == [t.status for t in truths]

        n = len(calls)
        wait_for(
            lambda: scalar(port, "sum(gateway_stats_calls_total)") == n,
            timeout=20,
            what="a scrape with all calls",
        )
        assert scalar(port, 'up{job="gateway-stats"}') == 1.0  # the whole exposition parsed

        # summed input/output tokens by model
        want_in: dict[str, float] = defaultdict(float)
        want_out: dict[str, float] = defaultdict(float)
        for t in truths:
            if t.usage_reported:
                want_in[t.model] += t.input_tokens
                want_out[t.model] += t.output_tokens
        print(f"input tokens by model {dict(want_in)}, output {dict(want_out)}")
        assert by_label(port, f"sum by (ai_model) ({H}input_token)", "ai_model") == want_in
        assert by_label(port, f"sum by (ai_model) ({H}output_token)", "ai_model") == want_out
        q = 'sum by (gen_ai_response_model) (gen_ai_client_token_usage_sum{gen_ai_token_type="%s"})'
        assert by_label(port, q % "input", "gen_ai_response_model") == want_in
        assert by_label(port, q % "output", "gen_ai_response_model") == want_out

        # p50 time to first chunk within one bucket of the true value (the mock's first byte)
        with urllib.request.urlopen(f"http://127.0.0.1:{st.mock_port}/_mock/records", timeout=5) as r:
            records = json.load(r)
        true_ttfc = sorted(
            (rec["t_first_byte"] - rec["t_request_start"]) / 1e9
            for rec in records
            if rec["stream"] and rec["scenario"].get("x-mock-chat-id", "").startswith("prom-")
        )
        assert len(true_ttfc) == 6
        p50 = scalar(
            port,
            "histogram_quantile(0.5, sum by (le) "
            "(gen_ai_client_operation_time_to_first_chunk_seconds_bucket))",
        )
        assert p50 is not None
        truth = true_ttfc[len(true_ttfc) // 2]
        print(f"PromQL p50 time to first chunk {p50:.3f} s; mock's first byte (median) {truth:.3f} s")
        assert abs(bisect_left(DURATION_BUCKETS, p50) - bisect_left(DURATION_BUCKETS, truth)) <= 1, (
            p50,
            truth,
        )

        # error ratio, two ways
        errors = sum(1 for t in truths if t.status >= 400)
        ratio = scalar(
            port, 'sum(gateway_stats_calls_total{outcome="error"}) / sum(gateway_stats_calls_total)'
        )
        assert ratio == errors / n
        ratio = scalar(
            port, 'sum(gateway_stats_calls_total{status_class=~"4xx|5xx"}) / sum(gateway_stats_calls_total)'
        )
        assert ratio == errors / n
        assert by_label(port, f"sum by (ai_model) ({H}llm_failure_count)", "ai_model") == {
            "m-alpha": 2,
            "m-beta": 1,
        }

        # Prometheus itself sees the Higress names as counters, without a _total suffix
        url = f"http://127.0.0.1:{port}/api/v1/metadata?metric={H}input_token"
        with urllib.request.urlopen(url, timeout=5) as r:
            meta = json.load(r)["data"]
        assert meta[f"{H}input_token"][0]["type"] == "counter"
    finally:
        prom.stop()


# ---------------------------------------------------------------------------------- self-metrics


def test_self_metrics(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "gs.yaml"
    cfg.write_text("gateway_stats:\n  limits: {max_event_bytes: 2048}\n")
    st: Stack = stack_factory(config_path=str(cfg))
    body = {"model": "m", "messages": msgs("x"), "stream": True, "stream_options": {"include_usage": True}}
    for i in range(3):
        h = {"x-mock-chat-id": f"self-{i}"}
        if i == 0:
            h["x-mock-event-bytes"] = "10000"  # one SSE event over the 2048-byte cap: dropped, then resync
        assert post(st.envoy_port, CHAT, body, h)[0] == 200
    wait_for(lambda: metric_value(metrics_text(st), "gateway_stats_records_total") == 3, what="3 records")
    wait_for(
        lambda: metric_value(metrics_text(st), "gateway_stats_active_streams") == 0, what="streams closed"
    )
    # finished calls reach the sinks in batches (servicer.EMIT_DELAY_S after the last one)
    wait_for(lambda: metric_value(metrics_text(st), "gateway_stats_sse_resyncs_total") == 1, what="sinks")
    text = metrics_text(st)
    assert metric_value(text, "gateway_stats_messages_total", phase="request_headers") == 3
    assert metric_value(text, "gateway_stats_messages_total", phase="response_body") >= 3
    assert metric_value(text, "gateway_stats_message_handling_seconds_count", phase="request_headers") == 3
    assert "gateway_stats_message_handling_seconds_bucket{" in text
    assert metric_value(text, "gateway_stats_sse_resyncs_total") == 1
    assert metric_value(text, "gateway_stats_caps_hit_total", cap="sse_event") == 1
    for phase in ("request_headers", "response_body", "finish", "sink"):
        assert f'gateway_stats_errors_total{{phase="{phase}"}} 0.0' in text
    assert metric_value(text, "gateway_stats_label_overflow_total", family=H + "input_token") == 0
    assert metric_value(text, "gateway_stats_metric_series", family="gateway_stats_calls_total") == 1

    # config reloads, by result: a broken file keeps the last good config, a good one is taken
    cfg.write_text("gateway_stats:\n  metrics: {profiles: [higres]}\n")
    wait_for(
        lambda: metric_value(metrics_text(st), "gateway_stats_config_reloads_total", result="failed") == 1,
        what="a failed reload",
    )
    cfg.write_text("gateway_stats:\n  metrics: {profiles: [genai]}\n")
    wait_for(
        lambda: metric_value(metrics_text(st), "gateway_stats_config_reloads_total", result="ok") == 1,
        what="a good reload",
    )
    assert post(st.envoy_port, CHAT, body, {"x-mock-chat-id": "self-after"})[0] == 200
    wait_for(lambda: metric_value(metrics_text(st), "gateway_stats_calls_total") == 4, what="the 4th call")
    text = metrics_text(st)
    assert f"# TYPE {H}input_token counter" not in text  # the higress profile was switched off


def test_missing_prometheus_fails_in_ci_and_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(os, "access", lambda _path, _mode: False)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="in CI this test must run"):
        prometheus_binary()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install prometheus"):
        prometheus_binary()
