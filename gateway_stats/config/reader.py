"""The configuration model: Higress `ai-statistics` plugin configs, accepted unchanged, plus our extensions.

Three document shapes are detected automatically (see docs/config.md):

1. a bare plugin config: Higress fields at the top level (optionally with Higress' own `_rules_`);
2. a WasmPlugin-style document: `{defaultConfig: {...}, matchRules: [...]}`;
3. a Kubernetes `WasmPlugin` object (`apiVersion: extensions.higress.io/v1alpha1`, `kind: WasmPlugin`).

Our own settings live under the top-level key `gateway_stats:`. Everything here is immutable: a loaded
`Config` is swapped as a whole by `ConfigStore` on hot reload and can be shared by every request.

Validation is strict (unknown fields, sources and rules are errors, unlike Higress) and reports every
problem found, each naming the file, the field path and what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from gateway_stats.core.gjson import PathError, compile_path

__all__ = [
    "BUILTIN_KEYS",
    "BUILTIN_METRIC_LABELS",
    "DEFAULT_PATH_SUFFIXES",
    "DEFAULT_VALUE_LENGTH_LIMIT",
    "FULL_PRESET",
    "HIGRESS_METRICS",
    "HIGRESS_METRIC_PREFIX",
    "LIGHT_PRESET",
    "METRIC_FAMILIES",
    "METRIC_FAMILY_ALIASES",
    "METRIC_PROFILES",
    "RULES",
    "VALUE_SOURCES",
    "Attribute",
    "Config",
    "ConfigError",
    "ConfigStore",
    "Extensions",
    "ExtraLabel",
    "Limits",
    "MatchRule",
    "MetricsConfig",
    "PluginConfig",
    "TracingConfig",
    "default_config",
    "load_config",
    "overlay_attributes",
    "parse_config",
    "parse_text",
]

log = logging.getLogger(__name__)

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
)
# Labels our metric families already carry (Prometheus spelling); extra labels must not reuse them.
BUILTIN_METRIC_LABELS = frozenset(
    {
        "ai_route",
        "ai_cluster",
        "ai_model",
        "ai_consumer",
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


# ------------------------------------------------------------------------------------------------ errors


class ConfigError(ValueError):
    """Every problem found in a config; `str()` gives one problem per line."""

    def __init__(self, errors: Sequence[str] | str) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


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
class MatchRule:
    """A Higress match rule. Within a selector list any entry may match; non-empty lists must all match."""

    routes: tuple[str, ...]
    domains: tuple[str, ...]  # stored lower-cased
    services: tuple[str, ...]
    config: PluginConfig

    def matches(self, route: str, host: str, cluster: str) -> bool:
        if self.routes and route not in self.routes:
            return False
        if self.domains and not _host_matches(self.domains, host):
            return False
        return not (self.services and not _service_matches(self.services, cluster))


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


@dataclass(frozen=True, slots=True)
class TracingConfig:
    enabled: bool = False
    capture_content: bool = False
    service_name: str = "gateway-stats"


@dataclass(frozen=True, slots=True)
class Extensions:
    """Our settings: the top-level key `gateway_stats:` of the config document."""

    consumer_header: str = "x-mse-consumer"
    metadata_namespace: str = "gateway_stats"
    limits: Limits = field(default_factory=Limits)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    ai_log_file: str | None = None  # "-" = stdout


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


# --------------------------------------------------------------------------------------- presets


def _preset(key: str, rule: str = "", source: str = "", value: str = "") -> Attribute:
    return Attribute(key=key, value_source=source, value=value, rule=rule, apply_to_log=True)


FULL_PRESET: tuple[Attribute, ...] = (
    _preset("messages", source="request_body", value="messages"),
    _preset("question"),
    _preset("system"),
    _preset("answer", rule="append"),
    _preset("reasoning", rule="append"),
    _preset("tool_calls"),
    _preset("reasoning_tokens"),
    _preset("cached_tokens"),
    _preset("input_token_details"),
    _preset("output_token_details"),
)
LIGHT_PRESET: tuple[Attribute, ...] = (
    _preset("reasoning_tokens"),
    _preset("cached_tokens"),
    _preset("input_token_details"),
    _preset("output_token_details"),
)

_DISABLED = PluginConfig(
    attributes=(),
    use_default_attributes=False,
    use_default_response_attributes=False,
    value_length_limit=DEFAULT_VALUE_LENGTH_LIMIT,
    disable_openai_usage=True,
    enable_path_suffixes=(),
    enable_content_types=(),
    session_id_header=None,
    enabled=False,
)


def overlay_attributes(base: Iterable[Attribute], top: Iterable[Attribute]) -> tuple[Attribute, ...]:
    """`top` over `base`, by key: every key `top` defines replaces all of base's entries for that key,
    at the position of base's first one; top's other keys follow in their order. Entries sharing a key
    within one layer are all kept (e.g. a streaming and a non-streaming `answer`)."""
    top = tuple(top)
    top_keys = {a.key for a in top}
    out: list[Attribute] = []
    placed: set[str] = set()
    for a in base:
        if a.key not in top_keys:
            out.append(a)
        elif a.key not in placed:
            placed.add(a.key)
            out.extend(t for t in top if t.key == a.key)
    out.extend(t for t in top if t.key not in placed)
    return tuple(out)


def _build_plugin(raw: Mapping[str, Any]) -> PluginConfig:
    """Apply presets and defaults to the explicitly set (already validated) fields."""
    full = bool(raw.get("use_default_attributes", False))
    light = bool(raw.get("use_default_response_attributes", False))
    preset = FULL_PRESET if full else LIGHT_PRESET if light else ()
    if "value_length_limit" in raw:
        limit = int(raw["value_length_limit"])
    elif full:
        limit = FULL_PRESET_VALUE_LENGTH_LIMIT
    elif light:
        limit = LIGHT_PRESET_VALUE_LENGTH_LIMIT
    else:
        limit = DEFAULT_VALUE_LENGTH_LIMIT
    if "enable_path_suffixes" in raw:
        suffixes: tuple[str, ...] = raw["enable_path_suffixes"]
    else:
        suffixes = DEFAULT_PATH_SUFFIXES if full else ()
    return PluginConfig(
        attributes=overlay_attributes(preset, raw.get("attributes", ())),
        use_default_attributes=full,
        use_default_response_attributes=light,
        value_length_limit=limit,
        disable_openai_usage=bool(raw.get("disable_openai_usage", False)),
        enable_path_suffixes=suffixes,
        enable_content_types=raw.get("enable_content_types", ()),
        session_id_header=raw.get("session_id_header"),
    )


def _inherit(default_raw: Mapping[str, Any], rule_raw: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's explicit fields over the default's; attributes merged with `overlay_attributes`."""
    merged = {**default_raw, **rule_raw}
    if "attributes" in default_raw or "attributes" in rule_raw:
        merged["attributes"] = overlay_attributes(
            default_raw.get("attributes", ()), rule_raw.get("attributes", ())
        )
    return merged


