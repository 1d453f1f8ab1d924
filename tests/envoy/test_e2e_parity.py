"""Higress parity, second pass (issue 10), through the real Envoy 1.40: what the plugin (2.0.1) writes for
the same config and the same upstream bytes, checked against the mock's ground truth.

One stack whose only route is an API route (`llm-api@v1@chat@cn-hz`), with the full preset, header
attributes (one with a default) and `enable_content_types`; one more stack, started with nothing but
`OTEL_TRACES_EXPORTER` and `OTEL_EXPORTER_OTLP_ENDPOINT` and a config without a `tracing` block, for
tracing switched on by the environment.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ai_log_for, ai_logs, metric_value, metrics_text, post, wait_for
from otlp_receiver import OtlpReceiver, Span

from gateway_stats.testing.mockllm import expected
from gateway_stats.testing.procs import Stack

ROUTE = "llm-api@v1@chat@cn-hz"
API = "llm-api@v1@chat"  # ai_log.api and, as in Higress, the metrics' ai_route
H = "route_upstream_model_consumer_metric_"

CONFIG = """
use_default_attributes: true
value_length_limit: 100000
session_id_header: x-session
enable_content_types: ["application/json", "text/event-stream"]
attributes:
  - {key: tenant, value_source: request_header, value: x-tenant, apply_to_log: true}
  - {key: upstream_region, value_source: response_header, value: x-upstream-region, apply_to_log: true}
  - {key: tier, value_source: response_header, value: x-tier, default_value: standard, apply_to_log: true}
