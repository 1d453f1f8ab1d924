"""Our own settings under `gateway_stats:` (consumer header, limits, metrics, tracing, ai_log file,
pricing, overload)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from gateway_stats.config.analytics import KEYS as ANALYTICS_KEYS
from gateway_stats.config.analytics import parse_analytics
from gateway_stats.config.model import (
    _HEADER_NAME,
    _LABEL_NAME,
    _METRIC_NAME,
    _NAMESPACE,
    BUILTIN_METRIC_LABELS,
    METRIC_FAMILIES,
    METRIC_FAMILY_ALIASES,
    METRIC_PROFILES,
    Extensions,
    ExtraLabel,
    Limits,
    MetricsConfig,
    OverloadConfig,
    TracingConfig,
)
from gateway_stats.config.schema import ConfigError, Reader, at_index, describe, join_path, suggest
from gateway_stats.pricing.config import PricingConfig, parse_pricing

# --------------------------------------------------------------------------------------- extensions

EXTENSION_FIELDS = (
    "consumer_header",
    "metadata_namespace",
    "limits",
    "metrics",
    "tracing",
    "ai_log_file",
    "pricing",
    "records",
    *ANALYTICS_KEYS,  # analytics, feedback, athina: config/analytics.py
    "overload",
)
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
OVERLOAD_FIELDS = ("enabled", "max_loop_lag_ms", "max_inflight_calls", "recover_after_ms")


def _sub(r: Reader, m: Mapping[str, Any], key: str, path: str, known: Sequence[str]) -> dict[str, Any]:
    v = m.get(key)
    if v is None:
        return {}
    p = join_path(path, key)
    sub = r.mapping(v, p)
    if sub is None:
        return {}
    r.fields(sub, p, known)
    return sub


def _kwargs(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _parse_extra_label(r: Reader, item: object, path: str, attribute_keys: set[str]) -> ExtraLabel | None:
    m = r.mapping(item, path)
    if m is None:
        return None
    before = len(r.errors)
    r.fields(m, path, EXTRA_LABEL_FIELDS)
    name = r.string(m, "name", path, required=True)
    if name:
        if not _LABEL_NAME.match(name):
            r.error(
                join_path(path, "name"),
                f"'{name}' is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
            )
        elif name.startswith("__"):
            r.error(join_path(path, "name"), f"'{name}': label names starting with '__' are reserved")
        elif name in BUILTIN_METRIC_LABELS:
            r.error(join_path(path, "name"), f"'{name}' clashes with a built-in label")
    header = r.string(m, "request_header", path) or ""
    attribute = r.string(m, "attribute", path) or ""
    given = sum(m.get(k) is not None and m.get(k) != "" for k in ("request_header", "attribute"))
    if given != 1:  # a value of the wrong type counts as given: it already has its own error
        r.error(path, "exactly one of request_header or attribute must be set")
    if header and not _HEADER_NAME.match(header):
        r.error(join_path(path, "request_header"), f"not a valid header name: {header!r}")
    if attribute and attribute not in attribute_keys:
        guess = suggest(attribute, attribute_keys)
        hint = f"; did you mean '{guess}'?" if guess else ""
        r.error(join_path(path, "attribute"), f"'{attribute}' is not a configured attribute key{hint}")
    families = r.strings(m, "families", path, nonempty_items=True) or ()
    for i, fam in enumerate(families):
        if fam and not _METRIC_NAME.match(fam):
            r.error(at_index(join_path(path, "families"), i), f"'{fam}' is not a valid metric family name")
        elif fam and fam not in METRIC_FAMILIES and fam not in METRIC_FAMILY_ALIASES:
            guess = suggest(fam, (*METRIC_FAMILIES, *METRIC_FAMILY_ALIASES))
            hint = f"; did you mean '{guess}'?" if guess else ""
            r.error(
                at_index(join_path(path, "families"), i), f"'{fam}' is not an exported metric family{hint}"
            )
    families = tuple(METRIC_FAMILY_ALIASES.get(f, f) for f in families)
    if len(r.errors) > before or not name:
        return None
    return ExtraLabel(name=name, request_header=header.lower(), attribute=attribute, families=families)


def _parse_metrics(r: Reader, m: Mapping[str, Any], path: str, attribute_keys: set[str]) -> MetricsConfig:
    sub = _sub(r, m, "metrics", path, METRICS_FIELDS)
    p = join_path(path, "metrics")
    profiles = r.strings(sub, "profiles", p)
    if profiles is not None:
        seen: set[str] = set()
        for i, prof in enumerate(profiles):
            if r.choice(prof, at_index(join_path(p, "profiles"), i), METRIC_PROFILES) and prof in seen:
                r.error(at_index(join_path(p, "profiles"), i), f"'{prof}' is listed twice")
            seen.add(prof)
    labels: list[ExtraLabel] = []
    raw_labels = sub.get("extra_labels")
    if raw_labels is not None:
        lp = join_path(p, "extra_labels")
        if not isinstance(raw_labels, list):
            r.error(lp, f"expected a list, got {describe(raw_labels)}")
        else:
            names: set[str] = set()
            for i, item in enumerate(raw_labels):
                label = _parse_extra_label(r, item, at_index(lp, i), attribute_keys)
                if label is None:
                    continue
                if label.name in names:
                    r.error(join_path(at_index(lp, i), "name"), f"label '{label.name}' is defined twice")
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


def _parse_pricing(r: Reader, value: object, path: str) -> PricingConfig:
    """The pricing block (read even when absent: MODEL_RATES may come from the environment); price files
    are relative to the config file's folder."""
    base_dir = os.path.dirname(os.path.abspath(r.source)) if not r.source.startswith("<") else None
    try:
        return parse_pricing(value, path, source=r.source, base_dir=base_dir)
    except ConfigError as exc:
        r.errors.extend(exc.errors)
        return PricingConfig()


