"""The built-in price source: the maintained `genai-prices` package (pydantic), offline data in the wheel.

Its per-model prices (USD per million tokens, `Decimal`, tiers by input tokens) are converted once per
model into a `ModelPrice` (per token), so every source shares one arithmetic. Used keys: `input_mtok`,
`output_mtok`, `cache_read_mtok`, `cache_write_mtok`, `output_reasoning_mtok`; the others (audio,
images, searches, per-request, 1-hour cache writes) are listed in `ModelPrice.ignored`. A model the data
lists with no price at all is free (cost 0), as genai-prices computes it.

genai-prices is imported on first use, not with this package: its import also loads its optional
auto-update machinery (httpx, asyncio), which we never start. `load()` does it up front (at startup,
so the first call to finish does not pay the ~0.2 s import).

Lookup: the name as given (`models/` dropped), first with the provider the call was recognised as
(`openai`, `anthropic`, `gcp.gemini` → `google`), then by the model name alone; `provider/model`
names are split (`openai/gpt-4o`).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway_stats.pricing.model import ModelPrice, Tier

_FIELDS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "output_reasoning_mtok": "reasoning",
}
# our provider names (record.provider) → genai-prices provider ids
_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "gcp.gemini": "google"}


def _per_token(per_million: Decimal) -> Decimal:
    return per_million.scaleb(-6)  # exact: moves the decimal point


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # loads email (and socket): deferred

    try:
        return version("genai-prices")
    except PackageNotFoundError:
        return "?"


class BuiltinPrices:
    """Model prices from genai-prices, converted on first lookup of each model."""

    def __init__(self) -> None:
        self._snapshot: Any = None
        self._lock = threading.Lock()
        self.source = "genai-prices"

    def load(self) -> None:
        with self._lock:
            if self._snapshot is None:
                from genai_prices import data_snapshot  # deferred: see the module docstring

                self._snapshot = data_snapshot.get_snapshot()
                self.source = f"genai-prices {package_version()}"

    def lookup(self, model: str, provider: str = "") -> ModelPrice | None:
        if self._snapshot is None:
            self.load()
        ref = model.removeprefix("models/")
        if not ref:
            return None
        attempts: list[tuple[str, str | None]] = []
        if "/" in ref:
            attempts.append((ref, "litellm"))  # genai-prices splits `provider/model` for this id
        if provider in _PROVIDER_IDS:
            attempts.append((ref, _PROVIDER_IDS[provider]))
        attempts.append((ref, None))
        for name, provider_id in attempts:
            try:
                prov, info = self._snapshot.find_provider_model(name, None, provider_id, None)
            except LookupError:
                continue
            return self._convert(info.get_prices(datetime.now(tz=UTC)), key=f"{prov.id}/{info.id}")
        return None

    def _convert(self, mp: Any, key: str) -> ModelPrice:
        from genai_prices.types import TieredPrices

        base: dict[str, Any] = {}
        tiers: dict[int, dict[str, Decimal]] = {}
        ignored: list[str] = []
        for price_key, value in vars(mp).items():
            if price_key.startswith("_") or value is None:
                continue
            field = _FIELDS.get(price_key)
            if field is None:
                ignored.append(price_key)
                continue
            if isinstance(value, TieredPrices):
                base[field] = _per_token(value.base)
                for tier in value.tiers:
                    tiers.setdefault(int(tier.start), {})[field] = _per_token(tier.price)
            else:
                base[field] = _per_token(Decimal(value))
        if not base and not ignored:  # listed without any price: free
            base = {"input": Decimal(0), "output": Decimal(0)}
        return ModelPrice(
            unit="token",
            **base,
            tiers=tuple(Tier(t, **prices) for t, prices in sorted(tiers.items())),
            currency="USD",
            source=self.source,
            key=key,
            ignored=tuple(ignored),
        )