def default_config() -> Config:
    """What runs without --config: the Higress default plugin config (no attributes, usage on)."""
    return Config(default=_build_plugin({}), match_rules=(), extensions=Extensions(), source="<default>")


# -------------------------------------------------------------------------------------------- matching


def _split_port(host: str) -> tuple[str, str]:
    """("example.com", "8080") from "example.com:8080"; IPv6 literals keep their brackets."""
    if host.startswith("["):
        end = host.find("]")
        if end >= 0:
            rest = host[end + 1 :]
            return host[: end + 1], rest[1:] if rest.startswith(":") else ""
        return host, ""
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        if port.isdigit():
            return name, port
    return host, ""


def _host_matches(patterns: tuple[str, ...], host: str) -> bool:
    host = host.lower().rstrip(".")
    bare, _port = _split_port(host)
    for p in patterns:
        target = host if _split_port(p)[1] else bare
        if p == "*" or p == target:
            return True
        if p.startswith("*"):
            suffix = p[1:]
            if len(target) > len(suffix) and target.endswith(suffix):
                return True
        elif p.endswith("*"):
            prefix = p[:-1]
            if len(target) > len(prefix) and target.startswith(prefix):
                return True
    return False


def _service_matches(services: tuple[str, ...], cluster: str) -> bool:
    if cluster in services:
        return True
    parts = cluster.split("|")
    if len(parts) != 4 or parts[0] not in ("outbound", "inbound"):
        return False
    c_port, c_host = parts[1], parts[3].lower()
    for s in services:
        name, port = _split_port(s.lower())
        if name == c_host and (not port or port == c_port):
            return True
    return False


# -------------------------------------------------------------------------------------------- reading

_TYPE_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "list",
    dict: "mapping",
    type(None): "null",
}


def _describe(value: object) -> str:
    name = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list) or value is None:
        return name
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name} {text}"


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _suggest(word: str, choices: Iterable[str]) -> str | None:
    choices = list(choices)
    for c in choices:
        if _norm(c) == _norm(word):
            return c
    match = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if match:
        for c in choices:
            if c.lower() == match[0]:
                return c
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _at(path: str, index: int) -> str:
    return f"{path}[{index}]"


