"""The gRPC ExternalProcessor: a thin adapter from ext_proc messages to the sans-IO observer.

Every answer is CONTINUE with no mutation, so bytes are never changed. Any exception while
handling a message is caught, counted and logged once; the stream goes on. The current ai_log is
attached as dynamic metadata at the points Higress rewrites it (end of request body, each event
that brings usage, end of response), so an aborted stream still has its line in the access log.
Next to it go the span-tag keys (sinks/span_tags.py) Envoy's tracing custom_tags read. When tracing is on,
the trace context Envoy puts in the stream's gRPC metadata (its span for this side call) is kept in
the record, so our span can sit inside Envoy's trace.

Per message the adapter does as little as it can: answers are wire bytes (answers.py; the method is
registered without a response serializer), a plain CONTINUE is a constant, headers become a dict in
one pass, and the per-message self-metrics are plain counters. A call the config does not observe,
or one shed because the sidecar is overloaded (shedding.py), costs one message: its request-headers
answer turns the call's other phases off. Finished calls reach the sinks in batches (EMIT_BATCH).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from gateway_stats.core.observer import CallObserver
from gateway_stats.core.record import CallRecord
from gateway_stats.envoy import answers
from gateway_stats.envoy.runtime import Runtime
from gateway_stats.envoy.shedding import Shedder
from gateway_stats.sinks import ai_log as ai_log_sink

log = logging.getLogger(__name__)

SERVICE_NAME = "envoy.service.ext_proc.v3.ExternalProcessor"
ATTR_NS = "envoy.filters.http.ext_proc"

_CONTINUE = answers.CONTINUE
_STOP_AFTER_REQUEST_HEADERS = answers.STOP_AFTER_REQUEST_HEADERS
_STOP_AFTER_RESPONSE_HEADERS = answers.STOP_AFTER_RESPONSE_HEADERS

# Test hook (never set in production): `x-gateway-stats-test-block-ms: N` on a request makes its
# request-headers message block the event loop for N ms, so tests can induce overload.
_TEST_HOOKS = os.environ.get("GATEWAY_STATS_TEST_HOOKS") == "1"
_BLOCK_HEADER = "x-gateway-stats-test-block-ms"

_monotonic_ns = time.monotonic_ns

# Finished calls go to the sinks (metrics, records, spans, feedback joins) in batches, not one by one
# between messages: run one after another, the sinks' code and data stay in the CPU caches, where a
# single call's sink work between two messages of other calls runs cold (Envoy and other processes
# evict them) and costs several times more (docs/benchmarks.md, "cold caches"). A batch goes when it
# holds EMIT_BATCH calls or EMIT_DELAY_S after its first call, whichever comes first.
EMIT_BATCH = 64
EMIT_DELAY_S = 0.02


def headers_dict(hm: Any) -> dict[str, str]:
    """Envoy's HeaderMap as a dict; a repeated header's values are joined with commas."""
    hs = hm.headers
    out = {h.key: (h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value) for h in hs}
    if len(out) == len(hs):
        return out
    out = {}
    for h in hs:  # repeated names: join them in order
        v = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        k = h.key
        out[k] = out[k] + "," + v if k in out else v
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
    attrs = req.attributes
    if ATTR_NS not in attrs:
        return {}
    out: dict[str, str] = {}
    for k, v in attrs[ATTR_NS].fields.items():
        kind = v.WhichOneof("kind")
        if kind == "string_value":
            out[k] = v.string_value
        elif kind == "number_value":
            n = v.number_value
            out[k] = str(int(n)) if n.is_integer() else str(n)
        elif kind == "bool_value":
            out[k] = "true" if v.bool_value else "false"
    return out


class ExtProcServicer:
    def __init__(self, runtime: Runtime, shedder: Shedder | None = None) -> None:
        self.rt = runtime
        self.shedder = shedder
        self.inflight = 0  # open streams (calls in flight)
        self._logged_phases: set[str] = set()
        self._pending: list[tuple[CallObserver, dict[str, Any] | None]] = []
        self._flush_handle: asyncio.TimerHandle | None = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register Process; answers are already wire bytes, so no response serializer."""
        handler = grpc.stream_stream_rpc_method_handler(
            self.Process, request_deserializer=pb.ProcessingRequest.FromString, response_serializer=None
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, {"Process": handler}),)
        )

    def _error(self, phase: str) -> None:
        self.rt.self_metrics.errors.labels(phase).inc()
        if phase not in self._logged_phases:
            self._logged_phases.add(phase)
            log.exception("error while handling %s (logged once per phase; traffic unaffected)", phase)
        else:
            log.debug("error while handling %s", phase, exc_info=True)

    def _metadata_answer(self, phase: str, obs: CallObserver, doc: dict[str, Any]) -> bytes:
        ns = self.rt.config.extensions.metadata_namespace
        return answers.metadata_answer(phase, ns, ai_log_sink.metadata_values(obs.record, doc))  # type: ignore[arg-type]

    def _shed(self, reason: str) -> None:
        self.rt.self_metrics.calls_shed.labels(reason).inc()

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: Any
    ) -> AsyncIterator[bytes]:
        rt = self.rt
        sm = rt.self_metrics
        message_done = sm.message_done
        config = rt.config
        obs = CallObserver(config)
        if config.extensions.tracing.enabled:
            try:
                take_trace_context(obs.record, context.invocation_metadata())
            except Exception:
                self._error("trace_context")
        self.inflight += 1
        sm.per_message.active_streams += 1
        rt.activity += 1
        end = "cancelled"
        observability: bool | None = None
        finished = False
        shed = False
        emit_pending = False
        final_doc: dict[str, Any] | None = None  # the ai_log of the final answer, reused by the sinks
        try:
            async for req in request_iterator:
                phase = req.WhichOneof("request")
                if phase is None:
                    continue
                now = _monotonic_ns()
                if observability is None:
                    observability = req.observability_mode
                changed = False
                done = False
                try:
                    if phase == "response_body":
                        body = req.response_body
                        done = body.end_of_stream
                        changed = obs.on_response_body(body.body, done, now)
                    elif phase == "request_body":
                        body = req.request_body
                        changed = obs.on_request_body(body.body, body.end_of_stream, now)
                        if body.end_of_stream and obs.record.user_text:
                            rt.request_read(obs.record)  # early language for the opt-in ai_log key
                    elif phase == "request_headers":
                        h = req.request_headers
                        headers = headers_dict(h.headers)
                        if _TEST_HOOKS and _BLOCK_HEADER in headers:
                            time.sleep(int(headers[_BLOCK_HEADER]) / 1000)
                        reason = self.shedder.check(self.inflight) if self.shedder is not None else None
                        if reason is not None:
                            shed = True
                            self._shed(reason)
                            message_done(phase, (_monotonic_ns() - now) / 1e9)
                            if not observability:
                                yield _STOP_AFTER_REQUEST_HEADERS
                            break  # end the stream: the call goes on untouched, unobserved
                        changed = obs.on_request_headers(headers, attributes_dict(req), h.end_of_stream, now)
                    elif phase == "response_headers":
                        h = req.response_headers
                        done = h.end_of_stream
                        changed = obs.on_response_headers(
                            headers_dict(h.headers), attributes_dict(req), done, now
                        )
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
                    observed = obs.observed  # an LLM call, or a DIAL rate call being read
                    if changed and observed:
                        try:
                            doc = obs.ai_log()
                            answer = self._metadata_answer(phase, obs, doc)
                            if done:
                                final_doc = doc
                        except Exception:
                            self._error(phase)
                            answer = _CONTINUE[phase]
                    elif not observed and phase == "request_headers":
                        answer = _STOP_AFTER_REQUEST_HEADERS
                    elif not obs.response_analysed and phase == "response_headers" and not done:
                        answer = _STOP_AFTER_RESPONSE_HEADERS
                    else:
                        answer = _CONTINUE[phase]
                    message_done(phase, (_monotonic_ns() - now) / 1e9)
                    yield answer
                else:
                    message_done(phase, (_monotonic_ns() - now) / 1e9)
                if emit_pending:
                    emit_pending = False
                    self._emit(obs, final_doc)
                if done and observability:
                    # Envoy keeps an observability stream open for deferred_close_timeout unless we end it.
                    break
            else:
                end = "client_closed" if not finished else "complete"
        finally:
            if shed:
                end = "shed"
            elif not finished:
                # A call we do not observe ends early on purpose (its phases were turned off).
                reason = "aborted" if obs.response_analysed else "unobserved"
                self._close_record(obs, _monotonic_ns(), reason)
                emit_pending = True
            if emit_pending:
                self._emit(obs, final_doc)
            sm.stream_ended(end)
            sm.per_message.active_streams -= 1
            self.inflight -= 1
            rt.activity += 1

    def _close_record(self, obs: CallObserver, now: int, reason: str) -> None:
        try:
            obs.finish(now, reason)
            self.rt.self_metrics.record_finalized(reason)
        except Exception:
            self._error("finish")

    def _emit(self, obs: CallObserver, doc: dict[str, Any] | None = None) -> None:
        """Queue a finished call for the sinks (see EMIT_BATCH); its record no longer changes."""
        if not obs.observed:
            return
        self._pending.append((obs, doc))
        if len(self._pending) >= EMIT_BATCH:
            self.flush()
        elif self._flush_handle is None:
            try:
                self._flush_handle = asyncio.get_running_loop().call_later(EMIT_DELAY_S, self.flush)
            except RuntimeError:  # no running loop (a test driving Process by hand): emit now
                self.flush()

    def flush(self) -> None:
        """Hand every queued call to the sinks now (the batch timer, a full batch, or shutdown)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._pending = self._pending, []
        if batch:
            self.rt.activity += 1  # the worker's metrics snapshot must see this batch
        for obs, doc in batch:
            try:
                self.rt.emit(obs.record, doc if doc is not None else obs.ai_log())
            except Exception:
                self._error("finish")
