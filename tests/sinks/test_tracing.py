"""The span sink without Envoy: records fed through the sans-IO observer from the mock's own answers,
spans caught by an in-memory exporter behind the real BatchSpanProcessor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway_stats.config import TracingConfig, parse_text
from gateway_stats.config.store import ConfigStore
from gateway_stats.core.observer import CallObserver
from gateway_stats.core.record import CallRecord
from gateway_stats.envoy.bootstrap import EnvoyOptions, bootstrap
from gateway_stats.envoy.runtime import Runtime
from gateway_stats.envoy.servicer import take_trace_context
from gateway_stats.sinks import span_content, tracing
from gateway_stats.sinks.span_tags import TAG_NAMES, tag_values
from gateway_stats.sinks.tracing import TracingSink, exporters_from_env, parent_context, resource_for
from gateway_stats.testing.mockllm import build_events, build_json, error_body, expected
from gateway_stats.testing.procs import envoy_binary

MS = 1_000_000
T0 = 5_000 * MS  # monotonic start of every call below
PATH = "/v1/chat/completions"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ENVOY_SPAN = "00f067aa0ba902b7"
CLIENT_SPAN = "b7ad6b7169203331"

TRACED = """\
gateway_stats:
  tracing: {enabled: true, capture_content: %s}
"""


def call(
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    config: str = TRACED % "false",
    path: str = PATH,
    status: int = 200,
) -> tuple[CallRecord, Any]:
    """One call through the observer: request at T0, headers +5 ms, body +7 ms, end +9 ms."""
    h = {k.lower(): v for k, v in (headers or {}).items()}
    truth = expected(path, h, body)
    obs = CallObserver(parse_text(config))
    obs.on_request_headers({":method": "POST", ":path": path, ":authority": "llm.local", **h}, {}, False, T0)
    obs.on_request_body(json.dumps(body).encode(), True, T0 + 1 * MS)
    if truth.stream and status < 400:
        obs.on_response_headers(
            {":status": "200", "content-type": "text/event-stream"}, {}, False, T0 + 5 * MS
        )
        events, _, _ = build_events(truth)
        for i, ev in enumerate(events):
            obs.on_response_body(ev, False, T0 + (7 + i) * MS)
        obs.on_response_body(b"", True, T0 + 9 * MS + len(events) * MS)
    else:
        doc = build_json(truth, body) if status < 400 else error_body(status, truth.provider)
        obs.on_response_headers(
            {":status": str(status), "content-type": "application/json"}, {}, False, T0 + 5 * MS
        )
        obs.on_response_body(json.dumps(doc).encode(), True, T0 + 9 * MS)
    return obs.finish(T0 + 100 * MS), truth


@pytest.fixture
def sink() -> Iterator[tuple[TracingSink, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    s = TracingSink(TracingConfig(enabled=True), exporters=[exporter])
    yield s, exporter
    s.close()


def spans_of(s: TracingSink, exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    s.provider.force_flush()
    return exporter.get_finished_spans()


CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "What is a span?"}],
    "max_completion_tokens": 50,
    "temperature": 0.7,
    "n": 2,
}


def test_one_client_span_with_the_calls_times_and_semconv(sink: Any) -> None:
    s, exporter = sink
    h = {"x-mock-cached-tokens": "4", "x-mock-reasoning-tokens": "6", "x-agent-session": "sess-1"}
    rec, truth = call(CHAT, h)
    s.emit(rec, {})
    [span] = spans_of(s, exporter)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    start = int(rec.wall_start * 1e9)
    assert (span.start_time, span.end_time) == (start, start + 9 * MS)  # request start to response end
    assert span.parent is None  # no traceparent anywhere: a new trace
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "gen_ai.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.7,
        "gen_ai.request.choice.count": 2,
        "gen_ai.response.model": truth.model,
        "gen_ai.response.id": truth.chat_id,
        "gen_ai.response.finish_reasons": (truth.finish_reason,),
        "gen_ai.model_name": truth.model,
        "gen_ai.usage.input_tokens": truth.input_tokens,
        "gen_ai.usage.output_tokens": truth.output_tokens,
        "gen_ai.usage.total_tokens": truth.total_tokens,
        "gen_ai.usage.cache_read.input_tokens": 4,
        "gen_ai.usage.reasoning.output_tokens": 6,
        "gen_ai.usage.cost": float(rec.cost or 0),  # a double on the span; exact in the ai_log
        "gateway_stats.cost.currency": "USD",
        "gen_ai.conversation.id": "sess-1",
        "http.response.status_code": 200,
    }
    # gpt-4o-mini in genai-prices 0.2.3: $0.15 / $0.6 per million, cache reads $0.075. Reasoning tokens
    # are part of the output; the mock's 6 of them exceed its output count, so (as LiteLLM does) the
    # text output is max(0, output - 6) and the 6 reasoning tokens are billed at the output price.
    m = Decimal(10) ** 6
    uncached, billed_out = truth.input_tokens - 4, max(0, truth.output_tokens - 6) + 6
    expected = (uncached * Decimal("0.15") + 4 * Decimal("0.075") + billed_out * Decimal("0.6")) / m
    assert rec.cost == expected
    assert span.resource.attributes["service.name"] in ("gateway-stats", *_env_service())


def _env_service() -> tuple[str, ...]:
    v = os.environ.get("OTEL_SERVICE_NAME")
    return (v,) if v else ()


def test_stream_span_has_time_to_first_chunk(sink: Any) -> None:
    s, exporter = sink
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    rec, truth = call(body, {"x-mock-events": "3"})
    s.emit(rec, {})
    [span] = spans_of(s, exporter)
    a = span.attributes or {}
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.time_to_first_chunk"] == 0.007  # first body byte at +7 ms
    assert a["gen_ai.usage.output_tokens"] == truth.output_tokens == 3
    assert span.end_time - span.start_time == rec.t_end - rec.t_start


@pytest.mark.parametrize(
    ("envoy", "own", "want_trace", "want_parent"),
    [
        (f"00-{TRACE}-{ENVOY_SPAN}-01", f"00-{TRACE}-{CLIENT_SPAN}-01", TRACE, ENVOY_SPAN),  # deepest wins
        (f"00-{TRACE}-{ENVOY_SPAN}-01", None, TRACE, ENVOY_SPAN),  # Envoy started the trace
        (None, f"00-{TRACE}-{CLIENT_SPAN}-01", TRACE, CLIENT_SPAN),  # Envoy not tracing
        # Envoy in another trace than the caller's: stay in the caller's
        (f"00-{'1' * 32}-{ENVOY_SPAN}-01", f"00-{TRACE}-{CLIENT_SPAN}-01", TRACE, CLIENT_SPAN),
    ],
)
def test_parent_choice(
    sink: Any, envoy: str | None, own: str | None, want_trace: str, want_parent: str
) -> None:
    s, exporter = sink
    headers = {"traceparent": own} if own else {}
    rec, _ = call(CHAT, headers)
    rec.envoy_traceparent = envoy
    s.emit(rec, {})
    [span] = spans_of(s, exporter)
    assert span.parent is not None and span.parent.is_remote
    assert f"{span.context.trace_id:032x}" == want_trace
    assert f"{span.parent.span_id:016x}" == want_parent


def test_unsampled_or_broken_parent() -> None:
    rec = CallRecord(traceparent=f"00-{TRACE}-{CLIENT_SPAN}-00")
    ctx = parent_context(rec)
    assert ctx is not None  # an unsampled parent is kept: the parent-based sampler then drops the span
    exporter = InMemorySpanExporter()
    s = TracingSink(TracingConfig(enabled=True), exporters=[exporter])
    r2, _ = call(CHAT, {"traceparent": "garbage"})
    s.emit(r2, {})
    r3, _ = call(CHAT, {"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-00"})
    s.emit(r3, {})
    spans = spans_of(s, exporter)
    s.close()
    assert len(spans) == 1 and spans[0].parent is None  # garbage: a new trace; unsampled: no span


def test_take_trace_context_from_grpc_metadata() -> None:
    rec = CallRecord()
    # What Envoy 1.40 sent (seen at runtime): grpc.aio gives (key, value) named tuples.
    md = (
        ("x-forwarded-for", "192.0.2.2"),
        ("traceparent", f"00-{TRACE}-{ENVOY_SPAN}-01"),
        ("tracestate", ""),
        ("x-envoy-internal", "true"),
    )
    take_trace_context(rec, md)
    assert rec.envoy_traceparent == f"00-{TRACE}-{ENVOY_SPAN}-01" and rec.envoy_tracestate is None


def test_failure_is_error_status(sink: Any) -> None:
    s, exporter = sink
    rec, truth = call(CHAT, status=503)
    s.emit(rec, {})
    [span] = spans_of(s, exporter)
    err = error_body(503, truth.provider)["error"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == err["message"]
    assert (span.attributes or {})["error.type"] == err["type"]
    assert (span.attributes or {})["http.response.status_code"] == 503


def test_aborted_call_is_error_without_response(sink: Any) -> None:
    s, exporter = sink
    obs = CallObserver(parse_text(TRACED % "false"))
    obs.on_request_headers({":method": "POST", ":path": PATH}, {}, False, T0)
    obs.on_request_body(json.dumps(CHAT).encode(), True, T0 + MS)
    rec = obs.finish(T0 + 30 * MS, "aborted")
    s.emit(rec, {})
    [span] = spans_of(s, exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "aborted"
    assert span.end_time - span.start_time == 30 * MS


APPLY_TO_SPAN = """\
value_length_limit: 8
attributes:
  - {key: question, value_source: request_body, value: messages.0.content, apply_to_log: true,
     apply_to_span: true}
  - {key: ua, value_source: request_header, value: user-agent, apply_to_span: true,
     trace_span_key: user_agent.original}
  - {key: msgs, value_source: request_body, value: messages, apply_to_span: true}
  - {key: roles, value_source: request_body, value: "messages.#.role", apply_to_span: true}
  - {key: missing, value_source: request_body, value: nope, apply_to_span: true}
