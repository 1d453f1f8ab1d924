"""Our cost equals LiteLLM's own for a LiteLLM-format price file (data/litellm_prices.json).

LiteLLM's figures were computed by LiteLLM 1.110.2 itself with `data/litellm_reference.py` (the command
is in its docstring and in the JSON) and are committed in `data/litellm_reference.json`. When LiteLLM
is installed here (or `LITELLM_PYTHON` names an interpreter that has it), a test also recomputes
them live.

Each case's usage is in LiteLLM's normalised shape; we hand our engine the same usage in the provider's
own shape, as the observer records it (Anthropic input without the cache, Gemini output without the
thoughts), so the comparison also covers that conversion. LiteLLM adds binary floats: the figures
match our exact Decimal to a relative 1e-12.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_pricing_engine import Rec

from gateway_stats.core.record import Usage
from gateway_stats.pricing import parse_pricing, price_call
from gateway_stats.pricing.catalogue import Catalogue

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "litellm_reference.json").read_text())
# LiteLLM provider → the API shape the observer would record it under
SHAPES = {
    "openai": "openai",
    "xai": "openai",
    "dashscope": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    cfg = parse_pricing({"builtin": False, "files": ["litellm_prices.json"]}, base_dir=str(DATA), environ={})
    return cfg.catalogue()


def record_for(case: dict[str, Any]) -> Rec:
    provider = SHAPES[case["litellm_provider"]]
    prompt, completion = case["prompt_tokens"], case["completion_tokens"]
    cached, creation, reasoning = (
        case["cached_tokens"],
        case["cache_creation_tokens"],
        case["reasoning_tokens"],
    )
    usage = Usage(
        input_tokens=prompt,
        output_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=cached or None,
        cache_creation_tokens=creation or None,
        reasoning_tokens=reasoning or None,
    )
    if provider == "anthropic":
        usage.input_tokens = prompt - cached - creation
        usage.input_excludes_cache = True
    elif provider == "gcp.gemini":
        usage.output_tokens = completion - reasoning
    return Rec(provider, request_model=case["key"], usage=usage)


def same(ours: Decimal, theirs: str) -> bool:
    ref = Decimal(theirs)
    return abs(ours - ref) <= abs(ref) * Decimal("1e-12")


def test_reference_was_made_by_litellm_with_the_committed_file() -> None:
    assert REFERENCE["litellm_version"] == "1.110.2"
    assert REFERENCE["price_file"] == "litellm_prices.json"
    assert len(REFERENCE["cases"]) >= 20


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=[c["id"] for c in REFERENCE["cases"]])
def test_cost_equals_litellm(catalogue: Catalogue, case: dict[str, Any]) -> None:
    cost = price_call(record_for(case), catalogue)
    assert cost.amount is not None, cost
    assert same(cost.amount, case["total_cost"]), (cost.amount, case["total_cost"])
