"""Prometheus metrics from finished call records: Higress' counters byte for byte, OpenTelemetry GenAI
histograms, calls by outcome, all behind a cardinality guard.

Why a hand-written exposition instead of prometheus_client objects: Higress dashboards query
`route_upstream_model_consumer_metric_input_token{ai_route,ai_cluster,ai_model,ai_consumer}` as a counter
*without* `_total`, with labels in that order and no HELP line (that is how Envoy prints them);
prometheus_client always appends `_total` to counters and sorts labels. Owning the text also lets one
lock cover a record and a scrape, and lets every series' label text be rendered once, not per scrape.

Cardinality: model, consumer and extra-label values come from outside. Each family holds at most
`max_series_per_metric` label sets. When it is full, a new label set is folded: every open label
value becomes `__overflow__` while the labels with a fixed vocabulary (token type, status class,
stream, outcome) are kept, so sums and error ratios stay right; slots for those folded series are
reserved inside the cap. `gateway_stats_label_overflow_total{family}` counts folded measurements.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from gateway_stats.config import (
    HIGRESS_METRIC_PREFIX,
    HIGRESS_METRICS,
    METRIC_FAMILIES,
    ExtraLabel,
    MetricsConfig,
)
from gateway_stats.config.store import ConfigStore
from gateway_stats.core.ai_log import api_name, decimal_text
from gateway_stats.core.buckets import (
    DURATION_BUCKETS,
    SERVER_TPOT_BUCKETS,
    SERVER_TTFT_BUCKETS,
    TOKEN_BUCKETS,
    BucketCounts,
)
from gateway_stats.core.feedback import RATINGS, Feedback
from gateway_stats.core.record import CallRecord
from gateway_stats.pricing.model import REASONS as UNPRICED_REASONS

OVERFLOW = "__overflow__"

HIGRESS_LABELS = ("ai_route", "ai_cluster", "ai_model", "ai_consumer")
_GENAI_COMMON = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
)
_GENAI_TAIL = ("ai_route", "ai_cluster", "ai_consumer")
TOKEN_TYPES = ("input", "output", "cached_input", "cache_creation_input", "reasoning")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none", "other")
OUTCOMES = ("ok", "error", "aborted")
LABEL_MEMO_SIZE = 4096  # distinct label sets remembered by the sink (cleared when full)


@dataclass(frozen=True, slots=True)
class FamilySpec:
    name: str  # exactly as exposed (our counters end in _total; Higress' do not)
    kind: str  # "counter" | "histogram"
    profile: str  # "higress" | "genai" | "aliases" (genai + gen_ai_server_aliases) | "core" (always on)
    labels: tuple[str, ...]  # built-in labels, in exposition order
    help: str = ""  # "" = no HELP line (Higress/Envoy style)
    buckets: tuple[float, ...] = ()
    closed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # fixed vocabularies, kept on overflow
    keep_empty: bool = False  # render labels whose value is "" (Higress always prints its four)


def _higress(name: str) -> FamilySpec:
    return FamilySpec(HIGRESS_METRIC_PREFIX + name, "counter", "higress", HIGRESS_LABELS, keep_empty=True)


def _hist(
    name: str, help_: str, buckets: tuple[float, ...], *, error: bool = False, profile: str = "genai"
) -> FamilySpec:
    labels = (*_GENAI_COMMON, *(("error_type",) if error else ()), *_GENAI_TAIL)
    return FamilySpec(name, "histogram", profile, labels, help_, buckets)


SPECS: tuple[FamilySpec, ...] = (
    *(_higress(n) for n in HIGRESS_METRICS),
    FamilySpec(
        "gen_ai_client_token_usage",
        "histogram",
        "genai",
        (*_GENAI_COMMON, "gen_ai_token_type", *_GENAI_TAIL),
        "Number of input and output tokens used (gen_ai.client.token.usage).",
        TOKEN_BUCKETS,
        {"gen_ai_token_type": TOKEN_TYPES},
    ),
    _hist(
        "gen_ai_client_operation_duration_seconds",
        "GenAI operation duration, request headers to end of response (gen_ai.client.operation.duration).",
        DURATION_BUCKETS,
        error=True,
    ),
    _hist(
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "Time to the first response chunk of a stream (gen_ai.client.operation.time_to_first_chunk).",
        DURATION_BUCKETS,
    ),
    _hist(
        "gen_ai_client_operation_time_per_output_chunk_seconds",
        "Time between consecutive stream chunks, per chunk (gen_ai.client.operation.time_per_output_chunk).",
        DURATION_BUCKETS,
    ),
    _hist(
        "gen_ai_server_request_duration_seconds",
        "GenAI request duration (gen_ai.server.request.duration alias).",
        DURATION_BUCKETS,
        error=True,
        profile="aliases",
    ),
    _hist(
        "gen_ai_server_time_to_first_token_seconds",
        "Time to the first generated content of a successful stream (gen_ai.server.time_to_first_token).",
        SERVER_TTFT_BUCKETS,
        profile="aliases",
    ),
    _hist(
        "gen_ai_server_time_per_output_token_seconds",
        "(duration - time to first token) / (output tokens - 1) of a successful stream "
        "(gen_ai.server.time_per_output_token).",
        SERVER_TPOT_BUCKETS,
        profile="aliases",
    ),
    FamilySpec(
        "gateway_stats_calls_total",
        "counter",
        "core",
        (*HIGRESS_LABELS, "status_class", "stream", "outcome"),
        "LLM calls by route, model, status class, stream or not, and outcome (ok, error, aborted).",
        closed={"status_class": STATUS_CLASSES, "stream": ("true", "false"), "outcome": OUTCOMES},
    ),
    FamilySpec(
        "gateway_stats_cost_total",
        "counter",
        "core",
        (*HIGRESS_LABELS, "currency"),
        "Money cost of LLM calls, from their usage and the configured prices (an exact decimal sum).",
    ),
    FamilySpec(
        "gateway_stats_unpriced_calls_total",
        "counter",
        "core",
        ("ai_model", "reason"),
        "LLM calls left without a cost, by reason (unknown_model, no_usage, unsupported_unit).",
        closed={"reason": UNPRICED_REASONS},
    ),
    FamilySpec(
        "gateway_stats_feedback_total",
        "counter",
        "core",
        ("ai_model", "ai_route", "rating"),
        "Feedback on answers (DIAL rate calls, POST /v1/feedback) by the rated call's model and route, "
        "and rating (like, dislike, none: a comment or grade only).",
        closed={"rating": RATINGS},
    ),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}
assert tuple(SPEC_BY_NAME) == METRIC_FAMILIES, "config.METRIC_FAMILIES must list exactly these families"


# Control characters other than \t and \n (which the exposition escapes or allows) become "_".
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float | Decimal) -> str:
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        return decimal_text(v)  # exact: a cost counter is a Decimal sum
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() else repr(v)


class Series:
    __slots__ = ("labels", "value")

    def __init__(self, labels: str, value: float | Decimal | BucketCounts) -> None:
        self.labels = labels  # rendered `k="v",...` (without braces), computed once
        self.value = value


class Family:
    """One metric family's series with the cardinality guard. Not thread-safe: MetricsSink locks."""

    def __init__(self, spec: FamilySpec, extras: tuple[ExtraLabel, ...], cap: int) -> None:
        self.spec = spec
        self.extras = extras
        self.label_names = (*spec.labels, *(e.name for e in extras))
        self.series: dict[tuple[str, ...], Series] = {}
        self.regular = 0  # series admitted under their own labels
        self.folded = 0  # measurements folded into an overflow series
        self._closed = [(i, spec.closed[n]) for i, n in enumerate(self.label_names) if n in spec.closed]
        self.cap = cap
        self.reserve = 1
        self.set_cap(cap)

    def set_cap(self, cap: int) -> None:
        """Reserve room inside the cap for every overflow series the fold can produce."""
        self.cap = cap
        combos = math.prod(len(v) for _, v in self._closed)
        self._fold_all = combos >= cap  # too small a cap to keep closed labels: fold into one series
        self.reserve = 1 if self._fold_all else combos

    def _fold(self, values: tuple[str, ...]) -> tuple[str, ...]:
        out = [OVERFLOW] * len(values)
        if not self._fold_all:
            for i, vocab in self._closed:
                out[i] = values[i] if values[i] in vocab else vocab[-1]
        return tuple(out)

    def _render_labels(self, values: tuple[str, ...]) -> str:
        keep = self.spec.keep_empty
        return ",".join(
            f'{n}="{_esc(v)}"' for n, v in zip(self.label_names, values, strict=True) if keep or v
        )

    def _slot(self, values: tuple[str, ...], create: Callable[[], float | Decimal | BucketCounts]) -> Series:
        s = self.series.get(values)
        if s is not None:
            return s
        if self.regular < self.cap - self.reserve:
            self.regular += 1
            key = values
        else:
            self.folded += 1
            key = self._fold(values)
            s = self.series.get(key)
            if s is not None:
                return s
        s = Series(self._render_labels(key), create())
        self.series[key] = s
        return s

    def _merge_slot(self, key: tuple[str, ...], create: Callable[[], float | BucketCounts]) -> Series:
        """Like _slot, but a series another process already folded stays an overflow series."""
        if OVERFLOW not in key:
            return self._slot(key, create)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(self._render_labels(key), create())
        return s

    def inc(self, values: tuple[str, ...], amount: float | Decimal) -> None:
        """Counter increment. A zero increment creates no series (Envoy defines a counter on first use)."""
        if amount <= 0:
            return
        s = self._slot(values, int)
        s.value += amount  # type: ignore[operator]

    def observe(self, values: tuple[str, ...], v: float) -> None:
        s = self._slot(values, lambda: BucketCounts(self.spec.buckets))
        s.value.observe(v)  # type: ignore[union-attr]

    def merge(self, values: tuple[str, ...], counts: BucketCounts) -> None:
        s = self._slot(values, lambda: BucketCounts(self.spec.buckets))
        s.value.merge(counts)  # type: ignore[union-attr]

    def export(self) -> ExportedFamily:
        if self.spec.kind == "counter":
            rows: list[tuple[tuple[str, ...], Any]] = [
                (k, exported_value(s.value)) for k, s in self.series.items()
            ]
        else:
            rows = []
            for k, s in self.series.items():
                h: BucketCounts = s.value  # type: ignore[assignment]
                rows.append((k, (list(h.counts), h.sum, h.count)))
        return (self.spec.name, self.label_names, self.folded, rows)

    def add_exported(self, folded: int, rows: list[tuple[tuple[str, ...], Any]]) -> None:
        """Add exported series (see MetricsSink.render_merged); each label set at most once per call."""
        self.folded += folded
        counter = self.spec.kind == "counter"
        fits = len(self.series) + len(rows) <= self.cap - self.reserve
        for key, v in rows:
            key = tuple(key)
            if fits and key not in self.series:  # the common case: no fold possible, no lookup chain
                if OVERFLOW not in key:
                    self.regular += 1
                s = self.series[key] = Series(
                    self._render_labels(key), 0 if counter else BucketCounts(self.spec.buckets)
                )
            else:
                s = self._merge_slot(key, int if counter else (lambda: BucketCounts(self.spec.buckets)))
            if counter:
                s.value += v
                continue
            counts, total, count = v
            h: BucketCounts = s.value  # type: ignore[assignment]
            if len(counts) == len(h.counts):
                h.counts = [a + b for a, b in zip(h.counts, counts, strict=True)]
                h.sum += total
                h.count += count

    def snapshot(self) -> list[tuple[str, Any]]:
        """Copy of the values (taken under the sink's lock, formatted after it is released)."""
        if self.spec.kind == "counter":
            return [(s.labels, s.value) for s in self.series.values()]
        out: list[tuple[str, Any]] = []
        for s in self.series.values():
            h: BucketCounts = s.value  # type: ignore[assignment]
            out.append((s.labels, (h.cumulative(), h.sum, h.count)))
        return out


