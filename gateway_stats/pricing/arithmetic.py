"""Exact cost arithmetic: provider usage → billed token counts → Decimal amount.

What each provider's counts include (shared/spec/pricing.md, "Usage semantics by provider"):

- OpenAI (chat, completions, embeddings, Responses): `prompt_tokens`/`input_tokens` include the cached
  tokens (and cache writes, where an OpenAI-shaped proxy reports them); `completion_tokens`/
  `output_tokens` include the reasoning tokens.
- Anthropic: `input_tokens` exclude `cache_read_input_tokens` and `cache_creation_input_tokens`; each is
  billed at its own price. Thinking is part of `output_tokens` (no separate count).
- Gemini: `promptTokenCount` includes `cachedContentTokenCount`; `candidatesTokenCount` excludes
  `thoughtsTokenCount`, which is billed as output too.

Every count is normalised into a `Billed` split that never counts a token twice, then priced. A tier
is chosen by the call's whole input (uncached + cache reads + cache writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from typing import Protocol

from gateway_stats.pricing.model import CharCounts, ModelPrice

# Far more digits than any price * count needs: every product and sum below is exact.
_EXACT = Context(prec=60)
_ZERO = Decimal(0)


class UsageLike(Protocol):
    """The token counts of a call, as `gateway_stats.record.Usage` holds them."""

    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def total_tokens(self) -> int | None: ...
    @property
    def cached_tokens(self) -> int | None: ...
    @property
    def cache_creation_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...
    @property
    def input_excludes_cache(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Billed:
    """Disjoint token counts: each token of the call is in exactly one of them."""

    uncached_input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0  # output other than reasoning
    reasoning: int = 0

    @property
    def whole_input(self) -> int:
        return self.uncached_input + self.cache_read + self.cache_write


def has_usage(usage: UsageLike) -> bool:
    return usage.input_tokens is not None or usage.output_tokens is not None


def input_includes_cache(provider: str, usage: UsageLike) -> bool:
    return not (usage.input_excludes_cache or provider == "anthropic")


def output_includes_reasoning(provider: str, usage: UsageLike) -> bool:
    """Gemini reports thoughts beside the output; OpenAI inside it. Unknown shapes: the total decides."""
    if provider == "gcp.gemini":
        return False
    if provider in ("openai", "anthropic"):
        return True
    r = usage.reasoning_tokens or 0
    if r and usage.total_tokens is not None and usage.input_tokens is not None:
        # Gemini's totalTokenCount = prompt + candidates + thoughts; OpenAI's total = prompt + completion.
        return usage.total_tokens != usage.input_tokens + (usage.output_tokens or 0) + r
    return True


def billed_tokens(provider: str, usage: UsageLike) -> Billed:
    """Split the provider's counts into disjoint billed counts (negative remainders clamp at 0)."""
    inp = usage.input_tokens or 0
    out = usage.output_tokens or 0
    cache_read = usage.cached_tokens or 0
    cache_write = usage.cache_creation_tokens or 0
    reasoning = usage.reasoning_tokens or 0
    uncached = max(0, inp - cache_read - cache_write) if input_includes_cache(provider, usage) else inp
    text_out = max(0, out - reasoning) if output_includes_reasoning(provider, usage) else out
    return Billed(uncached, cache_read, cache_write, text_out, reasoning)


def token_cost(price: ModelPrice, billed: Billed) -> Decimal:
    """The exact cost of `billed` tokens at `price` (its tier chosen by the whole input)."""
    p = price.at_tier(billed.whole_input)
    inp = p.input if p.input is not None else _ZERO
    out = p.output if p.output is not None else _ZERO
    cache_read = p.cache_read if p.cache_read is not None else inp
    cache_write = p.cache_write if p.cache_write is not None else inp
    reasoning = p.reasoning if p.reasoning is not None else out
    with localcontext(_EXACT):
        return (
            billed.uncached_input * inp
            + billed.cache_read * cache_read
            + billed.cache_write * cache_write
            + billed.output * out
            + billed.reasoning * reasoning
        )


def char_cost(price: ModelPrice, chars: CharCounts) -> Decimal:
    inp = price.input_char if price.input_char is not None else _ZERO
    out = price.output_char if price.output_char is not None else _ZERO
    with localcontext(_EXACT):
        return chars.request * inp + chars.response * out
