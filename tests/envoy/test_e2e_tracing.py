"""Spans end to end: real Envoy 1.40 with its OpenTelemetry tracer, gateway-stats, the mock LLM, and
this test's own OTLP receiver (Envoy exports to it over gRPC, gateway-stats over HTTP/protobuf).

Checked on every call: one trace id for Envoy's spans and ours, our span's parent is Envoy's span for
the ext_proc side call (itself a child of Envoy's request span), the attributes carry what the mock
sent, and Envoy's request span carries our model and token custom tags.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ai_log_for, post, wait_for
from otlp_receiver import OtlpReceiver, Span

from gateway_stats.testing.mockllm import error_body, expected
from gateway_stats.testing.procs import Stack

PATH = "/v1/chat/completions"

CONFIG = """\
value_length_limit: 10
session_id_header: x-session-id
attributes:
  - key: user_agent
    value_source: request_header
    value: user-agent
    apply_to_span: true
    trace_span_key: user_agent.original
  - key: question
    value_source: request_body
    value: messages.@reverse.0.content
    apply_to_log: true
    apply_to_span: true
  - key: finish_reason
    value_source: response_body
    value: choices.0.finish_reason
    apply_to_span: true
  - key: finish_reason
    value_source: response_streaming_body
    value: choices.0.finish_reason
    rule: replace
    apply_to_span: true
gateway_stats:
  tracing:
    enabled: %(enabled)s
    capture_content: true
    service_name: gateway-stats-e2e
"""


def _env(rx: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "",
        "OTEL_RESOURCE_ATTRIBUTES": "",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }


def _start(wd: Path, rx: OtlpReceiver, enabled: bool) -> Stack:
    wd.mkdir(parents=True, exist_ok=True)
    cfg = wd / "config.yaml"
    cfg.write_text(CONFIG % {"enabled": "true" if enabled else "false"})
    st = Stack(
        wd / "stack",
        config_path=str(cfg),
        sidecar_env=_env(rx),
        envoy_extra={"tracing_collector": rx.grpc_address, "tracing_flush_interval_ms": 100},
    )
    try:
        st.start()
    except Exception:
        for p in st.procs.values():
            print(f"--- {p.name} ---\n{p.log_text()[-3000:]}")
        st.stop()
        raise
    return st


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, OtlpReceiver]]:
    rx = OtlpReceiver().start()
    st = _start(tmp_path_factory.mktemp("traced"), rx, enabled=True)
    yield st, rx
    st.stop()
    rx.stop()


def _envoy_spans(rx: OtlpReceiver, trace_id: str) -> tuple[Span, Span]:
    """Envoy's request (SERVER) span and its ext_proc side-call (CLIENT) span in this trace."""

    def find() -> tuple[Span, Span] | None:
        spans = [s for s in rx.snapshot() if s.service == "envoy" and s.trace_id == trace_id]
        ingress = [s for s in spans if s.kind == "SERVER"]
        side = [s for s in spans if s.kind == "CLIENT" and "ExternalProcessor" in s.name]
        if len(ingress) == 1 and len(side) == 1:
            return ingress[0], side[0]
        return None

    return wait_for(find, 20, f"Envoy's spans of trace {trace_id}")  # type: ignore[no-any-return]


def _our_span(rx: OtlpReceiver, response_id: str) -> Span:
    def find() -> list[Span]:
        return [
            s
            for s in rx.snapshot()
            if s.service == "gateway-stats-e2e" and s.attributes.get("gen_ai.response.id") == response_id
        ]

    found = wait_for(find, 20, f"our span for {response_id}")
    assert len(found) == 1, found  # exactly one span per call
    return found[0]  # type: ignore[no-any-return]


def _check_placement(ours: Span, ingress: Span, side: Span, log: dict[str, Any]) -> None:
    """One trace; our span sits under Envoy's side-call span, at the call's times."""
    assert ours.trace_id == ingress.trace_id == side.trace_id
    assert ours.parent_span_id == side.span_id
    assert side.parent_span_id == ingress.span_id
    assert ours.kind == "CLIENT"
    # Envoy's request span starts before Envoy hands us the request headers (our start). No claim on
    # the ends: Envoy may finish its span before our end-of-stream message is even delivered.
    assert ingress.start_ns <= ours.start_ns < ours.end_ns
    # The access log's ai_log was attached once the whole answer was seen; the call (and the span)
    # ends at Envoy's end of stream, at or after that moment.
    assert (ours.end_ns - ours.start_ns) // 1_000_000 >= log["llm_service_duration"]


def _check_envoy_tags(ingress: Span, truth: Any) -> None:
    a = ingress.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == truth.request_model
    assert a["gen_ai.response.model"] == truth.model
    assert a["gen_ai.usage.input_tokens"] == str(truth.input_tokens)
    assert a["gen_ai.usage.output_tokens"] == str(truth.output_tokens)
    assert a["gen_ai.usage.total_tokens"] == str(truth.total_tokens)