gateway_stats:
  tracing: {enabled: true}
"""


def test_apply_to_span_attributes_untruncated(sink: Any) -> None:
    s, exporter = sink
    rec, _ = call(CHAT, {"user-agent": "ua/1"}, config=APPLY_TO_SPAN)
    s.emit(rec, {})
    [span] = spans_of(s, exporter)
    a = span.attributes or {}
    assert a["question"] == "What is a span?"  # the ai_log has it cut at 8 bytes; the span never
    assert a["user_agent.original"] == "ua/1" and "ua" not in a
    assert json.loads(a["msgs"]) == CHAT["messages"]  # objects become JSON text
    assert a["roles"] == ("user",)  # a list of one primitive type stays a list
    assert "missing" not in a  # unresolved: left out, never "None"/"<nil>"


def test_content_only_when_enabled(sink: Any) -> None:
    s, exporter = sink
    rec, _ = call(CHAT)
    assert rec.request_doc is None  # not even kept by the observer
    s.emit(rec, {})
    s.config = TracingConfig(enabled=True, capture_content=True)
    rec2, truth = call(CHAT, config=TRACED % "true")
    assert rec2.request_doc is not None
    s.emit(rec2, {})
    off, on = spans_of(s, exporter)
    assert not any(
        k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system")) for k in off.attributes or {}
    )
    a = on.attributes or {}
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is a span?"}]}
    ]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": truth.answer}], "finish_reason": "stop"}
    ]


def test_content_shapes_of_other_providers() -> None:
    anthropic = {
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "tu1", "name": "wx", "input": {"c": 1}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "sunny"}]},
        ],
    }
    assert span_content.system_instructions(anthropic) == [{"type": "text", "content": "You are terse."}]
    assert span_content.input_messages(anthropic)[1:] == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "tu1", "name": "wx", "arguments": {"c": 1}}],
        },
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "tu1", "response": "sunny"}]},
    ]
    gemini = {
        "systemInstruction": {"parts": [{"text": "Be kind."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "yo"}]},
        ],
    }
    assert span_content.system_instructions(gemini) == [{"type": "text", "content": "Be kind."}]
    assert [m["role"] for m in span_content.input_messages(gemini)] == ["user", "assistant"]
    responses = {
        "instructions": "Answer in French.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
    }
    assert span_content.input_messages(responses) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": {"x": 1}}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "42"}]},
    ]
    openai_tools = {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "g", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
        ]
    }
    assert span_content.input_messages(openai_tools) == [
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "t1", "name": "g", "arguments": {}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "t1", "response": "ok"}]},
    ]


def test_streamed_tool_calls_in_output_messages(sink: Any) -> None:
    s, exporter = sink
    s.config = TracingConfig(enabled=True, capture_content=True)
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    rec, truth = call(body, {"x-mock-tools": "2", "x-mock-events": "3"}, config=TRACED % "true")
    s.emit(rec, {})
    [span] = spans_of(s, exporter)
    [msg] = json.loads((span.attributes or {})["gen_ai.output.messages"])
    assert msg["finish_reason"] == "tool_calls"
    assert msg["parts"] == [
        {"type": "tool_call", "id": tc.id, "name": tc.name, "arguments": json.loads(tc.arguments)}
        for tc in truth.tool_calls
    ]


def test_anthropic_input_tokens_include_cache(sink: Any) -> None:
    s, exporter = sink
    body = {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}
    rec, truth = call(body, {"x-mock-cached-tokens": "40"}, path="/v1/messages")
    assert truth.usage["input_tokens"] == truth.input_tokens and truth.usage["cache_read_input_tokens"] == 40
    s.emit(rec, {})
    [span] = spans_of(s, exporter)
    a = span.attributes or {}
    # semconv: input tokens include cached ones (Anthropic reports them apart)
    assert a["gen_ai.usage.input_tokens"] == truth.input_tokens + 40
    assert a["gen_ai.usage.cache_read.input_tokens"] == 40
    assert a["gen_ai.provider.name"] == "anthropic" and a["gen_ai.request.max_tokens"] == 100
    assert tag_values(rec)["gen_ai.usage.input_tokens"] == truth.input_tokens + 40


def test_span_tags_written_only_when_known() -> None:
    rec = CallRecord()
    assert tag_values(rec) == {}
    rec, truth = call(CHAT)
    assert tag_values(rec) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": truth.model,
        "gen_ai.usage.input_tokens": truth.input_tokens,
        "gen_ai.usage.output_tokens": truth.output_tokens,
        "gen_ai.usage.total_tokens": truth.total_tokens,
    }
    assert set(TAG_NAMES) == set(tag_values(rec))


# ------------------------------------------------------------------------------- exporter from env


def _exporters(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[Any]:
    for k in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return exporters_from_env()


def test_exporter_chosen_by_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    [e] = _exporters(monkeypatch)
    assert isinstance(e, HttpExporter)  # the spec's default protocol
    [e] = _exporters(monkeypatch, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    assert isinstance(e, GrpcExporter)
    [e] = _exporters(
        monkeypatch, OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf"
    )
    assert isinstance(e, HttpExporter)  # the per-signal variable wins
    assert _exporters(monkeypatch, OTEL_TRACES_EXPORTER="none") == []
    [e] = _exporters(monkeypatch, OTEL_TRACES_EXPORTER="console")
    assert isinstance(e, ConsoleSpanExporter)
    kinds = [type(x) for x in _exporters(monkeypatch, OTEL_TRACES_EXPORTER="otlp,console")]
    assert kinds == [HttpExporter, ConsoleSpanExporter]
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL.*http/json"):
        _exporters(monkeypatch, OTEL_EXPORTER_OTLP_PROTOCOL="http/json")
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL.*'udp'"):
        _exporters(monkeypatch, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="udp")
    with pytest.raises(ValueError, match=r"OTEL_TRACES_EXPORTER.*zipkin"):
        _exporters(monkeypatch, OTEL_TRACES_EXPORTER="zipkin")


def test_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource_for(TracingConfig(service_name="gw-a")).attributes["service.name"] == "gw-a"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert resource_for(TracingConfig(service_name="gw-a")).attributes["service.name"] == "from-env"


def test_serve_refuses_a_bad_otel_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TRACED % "false")
    r = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        timeout=60,
    )
    assert r.returncode == 1
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in r.stderr and "http/json" in r.stderr


# -------------------------------------------------------------------------- enabled / disabled


def _probe(tmp_path: Path, enabled: bool) -> dict[str, Any]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"gateway_stats": {"tracing": {"enabled": enabled}}}))
    code = textwrap.dedent(
        f"""
        import json, sys, threading
        from gateway_stats.config.store import ConfigStore
        from gateway_stats.envoy.runtime import Runtime
        from gateway_stats.core.observer import CallObserver
        rt = Runtime(ConfigStore({str(cfg)!r}))
        if rt.tracing is not None:
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            mem = InMemorySpanExporter()
            rt.tracing.provider.add_span_processor(SimpleSpanProcessor(mem))
        obs = CallObserver(rt.config)
        obs.on_request_headers({{":method": "POST", ":path": "/v1/chat/completions"}}, {{}}, False, 10)
        obs.on_request_body(b'{{"model": "m", "messages": []}}', True, 20)
        obs.on_response_headers({{":status": "200", "content-type": "application/json"}}, {{}}, False, 30)
        usage = b'{{"prompt_tokens": 1, "completion_tokens": 2}}'
        obs.on_response_body(b'{{"model": "m", "usage": ' + usage + b'}}', True, 40)
        rec = obs.finish(50)
        rt.emit(rec, obs.ai_log())
        out = {{
            "threads": [t.name for t in threading.enumerate()],
            "sdk_trace_loaded": "opentelemetry.sdk.trace" in sys.modules,
            "tracing_module_loaded": "gateway_stats.sinks.tracing" in sys.modules,
            "spans": len(mem.get_finished_spans()) if rt.tracing is not None else 0,
            "sinks": [type(s).__name__ for s in rt.sinks.sinks],
        }}
        print(json.dumps(out))
        """
    )
    env = {"OTEL_TRACES_EXPORTER": "console"}  # a real batch processor, nothing on the network
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )
    assert r.returncode == 0, r.stderr
    [line] = [ln for ln in r.stdout.splitlines() if ln.startswith('{"threads"')]
    return json.loads(line)  # type: ignore[no-any-return]


def test_disabled_means_no_sdk_no_thread_no_span(tmp_path: Path) -> None:
    off = _probe(tmp_path, enabled=False)
    assert off == {
        "threads": ["MainThread"],
        "sdk_trace_loaded": False,
        "tracing_module_loaded": False,
        "spans": 0,
        "sinks": ["MetricsSink"],  # no TracingSink
    }
    # The same probe sees all of them when tracing is on, so the check above can fail.
    on = _probe(tmp_path, enabled=True)
    assert "OtelBatchSpanRecordProcessor" in on["threads"]
    assert on["sdk_trace_loaded"] and on["tracing_module_loaded"]
    assert on["spans"] == 1 and on["sinks"] == ["MetricsSink", "TracingSink"]


def test_reload_turns_tracing_on_and_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "exporters_from_env", lambda: [exporter])
    path = tmp_path / "c.yaml"
    path.write_text("{}\n")
    rt = Runtime(ConfigStore(str(path)))
    assert rt.tracing is None
    rec, _ = call(CHAT)
    on = parse_text(TRACED % "false")
    rt.reconfigure(on)
    assert rt.tracing is not None
    rt.emit(rec, {})
    rt.reconfigure(parse_text("{}"))
    rt.emit(rec, {})  # disabled again: no new span
    rt.tracing.provider.force_flush()
    assert len(exporter.get_finished_spans()) == 1
    rt.close()


# ------------------------------------------------------------------------------------ envoy-config


def test_envoy_config_tracing_validates(tmp_path: Path) -> None:
    for extra in (
        ["--tracing-collector", "127.0.0.1:4317"],
        ["--tracing-collector", "otel-collector:4317", "--namespace", "gw", "--mode", "observe"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "gateway_stats", "envoy-config", *extra],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        f = tmp_path / "e.yaml"
        f.write_text(out)
        r = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", str(f)], capture_output=True, text=True
        )
        assert r.returncode == 0, (extra, r.stdout[-2000:], r.stderr[-2000:])
    doc = bootstrap(EnvoyOptions(tracing_collector="127.0.0.1:4317", namespace="gw"))
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    tags = hcm["tracing"]["custom_tags"]
    assert [t["tag"] for t in tags] == list(TAG_NAMES)
    assert all(t["metadata"]["metadata_key"] == {"key": "gw", "path": [{"key": t["tag"]}]} for t in tags)
    assert hcm["tracing"]["provider"]["name"] == "envoy.tracers.opentelemetry"
    assert "otel_collector" in [c["name"] for c in doc["static_resources"]["clusters"]]
    plain = bootstrap(EnvoyOptions())
    assert (
        "tracing"
        not in plain["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    )
