"""The price model: what one model costs per unit, whichever source it came from, and a call's cost.

Every source (genai-prices, LiteLLM files, DIAL `MODEL_RATES`, overrides) is converted into one
`ModelPrice`, so the arithmetic (`arithmetic.py`) is written once. Prices are `Decimal` per single
unit (per token, per character), never per million and never floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

Unit = Literal["token", "char_without_whitespace"]
UNITS: tuple[Unit, ...] = ("token", "char_without_whitespace")

# Why a call has no cost (the `reason` label of gateway_stats_unpriced_calls_total).
UNKNOWN_MODEL = "unknown_model"  # no source prices the model (or the call names no model)
NO_USAGE = "no_usage"  # priced per token, but the call reported no token usage
UNSUPPORTED_UNIT = "unsupported_unit"  # the price is not in a unit we can count for this call
REASONS = (UNKNOWN_MODEL, NO_USAGE, UNSUPPORTED_UNIT)

DEFAULT_CURRENCY = "USD"

# The token prices a tier may replace, in display order.
TOKEN_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices that replace the base ones when a call's whole input exceeds `threshold` tokens.

    A field left None keeps the base price (or the price of a lower tier that sets it). Crossing a
    threshold reprices every token of the call, not only those above it (every provider bills so).
    """

    threshold: int
    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What one model costs, in `currency` per unit.

    Token unit: `input` (uncached input tokens), `output`, `cache_read`, `cache_write`, `reasoning`.
    An absent cache price bills those tokens at the input price, an absent reasoning price at the
    output price, an absent input or output price as 0 (an embedding has no output price).
    Character unit (DIAL `char_without_whitespace`): `input_char` per request character and
    `output_char` per response character, spaces not counted.

    `source` says where the price came from (`genai-prices 0.2.3`, `file prices.json`,
    `MODEL_RATES`, `overrides[0]`), `key` the name it is listed under there.
    """

    unit: Unit = "token"
    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    input_char: Decimal | None = None
    output_char: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    # xAI bills the higher tier from the threshold itself (>=), everyone else above it (>).
    tier_inclusive: bool = False
    currency: str = DEFAULT_CURRENCY
    source: str = ""
    key: str = ""
    # price keys the source has for this model that we do not apply (images, audio, searches, ...)
    ignored: tuple[str, ...] = field(default=())

    @property
    def priceable(self) -> bool:
        """Has at least one price in its unit (else every call is `unsupported_unit`)."""
        if self.unit == "token":
            return any(getattr(self, f) is not None for f in TOKEN_FIELDS) or bool(self.tiers)
        return self.input_char is not None or self.output_char is not None

    def at_tier(self, whole_input: int) -> ModelPrice:
        """The prices in force for a call with `whole_input` input tokens (cache reads/writes included)."""
        if not self.tiers:
            return self
        changes: dict[str, Any] = {}
        for tier in sorted(self.tiers, key=lambda t: t.threshold):
            crossed = whole_input >= tier.threshold if self.tier_inclusive else whole_input > tier.threshold
            if not crossed:
                break
            for f in TOKEN_FIELDS:
                v = getattr(tier, f)
                if v is not None:
                    changes[f] = v
        return replace(self, tiers=(), **changes)

    def with_origin(self, source: str, key: str, currency: str | None = None) -> ModelPrice:
        return replace(self, source=source, key=key, currency=currency or self.currency)


@dataclass(frozen=True, slots=True)
class CharCounts:
    """Characters other than spaces in the request content and in the response content (DIAL's count)."""

    request: int
    response: int


@dataclass(frozen=True, slots=True)
class Cost:
    """A call's cost: an exact amount, or None with the reason.

    `model` is the name the price was found under, `source` where it came from.
    """

    amount: Decimal | None
    currency: str = DEFAULT_CURRENCY
    reason: str | None = None
    model: str | None = None
    source: str | None = None

    @property
    def priced(self) -> bool:
        return self.amount is not None


def unpriced(reason: str, model: str | None = None, price: ModelPrice | None = None) -> Cost:
    if price is None:
        return Cost(None, reason=reason, model=model)
    return Cost(None, currency=price.currency, reason=reason, model=price.key or model, source=price.source)