def _format(spec: FamilySpec, rows: list[tuple[str, Any]], out: list[str]) -> None:
    if not rows:
        return
    name = spec.name
    if spec.help:
        out.append(f"# HELP {name} {spec.help}\n")
    out.append(f"# TYPE {name} {spec.kind}\n")
    if spec.kind == "counter":
        for labels, v in rows:
            lab = f"{{{labels}}}" if labels else ""
            out.append(f"{name}{lab} {_num(v)}\n")
        return
    les = [f'le="{_num(b)}"' for b in spec.buckets] + ['le="+Inf"']
    for labels, (cumulative, total, count) in rows:
        pre = labels + "," if labels else ""
        for le, c in zip(les, cumulative, strict=True):
            out.append(f"{name}_bucket{{{pre}{le}}} {c}\n")
        lab = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{lab} {_num(total)}\n")
        out.append(f"{name}_count{lab} {count}\n")


def _label_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()


def status_class(code: int | None) -> str:
    if code is None:
        return "none"
    if 100 <= code <= 599:
        return f"{code // 100}xx"
    return "other"


def unpriced_reason(rec: CallRecord) -> str | None:
    """Why a call counts as unpriced, or None. A failed call without usage is not counted: it is a
    failure (llm_failure_count), and providers do not bill it."""
    reason = rec.extra.get("unpriced_reason")
    if reason is None or rec.cost is not None:
        return None
    if not rec.usage.known and rec.failed:
        return None
    return str(reason)


