"""The catalogue: every price source chained in precedence order, with a per-model cache.

Precedence, highest first (a later source in the issue's list overrides an earlier one per model):

1. `overrides` (route and model, then route, then model);
2. AI DIAL `MODEL_RATES`;
3. price `files` (LiteLLM format; a later file overrides an earlier one per model);
4. built-in `genai-prices`.

A call is priced at its response model, else its request model. Each source is asked, highest
first, for each of the call's names in this order: the response model, its alias target, the request
model, its alias target; the first hit prices the call. So a user's price for the requested `gpt-4o`
still wins over the built-in price of the `gpt-4o-2024-08-06` the provider answered with.

Names match exactly, then case-insensitively; a table keyed `provider/model` also matches the bare
model (when only one provider lists it, or the call's provider is that one), and a `provider/model`
name also matches a bare key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from gateway_stats.pricing.model import ModelPrice
from gateway_stats.pricing.overrides import Override

# our provider names (record.provider) → LiteLLM's key prefixes
_KEY_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": ("openai", "azure", "text-completion-openai"),
    "anthropic": ("anthropic",),
    "gcp.gemini": ("gemini", "vertex_ai"),
}
DEFAULT_CACHE_SIZE = 4096


class PriceSource(Protocol):
    def lookup(self, model: str, provider: str = "") -> ModelPrice | None: ...


class PriceTable:
    """A name → price table (one price file, several merged, or MODEL_RATES)."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self.prices = dict(prices)
        self._lower: dict[str, str] = {}
        self._bare: dict[str, list[str]] = {}
        for key in self.prices:
            self._lower.setdefault(key.lower(), key)
            if "/" in key:
                self._bare.setdefault(key.rsplit("/", 1)[1].lower(), []).append(key)

    def __len__(self) -> int:
        return len(self.prices)

    def lookup(self, model: str, provider: str = "") -> ModelPrice | None:
        hit = self.prices.get(model)
        if hit is not None:
            return hit
        low = model.lower()
        key = self._lower.get(low)
        if key is not None:
            return self.prices[key]
        for prefix in _KEY_PREFIXES.get(provider, ()):
            key = self._lower.get(f"{prefix}/{low}")
            if key is not None:
                return self.prices[key]
        if "/" in low:  # openai/gpt-4o → gpt-4o
            key = self._lower.get(low.rsplit("/", 1)[1])
            if key is not None:
                return self.prices[key]
        keys = self._bare.get(low.rsplit("/", 1)[-1])
        if keys and len(keys) == 1:
            return self.prices[keys[0]]
        return None


def merged(tables: Iterable[Mapping[str, ModelPrice]]) -> dict[str, ModelPrice]:
    """Later tables override earlier ones per model."""
    out: dict[str, ModelPrice] = {}
    for t in tables:
        out.update(t)
    return out


class Catalogue:
    """Resolves a call's model names (and route) to one `ModelPrice`, caching each answer."""

    def __init__(
        self,
        *,
        overrides: tuple[Override, ...] = (),
        aliases: Mapping[str, str] | None = None,
        model_rates: Mapping[str, ModelPrice] | None = None,
        files: Mapping[str, ModelPrice] | None = None,
        builtin: PriceSource | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.overrides = overrides
        # the first listed wins among overrides of the same selectors
        self._by_route_model: dict[tuple[str, str], Override] = {}
        self._by_route: dict[str, Override] = {}
        self._by_model: dict[str, Override] = {}
        for o in overrides:
            if o.route is not None and o.model is not None:
                self._by_route_model.setdefault((o.route, o.model), o)
            elif o.route is not None:
                self._by_route.setdefault(o.route, o)
            elif o.model is not None:
                self._by_model.setdefault(o.model, o)
        self.aliases = dict(aliases or {})
        self.sources: list[tuple[str, PriceSource]] = []
        if model_rates:
            self.sources.append(("MODEL_RATES", PriceTable(model_rates)))
        if files:
            self.sources.append(("files", PriceTable(files)))
        if builtin is not None:
            self.sources.append(("built-in", builtin))
        self._routes = any(o.route is not None for o in self.overrides)
        # Whether a price is per character: only then is a call's request text counted (chars.py).
        self.has_char_prices = any(
            p.unit == "char_without_whitespace"
            for p in (*(model_rates or {}).values(), *(files or {}).values(), *(o.price for o in overrides))
        )
        self._cache: dict[tuple[str, str, str, str], ModelPrice | None] = {}
        self._cache_size = cache_size

    def names(self, response_model: str | None, request_model: str | None) -> list[str]:
        out: list[str] = []
        for n in (response_model, request_model):
            if not n:
                continue
            for cand in (n, self.aliases.get(n)):
                if cand and cand not in out:
                    out.append(cand)
        return out

    def resolve(
        self,
        response_model: str | None,
        request_model: str | None = None,
        *,
        route: str = "",
        provider: str = "",
    ) -> ModelPrice | None:
        key = (route if self._routes else "", response_model or "", request_model or "", provider)
        try:
            return self._cache[key]
        except KeyError:
            pass
        price = self._resolve(self.names(response_model, request_model), route, provider)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # model names come from clients: bounded
        self._cache[key] = price
        return price

    def candidates(
        self, model: str, *, route: str = "", provider: str = ""
    ) -> list[tuple[str, str, ModelPrice]]:
        """Every price listed for `model` (and its alias), highest precedence first, as (layer, name,
        price); the first one is what a call to `model` on `route` is priced at. For `prices`."""
        names = self.names(model, None)
        out: list[tuple[str, str, ModelPrice]] = []
        for n in names:
            o = self._by_route_model.get((route, n))
            if o is not None:
                out.append(("override (route and model)", n, o.price))
        o = self._by_route.get(route)
        if o is not None:
            out.append(("override (route)", "", o.price))
        for n in names:
            o = self._by_model.get(n)
            if o is not None:
                out.append(("override (model)", n, o.price))
        for layer, source in self.sources:
            for n in names:
                price = source.lookup(n, provider)
                if price is not None:
                    out.append((layer, n, price))
                    break
        return out

    def _resolve(self, names: list[str], route: str, provider: str) -> ModelPrice | None:
        for n in names:
            o = self._by_route_model.get((route, n))
            if o is not None:
                return o.price
        o = self._by_route.get(route)
        if o is not None:
            return o.price
        for n in names:
            o = self._by_model.get(n)
            if o is not None:
                return o.price
        for _, source in self.sources:
            for n in names:
                price = source.lookup(n, provider)
                if price is not None:
                    return price
        return None
