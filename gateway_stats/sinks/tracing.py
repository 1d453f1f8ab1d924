"""OpenTelemetry spans: one CLIENT span per observed LLM call, inside the caller's trace.

A sink, so it sees only finished records: the span is built after the call, with the call's real
start and end (the record's monotonic times anchored on its wall-clock start), and handed to a
BatchSpanProcessor whose own thread exports it: nothing waits on a collector in the request path.
The exporter is chosen and configured by the standard `OTEL_*` environment variables.

Parent: Envoy, when it traces, names its span for the ext_proc side call in the stream's gRPC
metadata (a child of its request span, in the request's trace). That is the deepest span of the
trace we can see, so it is the parent when it belongs to the same trace as the request's own
`traceparent` (or the request had none). Otherwise (Envoy not tracing, or another trace) the
request's `traceparent` is the parent; with neither, the span starts a trace.

This module is imported only when tracing is enabled: disabled means no SDK, no provider, no thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway_stats import __version__
from gateway_stats.config import TracingConfig
from gateway_stats.core.record import CallRecord
from gateway_stats.sinks import span_content
from gateway_stats.sinks.span_tags import semconv_input_tokens

log = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "http/protobuf"  # the OpenTelemetry spec's default for OTLP exporters
_PROPAGATOR = TraceContextTextMapPropagator()

# record.request_params key -> semconv attribute (the first of the max-token spellings wins)
_PARAMS: tuple[tuple[str, str], ...] = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
    ("n", "gen_ai.request.choice.count"),
)


# ------------------------------------------------------------------------------------------ exporter


def _env(*names: str) -> tuple[str, str] | None:
    for n in names:
        v = os.environ.get(n, "").strip()
        if v:
            return n, v
    return None


def exporter_kinds() -> list[str]:
    """What the `OTEL_*` variables ask for, validated: `otlp/grpc`, `otlp/http`, `console` (in order).

    `OTEL_TRACES_EXPORTER`: otlp | console | none, comma-separated, default otlp.
    `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`: grpc | http/protobuf.
    Raises ValueError naming the variable, so `serve` refuses a typo at startup.
    """
    found = _env("OTEL_TRACES_EXPORTER")
    names = [n.strip().lower() for n in (found[1] if found else "otlp").split(",") if n.strip()]
    kinds: list[str] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            kinds.append("console")
        elif name == "otlp":
            var, proto = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") or (
                "",
                DEFAULT_PROTOCOL,
            )
            if proto.lower() not in PROTOCOLS:
                raise ValueError(
                    f"{var}: unsupported value {proto!r} (expected one of: {', '.join(PROTOCOLS)})"
                )
            kinds.append("otlp/grpc" if proto.lower() == "grpc" else "otlp/http")
        else:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER: unsupported value {name!r} (expected otlp, console, none)"
            )
    return kinds


def exporters_from_env() -> list[SpanExporter]:
    """The exporters `exporter_kinds()` names. The OTLP exporters read their endpoint, headers,
    timeout, compression and certificates from the usual `OTEL_EXPORTER_OTLP_[TRACES_]*` themselves."""
    out: list[SpanExporter] = []
    for kind in exporter_kinds():
        if kind == "console":
            out.append(ConsoleSpanExporter())
        elif kind == "otlp/grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

            out.append(Grpc())
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

            out.append(Http())
    return out


def resource_for(cfg: TracingConfig) -> Resource:
    """`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` win; else the config's `service_name`."""
    env = Resource.create({})
    if str(env.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return env.merge(Resource({SERVICE_NAME: cfg.service_name}))
    return env


# ---------------------------------------------------------------------------------------- attributes


def _trace_id(traceparent: str | None) -> str | None:
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    return parts[1].lower() if len(parts) >= 4 else None


def parent_context(rec: CallRecord) -> Context | None:
    """The context our span is a child of (see the module docstring); None = a new trace."""
    envoy = rec.envoy_traceparent
    own = rec.traceparent
    if envoy and (not own or _trace_id(envoy) == _trace_id(own)):
        carrier = {"traceparent": envoy, "tracestate": rec.envoy_tracestate or rec.tracestate or ""}
    elif own:
        carrier = {"traceparent": own, "tracestate": rec.tracestate or ""}
    else:
        return None
    return _PROPAGATOR.extract(carrier)


def span_name(rec: CallRecord) -> str:
    op = rec.operation if rec.operation != "unknown" else "llm"
    return f"{op} {rec.request_model}" if rec.request_model else op


def _attr_value(v: Any) -> Any:
    """An OpenTelemetry attribute value: a primitive, a list of one primitive type, else JSON text."""
    if isinstance(v, str | bool | int | float):
        return v
    if isinstance(v, list) and v:
        kinds = {type(x) for x in v}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return v
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def span_attributes(rec: CallRecord, capture_content: bool = False) -> dict[str, Any]:
    """GenAI semconv attributes, Higress' span tags and the configured `apply_to_span` values."""
    a: dict[str, Any] = {"gen_ai.span.kind": "LLM"}  # Higress
    if rec.operation != "unknown":
        a["gen_ai.operation.name"] = rec.operation
    if rec.provider != "unknown":
        a["gen_ai.provider.name"] = rec.provider
    if rec.request_model:
        a["gen_ai.request.model"] = rec.request_model
    a["gen_ai.request.stream"] = rec.request_stream
    for key, name in _PARAMS:
        v = rec.request_params.get(key)
        if v is not None and name not in a:
            a[name] = v
    if rec.response_model:
        a["gen_ai.response.model"] = rec.response_model
    if rec.chat_id:
        a["gen_ai.response.id"] = rec.chat_id
    if rec.finish_reasons:
        a["gen_ai.response.finish_reasons"] = [str(r) for r in rec.finish_reasons]
    if rec.is_stream:
        ttfc = rec.seconds(rec.t_first_byte)
        if ttfc is not None:
            a["gen_ai.response.time_to_first_chunk"] = ttfc
    u = rec.usage
    if u.known:
        if rec.model:
            a["gen_ai.model_name"] = rec.model  # Higress, once usage is known
        inp = semconv_input_tokens(u)
        a["gen_ai.usage.input_tokens"] = inp if inp is not None else 0
        a["gen_ai.usage.output_tokens"] = u.output_tokens or 0
        a["gen_ai.usage.total_tokens"] = (
            u.total_tokens if u.total_tokens is not None else (u.input_tokens or 0) + (u.output_tokens or 0)
        )
    if u.cached_tokens is not None:
        a["gen_ai.usage.cache_read.input_tokens"] = u.cached_tokens
    if u.cache_creation_tokens is not None:
        a["gen_ai.usage.cache_creation.input_tokens"] = u.cache_creation_tokens
    if u.reasoning_tokens is not None:
        a["gen_ai.usage.reasoning.output_tokens"] = u.reasoning_tokens
    if rec.cost is not None:
        # Span attributes have no decimal type: a double here; the exact value is in the ai_log.
        a["gen_ai.usage.cost"] = float(rec.cost)
        a["gateway_stats.cost.currency"] = rec.cost_currency or ""
    if rec.session_id:
        a["gen_ai.conversation.id"] = rec.session_id
    if rec.status_code is not None:
        a["http.response.status_code"] = rec.status_code
    if rec.failed:
        a["error.type"] = rec.error_type or "_OTHER"
    if capture_content:
        _content(rec, a)
    for key, v in rec.span_attributes.items():  # Higress apply_to_span, untruncated; the user's key wins
        if v is not None:
            a[key] = _attr_value(v)
    return a


def _content(rec: CallRecord, a: dict[str, Any]) -> None:
    def put(name: str, value: Sequence[Mapping[str, Any]]) -> None:
        if value:
            a[name] = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()

    doc = rec.request_doc
    if isinstance(doc, dict):
        put("gen_ai.input.messages", span_content.input_messages(doc))
        put("gen_ai.system_instructions", span_content.system_instructions(doc))
    put("gen_ai.output.messages", span_content.output_messages(rec))


# -------------------------------------------------------------------------------------------- sink


class TracingSink:
    """Turns each finished, observed record into one span. Built only when tracing is enabled."""

    def __init__(self, cfg: TracingConfig, exporters: list[SpanExporter] | None = None) -> None:
        self.config = cfg  # the live tracing settings (enabled, capture_content); replaced on reload
        self.provider = TracerProvider(resource=resource_for(cfg))
        for exp in exporters_from_env() if exporters is None else exporters:
            self.provider.add_span_processor(BatchSpanProcessor(exp))
        self.tracer = self.provider.get_tracer("gateway_stats", __version__)

    def emit(self, rec: CallRecord, ai_log: dict[str, Any]) -> None:
        cfg = self.config
        if not cfg.enabled or not rec.observed or not rec.wall_start:
            return
        start = int(rec.wall_start * 1e9)
        end = start + max(0, (rec.t_end or rec.t_start) - rec.t_start)
        span = self.tracer.start_span(
            span_name(rec),
            context=parent_context(rec),
            kind=SpanKind.CLIENT,
            attributes=span_attributes(rec, cfg.capture_content),
            start_time=start,
        )
        if rec.failed:
            span.set_status(Status(StatusCode.ERROR, rec.error_message or rec.error_type or None))
        span.end(end_time=end)
        ctx = span.get_span_context()  # the records row carries the span's ids (records/row.py)
        rec.extra["trace_id"] = format(ctx.trace_id, "032x")
        rec.extra["span_id"] = format(ctx.span_id, "016x")

    def close(self) -> None:
        """Flush what is queued and stop the export thread."""
        self.provider.shutdown()