def metric_route(route: str) -> str:
    """Higress: an API route (`api@version@kind@region`, three or more `@` parts) is labelled with its first
    three parts, as ai_log.api; any other route name stays whole."""
    api = api_name(route)
    return route if api == "-" else api


def is_llm_call(rec: CallRecord) -> bool:
    """Traffic metrics count what was recognised as an LLM call (API, model or usage), not any request."""
    return rec.operation != "unknown" or rec.model is not None or rec.usage.known


class MetricsSink:
    """A Sink: turns each finished record into counter and histogram updates; renders the text on scrape.

    The metrics config is read from the store on every record, so a hot reload applies at once: a family
    whose labels changed (extra labels) starts afresh, a disabled profile's families disappear.
    """

    def __init__(self, store: ConfigStore, on_cap: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.on_cap = on_cap
        self.families: dict[str, Family] = {}
        self._mc: MetricsConfig | None = None
        self._lock = threading.Lock()
        self._max_len = 128
        self._label_memo: dict[
            tuple[object, ...], tuple[dict[str, str], int, dict[tuple[str, ...], tuple[str, ...]]]
        ] = {}
        with self._lock:
            self._configure(store.current.extensions.metrics)

    # ----------------------------------------------------------------------------- config
    def _configure(self, mc: MetricsConfig) -> None:
        self._mc = mc
        self._label_memo = {}
        self._max_len = mc.max_label_value_length
        on = set(mc.profiles) | {"core"}
        if "genai" in on and mc.gen_ai_server_aliases:
            on.add("aliases")
        families: dict[str, Family] = {}
        for spec in SPECS:
            if spec.profile not in on:
                continue
            extras = tuple(e for e in mc.extra_labels if not e.families or spec.name in e.families)
            fam = self.families.get(spec.name)
            if fam is not None and fam.extras == extras:
                fam.set_cap(mc.max_series_per_metric)
            else:
                fam = Family(spec, extras, mc.max_series_per_metric)
            families[spec.name] = fam
        self.families = families

    # ------------------------------------------------------------------------------ sink
    def emit(self, rec: CallRecord, ai_log: dict[str, Any]) -> None:
        if not rec.observed or not rec.response_observed or not is_llm_call(rec):
            return
        mc = self.store.current.extensions.metrics
        with self._lock:
            if mc is not self._mc and mc != self._mc:
                self._configure(mc)
            self._record(rec)

    def close(self) -> None:
        pass

    def feedback(self, fb: Feedback) -> None:
        """One piece of feedback (a consumer of the analytics FeedbackHub)."""
        mc = self.store.current.extensions.metrics
        with self._lock:
            if mc is not self._mc and mc != self._mc:
                self._configure(mc)
            fam = self.families.get("gateway_stats_feedback_total")
            if fam is None:
                return
            base = {"ai_model": self._cap(fb.model or "unknown"), "ai_route": self._cap(fb.route)}
            base["rating"] = fb.rating_label
            fam.inc(tuple(base.get(n, "") for n in fam.label_names), 1)

    def _cap(self, v: str) -> str:
        if not v.isprintable():  # untrusted text: no control characters in a label (\r, \0, ESC, ...)
            v = _CONTROL.sub("_", v)
        if len(v) > self._max_len:
            if self.on_cap is not None:
                self.on_cap("metric_label_value")
            return v[: self._max_len]
        return v

    def _labels(self, rec: CallRecord, stream: bool) -> tuple[dict[str, str], int]:
        """Every label value of this record (capped) and how many values the cap cut."""
        cut = 0
        limit = self._max_len

        def cap(v: str) -> str:
            nonlocal cut
            if not v.isprintable():  # untrusted text: no control characters in a label (\r, \0, ESC, ...)
                v = _CONTROL.sub("_", v)
            if len(v) > limit:
                cut += 1
                return v[:limit]
            return v

        base: dict[str, str] = {
            "ai_route": cap(metric_route(rec.route)),
            "ai_cluster": cap(rec.cluster),
            # Higress (spec §6): a failure is labelled with the request model, even when an earlier
            # event of the stream named a response model
            "ai_model": cap((rec.request_model if rec.failed else None) or rec.model or "unknown"),
            "ai_consumer": cap(rec.consumer or "none"),
            "gen_ai_operation_name": cap(rec.operation),
            "gen_ai_provider_name": cap(rec.provider),
            "gen_ai_request_model": cap(rec.request_model or ""),
            "gen_ai_response_model": cap(rec.response_model or ""),
            "error_type": cap((rec.error_type or "_OTHER") if rec.failed else ""),
            "status_class": status_class(rec.status_code),
            "stream": "true" if (stream or rec.request_stream) else "false",
            "outcome": "error" if rec.failed else ("ok" if rec.end_reason in ("complete", "") else "aborted"),
            "gen_ai_token_type": "",
            "currency": cap(rec.cost_currency or "") if rec.cost is not None else "",
            "reason": str(rec.extra.get("unpriced_reason") or ""),
        }
        if self._mc is not None:
            for e in self._mc.extra_labels:
                raw = (
                    rec.label_headers.get(e.request_header)
                    if e.request_header
                    else rec.attributes.get(e.attribute)
                )
                base[e.name] = cap(_label_text(raw))
        return base, cut

    def _record(self, rec: CallRecord) -> None:
        u = rec.usage
        stream = rec.is_stream
        # The label values of a call repeat across calls (same route, model, consumer...): they are
        # computed once per distinct set and kept (bounded), with the per-family value tuples.
        key: tuple[object, ...] = (
            rec.route,
            rec.cluster,
            rec.model,
            rec.consumer,
            rec.operation,
            rec.provider,
            rec.request_model,
            rec.response_model,
            rec.error_type if rec.failed else None,
            rec.failed,
            rec.status_code,
            stream or rec.request_stream,
            rec.end_reason,
            rec.cost_currency if rec.cost is not None else None,
            rec.extra.get("unpriced_reason"),
        )
        if self._mc is not None and self._mc.extra_labels:
            key += tuple(
                _label_text(
                    rec.label_headers.get(e.request_header)
                    if e.request_header
                    else rec.attributes.get(e.attribute)
                )
                for e in self._mc.extra_labels
            )
        entry = self._label_memo.get(key)
        if entry is None:
            if len(self._label_memo) >= LABEL_MEMO_SIZE:
                self._label_memo.clear()
            base, cut = self._labels(rec, stream)
            entry = self._label_memo[key] = (base, cut, {})
        base, cut, memo = entry
        if cut and self.on_cap is not None:
            for _ in range(cut):
                self.on_cap("metric_label_value")
        fams = self.families

        def values(fam: Family) -> tuple[str, ...]:
            t = memo.get(fam.label_names)
            if t is None:
                t = tuple(base[n] for n in fam.label_names)
                memo[fam.label_names] = t
            return t

        def get(name: str) -> Family | None:
            return fams.get(name)

        # -- Higress counters (units as Higress: tokens, integer milliseconds, counts)
        if get(HIGRESS_METRIC_PREFIX + "input_token") is not None:
            p = HIGRESS_METRIC_PREFIX
            hv = values(fams[p + "input_token"])
            if u.known:
                inp = u.input_tokens or 0
                out = u.output_tokens or 0
                fams[p + "input_token"].inc(hv, inp)
                fams[p + "output_token"].inc(hv, out)
                fams[p + "total_token"].inc(hv, u.total_tokens if u.total_tokens is not None else inp + out)
            sd = rec.service_duration_ms
            if sd is not None:
                fams[p + "llm_service_duration"].inc(hv, sd)
                fams[p + "llm_duration_count"].inc(hv, 1)
            ft = rec.first_token_duration_ms
            if stream and ft is not None:
                fams[p + "llm_first_token_duration"].inc(hv, ft)
                fams[p + "llm_stream_duration_count"].inc(hv, 1)
            if rec.failed:
                fams[p + "llm_failure_count"].inc(hv, 1)

        # -- calls by outcome (always on)
        calls = get("gateway_stats_calls_total")
        if calls is not None:
            calls.inc(values(calls), 1)

        # -- money cost (always on): an exact Decimal sum; unpriced calls counted by reason
        if rec.cost is not None:
            fam = get("gateway_stats_cost_total")
            if fam is not None:
                fam.inc(values(fam), rec.cost)
        elif unpriced_reason(rec) is not None:
            fam = get("gateway_stats_unpriced_calls_total")
            if fam is not None:
                fam.inc(values(fam), 1)

        # -- GenAI histograms (seconds, tokens)
        tok = get("gen_ai_client_token_usage")
        if tok is not None and u.known:
            names = tok.label_names
            for ttype, n in self._token_counts(rec):
                tok.observe(tuple(ttype if k == "gen_ai_token_type" else base[k] for k in names), n)
        duration = rec.seconds(rec.t_end)
        ttfc = rec.seconds(rec.t_first_byte) if stream else None
        for name in ("gen_ai_client_operation_duration_seconds", "gen_ai_server_request_duration_seconds"):
            fam = get(name)
            if fam is not None and duration is not None:
                fam.observe(values(fam), duration)
        fam = get("gen_ai_client_operation_time_to_first_chunk_seconds")
        if fam is not None and ttfc is not None:
            fam.observe(values(fam), ttfc)
        fam = get("gen_ai_client_operation_time_per_output_chunk_seconds")
        if fam is not None and stream and rec.chunk_gaps is not None and rec.chunk_gaps.count:
            fam.merge(values(fam), rec.chunk_gaps)
        if stream and not rec.failed:
            ttft = rec.seconds(rec.t_first_content) or ttfc
            fam = get("gen_ai_server_time_to_first_token_seconds")
            if fam is not None and ttft is not None:
                fam.observe(values(fam), ttft)
            fam = get("gen_ai_server_time_per_output_token_seconds")
            n_out = u.output_tokens
            if (
                fam is not None
                and ttft is not None
                and duration is not None
                and n_out is not None
                and n_out > 1
            ):
                fam.observe(values(fam), max(0.0, duration - ttft) / (n_out - 1))

    @staticmethod
    def _token_counts(rec: CallRecord) -> Iterable[tuple[str, int]]:
        """Semconv token types: input includes cached tokens, output includes reasoning tokens."""
        u = rec.usage
        if u.input_tokens is not None:
            inp = u.input_tokens
            if u.input_excludes_cache:  # Anthropic reports cache reads/writes beside input_tokens
                inp += (u.cached_tokens or 0) + (u.cache_creation_tokens or 0)
            yield "input", inp
        if u.output_tokens is not None:
            out = u.output_tokens
            if rec.provider == "gcp.gemini" and u.reasoning_tokens:  # Gemini counts thoughts apart
                out += u.reasoning_tokens
            yield "output", out
        if u.cached_tokens is not None:
            yield "cached_input", u.cached_tokens
        if u.cache_creation_tokens is not None:
            yield "cache_creation_input", u.cache_creation_tokens
        if u.reasoning_tokens is not None:
            yield "reasoning", u.reasoning_tokens

    # ---------------------------------------------------------------------------- scrape
    def series_count(self, family: str) -> int:
        with self._lock:
            fam = self.families.get(family)
            return len(fam.series) if fam is not None else 0

    def render(self) -> str:
        """The traffic metrics as Prometheus text 0.0.4. Values are copied under the lock, formatted outside
        it, so a scrape of a family at its cap (tens of MB of text) never holds up records for long."""
        with self._lock:
            snaps = [(f.spec, f.snapshot(), f.folded, len(f.series)) for f in self.families.values()]
        return _render(snaps)

    # ------------------------------------------------------------------- several processes
    def export(self) -> list[ExportedFamily]:
        """Every family's series as plain values (marshal-able), for another process to merge."""
        with self._lock:
            return [f.export() for f in self.families.values()]

    def render_merged(self, others: Iterable[list[ExportedFamily]]) -> str:
        """This process's families plus other processes' exported ones, as one exposition.

        Series with the same label values are added up. The merge keeps this process's metrics config
        (families, extra labels, cap): a family exported under other extra labels (a reload not yet
        seen everywhere) is left out of this scrape, and the cap applies to the merged family too."""
        with self._lock:
            own = [f.export() for f in self.families.values()]
            shapes = {f.spec.name: (f.spec, f.extras, f.cap, f.label_names) for f in self.families.values()}
        sums: dict[str, tuple[list[int], dict[tuple[str, ...], Any]]] = {n: ([0], {}) for n in shapes}
        for part in (own, *others):
            for name, label_names, folded, rows in part:
                shape = shapes.get(name)
                if shape is None or shape[3] != tuple(label_names):
                    continue
                total, acc = sums[name]
                total[0] += folded
                if shape[0].kind == "counter":
                    for key, v in rows:
                        acc[key] = acc.get(key, 0) + imported_value(v)
                    continue
                for key, (counts, hsum, count) in rows:
                    cur: list[Any] | None = acc.get(key)
                    if cur is None:
                        acc[key] = [list(counts), hsum, count]
                    elif len(cur[0]) == len(counts):
                        cur[0] = [a + b for a, b in zip(cur[0], counts, strict=True)]
                        cur[1] += hsum
                        cur[2] += count
        snaps = []
        for name, (spec, extras, cap, _) in shapes.items():
            folded_total, acc = sums[name]
            fam = Family(spec, extras, cap)
            fam.add_exported(
                folded_total[0], [(k, tuple(v) if isinstance(v, list) else v) for k, v in acc.items()]
            )
            snaps.append((spec, fam.snapshot(), fam.folded, len(fam.series)))
        return _render(snaps)


def exported_value(v: Any) -> Any:
    """A counter value as another process receives it: a Decimal (money cost) as its exact text."""
    return str(v) if isinstance(v, Decimal) else v


def imported_value(v: Any) -> Any:
    return Decimal(v) if isinstance(v, str) else v


# (family name, label names, folded measurements, [(label values, value)]); a histogram's value is
# (per-bucket counts, sum, count); a Decimal counter value travels as text (exported_value).
ExportedFamily = tuple[str, tuple[str, ...], int, list[tuple[tuple[str, ...], Any]]]


def _render(snaps: list[tuple[FamilySpec, list[tuple[str, Any]], int, int]]) -> str:
    out: list[str] = []
    for spec, rows, _, _ in snaps:
        _format(spec, rows, out)
    out.append(
        "# HELP gateway_stats_label_overflow_total measurements folded into an __overflow__ "
        "series because their metric family reached max_series_per_metric\n"
        "# TYPE gateway_stats_label_overflow_total counter\n"
    )
    out.extend(f'gateway_stats_label_overflow_total{{family="{sp.name}"}} {n}\n' for sp, _, n, _ in snaps)
    out.append(
        "# HELP gateway_stats_metric_series label sets (series) held per metric family\n"
        "# TYPE gateway_stats_metric_series gauge\n"
    )
    out.extend(f'gateway_stats_metric_series{{family="{sp.name}"}} {n}\n' for sp, _, _, n in snaps)
    return "".join(out)
