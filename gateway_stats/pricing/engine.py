"""A call's cost, once, when its usage is final: resolve the price, then the exact arithmetic.

Input is the call record (`CallRecord`, or anything with the same few fields: `CallLike`); for DIAL's
character unit the caller passes the character counts (`chars.char_counts(record.request_doc,
record.answer)`), since only it knows whether the request body was kept.

Never silently zero: a call the catalogue cannot price, or whose price cannot be applied, gets
`Cost(amount=None, reason=…)`:

- `unknown_model`: no source prices the response or request model (or the call names none);
- `no_usage`: priced per token, but the call reported no token counts;
- `unsupported_unit`: priced per character but no character counts were given, or the source only
  has prices in units we cannot count (images, seconds, searches).
"""

from __future__ import annotations

from typing import Protocol

from gateway_stats.pricing.arithmetic import UsageLike, billed_tokens, char_cost, has_usage, token_cost
from gateway_stats.pricing.catalogue import Catalogue
from gateway_stats.pricing.model import (
    NO_USAGE,
    UNKNOWN_MODEL,
    UNSUPPORTED_UNIT,
    CharCounts,
    Cost,
    unpriced,
)


class CallLike(Protocol):
    """The fields of `gateway_stats.record.CallRecord` pricing reads."""

    @property
    def provider(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def request_model(self) -> str | None: ...
    @property
    def response_model(self) -> str | None: ...
    @property
    def usage(self) -> UsageLike: ...


def price_call(call: CallLike, catalogue: Catalogue, chars: CharCounts | None = None) -> Cost:
    model = call.response_model or call.request_model
    price = catalogue.resolve(
        call.response_model, call.request_model, route=call.route, provider=call.provider
    )
    if price is None:
        return unpriced(UNKNOWN_MODEL, model)
    if not price.priceable:
        return unpriced(UNSUPPORTED_UNIT, model, price)
    if price.unit == "char_without_whitespace":
        if chars is None:
            return unpriced(UNSUPPORTED_UNIT, model, price)
        amount = char_cost(price, chars)
    else:
        if not has_usage(call.usage):
            return unpriced(NO_USAGE, model, price)
        amount = token_cost(price, billed_tokens(call.provider, call.usage))
    return Cost(amount, currency=price.currency, model=price.key or model, source=price.source)