class _Reader:
    """Collects errors while walking the document; typed getters return None when absent or invalid."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.source}: {path or '(document)'}: {message}")

    def mapping(self, value: object, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_describe(value)}")
            return None
        return value

    def fields(
        self,
        m: Mapping[Any, Any],
        path: str,
        known: Sequence[str],
        ignored: Sequence[str] = (),
        hints: Mapping[str, str] | None = None,
    ) -> None:
        """Report unknown (and non-string) field names."""
        for k in m:
            if not isinstance(k, str):
                self.error(path, f"field names must be strings, got {_describe(k)}")
                continue
            if k in known or k in ignored:
                continue
            if hints and k in hints:
                self.error(_join(path, k), f"unknown field ({hints[k]})")
                continue
            guess = _suggest(k, known)
            if guess:
                self.error(_join(path, k), f"unknown field (did you mean '{guess}'?)")
            else:
                self.error(_join(path, k), f"unknown field (known fields: {', '.join(known)})")

    def choice(self, value: str, path: str, choices: Sequence[str]) -> bool:
        if value in choices:
            return True
        msg = f"unknown value '{value}' (expected one of: {', '.join(choices)}"
        guess = _suggest(value, choices)
        msg += f"; did you mean '{guess}'?)" if guess else ")"
        self.error(path, msg)
        return False

    def string(self, m: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
        v = m.get(key)
        p = _join(path, key)
        if v is None:
            if required:
                self.error(p, "required field is missing" if key not in m else "must not be null")
            return None
        if not isinstance(v, str):
            self.error(p, f"expected a string, got {_describe(v)}")
            return None
        if required and not v:
            self.error(p, "must not be empty")
            return None
        return v

    def boolean(self, m: Mapping[str, Any], key: str, path: str) -> bool | None:
        v = m.get(key)
        if v is None:
            return None
        if not isinstance(v, bool):
            self.error(_join(path, key), f"expected a boolean (true or false), got {_describe(v)}")
            return None
        return v

    def integer(self, m: Mapping[str, Any], key: str, path: str, minimum: int = 1) -> int | None:
        v = m.get(key)
        if v is None:
            return None
        p = _join(path, key)
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(p, f"expected an integer, got {_describe(v)}")
            return None
        if v < minimum:
            self.error(p, f"must be >= {minimum}, got {v}")
            return None
        return v

    def strings(
        self, m: Mapping[str, Any], key: str, path: str, *, nonempty_items: bool = False
    ) -> tuple[str, ...] | None:
        v = m.get(key)
        if v is None:
            return None
        p = _join(path, key)
        if not isinstance(v, list):
            self.error(p, f"expected a list of strings, got {_describe(v)}")
            return None
        ok = True
        for i, item in enumerate(v):
            if not isinstance(item, str):
                self.error(_at(p, i), f"expected a string, got {_describe(item)}")
                ok = False
            elif nonempty_items and not item:
                self.error(_at(p, i), "must not be empty")
                ok = False
        return tuple(v) if ok else None


def _json_problem(value: object, depth: int = 0) -> str | None:
    if depth > 64:
        return "nested too deeply"
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    if isinstance(value, list):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return f"mapping keys must be strings, got {_describe(k)}"
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"{_describe(value)} is not a JSON value"


# ------------------------------------------------------------------------------------- path checking


@cache
def _path_problem(path: str) -> str | None:
    """Why `path` cannot be compiled, or None."""
    try:
        compile_path(path)
    except PathError as exc:
        return str(exc) or type(exc).__name__
    except Exception as exc:  # a compiler bug must not take config loading down with it
        log.exception("compiling path %r failed unexpectedly", path)
        return f"could not be compiled ({type(exc).__name__}: {exc})"
    return None


# ---------------------------------------------------------------------------------- plugin configs

PLUGIN_FIELDS = (
    "attributes",
    "use_default_attributes",
    "use_default_response_attributes",
    "value_length_limit",
    "disable_openai_usage",
    "enable_path_suffixes",
    "enable_content_types",
    "session_id_header",
)
ATTRIBUTE_FIELDS = (
    "key",
    "value_source",
    "value",
    "default_value",
    "rule",
    "apply_to_log",
    "apply_to_span",
    "trace_span_key",
    "as_separate_log_field",
)
_PLACEMENT_HINTS = {
    "gateway_stats": "gateway_stats belongs at the top level of the document",
    "defaultConfig": "defaultConfig belongs at the top level of the document (or under spec)",
    "matchRules": "matchRules belongs at the top level of the document (or under spec)",
}


def _parse_attribute(r: _Reader, item: object, path: str) -> Attribute | None:
    m = r.mapping(item, path)
    if m is None:
        return None
    before = len(r.errors)
    r.fields(m, path, ATTRIBUTE_FIELDS)
    key = r.string(m, "key", path, required=True)
    source = r.string(m, "value_source", path) or ""
    source_ok = not source or r.choice(source, _join(path, "value_source"), VALUE_SOURCES)
    value = r.string(m, "value", path) or ""
    rule = r.string(m, "rule", path) or ""
    rule_ok = not rule or r.choice(rule, _join(path, "rule"), RULES)
    flags = {
        name: r.boolean(m, name, path) or False
        for name in ("apply_to_log", "apply_to_span", "as_separate_log_field")
    }
    span_key = r.string(m, "trace_span_key", path) or ""
    default = m.get("default_value")
    problem = _json_problem(default)
    if problem:
        r.error(_join(path, "default_value"), problem)

    builtin = key in BUILTIN_KEYS
    if key and not builtin and m.get("value_source") is None:
        r.error(
            _join(path, "value_source"),
            f"required for key '{key}' (only built-in keys may omit it: {', '.join(BUILTIN_KEYS)})",
        )
    elif key and not builtin and m.get("value_source") == "":
        r.error(_join(path, "value_source"), f"must not be empty for key '{key}' (not a built-in key)")
    if source_ok and source and source != "fixed_value" and not value and not builtin:
        r.error(_join(path, "value"), f"required with value_source {source}")
    if rule and rule_ok and source_ok and source != STREAMING_SOURCE and not builtin:
        r.error(
            _join(path, "rule"),
            f"only meaningful with value_source {STREAMING_SOURCE} (this attribute uses "
            f"{source or 'no value_source'})",
        )
    if source in HEADER_SOURCES and value:
        if not _HEADER_NAME.match(value):
            r.error(_join(path, "value"), f"not a valid header name: {value!r}")
        value = value.lower()
    if source in BODY_SOURCES and value:
        why = _path_problem(value)
        if why:
            r.error(_join(path, "value"), f"invalid path '{value}': {why}")
    if len(r.errors) > before or key is None:
        return None
    return Attribute(
        key=key,
        value_source=source,
        value=value,
        default_value=default,
        rule=rule,
        apply_to_log=flags["apply_to_log"],
        apply_to_span=flags["apply_to_span"],
        trace_span_key=span_key,
        as_separate_log_field=flags["as_separate_log_field"],
    )


def _parse_plugin_fields(r: _Reader, m: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The explicitly set Higress fields of `m` (unknown-field checks are the caller's)."""
    raw: dict[str, Any] = {}
    attrs = m.get("attributes")
    if attrs is not None:
        p = _join(path, "attributes")
        if not isinstance(attrs, list):
            r.error(p, f"expected a list of attributes, got {_describe(attrs)}")
        else:
            parsed = [_parse_attribute(r, item, _at(p, i)) for i, item in enumerate(attrs)]
            raw["attributes"] = tuple(a for a in parsed if a is not None)
    for name in ("use_default_attributes", "use_default_response_attributes", "disable_openai_usage"):
        b = r.boolean(m, name, path)
        if b is not None:
            raw[name] = b
    limit = r.integer(m, "value_length_limit", path)
    if limit is not None:
        raw["value_length_limit"] = limit
    suffixes = r.strings(m, "enable_path_suffixes", path)
    if suffixes is not None:
        raw["enable_path_suffixes"] = suffixes
    types = r.strings(m, "enable_content_types", path)
    if types is not None:
        raw["enable_content_types"] = tuple(t.lower() for t in types)
    sid = r.string(m, "session_id_header", path)
    if sid is not None:
        p = _join(path, "session_id_header")
        if not _HEADER_NAME.match(sid):
            r.error(p, f"not a valid header name: {sid!r}")
        raw["session_id_header"] = sid.lower()
    return raw


