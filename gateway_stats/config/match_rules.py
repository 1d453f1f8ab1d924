"""Match rules: `matchRules` / `_rules_` with `_match_route_`, `_match_domain_`, `_match_service_`,
their inheritance from `defaultConfig`, and matching them against Envoy's route, host and cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway_stats.config.model import PluginConfig
from gateway_stats.config.plugin import PLACEMENT_HINTS, PLUGIN_FIELDS, parse_plugin, parse_plugin_fields
from gateway_stats.config.presets import DISABLED, build_plugin, inherit
from gateway_stats.config.schema import Reader, at_index, describe, join_path


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
    r: Reader, m: Mapping[str, Any], path: str, allow_crd: bool
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


def _rule_items(r: Reader, value: object, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (field path, mapping) of each item of a rules list; what is not a list or a mapping is
    reported and skipped."""
    if value is None:
        return
    if not isinstance(value, list):
        r.error(path, f"expected a list of match rules, got {describe(value)}")
        return
    for i, item in enumerate(value):
        p = at_index(path, i)
        m = r.mapping(item, p)
        if m is not None:
            yield p, m


def parse_match_rules(
    r: Reader, value: object, path: str, default_raw: Mapping[str, Any]
) -> tuple[MatchRule, ...]:
    """WasmPlugin-style `matchRules`: selectors plus `config` / `configDisable` per item."""
    rules: list[MatchRule] = []
    for p, m in _rule_items(r, value, path):
        r.fields(m, p, _RULE_FIELDS)
        selectors = _parse_selectors(r, m, p, allow_crd=True)
        disabled = r.boolean(m, "configDisable", p) or False
        rule_raw = parse_plugin(r, m.get("config"), join_path(p, "config"))
        if selectors is None:
            continue
        cfg = DISABLED if disabled else build_plugin(inherit(default_raw, rule_raw))
        rules.append(MatchRule(config=cfg, **selectors))
    return tuple(rules)


def parse_inline_rules(
    r: Reader, value: object, path: str, default_raw: Mapping[str, Any]
) -> tuple[MatchRule, ...]:
    """Higress' own plugin-config `_rules_`: selectors and plugin fields side by side in each item."""
    rules: list[MatchRule] = []
    for p, m in _rule_items(r, value, path):
        r.fields(m, p, (*_INLINE_RULE_SELECTORS, *PLUGIN_FIELDS), hints=PLACEMENT_HINTS)
        selectors = _parse_selectors(r, m, p, allow_crd=False)
        rule_raw = parse_plugin_fields(r, m, p)
        if selectors is not None:
            rules.append(MatchRule(config=build_plugin(inherit(default_raw, rule_raw)), **selectors))
    return tuple(rules)
