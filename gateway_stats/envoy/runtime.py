"""What a running sidecar shares across streams: the live config, the metrics registry and the sinks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from gateway_stats.analytics.enricher import Enricher
from gateway_stats.analytics.feedback import FeedbackHub, handle_feedback
from gateway_stats.analytics.joins import RecentCalls
from gateway_stats.config import Config
from gateway_stats.config.store import ConfigStore
from gateway_stats.core.record import CallRecord
from gateway_stats.envoy.selfmetrics import AnalyticsCollector, ReloadCollector, SelfMetrics
from gateway_stats.pricing.config import BUILTIN
from gateway_stats.records.row import feedback_row
from gateway_stats.sinks.ai_log import AiLogLineSink
from gateway_stats.sinks.base import Sink, SinkSet
from gateway_stats.sinks.metrics import MetricsSink, is_llm_call, unpriced_reason

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from gateway_stats.core.feedback import Feedback
    from gateway_stats.sinks.athina import AthinaSink
    from gateway_stats.sinks.records.writer import RecordsSink
    from gateway_stats.sinks.tracing import TracingSink

log = logging.getLogger(__name__)

_MAX_NOTED = 1000  # model names come from clients: warnings about them are bounded too

disable_created_metrics()  # no `_created` series: Higress dashboards expect plain counters


class Runtime:
    def __init__(self, store: ConfigStore, *, ai_log_file: str | None = None) -> None:
        self.store = store
        self.registry = CollectorRegistry()
        self.self_metrics = SelfMetrics(self.registry)
        self.registry.register(ReloadCollector(store))
        # Higress / GenAI / calls metrics: always registered; which families it exports is config.
        self.metrics = MetricsSink(store, on_cap=lambda cap: self.self_metrics.caps_hit.labels(cap).inc())
        sinks: list[Sink] = [self.metrics]
        path = ai_log_file or store.current.extensions.ai_log_file
        if path:
            sinks.append(AiLogLineSink(path))
        self.sinks = SinkSet(sinks, on_error=lambda name: self.self_metrics.errors.labels("sink").inc())
        self.tracing: TracingSink | None = None  # created only once tracing is enabled
        # Records (SQLite, PostgreSQL, InfluxDB, JSON lines): kept last in the fan-out (add_sink), so
        # every other sink (tracing's span ids, pricing) has filled the record before a writer reads it.
        self.records: RecordsSink | None = None
        self._records_config = store.current.extensions.records
        if self._records_config is not None and self._records_config.enabled:
            from gateway_stats.sinks.records.writer import RecordsMetrics, RecordsSink

            self.records = RecordsSink(self._records_config, RecordsMetrics(self.registry))
            self.sinks.sinks.append(self.records)
        # analytics (issue 13): feedback joined to recent calls; language/topic off the request path
        self.feedback_hub = FeedbackHub(
            RecentCalls(store.current.extensions.analytics.feedback.recent_calls),
            self._feedback_consumers,
            on_error=lambda name: self.self_metrics.errors.labels("feedback").inc(),
        )
        self.enricher = Enricher(store.current.extensions.analytics)
        if self.records is not None:  # language and topic in the records writer, before the rows are built
            self.records.add_batch_enricher(self.enricher.enrich)
        self.athina: AthinaSink | None = None
        self.registry.register(AnalyticsCollector(self.enricher, self.feedback_hub, lambda: self.athina))
        self.reconfigure(store.current)
        self.ready = False
        self.activity = 0  # bumped per stream start and end: tells the worker snapshots something changed
        self._noted: set[str] = set()
        self._unpriced_noted: set[tuple[str, str]] = set()

    def reconfigure(self, cfg: Config) -> None:
        """Apply settings that live outside the per-request path: the span sink, the built-in prices.

        The OpenTelemetry SDK is imported and its provider (with its export thread) built only when
        tracing is enabled; a reload turning it off stops span creation (the provider stays idle).
        """
        tr = cfg.extensions.tracing
        if self.tracing is not None:
            self.tracing.config = tr
        elif tr.enabled:
            from gateway_stats.sinks.tracing import TracingSink

            self.tracing = TracingSink(tr)
            self.add_sink(self.tracing)
        if cfg.extensions.pricing.builtin:
            BUILTIN.load()  # import genai-prices now, not while the first call is being finalized
        if cfg.extensions.records != self._records_config:
            log.warning("records settings changed in %s: they take effect at the next restart", cfg.source)
        an = cfg.extensions.analytics
        self.enricher.reconfigure(an)
        if an.feedback.recent_calls != self.feedback_hub.recent.capacity:
            self.feedback_hub.recent.resize(an.feedback.recent_calls)
        if self.athina is not None:
            self.athina.reconfigure(an.athina)
        elif an.athina.enabled:
            from gateway_stats.sinks.athina import AthinaSink

            self.athina = AthinaSink(an.athina, self.enricher, self.feedback_hub.recent)
            self.add_sink(self.athina)

    def start(self) -> None:
        """Start what runs beside the traffic (the language/topic worker loads its models meanwhile)."""
        self.enricher.start()

    def request_read(self, rec: CallRecord) -> None:
        """The request body was read (servicer, request path): with the opt-in `language` ai_log key,
        start detection now so the final ai_log can carry it. A queue put; never blocks."""
        lang = self.config.extensions.analytics.language
        if lang.ai_log and lang.enabled and rec.user_text:
            rec.extra["language_in_ai_log"] = True
            self.enricher.submit(rec)

    def _feedback_consumers(self) -> list[Callable[[Feedback], None]]:
        """Every sink that takes feedback (metrics, Athina), and the records stores as `feedback` rows."""
        out: list[Callable[[Feedback], None]] = [
            f for s in self.sinks.sinks if (f := getattr(s, "feedback", None)) is not None
        ]
        if self.records is not None:
            out.append(self._feedback_row)
        return out

    def _feedback_row(self, fb: Feedback) -> None:
        if self.records is not None:
            self.records.submit("feedback", feedback_row(fb))  # non-blocking; drops are counted there

    def handle_feedback(self, method: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        """`POST /v1/feedback` on the side port."""
        return handle_feedback(
            self.config.extensions.analytics.feedback, method, headers, body, self.feedback_hub
        )

    def submit_feedback(self, fb: Feedback) -> None:
        self.feedback_hub.submit(fb)

    @property
    def config(self) -> Config:
        return self.store.current

    def render_metrics(self) -> bytes:
        """The /metrics body: the sidecar's own metrics (prometheus_client), then the traffic metrics."""
        return generate_latest(self.registry) + self.metrics.render().encode()

    def add_sink(self, sink: Sink) -> None:
        """Add a sink before the records sink, which stays last (see __init__)."""
        sinks = self.sinks.sinks
        last = self.records is not None and bool(sinks) and sinks[-1] is self.records
        sinks.insert(len(sinks) - 1 if last else len(sinks), sink)

    def emit(self, rec: CallRecord, ai_log: dict[str, Any]) -> None:
        if rec.feedback is not None:  # a DIAL rate call: feedback, not an LLM call
            self.feedback_hub.from_rate_call(rec)
            return
        sm = self.self_metrics
        for cap in rec.caps_hit:
            sm.caps_hit.labels(cap).inc()
            self._note(f"cap {cap}", rec, f"buffer {cap!r} reached its cap; part of the call not analysed")
        for key in ("bad_json_request", "bad_json_response"):
            if rec.extra.get(key):
                sm.bad_json.labels(key[9:]).inc()
                self._note(key, rec, f"the {key[9:]} body was not valid JSON")
        if rec.extra.get("bad_json_events"):
            sm.bad_json.labels("event").inc(rec.extra["bad_json_events"])
            self._note("bad_json_events", rec, "SSE events that were not valid JSON")
        if rec.extra.get("sse_resyncs"):
            sm.sse_resyncs.inc(rec.extra["sse_resyncs"])
            self._note("sse_resync", rec, "an oversized SSE event was skipped (framer resynchronised)")
        if rec.provider == "unknown" and rec.operation == "unknown" and rec.status_code is not None:
            sm.unrecognised.inc()
            self._note("unrecognised", rec, "no known LLM API shape in path or body")
        elif rec.observed and is_llm_call(rec):
            self.feedback_hub.note_call(rec)
        reason = unpriced_reason(rec) if rec.observed and is_llm_call(rec) else None
        if reason is not None:
            self._note_unpriced(rec, reason)
        self.sinks.emit(rec, ai_log)

    def _note_unpriced(self, rec: CallRecord, reason: str) -> None:
        """One warning per model and reason (the first _MAX_NOTED of them), then debug lines."""
        model = rec.model or ""
        key = (model, reason)
        if key in self._unpriced_noted or len(self._unpriced_noted) >= _MAX_NOTED:
            log.debug("call not priced (%s): model %r, request %s", reason, model, rec.request_id)
            return
        self._unpriced_noted.add(key)
        what = {
            "unknown_model": "no price for it in genai-prices, the price files, MODEL_RATES or overrides",
            "no_usage": "the answer reported no token usage (OpenAI streams: stream_options.include_usage)",
            "unsupported_unit": "its price is in a unit that cannot be counted for this call",
        }.get(reason, reason)
        log.warning(
            "call not priced, model %r: %s; counted in gateway_stats_unpriced_calls_total{reason=%r}, "
            "further ones for this model logged at debug level",
            model,
            what,
            reason,
        )

    def _note(self, kind: str, rec: CallRecord, what: str) -> None:
        """One warning per kind of trouble (then debug lines), so bad input cannot flood the log. The
        path is logged without its query string: Gemini's API key may travel there (`?key=…`)."""
        path = rec.path.split("?", 1)[0]
        if kind in self._noted:
            log.debug("%s (request %s, path %s)", what, rec.request_id, path)
            return
        self._noted.add(kind)
        log.warning(
            "%s (request %s, path %s); counted in /metrics, further ones logged at debug level",
            what,
            rec.request_id,
            path,
        )

    def close(self) -> None:
        self.sinks.close()
        self.enricher.close()
