"""A Higress plugin config's fields and its `attributes` list, checked field by field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway_stats.config.model import (
    _HEADER_NAME,
    BODY_SOURCES,
    BUILTIN_KEYS,
    HEADER_SOURCES,
    RULES,
    STREAMING_SOURCE,
    VALUE_SOURCES,
    Attribute,
)
from gateway_stats.config.schema import Reader, at_index, describe, join_path, json_problem, path_problem

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
PLACEMENT_HINTS = {
    "gateway_stats": "gateway_stats belongs at the top level of the document",
    "defaultConfig": "defaultConfig belongs at the top level of the document (or under spec)",
    "matchRules": "matchRules belongs at the top level of the document (or under spec)",
}


def _parse_attribute(r: Reader, item: object, path: str) -> Attribute | None:
    m = r.mapping(item, path)
    if m is None:
        return None
    before = len(r.errors)
    r.fields(m, path, ATTRIBUTE_FIELDS)
    key = r.string(m, "key", path, required=True)
    source = r.string(m, "value_source", path) or ""
    source_ok = not source or r.choice(source, join_path(path, "value_source"), VALUE_SOURCES)
    value = r.string(m, "value", path) or ""
    rule = r.string(m, "rule", path) or ""
    rule_ok = not rule or r.choice(rule, join_path(path, "rule"), RULES)
    flags = {
        name: r.boolean(m, name, path) or False
        for name in ("apply_to_log", "apply_to_span", "as_separate_log_field")
    }
    span_key = r.string(m, "trace_span_key", path) or ""
    default = m.get("default_value")
    problem = json_problem(default)
    if problem:
        r.error(join_path(path, "default_value"), problem)

    builtin = key in BUILTIN_KEYS
    if key and not builtin and m.get("value_source") is None:
        r.error(
            join_path(path, "value_source"),
            f"required for key '{key}' (only built-in keys may omit it: {', '.join(BUILTIN_KEYS)})",
        )
    elif key and not builtin and m.get("value_source") == "":
        r.error(join_path(path, "value_source"), f"must not be empty for key '{key}' (not a built-in key)")
    value_typed = isinstance(m.get("value"), str | None)  # else it already has its type error
    if source_ok and source and source != "fixed_value" and not value and not builtin and value_typed:
        r.error(join_path(path, "value"), f"required with value_source {source}")
    # Without a usable value_source that field already has its error: one wrong field, one error.
    if rule and rule_ok and source and source_ok and source != STREAMING_SOURCE and not builtin:
        r.error(
            join_path(path, "rule"),
            f"only meaningful with value_source {STREAMING_SOURCE} (this attribute uses "
            f"{source or 'no value_source'})",
        )
    if source in HEADER_SOURCES and value:
        if not _HEADER_NAME.match(value):
            r.error(join_path(path, "value"), f"not a valid header name: {value!r}")
        value = value.lower()
    if source in BODY_SOURCES and value:
        why = path_problem(value)
        if why:
            r.error(join_path(path, "value"), f"invalid path '{value}': {why}")
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


def parse_plugin_fields(r: Reader, m: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The explicitly set Higress fields of `m` (unknown-field checks are the caller's)."""
    raw: dict[str, Any] = {}
    attrs = m.get("attributes")
    if attrs is not None:
        p = join_path(path, "attributes")
        if not isinstance(attrs, list):
            r.error(p, f"expected a list of attributes, got {describe(attrs)}")
        else:
            parsed = [_parse_attribute(r, item, at_index(p, i)) for i, item in enumerate(attrs)]
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
        p = join_path(path, "session_id_header")
        if not _HEADER_NAME.match(sid):
            r.error(p, f"not a valid header name: {sid!r}")
        raw["session_id_header"] = sid.lower()
    return raw


def parse_plugin(r: Reader, value: object, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    m = r.mapping(value, path)
    if m is None:
        return {}
    r.fields(m, path, PLUGIN_FIELDS, hints=PLACEMENT_HINTS)
    return parse_plugin_fields(r, m, path)
