"""The gRPC ExternalProcessor: a thin adapter from ext_proc messages to the sans-IO observer.

Every answer is CONTINUE with no mutation, so bytes are never changed. Any exception while
handling a message is caught, counted and logged once; the stream goes on. The current ai_log is
attached as dynamic metadata at the points Higress rewrites it (end of request body, each event
that brings usage, end of response), so an aborted stream still has its line in the access log.
Next to it go the span-tag keys (sinks/span_tags.py) Envoy's tracing custom_tags read. When tracing is on,
the trace context Envoy puts in the stream's gRPC metadata (its span for this side call) is kept in
the record, so our span can sit inside Envoy's trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from gateway_stats._proto.envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from gateway_stats.core.observer import CallObserver
from gateway_stats.core.record import CallRecord
from gateway_stats.envoy.runtime import Runtime
from gateway_stats.sinks import ai_log as ai_log_sink

log = logging.getLogger(__name__)

ATTR_NS = "envoy.filters.http.ext_proc"

# Pre-built CONTINUE answers (immutable once built; grpc only serialises them).
_CONTINUE = {
    "request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
    "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
    "request_body": pb.ProcessingResponse(request_body=pb.BodyResponse()),
    "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse()),
    "request_trailers": pb.ProcessingResponse(request_trailers=pb.TrailersResponse()),
    "response_trailers": pb.ProcessingResponse(response_trailers=pb.TrailersResponse()),
}


_SKIP, _NONE = pm.ProcessingMode.SKIP, pm.ProcessingMode.NONE
# Nothing more to watch (path or content type not observed): Envoy stops sending this call's phases.
# A mode override replaces the whole mode, so every field is set.
_ALL_OFF = pm.ProcessingMode(
    request_header_mode=_SKIP,
    response_header_mode=_SKIP,
    request_body_mode=_NONE,
    response_body_mode=_NONE,
    request_trailer_mode=_SKIP,
    response_trailer_mode=_SKIP,
)
_STOP_AFTER_REQUEST_HEADERS = pb.ProcessingResponse(
    request_headers=pb.HeadersResponse(), mode_override=_ALL_OFF
)
_STOP_AFTER_RESPONSE_HEADERS = pb.ProcessingResponse(
    response_headers=pb.HeadersResponse(), mode_override=_ALL_OFF
)


def headers_dict(hm: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in hm.headers:
        v = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        k = h.key
        if k in out:
            out[k] = out[k] + "," + v
        else:
            out[k] = v
    return out


def take_trace_context(rec: CallRecord, metadata: Any) -> None:
    """Envoy sends `traceparent` (and an often empty `tracestate`) in the ext_proc call's metadata."""
    for item in metadata or ():
        key, value = item[0], item[1]
        if key == "traceparent" and isinstance(value, str) and value:
            rec.envoy_traceparent = value
        elif key == "tracestate" and isinstance(value, str) and value:
            rec.envoy_tracestate = value


def attributes_dict(req: Any) -> dict[str, str]:
    if ATTR_NS not in req.attributes:
        return {}
    out: dict[str, str] = {}
    for k, v in req.attributes[ATTR_NS].fields.items():
        kind = v.WhichOneof("kind")
        if kind == "string_value":
            out[k] = v.string_value
        elif kind == "number_value":
            n = v.number_value
            out[k] = str(int(n)) if n.is_integer() else str(n)
        elif kind == "bool_value":
            out[k] = "true" if v.bool_value else "false"
    return out


