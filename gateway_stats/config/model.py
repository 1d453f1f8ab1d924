"""The config model: frozen dataclasses shared by every request, and the constants they name."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gateway_stats.config.analytics import AnalyticsSettings
from gateway_stats.pricing.config import PricingConfig

if TYPE_CHECKING:
    from gateway_stats.config.match_rules import MatchRule


# --------------------------------------------------------------------------------------------- constants

VALUE_SOURCES = (
    "fixed_value",
    "request_header",
    "request_body",
    "response_header",
    "response_body",
    "response_streaming_body",
)
BODY_SOURCES = ("request_body", "response_body", "response_streaming_body")
HEADER_SOURCES = ("request_header", "response_header")
STREAMING_SOURCE = "response_streaming_body"
RULES = ("first", "replace", "append")

BUILTIN_KEYS = (
    "question",
    "system",
    "answer",
    "reasoning",
    "tool_calls",
    "reasoning_tokens",
    "cached_tokens",
    "input_token_details",
    "output_token_details",
    "messages",
)

DEFAULT_VALUE_LENGTH_LIMIT = 32000
FULL_PRESET_VALUE_LENGTH_LIMIT = 10485760
LIGHT_PRESET_VALUE_LENGTH_LIMIT = 4000
# Higress: ["/completions", "/messages"]. We add the Responses API and embeddings (spec §9), rerank, and
# Gemini's generateContent methods so a use_default_attributes config observes every API we understand.
DEFAULT_PATH_SUFFIXES = (
    "/completions",
    "/messages",
    "/responses",
    "/embeddings",
    "/rerank",
    ":generateContent",
    ":streamGenerateContent",
)

METRIC_PROFILES = ("higress", "genai")
# The metric families gateway-stats exports, by their Prometheus names (what /metrics shows);
# `extra_labels[].families` must name these (or the semconv dotted names in METRIC_FAMILY_ALIASES).
HIGRESS_METRIC_PREFIX = "route_upstream_model_consumer_metric_"
HIGRESS_METRICS = (
    "input_token",
    "output_token",
    "total_token",
    "llm_service_duration",
    "llm_duration_count",
    "llm_first_token_duration",
    "llm_stream_duration_count",
    "llm_failure_count",
)
METRIC_FAMILY_ALIASES = {
    "gen_ai.client.token.usage": "gen_ai_client_token_usage",
    "gen_ai.client.operation.duration": "gen_ai_client_operation_duration_seconds",
    "gen_ai.client.operation.time_to_first_chunk": "gen_ai_client_operation_time_to_first_chunk_seconds",
    "gen_ai.client.operation.time_per_output_chunk": "gen_ai_client_operation_time_per_output_chunk_seconds",
    "gen_ai.server.request.duration": "gen_ai_server_request_duration_seconds",
    "gen_ai.server.time_to_first_token": "gen_ai_server_time_to_first_token_seconds",
    "gen_ai.server.time_per_output_token": "gen_ai_server_time_per_output_token_seconds",
}
METRIC_FAMILIES = (
    *(HIGRESS_METRIC_PREFIX + n for n in HIGRESS_METRICS),
    *METRIC_FAMILY_ALIASES.values(),
    "gateway_stats_calls_total",
    "gateway_stats_cost_total",
    "gateway_stats_unpriced_calls_total",
    "gateway_stats_feedback_total",
)
# Labels our metric families already carry (Prometheus spelling); extra labels must not reuse them.
BUILTIN_METRIC_LABELS = frozenset(
    {
        "ai_route",
        "ai_cluster",
        "ai_model",
        "ai_consumer",
        "currency",
        "reason",
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_system",
        "gen_ai_request_model",
        "gen_ai_response_model",
        "gen_ai_token_type",
        "server_address",
        "server_port",
        "error_type",
        "status_class",
        "status_code",
        "stream",
        "outcome",
        "rating",
        "family",
        "le",
        "quantile",
        "job",
        "instance",
    }
)

_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METRIC_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:.]*$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_HEADER_NAME = re.compile(r"^:?[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


# ------------------------------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Attribute:
    """One Higress attribute. Header names in `value` are stored lower-cased (Envoy's spelling)."""

    key: str
    value_source: str  # one of VALUE_SOURCES, or "" for a built-in key (BUILTIN_KEYS)
    value: str = ""  # literal (fixed_value), header name, or a GJSON / `$` JSONPath path
    default_value: object = None  # any JSON value; used when the result is missing or ""
    rule: str = ""  # "", first, replace, append; "" on built-in `answer` in a stream means append
    apply_to_log: bool = False
    apply_to_span: bool = False
    trace_span_key: str = ""
    as_separate_log_field: bool = False

    @property
    def builtin(self) -> bool:
        return self.key in BUILTIN_KEYS


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One Higress plugin config with presets, defaults and defaultConfig inheritance already applied."""

    attributes: tuple[Attribute, ...]
    use_default_attributes: bool
    use_default_response_attributes: bool
    value_length_limit: int
    disable_openai_usage: bool
    enable_path_suffixes: tuple[str, ...]  # () = all
    enable_content_types: tuple[str, ...]  # () = all; stored lower-cased
    session_id_header: str | None  # stored lower-cased
    enabled: bool = True  # False for a matchRule with `configDisable: true`: nothing is observed

    def path_enabled(self, path: str) -> bool:
        """Whether a request with this `:path` is observed (query string ignored; `*` = all)."""
        if not self.enabled:
            return False
        suffixes = self.enable_path_suffixes
        if not suffixes or "*" in suffixes:
            return True
        q = path.find("?")
        if q >= 0:
            path = path[:q]
        return path.endswith(suffixes)

    def content_type_enabled(self, content_type: str) -> bool:
        """Whether a response with this content-type is analysed (case-insensitive substring; `*` = all)."""
        if not self.enabled:
            return False
        types = self.enable_content_types
        if not types or "*" in types:
            return True
        ct = content_type.lower()
        return any(t in ct for t in types)


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_body_bytes: int = 4 << 20  # only this prefix of a request body is analysed
    max_event_bytes: int = 1 << 20  # SSE incomplete-tail cap
    max_attribute_bytes: int = 1 << 20  # cap on any accumulated value (append rule, answer, tool arguments)
    max_response_body_bytes: int = 8 << 20  # non-stream response analysed prefix


@dataclass(frozen=True, slots=True)
class ExtraLabel:
    """An extra metric label; its value comes from exactly one of a request header or an attribute."""

    name: str
    request_header: str = ""  # lower-cased
    attribute: str = ""
    families: tuple[str, ...] = ()  # metric families that get the label; () = all


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    profiles: tuple[str, ...] = ("higress", "genai")
    max_series_per_metric: int = 2000
    max_label_value_length: int = 128
    extra_labels: tuple[ExtraLabel, ...] = ()
    gen_ai_server_aliases: bool = False


_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@dataclass(frozen=True, slots=True)
class TracingConfig:
    enabled: bool | None = None  # None: the config does not say; the OTEL_* variables decide (resolved)
    capture_content: bool = False
    service_name: str = "gateway-stats"

    def resolved(self, environ: Mapping[str, str]) -> TracingConfig:
        """`enabled` decided, in this order: `OTEL_SDK_DISABLED=true` turns tracing off; else the
        config's `enabled` when it is set; else on when `OTEL_TRACES_EXPORTER` names an exporter other
        than `none`, or (that variable unset) `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` is set."""
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return replace(self, enabled=False)
        if self.enabled is not None:
            return self
        exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip()
        if exporters:
            on = any(e.strip().lower() not in ("", "none") for e in exporters.split(","))
        else:
            on = any(environ.get(n, "").strip() for n in _OTLP_ENDPOINTS)
        return replace(self, enabled=on)


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    """Load shedding (envoy/shedding.py): while the sidecar is behind, new calls pass unobserved.

    Off by default: it trades observation for the traffic's latency, which the operator should choose
    knowingly (inline mode); when on, the defaults keep an observed call's wait near 4 x 10 ms."""

    enabled: bool = False
    max_loop_lag_ms: int = 10  # event-loop lag above which new calls are shed
    max_inflight_calls: int = 0  # calls in flight above which new calls are shed; 0 = no limit
    recover_after_ms: int = 100  # the lag must stay under budget this long before observing again


@dataclass(frozen=True, slots=True)
class Extensions:
    """Our settings: the top-level key `gateway_stats:` of the config document."""

    consumer_header: str = "x-mse-consumer"
    metadata_namespace: str = "gateway_stats"
    limits: Limits = field(default_factory=Limits)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    ai_log_file: str | None = None  # "-" = stdout
    pricing: PricingConfig = field(default_factory=PricingConfig)  # money cost (gateway_stats/pricing/)
    records: Any = None  # gateway_stats.records.config.RecordsConfig | None (parsed there)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)  # analytics, feedback, athina
    overload: OverloadConfig = field(default_factory=OverloadConfig)


@dataclass(frozen=True, slots=True)
class Config:
    default: PluginConfig
    match_rules: tuple[MatchRule, ...]
    extensions: Extensions
    source: str  # file path, "<default>" or "<string>"

    def select(self, route: str, host: str, cluster: str) -> PluginConfig:
        """The config of the first matching rule, else the default.

        route: Envoy route name (exact match). host: `:authority`, with or without port. cluster: the
        upstream cluster name (Higress `outbound|80||svc.ns.svc.cluster.local` names are understood).
        """
        for rule in self.match_rules:
            if rule.matches(route, host, cluster):
                return rule.config
        return self.default

    def plugin_configs(self) -> tuple[PluginConfig, ...]:
        """The default config followed by every rule's config."""
        return (self.default, *(r.config for r in self.match_rules))

    def separate_log_fields(self) -> tuple[str, ...]:
        """Keys logged as their own access-log field (`apply_to_log` + `as_separate_log_field`)."""
        keys: dict[str, None] = {}
        for pc in self.plugin_configs():
            for a in pc.attributes:
                if a.apply_to_log and a.as_separate_log_field:
                    keys[a.key] = None
        return tuple(keys)
