"""Config: a Higress `ai-statistics` plugin config, accepted unchanged, plus our `gateway_stats:` extensions.

Three document shapes are detected automatically (see docs/config.md): a bare plugin config (optionally
with Higress' own `_rules_`), a WasmPlugin-style `{defaultConfig, matchRules}` document, and a Kubernetes
`WasmPlugin` object. Everything is immutable: a loaded `Config` is swapped as a whole on hot reload.

Validation is strict (unknown fields, sources and rules are errors, unlike Higress) and reports every
problem found, each naming the file, the field path and what is wrong.

Where things live: `model.py` (the dataclasses and constants), `schema.py` (the field checker and
`ConfigError`), `plugin.py` (Higress plugin fields and attributes), `presets.py` (Higress presets),
`match_rules.py` (rules, inheritance, matching), `extensions.py` (our `gateway_stats:` block),
`documents.py` (document shapes, YAML loading, `parse_config`, `load_config`) and `store.py` (the
reloading `ConfigStore`; imported on its own, as it is the only module here that uses asyncio).
A new field of ours goes into `extensions.py` (parser) and `model.py` (its dataclass).

May import `gateway_stats.core.gjson` (to check paths), `gateway_stats.pricing` (the `pricing` block's
parser, which reads the price files) and PyYAML; nothing else of the package.
"""

from gateway_stats.config.documents import load_config, parse_config, parse_text
from gateway_stats.config.match_rules import MatchRule
from gateway_stats.config.model import (
    BUILTIN_KEYS,
    BUILTIN_METRIC_LABELS,
    DEFAULT_PATH_SUFFIXES,
    DEFAULT_VALUE_LENGTH_LIMIT,
    HIGRESS_METRIC_PREFIX,
    HIGRESS_METRICS,
    METRIC_FAMILIES,
    METRIC_FAMILY_ALIASES,
    METRIC_PROFILES,
    RULES,
    VALUE_SOURCES,
    Attribute,
    Config,
    Extensions,
    ExtraLabel,
    Limits,
    MetricsConfig,
    OverloadConfig,
    PluginConfig,
    TracingConfig,
)
from gateway_stats.config.presets import FULL_PRESET, LIGHT_PRESET, default_config, overlay_attributes
from gateway_stats.config.schema import ConfigError

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
    "Extensions",
    "ExtraLabel",
    "Limits",
    "MatchRule",
    "MetricsConfig",
    "OverloadConfig",
    "PluginConfig",
    "TracingConfig",
    "default_config",
    "load_config",
    "overlay_attributes",
    "parse_config",
    "parse_text",
]
