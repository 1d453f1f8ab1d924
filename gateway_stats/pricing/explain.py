"""`gateway-stats prices --model M`: what a model resolves to, each price and where it comes from."""

from __future__ import annotations

from decimal import Decimal

from gateway_stats.pricing.catalogue import Catalogue
from gateway_stats.pricing.model import TOKEN_FIELDS, ModelPrice

_FALLBACK = {"cache_read": "input", "cache_write": "input", "reasoning": "output"}


def _amount(d: Decimal) -> str:
    return format(d.normalize(), "f")


def _per_million(d: Decimal) -> str:
    return _amount(d.scaleb(6))


def describe_price(price: ModelPrice, indent: str = "  ") -> list[str]:
    lines: list[str] = []
    if not price.priceable:
        lines.append(f"{indent}no price in a unit we can count: calls are unpriced (unsupported_unit)")
    elif price.unit == "char_without_whitespace":
        for f, what in (("input_char", "request character"), ("output_char", "response character")):
            v = getattr(price, f)
            shown = _amount(v) if v is not None else "0"
            lines.append(f"{indent}{f:<12} {shown} {price.currency} per {what} (spaces not counted)")
    else:
        for f in TOKEN_FIELDS:
            v = getattr(price, f)
            if v is not None:
                lines.append(f"{indent}{f:<12} {_amount(v)} per token ({_per_million(v)} per million)")
            elif f in _FALLBACK:
                lines.append(f"{indent}{f:<12} (none: billed at the {_FALLBACK[f]} price)")
            else:
                lines.append(f"{indent}{f:<12} (none: 0)")
        for tier in price.tiers:
            op = ">=" if price.tier_inclusive else ">"
            parts = [f"{f} {_amount(getattr(tier, f))}" for f in TOKEN_FIELDS if getattr(tier, f) is not None]
            lines.append(f"{indent}when input tokens {op} {tier.threshold}: {', '.join(parts)}")
    if price.ignored:
        lines.append(f"{indent}not applied: {', '.join(price.ignored)}")
    return lines


def explain(catalogue: Catalogue, model: str, *, route: str = "", provider: str = "") -> list[str]:
    """Lines describing how a call to `model` (on `route`) is priced, then the prices it shadows."""
    found = catalogue.candidates(model, route=route, provider=provider)
    alias = catalogue.aliases.get(model)
    head = f"{model}" + (f" (alias of {alias})" if alias else "") + (f" on route {route}" if route else "")
    if not found:
        return [f"{head}: no price in any source; its calls are counted as unpriced (unknown_model)"]
    layer, _, price = found[0]
    listed = f" as {price.key}" if price.key and price.key != model else ""
    unit = "per character" if price.unit == "char_without_whitespace" else "per token"
    lines = [f"{head}: priced by {layer} — {price.source}{listed} ({unit}, {price.currency})"]
    lines += describe_price(price)
    for layer, _, price in found[1:]:
        listed = f" as {price.key}" if price.key and price.key != model else ""
        lines.append(f"also listed (lower precedence, not used): {layer} — {price.source}{listed}")
    return lines