def parse_extensions(r: Reader, value: object, path: str, attribute_keys: set[str]) -> Extensions:
    if value is None:
        return Extensions(pricing=_parse_pricing(r, None, join_path(path, "pricing")))
    m = r.mapping(value, path)
    if m is None:
        return Extensions()
    r.fields(m, path, EXTENSION_FIELDS)
    consumer = r.string(m, "consumer_header", path, required="consumer_header" in m)
    if consumer and not _HEADER_NAME.match(consumer):
        r.error(join_path(path, "consumer_header"), f"not a valid header name: {consumer!r}")
    namespace = r.string(m, "metadata_namespace", path, required="metadata_namespace" in m)
    if namespace and not _NAMESPACE.match(namespace):
        r.error(join_path(path, "metadata_namespace"), f"not a valid metadata namespace: {namespace!r}")
    ai_log_file = r.string(m, "ai_log_file", path, required=m.get("ai_log_file") is not None)

    lim = _sub(r, m, "limits", path, LIMIT_FIELDS)
    lp = join_path(path, "limits")
    limits = Limits(**_kwargs(**{name: r.integer(lim, name, lp) for name in LIMIT_FIELDS}))

    tr = _sub(r, m, "tracing", path, TRACING_FIELDS)
    tp = join_path(path, "tracing")
    tracing = TracingConfig(
        **_kwargs(
            enabled=r.boolean(tr, "enabled", tp),
            capture_content=r.boolean(tr, "capture_content", tp),
            service_name=r.string(tr, "service_name", tp, required="service_name" in tr),
        )
    )
    from gateway_stats.records.config import parse_records  # the records block lives with the records

    try:
        records = parse_records(m.get("records"), join_path(path, "records"), r.source)
    except ConfigError as exc:
        r.errors.extend(exc.errors)
        records = None
    try:
        analytics = parse_analytics(m, path)
    except ConfigError as exc:
        r.errors.extend(f"{r.source}: {e}" for e in exc.errors)
        analytics = None
    ov = _sub(r, m, "overload", path, OVERLOAD_FIELDS)
    op = join_path(path, "overload")
    overload = OverloadConfig(
        **_kwargs(
            enabled=r.boolean(ov, "enabled", op),
            max_loop_lag_ms=r.integer(ov, "max_loop_lag_ms", op),
            max_inflight_calls=r.integer(ov, "max_inflight_calls", op, minimum=0),
            recover_after_ms=r.integer(ov, "recover_after_ms", op, minimum=0),
        )
    )
    return Extensions(
        **_kwargs(
            consumer_header=consumer.lower() if consumer else None,
            metadata_namespace=namespace,
            ai_log_file=ai_log_file,
            records=records,
            analytics=analytics,
        ),
        limits=limits,
        metrics=_parse_metrics(r, m, path, attribute_keys),
        tracing=tracing,
        pricing=_parse_pricing(r, m.get("pricing"), join_path(path, "pricing")),
        overload=overload,
    )