"""

CHAT = "/v1/chat/completions"


def _start(st: Stack) -> Stack:
    try:
        st.start()
    except Exception:
        for p in st.procs.values():
            print(f"--- {p.name} ---\n{p.log_text()[-3000:]}")
        st.stop()
        raise
    return st


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    d = tmp_path_factory.mktemp("parity")
    cfg = d / "config.yaml"
    cfg.write_text(CONFIG)
    st = _start(Stack(d / "stack", config_path=str(cfg), envoy_extra={"route_name": ROUTE}))
    yield st
    st.stop()


def _chat(question: str, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": question}], **extra}


def _log_where(st: Stack, pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for d in ai_logs(st):
            if pred(d):
                return d
        return None

    return wait_for(find, 15, what)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------- 1, 4: API route, headers
def test_api_route_labels_metrics_like_ai_log_api_and_absent_headers_log_empty(parity: Stack) -> None:
    body = _chat("Which route is this?", model="route-model")
    status, _, _ = post(parity.envoy_port, CHAT, body, {"x-mock-chat-id": "parity-route"})
    assert status == 200
    t = expected(CHAT, {}, body)
    log = ai_log_for(parity, "parity-route")
    assert log["api"] == API
    # absent headers: "" (request and response side), or the default_value
    assert (log["tenant"], log["upstream_region"], log["tier"]) == ("", "", "standard")

    def counted() -> str | None:
        text = metrics_text(parity)
        return text if metric_value(text, H + "input_token", ai_model="route-model") else None

    text = wait_for(counted, 10, "the route call's metrics")
    assert metric_value(text, H + "input_token", ai_route=API, ai_model="route-model") == t.input_tokens
    assert metric_value(text, "gateway_stats_calls_total", ai_route=API, ai_model="route-model") == 1
    assert ROUTE not in text  # the region part never reaches a label


# -------------------------------------------------------------------------------------------- 2: cut stream
def test_cut_stream_keeps_its_question_in_the_access_log(parity: Stack) -> None:
    body = json.dumps(_chat("Will this stream be cut?", stream=True)).encode()
    s = socket.create_connection(("127.0.0.1", parity.envoy_port), timeout=10)
    s.sendall(
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n".encode()
        + b"x-mock-events: 40\r\nx-mock-interval-ms: 50\r\nx-mock-chat-id: parity-cut\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(65536)
    s.close()  # the client hangs up mid-stream, before any usage or the end
    log = ai_log_for(parity, "parity-cut")
    assert log["question"] == "Will this stream be cut?"  # written at the end of the request body
    assert log["api"] == API and log["chat_round"] == 1 and log["model"] == "gpt-4o-mini"
    assert "input_token" not in log


# ---------------------------------------------------------------------------------- 3: text/plain answer
def test_text_plain_answer_logs_the_request_side_only(parity: Stack) -> None:
    body = _chat("Answer me in plain text", model="plain-model")
    headers = {"x-mock-content-type": "text/plain", "x-tenant": "acme", "x-session": "sess-9"}
    status, resp_headers, raw = post(parity.envoy_port, CHAT, body, headers)
    assert status == 200 and resp_headers["content-type"] == "text/plain"
    assert json.loads(raw)["usage"]["prompt_tokens"] == expected(CHAT, {}, body).input_tokens  # usage sent
    log = _log_where(parity, lambda d: d.get("question") == "Answer me in plain text", "the text/plain line")
    assert log == {
        "api": API,
        "chat_round": 1,
        "model": "plain-model",
        "session_id": "sess-9",
        "messages": body["messages"],
        "question": "Answer me in plain text",
        "system": None,
        "tenant": "acme",
    }  # no tokens, no response_type, no durations, no response attribute
    text = metrics_text(parity)
    assert "plain-model" not in text  # no metrics either


# ------------------------------------------------------------------------------------------ 5: tool calls
def test_tool_calls_in_the_plugins_shapes(parity: Stack) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = _chat("Weather in two cities?", tools=tools)
    hdrs = {"x-mock-tools": "2", "x-mock-chat-id": "parity-tools-json"}
    status, _, raw = post(parity.envoy_port, CHAT, body, hdrs)
    assert status == 200
    sent = json.loads(raw)["choices"][0]["message"]["tool_calls"]
    assert ai_log_for(parity, "parity-tools-json")["tool_calls"] == sent  # exactly as sent, no key added

    sbody = {**body, "stream": True}
    status, _, _ = post(
        parity.envoy_port, CHAT, sbody, {"x-mock-tools": "2", "x-mock-chat-id": "parity-tools-sse"}
    )
    assert status == 200
    t = expected(CHAT, {"x-mock-tools": "2"}, sbody)
    calls = [
        {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}
        for tc in t.tool_calls
    ]
    calls[1] = {"index": 1, **calls[1]}  # index omitted when 0 (Go omitempty), present otherwise
    assert ai_log_for(parity, "parity-tools-sse")["tool_calls"] == calls


# ------------------------------------------------------------------------------- 6: Anthropic cache usage
def test_anthropic_json_cache_fields_are_the_input_details(parity: Stack) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Cache?"}],
    }
    hdrs = {"x-mock-cached-tokens": "12", "x-mock-chat-id": "parity-anthropic"}
    status, _, raw = post(parity.envoy_port, "/v1/messages", body, hdrs)
    assert status == 200
    usage = json.loads(raw)["usage"]
    log = ai_log_for(parity, "parity-anthropic")
    assert log["input_token_details"] == {
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],  # 0, as sent
        "cache_read_input_tokens": 12,
    }
    assert log["cached_tokens"] == 12


# ---------------------------------------------------------------------------------- 7: Gemini thoughts
def test_gemini_stream_keeps_thoughts_token_count(parity: Stack) -> None:
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    body = {"contents": [{"role": "user", "parts": [{"text": "Think first"}]}]}
    hdrs = {"x-mock-reasoning-tokens": "9", "x-mock-chat-id": "parity-gemini"}
    status, _, _ = post(parity.envoy_port, path, body, hdrs)
    assert status == 200
    t = expected(path, hdrs, body)
    log = ai_log_for(parity, "parity-gemini")
    assert log["output_token_details"] == {"thoughts_token_count": 9}
    assert log["reasoning_tokens"] == 9
    assert (log["input_token"], log["output_token"], log["total_token"]) == (
        t.input_tokens,
        t.output_tokens,
        t.total_tokens,
    )
    assert log["question"] == "Think first"  # our improvement: Gemini `contents` (Higress: null)


# ---------------------------------------------------------------------- 8: failure after a model event
def test_stream_error_after_a_model_event_is_labelled_with_the_request_model(parity: Stack) -> None:
    body = _chat("Fail after two events", model="fail-request-model", stream=True)
    hdrs = {"x-mock-model": "fail-response-model", "x-mock-error-after": "2", "x-mock-chat-id": "parity-fail"}
    status, _, raw = post(parity.envoy_port, CHAT, body, hdrs)
    assert status == 200 and b'"error"' in raw and b"fail-response-model" in raw
    ai_log_for(parity, "parity-fail")

    def failed() -> str | None:
        text = metrics_text(parity)
        return text if metric_value(text, H + "llm_failure_count", ai_model="fail-request-model") else None

    text = wait_for(failed, 10, "the failure metric")
    assert metric_value(text, H + "llm_failure_count", ai_route=API, ai_model="fail-request-model") == 1
    assert metric_value(text, H + "llm_duration_count", ai_model="fail-request-model") == 1
    assert 'ai_model="fail-response-model"' not in text


# ------------------------------------------------------------------------------------------ 9: embeddings
def test_embeddings_have_no_question(parity: Stack) -> None:
    body = {"model": "text-embedding-3-small", "input": ["parity embeddings input"]}
    status, _, _ = post(parity.envoy_port, "/v1/embeddings", body)
    assert status == 200
    log = _log_where(parity, lambda d: d.get("model") == "text-embedding-3-small", "the embeddings line")
    assert log["question"] is None and log["input_token"] == expected("/v1/embeddings", {}, body).input_tokens


# --------------------------------------------------------------------------- 10: tracing from the environment
def test_tracing_switched_on_by_the_otel_variables_alone(tmp_path: Path) -> None:
    rx = OtlpReceiver().start()
    try:
        cfg = tmp_path / "config.yaml"
        cfg.write_text("use_default_attributes: true\n")  # no `tracing` block
        env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint}
        st = _start(Stack(tmp_path / "stack", config_path=str(cfg), sidecar_env=env))
        try:
            body = _chat("Is tracing on?")
            status, _, _ = post(st.envoy_port, CHAT, body, {"x-mock-chat-id": "parity-env-trace"})
            assert status == 200
            log = ai_log_for(st, "parity-env-trace")

            def ours() -> list[Span]:
                return [
                    s for s in rx.snapshot() if s.attributes.get("gen_ai.response.id") == "parity-env-trace"
                ]

            (span,) = wait_for(ours, 20, "our span, exported by the default batch processor")
            t = expected(CHAT, {}, body)
            assert (span.kind, span.name, span.service) == ("CLIENT", "chat gpt-4o-mini", "gateway-stats")
            assert span.attributes["gen_ai.usage.input_tokens"] == t.input_tokens == log["input_token"]
        finally:
            st.stop()
    finally:
        rx.stop()
