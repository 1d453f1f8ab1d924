"""Money cost of a call: price sources, the catalogue that chains them, and exact Decimal arithmetic.

Sans-IO and independent of the transport: nothing here imports grpc, asyncio, prometheus_client,
opentelemetry, uvloop or socket (genai-prices, which does, is imported only when its data is first
needed). The input is the call record (any object with its few fields, `engine.CallLike`); the output is
a `Cost` — an exact `Decimal` amount, or None with the reason.

| module | what |
|---|---|
| `model.py` | `ModelPrice` (Decimal per token / per character, tiers, currency, source), `Cost`, reasons |
| `arithmetic.py` | provider usage → disjoint billed counts → Decimal (OpenAI, Anthropic, Gemini shapes) |
| `chars.py` | DIAL's `char_without_whitespace` counts from the request body and the answer |
| `builtin.py` | source: the `genai-prices` package (built in, offline) |
| `litellm_file.py` | source: LiteLLM `model_prices_and_context_window.json` files |
| `model_rates.py` | source: AI DIAL `MODEL_RATES` |
| `overrides.py` | source: overrides per route and/or model; aliases (deployment → priced model) |
| `catalogue.py` | the sources in precedence order (built-in < files < MODEL_RATES < overrides), cached |
| `engine.py` | `price_call(record, catalogue, chars)` → `Cost` |
| `config.py` | `parse_pricing`: the `gateway_stats.pricing` config block, validated, files read |
| `problems.py` | validation errors in the config reader's `file: field.path: message` style |
"""

from gateway_stats.pricing.catalogue import Catalogue
from gateway_stats.pricing.chars import char_counts
from gateway_stats.pricing.config import PricingConfig, parse_pricing
from gateway_stats.pricing.engine import price_call
from gateway_stats.pricing.model import REASONS, CharCounts, Cost, ModelPrice, Tier

__all__ = [
    "REASONS",
    "Catalogue",
    "CharCounts",
    "Cost",
    "ModelPrice",
    "PricingConfig",
    "Tier",
    "char_counts",
    "parse_pricing",
    "price_call",
]