def test_json_chat_span_in_the_callers_trace(traced: tuple[Stack, OtlpReceiver]) -> None:
    st, rx = traced
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What does Envoy do with traces?"},
        ],
        "max_tokens": 64,
        "temperature": 0.25,
        "top_p": 0.5,
    }
    h = {
        "traceparent": f"00-{trace_id}-{client_span}-01",
        "x-mock-chat-id": "trace-json",
        "x-mock-model": "gpt-4o-mini-2024-07-18",
        "x-mock-cached-tokens": "3",
        "x-mock-reasoning-tokens": "2",
        "x-session-id": "conv-42",
        "user-agent": "trace-test/1.0",
    }
    status, _, raw = post(st.envoy_port, PATH, body, h)
    assert status == 200
    truth = expected(PATH, h, body)
    sent = json.loads(raw)
    assert sent["usage"] == truth.usage

    ours = _our_span(rx, "trace-json")
    ingress, side = _envoy_spans(rx, trace_id)
    log = ai_log_for(st, "trace-json")
    _check_placement(ours, ingress, side, log)
    assert ingress.parent_span_id == client_span  # Envoy joined the caller's trace
    assert ours.name == "chat gpt-4o-mini"
    assert ours.status == "UNSET"

    a = ours.attributes
    want = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.25,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.response.model": truth.model,
        "gen_ai.response.id": truth.chat_id,
        "gen_ai.response.finish_reasons": [truth.finish_reason],
        "gen_ai.usage.input_tokens": truth.input_tokens,
        "gen_ai.usage.output_tokens": truth.output_tokens,
        "gen_ai.usage.total_tokens": truth.total_tokens,
        "gen_ai.usage.cache_read.input_tokens": 3,
        "gen_ai.usage.reasoning.output_tokens": 2,
        "gen_ai.conversation.id": "conv-42",
        "gen_ai.span.kind": "LLM",
        "gen_ai.model_name": truth.model,
        "http.response.status_code": 200,
        # apply_to_span: under trace_span_key, else under key; never truncated (the log value is)
        "user_agent.original": "trace-test/1.0",
        "question": "What does Envoy do with traces?",
        "finish_reason": truth.finish_reason,
    }
    assert {k: a.get(k) for k in want} == want
    assert "error.type" not in a and "gen_ai.response.time_to_first_chunk" not in a
    assert log["question"] != "What does Envoy do with traces?"  # truncated in ai_log only
    # capture_content is on in this config
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "What does Envoy do with traces?"}]},
    ]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": sent["choices"][0]["message"]["content"]}],
            "finish_reason": truth.finish_reason,
        }
    ]
    _check_envoy_tags(ingress, truth)


def test_streamed_chat_span_in_envoys_trace(traced: tuple[Stack, OtlpReceiver]) -> None:
    st, rx = traced
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Stream me a sentence"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    h = {"x-mock-chat-id": "trace-sse", "x-mock-events": "6", "x-mock-interval-ms": "5"}
    status, headers, raw = post(st.envoy_port, PATH, body, h)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    truth = expected(PATH, h, body)
    answer = ""
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: {"):
            for ch in json.loads(block[6:]).get("choices") or ():
                answer += ch.get("delta", {}).get("content") or ""
    assert answer == truth.answer

    ours = _our_span(rx, "trace-sse")
    ingress, side = _envoy_spans(rx, ours.trace_id)  # no traceparent sent: Envoy started the trace
    log = ai_log_for(st, "trace-sse")
    _check_placement(ours, ingress, side, log)
    assert ingress.parent_span_id == ""
    assert ours.name == "chat gpt-4o"

    a = ours.attributes
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.model"] == truth.model
    assert a["gen_ai.response.finish_reasons"] == [truth.finish_reason]
    assert a["finish_reason"] == truth.finish_reason
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        truth.input_tokens,
        truth.output_tokens,
    )
    assert a["gen_ai.usage.total_tokens"] == truth.total_tokens
    ttfc = a["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttfc <= (ours.end_ns - ours.start_ns) / 1e9
    assert round(ttfc * 1e9) // 1_000_000 == log["llm_first_token_duration"]  # same clock, same moment
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": truth.answer}]
    _check_envoy_tags(ingress, truth)


def test_failed_call_span_is_error(traced: tuple[Stack, OtlpReceiver]) -> None:
    st, rx = traced
    trace_id = secrets.token_hex(16)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "too many"}]}
    h = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", "x-mock-status": "429"}
    status, _, raw = post(st.envoy_port, PATH, body, h)
    assert status == 429
    err = error_body(429, "openai.chat")["error"]
    assert json.loads(raw)["error"] == err

    ingress, side = _envoy_spans(rx, trace_id)

    def find() -> list[Span]:
        return [s for s in rx.snapshot() if s.service == "gateway-stats-e2e" and s.trace_id == trace_id]

    [ours] = wait_for(find, 20, "our span of the failed call")
    assert ours.parent_span_id == side.span_id
    assert ours.status == "ERROR" and ours.status_message == err["message"]
    assert ours.attributes["error.type"] == err["type"]
    assert ours.attributes["http.response.status_code"] == 429
    assert ours.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert ingress.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert "gen_ai.usage.input_tokens" not in ingress.attributes  # no usage: no tag, not "-"


def test_tracing_disabled_sends_no_spans(tmp_path: Path) -> None:
    """Tracing off in our config: Envoy's spans (with our tags) still flow, gateway-stats sends none."""
    rx = OtlpReceiver().start()
    st = _start(tmp_path, rx, enabled=False)
    try:
        trace_id = secrets.token_hex(16)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "no spans please"}]}
        h = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", "x-mock-chat-id": "untraced"}
        status, _, _ = post(st.envoy_port, PATH, body, h)
        assert status == 200
        ingress, _ = _envoy_spans(rx, trace_id)
        _check_envoy_tags(ingress, expected(PATH, h, body))
        ai_log_for(st, "untraced")
        time.sleep(1.0)  # ten export intervals of our (absent) batch processor
        assert rx.requests["http"] == 0
        assert {s.service for s in rx.snapshot()} == {"envoy"}
    finally:
        st.stop()
        rx.stop()
