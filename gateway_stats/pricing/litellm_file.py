"""Price files in LiteLLM's `model_prices_and_context_window.json` format (the de facto standard).

One JSON object keyed by model name (`gpt-4o`, or `provider/model`); per entry, prices per unit:

- `input_cost_per_token`, `output_cost_per_token`, `cache_read_input_token_cost`,
  `cache_creation_input_token_cost`, `output_cost_per_reasoning_token`;
- tiers `<one of the first four>_above_<N>k_tokens` (or `_above_<N>_tokens`): from a call whose
  input exceeds N*1000 tokens on, every token is billed at the tier's price (a price the tier does not
  set keeps the base one) — and LiteLLM's newer `tiered_pricing: [{range: [lo, hi], …}]` list;
- `input_cost_per_character` / `output_cost_per_character`: an entry with these and no token price is
  priced per character (DIAL's count: spaces not counted).

Non-price keys (`litellm_provider`, `mode`, `max_tokens`, …) are ignored; so are the price keys we
cannot apply (images, audio, seconds, searches, service tiers `_priority`/`_flex`/`_batches`), which are
kept in `ModelPrice.ignored` so `gateway-stats prices` can show them. Prices we apply are validated:
a number or decimal string, finite, >= 0. Numbers are read as exact decimals from the JSON text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from gateway_stats.pricing.model import ModelPrice, Tier
from gateway_stats.pricing.problems import Problems, at, describe, join

TOKEN_KEYS: dict[str, str] = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "output_cost_per_reasoning_token": "reasoning",
}
CHAR_KEYS: dict[str, str] = {
    "input_cost_per_character": "input_char",
    "output_cost_per_character": "output_char",
}
_TIERED_PREFIXES = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
)
_TIER_KEY = re.compile(rf"^({'|'.join(_TIERED_PREFIXES)})_above_(\d+)(k?)_tokens$")
# LiteLLM bills the higher tier from the threshold itself for these providers (>=, not >).
_INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})


def is_applied_key(key: object) -> bool:
    """Price keys we apply (the others are ignored)."""
    return isinstance(key, str) and (
        key in TOKEN_KEYS or key in CHAR_KEYS or key == "tiered_pricing" or _TIER_KEY.match(key) is not None
    )


def is_price_key(key: str) -> bool:
    """Keys that carry a price in LiteLLM's format (`*cost*`); anything else is metadata."""
    return "cost" in key


def parse_entry(
    name: str, entry: Mapping[str, Any], p: Problems, path: str, *, source: str, currency: str
) -> ModelPrice | None:
    """One model's entry; None when it carries no price key at all (not a price entry)."""
    base: dict[str, Decimal] = {}
    chars: dict[str, Decimal] = {}
    tiers: dict[int, dict[str, Decimal]] = {}
    ignored: list[str] = []
    ranged: dict[int, dict[str, Decimal]] = {}
    has_price_key = False
    for key, value in entry.items():
        if not isinstance(key, str):
            p.error(path, f"field names must be strings, got {describe(key)}")
            continue
        kp = join(path, key)
        if key in TOKEN_KEYS:
            has_price_key = True
            d = p.price(value, kp)
            if d is not None:
                base[TOKEN_KEYS[key]] = d
        elif key in CHAR_KEYS:
            has_price_key = True
            d = p.price(value, kp)
            if d is not None:
                chars[CHAR_KEYS[key]] = d
        elif m := _TIER_KEY.match(key):
            has_price_key = True
            d = p.price(value, kp)
            if d is not None:
                threshold = int(m.group(2)) * (1000 if m.group(3) else 1)
                tiers.setdefault(threshold, {})[TOKEN_KEYS[m.group(1)]] = d
        elif key == "tiered_pricing":
            has_price_key = True
            got = _parse_tiered_pricing(value, p, kp)
            if got is None:
                ignored.append(key)
            else:
                ranged = got
        elif is_price_key(key):
            has_price_key = True
            if value is not None:
                ignored.append(key)
    if not has_price_key:
        return None
    for threshold, prices in ranged.items():
        # LiteLLM: a tier without an output price bills output at the model's own output price.
        prices.setdefault("output", base.get("output", Decimal(0)))
        tiers.setdefault(threshold, {}).update(prices)
    provider = entry.get("litellm_provider")
    uses_chars = bool(chars) and not base and not tiers
    return ModelPrice(
        unit="char_without_whitespace" if uses_chars else "token",
        **base,
        **chars,
        tiers=tuple(Tier(threshold, **prices) for threshold, prices in sorted(tiers.items())),
        tier_inclusive=isinstance(provider, str) and provider in _INCLUSIVE_THRESHOLD_PROVIDERS,
        currency=currency,
        source=source,
        key=name,
        ignored=tuple(ignored),
    )


def _parse_tiered_pricing(value: object, p: Problems, path: str) -> dict[int, dict[str, Decimal]] | None:
    """`tiered_pricing: [{range: [lo, hi], input_cost_per_token, …}, …]` (LiteLLM, e.g. DashScope).

    A call with `lo < input <= hi` is billed at that tier (above the last range: the last tier), every
    token of it; as `Tier(threshold=lo)`. LiteLLM's fallbacks: a cache price the tier lacks is the
    tier's input price, a reasoning price the tier's output price (when it sets one). Tiers of other
    units (per query, ...) have no `input_cost_per_token` and are ignored, as LiteLLM's token pricing
    ignores them; None when no tier is a token tier.
    """
    if value is None:
        return {}
    if not isinstance(value, list):
        p.error(path, f"expected a list of tiers, got {describe(value)}")
        return {}
    out: dict[int, dict[str, Decimal]] = {}
    for i, item in enumerate(value):
        ip = at(path, i)
        m = p.mapping(item, ip)
        if m is None or m.get("input_cost_per_token") is None:
            continue
        rng = m.get("range")
        lo: Decimal | None = None
        if not (isinstance(rng, list) and len(rng) == 2):
            p.error(join(ip, "range"), f"expected [from, to] input tokens, got {describe(rng)}")
        else:
            lo = p.price(rng[0], at(join(ip, "range"), 0))
            p.price(rng[1], at(join(ip, "range"), 1))
        prices: dict[str, Decimal] = {}
        for key, field in TOKEN_KEYS.items():
            d = p.price(m.get(key), join(ip, key))
            if d is not None:
                prices[field] = d
        if lo is None or "input" not in prices:
            continue
        prices.setdefault("cache_read", prices["input"])
        prices.setdefault("cache_write", prices["input"])
        if "output" in prices:
            prices.setdefault("reasoning", prices["output"])
        out[int(lo)] = prices
    return out or None


def parse_document(
    doc: object, p: Problems, path: str, *, source: str, currency: str
) -> dict[str, ModelPrice]:
    """A whole price file (already parsed JSON); entries without any price key are skipped."""
    out: dict[str, ModelPrice] = {}
    m = p.mapping(doc, path)
    if m is None:
        return out
    for name, entry in m.items():
        ep = join(path, name)
        if not isinstance(entry, dict):
            p.error(ep, f"expected a mapping of prices, got {describe(entry)}")
            continue
        price = parse_entry(name, entry, p, ep, source=source, currency=currency)
        if price is not None:
            out[name] = price
    return out


def load_json_text(text: str) -> Any:
    """JSON with every number as an exact Decimal (never a float)."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)