class ExtProcServicer(pb_grpc.ExternalProcessorServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._logged_phases: set[str] = set()

    def _error(self, phase: str) -> None:
        self.rt.self_metrics.errors.labels(phase).inc()
        if phase not in self._logged_phases:
            self._logged_phases.add(phase)
            log.exception("error while handling %s (logged once per phase; traffic unaffected)", phase)
        else:
            log.debug("error while handling %s", phase, exc_info=True)

    def _metadata_answer(self, phase: str, obs: CallObserver, doc: dict[str, Any]) -> pb.ProcessingResponse:
        resp = pb.ProcessingResponse()
        getattr(resp, phase).SetInParent()
        ns = self.rt.config.extensions.metadata_namespace
        fields = resp.dynamic_metadata.fields[ns].struct_value.fields
        for key, value in ai_log_sink.metadata_values(obs.record, doc).items():
            if isinstance(value, str):
                fields[key].string_value = value
            else:
                fields[key].number_value = value
        return resp

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        rt = self.rt
        sm = rt.self_metrics
        obs = CallObserver(rt.config)
        if rt.config.extensions.tracing.enabled:
            try:
                take_trace_context(obs.record, context.invocation_metadata())
            except Exception:
                self._error("trace_context")
        sm.active_streams.inc()
        end = "cancelled"
        observability = False
        finished = False
        emit_pending = False
        final_doc: dict[str, Any] | None = None  # the ai_log of the final answer, reused by the sinks
        try:
            async for req in request_iterator:
                phase = req.WhichOneof("request")
                if phase is None:
                    continue
                t0 = time.perf_counter()
                now = time.monotonic_ns()
                changed = False
                done = False
                try:
                    observability = req.observability_mode
                    if phase == "response_body":
                        body = req.response_body
                        changed = obs.on_response_body(body.body, body.end_of_stream, now)
                        done = body.end_of_stream
                    elif phase == "request_body":
                        body = req.request_body
                        changed = obs.on_request_body(body.body, body.end_of_stream, now)
                        if body.end_of_stream and obs.record.user_text:
                            rt.request_read(obs.record)  # early language for the opt-in ai_log key
                    elif phase == "request_headers":
                        h = req.request_headers
                        changed = obs.on_request_headers(
                            headers_dict(h.headers), attributes_dict(req), h.end_of_stream, now
                        )
                    elif phase == "response_headers":
                        h = req.response_headers
                        changed = obs.on_response_headers(
                            headers_dict(h.headers), attributes_dict(req), h.end_of_stream, now
                        )
                        done = h.end_of_stream
                    # trailers: nothing to extract; answered below
                except Exception:
                    self._error(phase)
                if done:
                    finished = True
                    end = "complete"
                    # Finalize now (cheap, sans-IO) so the answer carries the final ai_log; the sinks
                    # (metrics, spans, files) run after the answer is on its way to Envoy.
                    self._close_record(obs, now, "complete")
                    emit_pending = True
                if not observability:
                    if changed and obs.observed:
                        try:
                            doc = obs.ai_log()
                            answer = self._metadata_answer(phase, obs, doc)
                            if done:
                                final_doc = doc
                        except Exception:
                            self._error(phase)
                            answer = _CONTINUE[phase]
                    elif not obs.observed and phase == "request_headers":
                        answer = _STOP_AFTER_REQUEST_HEADERS
                    elif not obs.response_analysed and phase == "response_headers" and not done:
                        answer = _STOP_AFTER_RESPONSE_HEADERS
                    else:
                        answer = _CONTINUE[phase]
                    sm.message_done(phase, time.perf_counter() - t0)
                    yield answer
                else:
                    sm.message_done(phase, time.perf_counter() - t0)
                if emit_pending:
                    emit_pending = False
                    self._emit(obs, final_doc)
                if done and observability:
                    # Envoy keeps an observability stream open for deferred_close_timeout unless we end it.
                    break
            else:
                end = "client_closed" if not finished else "complete"
        finally:
            if not finished:
                # A call we do not observe ends early on purpose (its phases were turned off).
                reason = "aborted" if obs.response_analysed else "unobserved"
                self._close_record(obs, time.monotonic_ns(), reason)
                emit_pending = True
            if emit_pending:
                self._emit(obs, final_doc)
            sm.streams.labels(end).inc()
            sm.active_streams.dec()

    def _close_record(self, obs: CallObserver, now: int, reason: str) -> None:
        try:
            obs.finish(now, reason)
            self.rt.self_metrics.records.labels(reason).inc()
        except Exception:
            self._error("finish")

    def _emit(self, obs: CallObserver, doc: dict[str, Any] | None = None) -> None:
        try:
            if obs.observed:
                self.rt.emit(obs.record, doc if doc is not None else obs.ai_log())
        except Exception:
            self._error("finish")