def _parse_plugin(r: _Reader, value: object, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    m = r.mapping(value, path)
    if m is None:
        return {}
    r.fields(m, path, PLUGIN_FIELDS, hints=_PLACEMENT_HINTS)
    return _parse_plugin_fields(r, m, path)


# -------------------------------------------------------------------------------------- match rules

# selector -> (Higress plugin-config spelling, WasmPlugin CRD spelling)
_SELECTORS = {
    "routes": ("_match_route_", "ingress"),
    "domains": ("_match_domain_", "domain"),
    "services": ("_match_service_", "service"),
}
_RULE_FIELDS = (
    "_match_route_",
    "_match_domain_",
    "_match_service_",
    "ingress",
    "domain",
    "service",
    "config",
    "configDisable",
)
_INLINE_RULE_SELECTORS = ("_match_route_", "_match_domain_", "_match_service_")


def _parse_selectors(
    r: _Reader, m: Mapping[str, Any], path: str, allow_crd: bool
) -> dict[str, tuple[str, ...]] | None:
    out: dict[str, tuple[str, ...]] = {}
    ok = True
    for name, (plugin_key, crd_key) in _SELECTORS.items():
        keys = [plugin_key, crd_key] if allow_crd else [plugin_key]
        present = [k for k in keys if m.get(k) is not None]
        if len(present) > 1:
            r.error(path, f"both '{present[0]}' and '{present[1]}' are given; use one of them")
            ok = False
            continue
        values: tuple[str, ...] = ()
        if present:
            got = r.strings(m, present[0], path, nonempty_items=True)
            if got is None:
                ok = False
            else:
                values = got
        out[name] = tuple(v.lower() for v in values) if name == "domains" else values
    if ok and not any(out.values()):
        names = (
            ", ".join(k for pair in _SELECTORS.values() for k in pair)
            if allow_crd
            else ", ".join(_INLINE_RULE_SELECTORS)
        )
        r.error(path, f"a match rule needs at least one non-empty selector ({names})")
        ok = False
    return out if ok else None


def _rule_items(r: _Reader, value: object, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (field path, mapping) of each item of a rules list; what is not a list or a mapping is
    reported and skipped."""
    if value is None:
        return
    if not isinstance(value, list):
        r.error(path, f"expected a list of match rules, got {_describe(value)}")
        return
    for i, item in enumerate(value):
        p = _at(path, i)
        m = r.mapping(item, p)
        if m is not None:
            yield p, m


def _parse_match_rules(
    r: _Reader, value: object, path: str, default_raw: Mapping[str, Any]
) -> tuple[MatchRule, ...]:
    """WasmPlugin-style `matchRules`: selectors plus `config` / `configDisable` per item."""
    rules: list[MatchRule] = []
    for p, m in _rule_items(r, value, path):
        r.fields(m, p, _RULE_FIELDS)
        selectors = _parse_selectors(r, m, p, allow_crd=True)
        disabled = r.boolean(m, "configDisable", p) or False
        rule_raw = _parse_plugin(r, m.get("config"), _join(p, "config"))
        if selectors is None:
            continue
        cfg = _DISABLED if disabled else _build_plugin(_inherit(default_raw, rule_raw))
        rules.append(MatchRule(config=cfg, **selectors))
    return tuple(rules)


def _parse_inline_rules(
    r: _Reader, value: object, path: str, default_raw: Mapping[str, Any]
) -> tuple[MatchRule, ...]:
    """Higress' own plugin-config `_rules_`: selectors and plugin fields side by side in each item."""
    rules: list[MatchRule] = []
    for p, m in _rule_items(r, value, path):
        r.fields(m, p, (*_INLINE_RULE_SELECTORS, *PLUGIN_FIELDS), hints=_PLACEMENT_HINTS)
        selectors = _parse_selectors(r, m, p, allow_crd=False)
        rule_raw = _parse_plugin_fields(r, m, p)
        if selectors is not None:
            rules.append(MatchRule(config=_build_plugin(_inherit(default_raw, rule_raw)), **selectors))
    return tuple(rules)


# --------------------------------------------------------------------------------------- extensions

EXTENSION_FIELDS = ("consumer_header", "metadata_namespace", "limits", "metrics", "tracing", "ai_log_file")
LIMIT_FIELDS = ("max_request_body_bytes", "max_event_bytes", "max_attribute_bytes", "max_response_body_bytes")
METRICS_FIELDS = (
    "profiles",
    "max_series_per_metric",
    "max_label_value_length",
    "extra_labels",
    "gen_ai_server_aliases",
)
EXTRA_LABEL_FIELDS = ("name", "request_header", "attribute", "families")
TRACING_FIELDS = ("enabled", "capture_content", "service_name")


def _sub(r: _Reader, m: Mapping[str, Any], key: str, path: str, known: Sequence[str]) -> dict[str, Any]:
    v = m.get(key)
    if v is None:
        return {}
    p = _join(path, key)
    sub = r.mapping(v, p)
    if sub is None:
        return {}
    r.fields(sub, p, known)
    return sub


def _kwargs(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _parse_extra_label(r: _Reader, item: object, path: str, attribute_keys: set[str]) -> ExtraLabel | None:
    m = r.mapping(item, path)
    if m is None:
        return None
    before = len(r.errors)
    r.fields(m, path, EXTRA_LABEL_FIELDS)
    name = r.string(m, "name", path, required=True)
    if name:
        if not _LABEL_NAME.match(name):
            r.error(
                _join(path, "name"), f"'{name}' is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        elif name.startswith("__"):
            r.error(_join(path, "name"), f"'{name}': label names starting with '__' are reserved")
        elif name in BUILTIN_METRIC_LABELS:
            r.error(_join(path, "name"), f"'{name}' clashes with a built-in label")
    header = r.string(m, "request_header", path) or ""
    attribute = r.string(m, "attribute", path) or ""
    if bool(header) == bool(attribute):
        r.error(path, "exactly one of request_header or attribute must be set")
    if header and not _HEADER_NAME.match(header):
        r.error(_join(path, "request_header"), f"not a valid header name: {header!r}")
    if attribute and attribute not in attribute_keys:
        guess = _suggest(attribute, attribute_keys)
        hint = f"; did you mean '{guess}'?" if guess else ""
        r.error(_join(path, "attribute"), f"'{attribute}' is not a configured attribute key{hint}")
    families = r.strings(m, "families", path, nonempty_items=True) or ()
    for i, fam in enumerate(families):
        if fam and not _METRIC_NAME.match(fam):
            r.error(_at(_join(path, "families"), i), f"'{fam}' is not a valid metric family name")
        elif fam and fam not in METRIC_FAMILIES and fam not in METRIC_FAMILY_ALIASES:
            guess = _suggest(fam, (*METRIC_FAMILIES, *METRIC_FAMILY_ALIASES))
            hint = f"; did you mean '{guess}'?" if guess else ""
            r.error(_at(_join(path, "families"), i), f"'{fam}' is not an exported metric family{hint}")
    families = tuple(METRIC_FAMILY_ALIASES.get(f, f) for f in families)
    if len(r.errors) > before or not name:
        return None
    return ExtraLabel(name=name, request_header=header.lower(), attribute=attribute, families=families)


def _parse_metrics(r: _Reader, m: Mapping[str, Any], path: str, attribute_keys: set[str]) -> MetricsConfig:
    sub = _sub(r, m, "metrics", path, METRICS_FIELDS)
    p = _join(path, "metrics")
    profiles = r.strings(sub, "profiles", p)
    if profiles is not None:
        seen: set[str] = set()
        for i, prof in enumerate(profiles):
            if r.choice(prof, _at(_join(p, "profiles"), i), METRIC_PROFILES) and prof in seen:
                r.error(_at(_join(p, "profiles"), i), f"'{prof}' is listed twice")
            seen.add(prof)
    labels: list[ExtraLabel] = []
    raw_labels = sub.get("extra_labels")
    if raw_labels is not None:
        lp = _join(p, "extra_labels")
        if not isinstance(raw_labels, list):
            r.error(lp, f"expected a list, got {_describe(raw_labels)}")
        else:
            names: set[str] = set()
            for i, item in enumerate(raw_labels):
                label = _parse_extra_label(r, item, _at(lp, i), attribute_keys)
                if label is None:
                    continue
                if label.name in names:
                    r.error(_join(_at(lp, i), "name"), f"label '{label.name}' is defined twice")
                names.add(label.name)
                labels.append(label)
    return MetricsConfig(
        **_kwargs(
            profiles=profiles,
            max_series_per_metric=r.integer(sub, "max_series_per_metric", p),
            max_label_value_length=r.integer(sub, "max_label_value_length", p),
            gen_ai_server_aliases=r.boolean(sub, "gen_ai_server_aliases", p),
        ),
        extra_labels=tuple(labels),
    )


def _parse_extensions(r: _Reader, value: object, path: str, attribute_keys: set[str]) -> Extensions:
    if value is None:
        return Extensions()
    m = r.mapping(value, path)
    if m is None:
        return Extensions()
    r.fields(m, path, EXTENSION_FIELDS)
    consumer = r.string(m, "consumer_header", path, required="consumer_header" in m)
    if consumer and not _HEADER_NAME.match(consumer):
        r.error(_join(path, "consumer_header"), f"not a valid header name: {consumer!r}")
    namespace = r.string(m, "metadata_namespace", path, required="metadata_namespace" in m)
    if namespace and not _NAMESPACE.match(namespace):
        r.error(_join(path, "metadata_namespace"), f"not a valid metadata namespace: {namespace!r}")
    ai_log_file = r.string(m, "ai_log_file", path, required=m.get("ai_log_file") is not None)

    lim = _sub(r, m, "limits", path, LIMIT_FIELDS)
    lp = _join(path, "limits")
    limits = Limits(**_kwargs(**{name: r.integer(lim, name, lp) for name in LIMIT_FIELDS}))

    tr = _sub(r, m, "tracing", path, TRACING_FIELDS)
    tp = _join(path, "tracing")
    tracing = TracingConfig(
        **_kwargs(
            enabled=r.boolean(tr, "enabled", tp),
            capture_content=r.boolean(tr, "capture_content", tp),
            service_name=r.string(tr, "service_name", tp, required="service_name" in tr),
        )
    )
    return Extensions(
        **_kwargs(
            consumer_header=consumer.lower() if consumer else None,
            metadata_namespace=namespace,
            ai_log_file=ai_log_file,
        ),
        limits=limits,
        metrics=_parse_metrics(r, m, path, attribute_keys),
        tracing=tracing,
    )


# ----------------------------------------------------------------------------------------- documents

_DOC_FIELDS = ("defaultConfig", "defaultConfigDisable", "matchRules", "gateway_stats")
_K8S_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status", "gateway_stats")
_SPEC_FIELDS = ("defaultConfig", "defaultConfigDisable", "matchRules", "pluginConfig", "gateway_stats")
# WasmPlugin CRD (Higress and Istio) fields that do not concern us: accepted and ignored.
_SPEC_IGNORED = (
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "pluginName",
    "phase",
    "priority",
    "failStrategy",
    "vmConfig",
    "selector",
    "targetRef",
    "targetRefs",
    "match",
    "type",
)
_K8S_API_GROUPS = ("extensions.higress.io/", "extensions.istio.io/")
_K8S_HINTS = dict.fromkeys(PLUGIN_FIELDS, "Higress plugin fields belong under spec.defaultConfig")
_MISPLACED_PLUGIN_FIELD = "Higress plugin fields belong under defaultConfig (or a match rule's config) here"


class _Parsed:
    __slots__ = ("default", "rules")

    def __init__(self, default: PluginConfig, rules: tuple[MatchRule, ...]) -> None:
        self.default = default
        self.rules = rules


def _parse_bare(r: _Reader, m: Mapping[str, Any], path: str, extra: Sequence[str]) -> _Parsed:
    """A bare plugin config (optionally with Higress' `_rules_`)."""
    r.fields(m, path, (*PLUGIN_FIELDS, "_rules_", *extra), hints=_PLACEMENT_HINTS)
    default_raw = _parse_plugin_fields(r, m, path)
    rules = _parse_inline_rules(r, m.get("_rules_"), _join(path, "_rules_"), default_raw)
    return _Parsed(_build_plugin(default_raw), rules)


def _parse_wasm_doc(r: _Reader, m: Mapping[str, Any], path: str) -> _Parsed:
    """{defaultConfig, defaultConfigDisable, matchRules} (fields already checked by the caller)."""
    default_raw = _parse_plugin(r, m.get("defaultConfig"), _join(path, "defaultConfig"))
    default_off = r.boolean(m, "defaultConfigDisable", path) or False
    rules = _parse_match_rules(r, m.get("matchRules"), _join(path, "matchRules"), default_raw)
    return _Parsed(_DISABLED if default_off else _build_plugin(default_raw), rules)


def _parse_k8s(r: _Reader, m: Mapping[str, Any]) -> tuple[_Parsed, object, str]:
    """A Kubernetes WasmPlugin object; also returns the gateway_stats value and its path."""
    r.fields(m, "", _K8S_FIELDS, hints=_K8S_HINTS)
    kind = m.get("kind")
    if kind is not None and kind != "WasmPlugin":
        r.error("kind", f"expected 'WasmPlugin', got {_describe(kind)}")
    api = m.get("apiVersion")
    if api is not None and not (isinstance(api, str) and api.startswith(_K8S_API_GROUPS)):
        r.error("apiVersion", f"expected extensions.higress.io/v1alpha1, got {_describe(api)}")
    spec = r.mapping(m.get("spec"), "spec") if m.get("spec") is not None else {}
    if spec is None:
        return _Parsed(_build_plugin({}), ()), m.get("gateway_stats"), "gateway_stats"
    r.fields(spec, "spec", _SPEC_FIELDS, ignored=_SPEC_IGNORED, hints=_K8S_HINTS)
    ext, ext_path = m.get("gateway_stats"), "gateway_stats"
    if spec.get("gateway_stats") is not None:
        if ext is not None:
            r.error("spec.gateway_stats", "gateway_stats is given both at the top level and under spec")
        ext, ext_path = spec["gateway_stats"], "spec.gateway_stats"
    plugin_config = spec.get("pluginConfig")
    if plugin_config is not None:
        if any(spec.get(k) is not None for k in ("defaultConfig", "matchRules")):
            r.error("spec.pluginConfig", "use either pluginConfig or defaultConfig/matchRules, not both")
        pc = r.mapping(plugin_config, "spec.pluginConfig")
        if pc is not None:
            return _parse_bare(r, pc, "spec.pluginConfig", ()), ext, ext_path
    return _parse_wasm_doc(r, spec, "spec"), ext, ext_path


def _raw_attribute_keys(parsed: _Parsed) -> set[str]:
    keys = set(BUILTIN_KEYS)
    for cfg in (parsed.default, *(rule.config for rule in parsed.rules)):
        keys.update(a.key for a in cfg.attributes)
    return keys


def parse_config(data: object, source: str = "<string>") -> Config:
    """Validate an already-parsed YAML/JSON document; raises ConfigError listing every problem."""
    r = _Reader(source)
    if data is None:
        raise ConfigError([f"{source}: the document is empty"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: (document): expected a mapping, got {_describe(data)}"])
    ext_value: object = data.get("gateway_stats")
    ext_path = "gateway_stats"
    if any(k in data for k in ("apiVersion", "kind", "spec")):
        parsed, ext_value, ext_path = _parse_k8s(r, data)
    elif any(k in data for k in ("defaultConfig", "matchRules", "defaultConfigDisable")):
        r.fields(data, "", _DOC_FIELDS, hints=dict.fromkeys(PLUGIN_FIELDS, _MISPLACED_PLUGIN_FIELD))
        parsed = _parse_wasm_doc(r, data, "")
    else:
        parsed = _parse_bare(r, data, "", ("gateway_stats",))
    extensions = _parse_extensions(r, ext_value, ext_path, _raw_attribute_keys(parsed))
    if r.errors:
        raise ConfigError(r.errors)
    return Config(default=parsed.default, match_rules=parsed.rules, extensions=extensions, source=source)


# ------------------------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable key: SafeLoader reports it below
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    "tag:yaml.org,2002:map",
    lambda loader, node: loader.construct_mapping(node),  # type: ignore[arg-type]
)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"found duplicate key {k!r}")
        out[k] = v
    return out


def _yaml_error(source: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return f"{source}: line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {what}{context}"
    return f"{source}: invalid YAML: {exc}"


def parse_text(text: str, source: str = "<string>") -> Config:
    """Parse YAML or JSON text (detected by content) into a Config."""
    stripped = text.lstrip()
    data: object
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            try:  # YAML flow style also starts with '{'
                data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
            except yaml.YAMLError:
                raise ConfigError(
                    [f"{source}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"]
                ) from None
        except ValueError as exc:
            raise ConfigError([f"{source}: invalid JSON: {exc}"]) from None
    else:
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise ConfigError([_yaml_error(source, exc)]) from None
    return parse_config(data, source)


def load_config(path: str) -> Config:
    """Load a YAML or JSON config file; raises ConfigError (also for unreadable files)."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc}"]) from None
    return parse_text(text, path)


# -------------------------------------------------------------------------------------------- reload


class ConfigStore:
    """Holds the current Config and reloads it when the file changes, keeping the last good one.

    The first load happens in the constructor and raises ConfigError: a broken config at startup is
    fatal, a broken config on reload is only logged and counted.
    """

    def __init__(
        self,
        path: str | None,
        on_change: Callable[[Config], None] | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_error: str | None = None
        self._signature: tuple[object, ...] | None = None
        if path is None:
            self.current = default_config()
        else:
            with contextlib.suppress(OSError):  # load_config below reports it
                self._signature = self._stat(path)
            self.current = load_config(path)

    @staticmethod
    def _stat(path: str) -> tuple[object, ...]:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _failed(self, message: str) -> None:
        self.reloads_failed += 1
        self.last_error = message
        log.warning("config reload failed, keeping the last good config: %s", message.replace("\n", "; "))

    def check(self) -> bool:
        """Reload if the file changed; True when a new config was installed."""
        if self.path is None:
            return False
        try:
            signature = self._stat(self.path)
        except OSError as exc:
            gone: tuple[object, ...] = ("unreadable", exc.errno)
            if gone != self._signature:
                self._signature = gone
                self._failed(f"{self.path}: cannot stat: {exc.strerror or exc}")
            return False
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            config = load_config(self.path)
        except (ConfigError, OSError, yaml.YAMLError) as exc:
            self._failed(str(exc))
            return False
        self.current = config
        self.reloads_ok += 1
        self.last_error = None
        log.info("config reloaded from %s", self.path)
        if self.on_change is not None:
            try:
                self.on_change(config)
            except Exception:
                log.exception("config on_change callback failed")
        return True

    async def watch(self) -> None:
        """Call check() every poll_interval seconds until cancelled."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                self.check()
            except Exception:  # never let the watcher die
                log.exception("config check failed")
