"""The sidecar's own health metrics: streams, messages, handling time, errors, reloads, shedding.

Kept apart from the AI-traffic metrics so that operators can always see what the observer
itself costs and whether it is dropping anything.

What changes on every message (message counts, handling time, active streams) is kept in plain
integers and bucket lists on the event loop's thread and turned into metric families at scrape time
(PerMessageCollector): a prometheus_client Counter and Histogram take a lock and several calls per
update, which is measurable at thousands of messages per second. The rest are prometheus_client
objects, updated per call at most.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway_stats.config.store import ConfigStore
from gateway_stats.core.buckets import BucketCounts

MESSAGE_PHASES = (
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
    "request_trailers",
    "response_trailers",
)
HANDLING_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class PerMessageCollector(Collector):
    """Messages by phase, their handling time and the open streams, from plain counters (see above)."""

    def __init__(self) -> None:
        self.active_streams = 0
        self.handling: dict[str, BucketCounts] = {p: BucketCounts(HANDLING_BUCKETS) for p in MESSAGE_PHASES}
        self.lag: Callable[[], float] | None = None  # the shedder's last event-loop lag, if any

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "gateway_stats_active_streams", "ext_proc streams currently open", value=self.active_streams
        )
        msgs = CounterMetricFamily(
            "gateway_stats_messages", "ext_proc messages received by phase", labels=["phase"]
        )
        hist = HistogramMetricFamily(
            "gateway_stats_message_handling_seconds",
            "time spent handling one ext_proc message (analysis included)",
            labels=["phase"],
        )
        les = [*(floatToGoString(b) for b in HANDLING_BUCKETS), "+Inf"]
        for phase, h in self.handling.items():
            cumulative = h.cumulative()  # read first: count then matches the +Inf bucket
            msgs.add_metric([phase], cumulative[-1])
            hist.add_metric([phase], list(zip(les, cumulative, strict=True)), h.sum)
        yield msgs
        yield hist
        if self.lag is not None:
            yield GaugeMetricFamily(
                "gateway_stats_event_loop_lag_seconds",
                "how late the event loop ran a timer at the last check (load shedding's measure)",
                value=self.lag(),
            )


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.per_message = PerMessageCollector()
        registry.register(self.per_message)
        self.streams = Counter(
            "gateway_stats_streams", "ext_proc streams by how they ended", ["end"], registry=registry
        )
        self.calls_shed = Counter(
            "gateway_stats_calls_shed",
            "calls passed unobserved because the sidecar was overloaded, by reason (loop_lag, inflight)",
            ["reason"],
            registry=registry,
        )
        self.errors = Counter(
            "gateway_stats_errors",
            "exceptions caught while handling a message or feeding a sink (traffic unaffected)",
            ["phase"],
            registry=registry,
        )
        self.records = Counter(
            "gateway_stats_records",
            "call records finalized, by end reason",
            ["end_reason"],
            registry=registry,
        )
        self.caps_hit = Counter(
            "gateway_stats_caps_hit",
            "bounded buffers that reached their cap, by cap",
            ["cap"],
            registry=registry,
        )
        self.sse_resyncs = Counter(
            "gateway_stats_sse_resyncs",
            "SSE framer resynchronisations after an oversized event",
            registry=registry,
        )
        self.unrecognised = Counter(
            "gateway_stats_unrecognised_calls",
            "observed calls with no known LLM API shape (provider unknown): model and usage not extracted",
            registry=registry,
        )
        self.bad_json = Counter(
            "gateway_stats_bad_json",
            "bodies or events that were not valid JSON",
            ["where"],
            registry=registry,
        )
        for reason in ("loop_lag", "inflight"):
            self.calls_shed.labels(reason)
        for phase in (
            "request_headers",
            "request_body",
            "response_headers",
            "response_body",
            "trailers",
            "finish",
            "sink",
        ):
            self.errors.labels(phase)

        # Label children used per stream, cached: a labels() lookup costs more than the increment.
        self._ends: dict[str, Counter] = {}
        self._records: dict[str, Counter] = {}

    def message_done(self, phase: str, seconds: float) -> None:
        """One ext_proc message handled: count it and record its handling time."""
        self.per_message.handling[phase].observe(seconds)

    def stream_ended(self, end: str) -> None:
        c = self._ends.get(end)
        if c is None:
            c = self._ends[end] = self.streams.labels(end)
        c.inc()

    def record_finalized(self, reason: str) -> None:
        c = self._records.get(reason)
        if c is None:
            c = self._records[reason] = self.records.labels(reason)
        c.inc()


class ReloadCollector(Collector):
    """Config reloads by result, read from the store at scrape time (the store owns the counts)."""

    def __init__(self, store: ConfigStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "gateway_stats_config_reloads", "config file reloads by result", labels=["result"]
        )
        c.add_metric(["ok"], self.store.reloads_ok)
        c.add_metric(["failed"], self.store.reloads_failed)
        yield c
        # 0 while the file on disk is a rejected version (the last good config is in force): an alert
        # on it holds for as long as the bad file stays, unlike one on the counter's increase.
        g = GaugeMetricFamily(
            "gateway_stats_config_file_valid",
            "1 when the config file on disk is the config in force, 0 while its latest version is rejected",
        )
        g.add_metric([], 0 if self.store.last_error is not None else 1)
        yield g


class AnalyticsCollector(Collector):
    """Language/topic worker and feedback, read at scrape time from the objects that count them."""

    def __init__(self, enricher: Any, hub: Any, athina: Any = None) -> None:
        self.enricher = enricher  # analytics.enricher.Enricher
        self.hub = hub  # analytics.feedback.FeedbackHub
        self.athina = athina  # () -> sinks.athina.AthinaSink | None

    def collect(self) -> Iterator[Metric]:
        e = self.enricher
        if e.enabled:
            st = e.stats
            g = GaugeMetricFamily(
                "gateway_stats_analytics_worker_ready",
                "1 once the language/topic worker process has loaded its models",
            )
            g.add_metric([], 1.0 if e.ready else 0.0)
            yield g
            c = CounterMetricFamily(
                "gateway_stats_analytics_enriched",
                "records given language/topic (ok), or left without: worker loading (not_ready), slow "
                "(timeout) or failed (failed)",
                labels=["result"],
            )
            c.add_metric(["ok"], st.records)
            c.add_metric(["not_ready"], st.not_ready)
            c.add_metric(["timeout"], st.timeouts)
            c.add_metric(["failed"], st.failures)
            yield c
        d = CounterMetricFamily(
            "gateway_stats_feedback_dropped",
            "feedback not counted: a DIAL rate call with a bad body or rejected by the upstream",
            labels=["source"],
        )
        for source, n in sorted(self.hub.dropped.items()):
            d.add_metric([source], n)
        yield d
        sink = self.athina() if self.athina is not None else None
        if sink is not None:
            a = CounterMetricFamily(
                "gateway_stats_athina_forwarded",
                "calls (log) and feedback forwarded to Athina, by result: sent, failed (after retries), "
                "dropped (queue full), unjoined (feedback for a call Athina cannot be told about)",
                labels=["kind", "result"],
            )
            for (kind, result), n in sorted(dict(sink.counts).items()):
                a.add_metric([kind, result], n)
            yield a
