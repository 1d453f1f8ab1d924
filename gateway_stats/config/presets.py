"""Higress's attribute presets (`use_default_attributes`, `use_default_response_attributes`) and how a
plugin config is built from raw fields over them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from gateway_stats.config.model import (
    DEFAULT_PATH_SUFFIXES,
    DEFAULT_VALUE_LENGTH_LIMIT,
    FULL_PRESET_VALUE_LENGTH_LIMIT,
    LIGHT_PRESET_VALUE_LENGTH_LIMIT,
    Attribute,
    Config,
    Extensions,
    PluginConfig,
)
from gateway_stats.pricing.config import MODEL_RATES_ENV, PricingConfig, parse_pricing

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

DISABLED = PluginConfig(
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


def build_plugin(raw: Mapping[str, Any]) -> PluginConfig:
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


def inherit(default_raw: Mapping[str, Any], rule_raw: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's explicit fields over the default's; attributes merged with `overlay_attributes`."""
    merged = {**default_raw, **rule_raw}
    if "attributes" in default_raw or "attributes" in rule_raw:
        merged["attributes"] = overlay_attributes(
            default_raw.get("attributes", ()), rule_raw.get("attributes", ())
        )
    return merged


def default_config() -> Config:
    """What runs without --config: the Higress default plugin config (no attributes, usage on), and
    prices from genai-prices plus AI DIAL's `MODEL_RATES` environment variable when it is set."""
    pricing = parse_pricing(None, source="<default>") if os.environ.get(MODEL_RATES_ENV) else PricingConfig()
    return Config(
        default=build_plugin({}), match_rules=(), extensions=Extensions(pricing=pricing), source="<default>"
    )
