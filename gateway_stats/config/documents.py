"""Document shapes (bare plugin config, defaultConfig + matchRules, Kubernetes WasmPlugin), strict
YAML/JSON loading, and `parse_config` / `load_config` that tie the parsers together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from gateway_stats.config import guards
from gateway_stats.config.extensions import parse_extensions
from gateway_stats.config.match_rules import MatchRule, parse_inline_rules, parse_match_rules
from gateway_stats.config.model import BUILTIN_KEYS, Config, PluginConfig
from gateway_stats.config.plugin import PLACEMENT_HINTS, PLUGIN_FIELDS, parse_plugin, parse_plugin_fields
from gateway_stats.config.presets import DISABLED, build_plugin
from gateway_stats.config.schema import ConfigError, Reader, describe, join_path

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


def _parse_bare(r: Reader, m: Mapping[str, Any], path: str, extra: Sequence[str]) -> _Parsed:
    """A bare plugin config (optionally with Higress' `_rules_`)."""
    r.fields(m, path, (*PLUGIN_FIELDS, "_rules_", *extra), hints=PLACEMENT_HINTS)
    default_raw = parse_plugin_fields(r, m, path)
    rules = parse_inline_rules(r, m.get("_rules_"), join_path(path, "_rules_"), default_raw)
    return _Parsed(build_plugin(default_raw), rules)


def _parse_wasm_doc(r: Reader, m: Mapping[str, Any], path: str) -> _Parsed:
    """{defaultConfig, defaultConfigDisable, matchRules} (fields already checked by the caller)."""
    default_raw = parse_plugin(r, m.get("defaultConfig"), join_path(path, "defaultConfig"))
    default_off = r.boolean(m, "defaultConfigDisable", path) or False
    rules = parse_match_rules(r, m.get("matchRules"), join_path(path, "matchRules"), default_raw)
    return _Parsed(DISABLED if default_off else build_plugin(default_raw), rules)


def _parse_k8s(r: Reader, m: Mapping[str, Any]) -> tuple[_Parsed, object, str]:
    """A Kubernetes WasmPlugin object; also returns the gateway_stats value and its path."""
    r.fields(m, "", _K8S_FIELDS, hints=_K8S_HINTS)
    kind = m.get("kind")
    if kind is not None and kind != "WasmPlugin":
        r.error("kind", f"expected 'WasmPlugin', got {describe(kind)}")
    api = m.get("apiVersion")
    if api is not None and not (isinstance(api, str) and api.startswith(_K8S_API_GROUPS)):
        r.error("apiVersion", f"expected extensions.higress.io/v1alpha1, got {describe(api)}")
    spec = r.mapping(m.get("spec"), "spec") if m.get("spec") is not None else {}
    if spec is None:
        return _Parsed(build_plugin({}), ()), m.get("gateway_stats"), "gateway_stats"
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
    r = Reader(source)
    if data is None:
        raise ConfigError([f"{source}: the document is empty"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: (document): expected a mapping, got {describe(data)}"])
    ext_value: object = data.get("gateway_stats")
    ext_path = "gateway_stats"
    if any(k in data for k in ("apiVersion", "kind", "spec")):
        parsed, ext_value, ext_path = _parse_k8s(r, data)
    elif any(k in data for k in ("defaultConfig", "matchRules", "defaultConfigDisable")):
        r.fields(data, "", _DOC_FIELDS, hints=dict.fromkeys(PLUGIN_FIELDS, _MISPLACED_PLUGIN_FIELD))
        parsed = _parse_wasm_doc(r, data, "")
    else:
        parsed = _parse_bare(r, data, "", ("gateway_stats",))
    extensions = parse_extensions(r, ext_value, ext_path, _raw_attribute_keys(parsed))
    if r.errors:
        raise ConfigError(r.errors)
    return Config(default=parsed.default, match_rules=parsed.rules, extensions=extensions, source=source)


# ------------------------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping (PyYAML silently keeps the last one)
    and alias bombs (guards.check_yaml_expansion)."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        guards.check_yaml_expansion(node)
        return node

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
    try:
        return _parse_text(text, source)
    except RecursionError:  # [[[[... 5,000 deep: the JSON and YAML parsers recurse
        raise ConfigError([f"{source}: nested too deeply"]) from None


def _parse_text(text: str, source: str) -> Config:
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
            blob = fh.read(guards.MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    if len(blob) > guards.MAX_CONFIG_BYTES:
        raise ConfigError([guards.too_big(path)])
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc}"]) from None
    return parse_text(text, path)
