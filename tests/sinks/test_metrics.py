"""The metrics sink without I/O: records in, Prometheus text out (Higress, GenAI, calls, the cap)."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from driver import MS, chat_chunk, start
from prometheus_client.parser import text_string_to_metric_families

from gateway_stats.config import (
    BUILTIN_METRIC_LABELS,
    HIGRESS_METRIC_PREFIX,
    METRIC_FAMILIES,
    ConfigError,
    default_config,
    parse_config,
)
from gateway_stats.config.store import ConfigStore
from gateway_stats.core.buckets import DURATION_BUCKETS, TOKEN_BUCKETS, BucketCounts
from gateway_stats.core.feedback import Feedback
from gateway_stats.core.observer import CallObserver
from gateway_stats.core.record import CallRecord, Usage
from gateway_stats.envoy.runtime import Runtime
from gateway_stats.sinks.metrics import OVERFLOW, SPEC_BY_NAME, MetricsSink, status_class

H = HIGRESS_METRIC_PREFIX


def sink_for(doc: dict[str, Any] | None = None) -> tuple[MetricsSink, ConfigStore, list[str]]:
    store = ConfigStore(None)
    if doc is not None:
        store.current = parse_config(doc, "test.yaml")
    caps: list[str] = []
    return MetricsSink(store, on_cap=caps.append), store, caps


def record(
    model: str | None = "gpt-4o",
    *,
    request_model: str | None = None,
    route: str = "r1",
    cluster: str = "c1",
    consumer: str = "none",
    stream: bool = False,
    status: int | None = 200,
    usage: tuple[int, int] | None = (10, 5),
    total: int | None = None,
    service_ms: int = 100,
    first_byte_ms: int | None = None,
    failed: bool = False,
    error_type: str | None = None,
    end_reason: str = "complete",
    operation: str = "chat",
    provider: str = "openai",
) -> CallRecord:
    r = CallRecord(route=route, cluster=cluster, consumer=consumer, operation=operation, provider=provider)
    r.request_model = request_model if request_model is not None else model
    r.response_model = model if not failed else None
    r.status_code = status
    r.response_type = "stream" if stream else "normal"
    r.request_stream = stream
    if usage is not None:
        r.usage = Usage(input_tokens=usage[0], output_tokens=usage[1], total_tokens=total)
    r.t_start = 1_000 * MS
    r.t_end = r.t_start + service_ms * MS
    if first_byte_ms is not None:
        r.t_first_byte = r.t_start + first_byte_ms * MS
    r.failed = failed
    r.error_type = error_type
    r.end_reason = end_reason
    r.finished = True
    return r


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse with prometheus_client's own text parser: proves the exposition is well-formed.

    The parser names every counter sample `<family>_total`; Higress' are keyed by their real name.
    """
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = fam.name if fam.name.startswith(H) else s.name
            out[(name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for (n, labs), v in samples(text).items():
        d = dict(labs)
        if n == name and all(d.get(k) == want for k, want in labels.items()):
            total += v
    return total


def higress_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(H) or ln.startswith("# TYPE " + H)]


# ------------------------------------------------------------------------------------------ Higress


def test_higress_text_is_exact() -> None:
    sink, _, _ = sink_for()
    sink.emit(record("qwen-turbo", usage=(24, 507), service_ms=6470 - 1955), {})
    sink.emit(record("qwen-turbo", stream=True, usage=(0, 0), service_ms=1955, first_byte_ms=340), {})
    sink.emit(record("qwen-turbo", request_model="qwen-turbo", usage=None, status=429, failed=True), {})
    labels = 'ai_route="r1",ai_cluster="c1",ai_model="qwen-turbo",ai_consumer="none"'
    assert higress_lines(sink.render()) == [
        f"# TYPE {H}input_token counter",
        f"{H}input_token{{{labels}}} 24",
        f"# TYPE {H}output_token counter",
        f"{H}output_token{{{labels}}} 507",
        f"# TYPE {H}total_token counter",
        f"{H}total_token{{{labels}}} 531",
        f"# TYPE {H}llm_service_duration counter",
        f"{H}llm_service_duration{{{labels}}} 6570",  # 4515 + 1955 + 100 (the failed call, our addition)
        f"# TYPE {H}llm_duration_count counter",
        f"{H}llm_duration_count{{{labels}}} 3",
        f"# TYPE {H}llm_first_token_duration counter",
        f"{H}llm_first_token_duration{{{labels}}} 340",
        f"# TYPE {H}llm_stream_duration_count counter",
        f"{H}llm_stream_duration_count{{{labels}}} 1",
        f"# TYPE {H}llm_failure_count counter",
        f"{H}llm_failure_count{{{labels}}} 1",
    ]


def test_higress_labels_come_from_route_cluster_response_model_and_consumer() -> None:
    sink, _, _ = sink_for()
    sink.emit(
        record("gpt-4o-2024", request_model="gpt-4o", route="ai-route", cluster="outbound|443||x.dns"), {}
    )
    sink.emit(record(None, request_model="gpt-4o", consumer="alice", failed=True, status=503, usage=None), {})
    text = sink.render()
    assert value(text, H + "input_token", ai_model="gpt-4o-2024", ai_cluster="outbound|443||x.dns") == 10
    # a failure is labelled with the request model (the response has none)
    assert value(text, H + "llm_failure_count", ai_model="gpt-4o", ai_consumer="alice") == 1
    assert value(text, H + "input_token", ai_model="gpt-4o") == 0  # no usage, no token series


def test_api_route_names_label_metrics_with_their_first_three_parts() -> None:
    """Higress (plugin 2.0.1): a route named `api@version@kind@region` (three or more `@` parts) labels the
    metrics with the first three parts, the same value as ai_log.api; other route names stay whole."""
    sink, _, _ = sink_for()
    sink.emit(record("m", route="chat-api@v1@chat@cn-hangzhou"), {})
    sink.emit(record("m", route="a@b@c"), {})
    sink.emit(record("m", route="one@two"), {})
    text = sink.render()
    assert value(text, H + "input_token", ai_route="chat-api@v1@chat") == 10
    assert value(text, H + "input_token", ai_route="a@b@c") == 10
    assert value(text, H + "input_token", ai_route="one@two") == 10
    assert "cn-hangzhou" not in text
    assert value(text, "gateway_stats_calls_total", ai_route="chat-api@v1@chat") == 1
    d = "gen_ai_client_operation_duration_seconds_count"
    assert value(text, d, ai_route="chat-api@v1@chat") == 1


def test_a_failure_is_labelled_with_the_request_model_even_after_a_response_model() -> None:
    """Higress (spec §6): a failed call's series carry the request model, even when an earlier event of
    the stream named a response model."""
    sink, _, _ = sink_for()
    obs = CallObserver(default_config())
    start(obs, {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    obs.on_response_headers({":status": "200", "content-type": "text/event-stream"}, {}, False, 10 * MS)
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    obs.on_response_body(chat_chunk("Hel", model="gpt-4o-2024-08-06") + error, False, 20 * MS)
    obs.on_response_body(b"", True, 30 * MS)
    rec = obs.finish(30 * MS)
    assert rec.failed and rec.response_model == "gpt-4o-2024-08-06"
    sink.emit(rec, {})
    text = sink.render()
    assert value(text, H + "llm_failure_count", ai_model="gpt-4o") == 1
    assert value(text, H + "llm_duration_count", ai_model="gpt-4o") == 1
    assert value(text, "gateway_stats_calls_total", ai_model="gpt-4o", outcome="error") == 1
    assert 'ai_model="gpt-4o-2024-08-06"' not in text
    d = "gen_ai_client_operation_duration_seconds_count"  # semconv labels keep both models
    assert value(text, d, gen_ai_request_model="gpt-4o", gen_ai_response_model="gpt-4o-2024-08-06") == 1


def test_durations_recorded_without_usage_deliberate_difference() -> None:
    """Higress records nothing for a call without usage (#2595, #2857); we record durations and counts."""
    sink, _, _ = sink_for()
    sink.emit(record(stream=True, usage=None, service_ms=900, first_byte_ms=120), {})
    text = sink.render()
    assert value(text, H + "llm_service_duration") == 900 and value(text, H + "llm_duration_count") == 1
    assert value(text, H + "llm_first_token_duration") == 120
    assert value(text, H + "llm_stream_duration_count") == 1
    names = {ln.split("{")[0] for ln in higress_lines(text) if not ln.startswith("#")}
    assert names == {H + "llm_service_duration", H + "llm_duration_count"} | {
        H + "llm_first_token_duration",
        H + "llm_stream_duration_count",
    }


def test_zero_increments_create_no_series_like_envoy() -> None:
    sink, _, _ = sink_for()
    sink.emit(record(usage=(12, 0), operation="embeddings"), {})
    text = sink.render()
    assert value(text, H + "input_token") == 12
    # embeddings have no output tokens: that counter is never incremented, so it does not exist
    assert not [ln for ln in higress_lines(text) if "output_token" in ln]


def test_non_llm_requests_are_not_traffic() -> None:
    sink, _, _ = sink_for()
    sink.emit(record(None, usage=None, operation="unknown", provider="unknown"), {})
    assert sink.series_count("gateway_stats_calls_total") == 0 and not higress_lines(sink.render())


def test_a_response_whose_content_type_is_not_analysed_makes_no_metrics() -> None:
    """Higress: outside `enable_content_types` only the request side is logged; no metric moves."""
    sink, _, _ = sink_for()
    r = record("gpt-4o", usage=None)
    r.response_observed = False
    sink.emit(r, {})
    assert sink.series_count("gateway_stats_calls_total") == 0 and not higress_lines(sink.render())


def test_consumer_header_is_configurable() -> None:
    store = ConfigStore(None)
    store.current = parse_config({"gateway_stats": {"consumer_header": "X-Tenant"}})
    obs = CallObserver(store.current)
    obs.on_request_headers(
        {":path": "/v1/chat/completions", "x-tenant": "acme", "x-mse-consumer": "ignored"}, {}, False, 0
    )
    obs.on_request_body(json.dumps({"model": "m", "messages": []}).encode(), True, MS)
    obs.on_response_headers({":status": "200", "content-type": "application/json"}, {}, False, 2 * MS)
    obs.on_response_body(b'{"model":"m","usage":{"prompt_tokens":3,"completion_tokens":4}}', True, 3 * MS)
    sink = MetricsSink(store)
    sink.emit(obs.finish(4 * MS), obs.ai_log())
    assert value(sink.render(), H + "output_token", ai_consumer="acme") == 4


# -------------------------------------------------------------------------------------------- GenAI


def test_genai_token_usage_types_follow_semconv() -> None:
    sink, _, _ = sink_for()
    r = record("gpt-4o", usage=(100, 40))
    r.usage.cached_tokens, r.usage.reasoning_tokens = 30, 12
    sink.emit(r, {})
    a = record("claude", usage=(5, 9), provider="anthropic")  # Anthropic: input excludes cache
    a.usage.cached_tokens, a.usage.cache_creation_tokens, a.usage.input_excludes_cache = 100, 20, True
    sink.emit(a, {})
    g = record("gemini-2.5", usage=(7, 3), provider="gcp.gemini")  # Gemini: thoughts outside candidates
    g.usage.reasoning_tokens = 11
    sink.emit(g, {})
    text = sink.render()

    def tok(model: str, ttype: str) -> float:
        return value(
            text, "gen_ai_client_token_usage_sum", gen_ai_response_model=model, gen_ai_token_type=ttype
        )

    assert (tok("gpt-4o", "input"), tok("gpt-4o", "output")) == (100, 40)
    assert (tok("gpt-4o", "cached_input"), tok("gpt-4o", "reasoning")) == (30, 12)
    assert tok("claude", "input") == 125 and tok("claude", "cache_creation_input") == 20
    assert tok("gemini-2.5", "output") == 14 and tok("gemini-2.5", "reasoning") == 11
    buckets = [
        (s.labels["le"], s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "gen_ai_client_token_usage_bucket"
        and s.labels["gen_ai_response_model"] == "gpt-4o"
        and s.labels["gen_ai_token_type"] == "input"
    ]
    assert [float(le) for le, _ in buckets[:-1]] == list(TOKEN_BUCKETS) and buckets[-1] == ("+Inf", 1)
    assert dict(buckets)["64"] == 0 and dict(buckets)["256"] == 1  # 100 tokens: first bucket le=256


def test_genai_durations_labels_and_error_type() -> None:
    sink, _, _ = sink_for()
    sink.emit(record("m", stream=True, service_ms=1500, first_byte_ms=250, consumer="bob"), {})
    sink.emit(
        record(None, request_model="m", status=503, usage=None, failed=True, error_type="api_error"), {}
    )
    text = sink.render()
    d = "gen_ai_client_operation_duration_seconds"
    assert value(text, d + "_sum", gen_ai_response_model="m", ai_consumer="bob") == 1.5
    assert value(text, d + "_count", error_type="api_error", gen_ai_request_model="m") == 1
    ok = [k for k in samples(text) if k[0] == d + "_count" and ("ai_consumer", "bob") in k[1]]
    assert ok and all(lab[0] != "error_type" for lab in ok[0][1])  # no error_type on success (absent, not "")
    t = "gen_ai_client_operation_time_to_first_chunk_seconds"
    assert value(text, t + "_sum") == 0.25 and value(text, t + "_count") == 1  # streams only
    assert value(text, t + "_bucket", le="0.32") == 1 and value(text, t + "_bucket", le="0.16") == 0
    assert "gen_ai_server_" not in text  # aliases are opt-in


def test_time_per_output_chunk_is_per_chunk_from_the_observer() -> None:
    obs = CallObserver(default_config())
    start(obs, {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    obs.on_response_headers({":status": "200", "content-type": "text/event-stream"}, {}, False, 50 * MS)
    obs.on_response_body(chat_chunk("a"), False, 300 * MS)
    obs.on_response_body(chat_chunk("b") + chat_chunk("c"), False, 350 * MS)  # two events, one message
    obs.on_response_body(chat_chunk("d"), False, 1_350 * MS)
    usage = chat_chunk(usage={"prompt_tokens": 3, "completion_tokens": 4})
    obs.on_response_body(usage + b"data: [DONE]\n\n", True, 1_360 * MS)
    rec = obs.finish(1_361 * MS)
    assert rec.chunk_gaps is not None and rec.chunk_gaps.count == 4  # 5 data events, [DONE] not one
    sink = MetricsSink(ConfigStore(None))
    sink.emit(rec, obs.ai_log())
    n = "gen_ai_client_operation_time_per_output_chunk_seconds"
    text = sink.render()
    assert value(text, n + "_count") == 4
    assert math.isclose(value(text, n + "_sum"), 0.05 + 0 + 1.0 + 0.01)
    assert value(text, n + "_bucket", le="0.01") == 2  # the 0 s gap and the 10 ms one
    assert value(text, n + "_bucket", le="0.08") == 3 and value(text, n + "_bucket", le="1.28") == 4


def test_server_aliases_profile() -> None:
    sink, _, _ = sink_for({"gateway_stats": {"metrics": {"gen_ai_server_aliases": True}}})
    r = record("m", stream=True, usage=(10, 11), service_ms=2_000, first_byte_ms=100)
    r.t_first_content = r.t_start + 500 * MS  # first content later than first byte
    sink.emit(r, {})
    sink.emit(record("m", stream=True, failed=True, status=500, service_ms=50, first_byte_ms=40), {})
    text = sink.render()
    assert value(text, "gen_ai_server_request_duration_seconds_count") == 2
    assert value(text, "gen_ai_server_time_to_first_token_seconds_sum") == 0.5  # successful streams only
    assert value(text, "gen_ai_server_time_to_first_token_seconds_count") == 1
    assert math.isclose(value(text, "gen_ai_server_time_per_output_token_seconds_sum"), (2.0 - 0.5) / 10)


# --------------------------------------------------------------------------------------------- calls


def test_calls_by_outcome() -> None:
    sink, _, _ = sink_for()
    sink.emit(record("a"), {})
    sink.emit(record("a", stream=True, first_byte_ms=5), {})
    sink.emit(record("a", status=429, failed=True, usage=None), {})
    sink.emit(record("a", status=200, failed=True, usage=None), {})  # error inside a 200 answer
    sink.emit(record("a", stream=True, status=200, end_reason="aborted"), {})  # client hung up
    sink.emit(record("a", status=None, failed=True, usage=None, end_reason="aborted"), {})  # upstream reset
    text = sink.render()
    c = "gateway_stats_calls_total"
    assert value(text, c) == 6
    assert value(text, c, outcome="error") == 3 and value(text, c, outcome="aborted") == 1
    assert value(text, c, status_class="4xx") == 1 and value(text, c, status_class="none") == 1
    assert value(text, c, stream="true") == 2 and value(text, c, stream="true", outcome="ok") == 1
    assert [status_class(x) for x in (None, 101, 204, 399, 404, 503, 999)] == [
        "none",
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "other",
    ]


# ---------------------------------------------------------------------------------------- profiles


@pytest.mark.parametrize(
    ("profiles", "higress", "genai"),
    [(["higress"], True, False), (["genai"], False, True), ([], False, False), (None, True, True)],
)
def test_profiles(profiles: list[str] | None, higress: bool, genai: bool) -> None:
    doc = {"gateway_stats": {"metrics": {"profiles": profiles}}} if profiles is not None else None
    sink, _, _ = sink_for(doc)
    sink.emit(record(stream=True, first_byte_ms=3), {})
    text = sink.render()
    assert (H in text) is higress and ("gen_ai_client_" in text) is genai
    assert value(text, "gateway_stats_calls_total") == 1  # ours, always on


def test_exposition_parses_and_families_match_config() -> None:
    assert tuple(SPEC_BY_NAME) == METRIC_FAMILIES
    # extra labels are validated against BUILTIN_METRIC_LABELS: it must hold every label we use
    assert {lab for spec in SPEC_BY_NAME.values() for lab in spec.labels} <= BUILTIN_METRIC_LABELS
    sink, _, _ = sink_for({"gateway_stats": {"metrics": {"gen_ai_server_aliases": True}}})
    r = record('we"ird\\model\nname', stream=True, first_byte_ms=7, consumer="c,d={x}")
    r.note_chunk(r.t_start + 7 * MS)
    r.note_chunk(r.t_start + 9 * MS)
    sink.emit(r, {})
    sink.emit(record("m", failed=True, status=500), {})
    priced = record("m")
    priced.cost, priced.cost_currency = Decimal("0.0123"), "USD"
    unpriced = record("x")
    unpriced.extra["unpriced_reason"] = "unknown_model"
    sink.emit(priced, {})
    sink.emit(unpriced, {})
    sink.feedback(Feedback(source="api", rating=1, model="m", route="r"))
    text = sink.render()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name in METRIC_FAMILIES:
        base = name.removesuffix("_total")
        assert types[base] == SPEC_BY_NAME[name].kind, name
    assert value(text, H + "input_token", ai_model='we"ird\\model\nname', ai_consumer="c,d={x}") == 10


# ------------------------------------------------------------------------------------- cardinality


def test_100k_model_names_stay_at_the_cap() -> None:
    cap = 50
    sink, _, _ = sink_for({"gateway_stats": {"metrics": {"max_series_per_metric": cap}}})
    n = 100_000
    proto = record("x", usage=(3, 2), stream=True, first_byte_ms=5)
    for i in range(n):
        proto.response_model = proto.request_model = f"model-{i}"
        sink.emit(proto, {})
    text = sink.render()
    for name in METRIC_FAMILIES:
        got = sink.series_count(name)
        assert got <= cap, (name, got)
    for short in ("input_token", "llm_duration_count", "llm_stream_duration_count"):
        assert sink.series_count(H + short) == cap
    # cap - 1 real models, then one __overflow__ series holds the rest; nothing is lost from the sums
    assert value(text, H + "input_token") == 3 * n
    assert value(text, H + "input_token", ai_model=OVERFLOW) == 3 * (n - (cap - 1))
    folded = value(text, "gateway_stats_label_overflow_total", family=H + "input_token")
    assert folded == n - (cap - 1)
    assert value(text, "gateway_stats_metric_series", family=H + "input_token") == cap
    # token types are a fixed vocabulary: kept on overflow, so input and output sums stay apart
    # (5 token-type slots are reserved for overflow series; input and output use 2 of them)
    assert cap - 5 <= sink.series_count("gen_ai_client_token_usage") <= cap
    tu = "gen_ai_client_token_usage_sum"
    assert value(text, tu, gen_ai_token_type="input") == 3 * n
    assert value(text, tu, gen_ai_token_type="output", gen_ai_request_model=OVERFLOW) > 0


def test_overflow_keeps_status_class_so_error_ratio_survives() -> None:
    sink, _, _ = sink_for({"gateway_stats": {"metrics": {"max_series_per_metric": 60}}})
    for i in range(1_000):
        err = i % 4 == 0
        sink.emit(record(f"m{i}", status=503 if err else 200, failed=err, usage=None if err else (1, 1)), {})
    text = sink.render()
    c = "gateway_stats_calls_total"
    assert sink.series_count(c) <= 60
    assert value(text, c, outcome="error") / value(text, c) == 0.25
    assert value(text, c, status_class="5xx", ai_model=OVERFLOW) > 0


def test_tiny_cap_folds_everything_into_one_series() -> None:
    sink, _, _ = sink_for({"gateway_stats": {"metrics": {"max_series_per_metric": 1}}})
    for i in range(10):
        sink.emit(record(f"m{i}", status=200 if i % 2 else 500, failed=not i % 2), {})
    for name in ("gateway_stats_calls_total", "gen_ai_client_token_usage", H + "input_token"):
        assert sink.series_count(name) == 1
    assert value(sink.render(), "gateway_stats_calls_total", status_class=OVERFLOW) == 10


def test_label_values_are_length_capped_and_counted() -> None:
    sink, _, caps = sink_for({"gateway_stats": {"metrics": {"max_label_value_length": 8}}})
    sink.emit(record("a-very-long-model-name", consumer="short"), {})
    text = sink.render()
    assert value(text, H + "input_token", ai_model="a-very-l", ai_consumer="short") == 10
    assert "a-very-long" not in text and "metric_label_value" in caps


def test_cap_counted_in_self_metrics() -> None:
    rt = Runtime(ConfigStore(None))
    rt.store.current = parse_config({"gateway_stats": {"metrics": {"max_label_value_length": 3}}})
    rt.emit(record("abcdef"), {})
    text = rt.render_metrics().decode()
    assert value(text, "gateway_stats_caps_hit_total", cap="metric_label_value") >= 1
    assert value(text, H + "input_token", ai_model="abc") == 10


# ------------------------------------------------------------------------------------- extra labels

EXTRA = {
    "attributes": [{"key": "project", "value_source": "request_header", "value": "x-project"}],
    "gateway_stats": {
        "metrics": {
            "extra_labels": [
                {"name": "team", "request_header": "X-Team"},
                {"name": "project", "attribute": "project", "families": ["gen_ai.client.token.usage"]},
            ]
        }
    },
}


def test_extra_labels_from_header_and_attribute() -> None:
    store = ConfigStore(None)
    store.current = parse_config(EXTRA)
    obs = CallObserver(store.current)
    obs.on_request_headers(
        {":path": "/v1/chat/completions", "x-team": "search", "x-project": "p42"},
        {"xds.route_name": "r", "xds.cluster_name": "c"},
        False,
        0,
    )
    obs.on_request_body(json.dumps({"model": "m", "messages": []}).encode(), True, MS)
    obs.on_response_headers({":status": "200", "content-type": "application/json"}, {}, False, 2 * MS)
    obs.on_response_body(b'{"model":"m","usage":{"prompt_tokens":3,"completion_tokens":4}}', True, 3 * MS)
    rec = obs.finish(4 * MS)
    assert rec.label_headers == {"x-team": "search"}
    sink = MetricsSink(store)
    sink.emit(rec, obs.ai_log())
    text = sink.render()
    # `team` on every family (Higress ones included, after the four Higress labels), `project` on one
    assert (
        f'{H}input_token{{ai_route="r",ai_cluster="c",ai_model="m",ai_consumer="none",team="search"}} 3'
        in text.splitlines()
    )
    assert (
        value(text, "gen_ai_client_token_usage_sum", team="search", project="p42", gen_ai_token_type="input")
        == 3
    )
    assert value(text, "gateway_stats_calls_total", team="search") == 1
    assert 'project="p42"' not in text.split("# HELP gen_ai_client_operation_duration_seconds")[1]


def test_extra_label_families_are_validated() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                "gateway_stats": {
                    "metrics": {
                        "extra_labels": [
                            {"name": "t", "request_header": "x", "families": ["gen_ai_client_token"]}
                        ]
                    }
                }
            },
            "c.yaml",
        )
    assert str(e.value) == (
        "c.yaml: gateway_stats.metrics.extra_labels[0].families[0]: 'gen_ai_client_token' is not an exported "
        "metric family; did you mean 'gen_ai_client_token_usage'?"
    )


def test_reload_applies_new_metrics_config() -> None:
    sink, store, _ = sink_for()
    sink.emit(record("a"), {})
    store.current = parse_config({"gateway_stats": {"metrics": {"profiles": ["higress"]}}})
    sink.emit(record("a"), {})
    text = sink.render()
    assert value(text, H + "input_token") == 20  # same labels: the family kept its series
    assert "gen_ai_client_" not in text
    store.current = parse_config(
        {"gateway_stats": {"metrics": {"extra_labels": [{"name": "t", "request_header": "x-t"}]}}}
    )
    sink.emit(record("a"), {})
    text = sink.render()
    assert value(text, H + "input_token") == 10  # labels changed: the family starts afresh
    assert f'{H}input_token{{ai_route="r1",ai_cluster="c1",ai_model="a",ai_consumer="none",t=""}} 10' in text


def test_bucket_counts() -> None:
    b = BucketCounts(DURATION_BUCKETS)
    for v in (0.0, 0.01, 0.010001, 81.92, 1000.0):
        b.observe(v)
    assert b.cumulative()[0] == 2 and b.cumulative()[1] == 3 and b.cumulative()[-2] == 4 and b.count == 5
    with pytest.raises(ValueError):
        b.merge(BucketCounts(TOKEN_BUCKETS))
