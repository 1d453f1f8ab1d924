"""LiteLLM's own cost for each parity case, on `litellm_prices.json`: writes `litellm_reference.json`.

LiteLLM is the reference for what a file in its format means. It is big and not a dependency of ours,
so its figures are computed once with this script and committed; `test_pricing_litellm_parity.py`
checks that our engine gives the same cost for every case.

How it was run (LiteLLM 1.110.2, offline: its bundled price map, no fetch; `make litellm-parity` does
it again, fails if a figure changes, and loads LiteLLM's whole bundled map through check-config):

    python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install litellm==1.110.2
    LITELLM_LOCAL_MODEL_COST_MAP=True /tmp/litellm-venv/bin/python tests/pricing/data/litellm_reference.py

Each case gives the usage in LiteLLM's normalised (OpenAI) shape — `prompt_tokens` is the whole input,
cache reads (`cached_tokens`) and writes (`cache_creation_tokens`) included; `completion_tokens` the
whole output, reasoning included — which is the correct usage for every provider. LiteLLM's known
cost bugs are in how it builds that usage from some streams (#36083, #36168: cached tokens dropped;
#11789: Anthropic cache billed at the input rate), not in the formula applied to it; the parity test
converts each case back into the provider's own shape before handing it to our engine.

LiteLLM computes with binary floats, so its figures carry float rounding (e.g. 0.0023000000000000004);
they are stored as `repr` strings and compared to our exact Decimal within a relative 1e-12.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# (id, price-file key, LiteLLM provider, prompt, completion, cached, cache_creation, reasoning)
CASES: list[tuple[str, str, str, int, int, int, int, int]] = [
    ("chat-plain", "acme-chat", "openai", 1000, 200, 0, 0, 0),
    ("chat-cached", "acme-chat", "openai", 1000, 50, 600, 0, 0),
    ("chat-cache-write-at-input-price", "acme-chat", "openai", 1000, 50, 300, 100, 0),
    ("chat-reasoning-at-output-price", "acme-chat", "openai", 500, 300, 0, 0, 200),
    ("reasoner-reasoning-price", "acme-reasoner", "openai", 500, 300, 0, 0, 200),
    ("reasoner-cached-and-reasoning", "acme-reasoner", "openai", 2000, 1000, 1500, 0, 800),
    ("claude-plain", "acme-claude", "anthropic", 472, 89, 0, 0, 0),
    ("claude-cache-read-and-write", "acme-claude", "anthropic", 2572, 89, 2000, 100, 0),
    ("gemini-thoughts-and-cache", "acme-gemini", "gemini", 9, 31, 4, 0, 25),
    ("gemini-tier-exactly-at-200k", "acme-gemini", "gemini", 200_000, 1000, 0, 0, 0),
    ("gemini-tier-above-200k", "acme-gemini", "gemini", 200_001, 1000, 50_000, 0, 400),
    ("long-tier-exactly-at-128k-with-cache", "acme-long", "anthropic", 128_000, 500, 20_000, 8000, 0),
    ("long-tier-above-128k-with-cache", "acme-long", "anthropic", 128_001, 500, 20_000, 8000, 0),
    ("embedding", "acme-embed", "openai", 1234, 0, 0, 0, 0),
    ("xai-tier-inclusive-at-128k", "xai/acme-grok", "xai", 128_000, 100, 0, 0, 0),
    ("xai-below-128k", "xai/acme-grok", "xai", 127_999, 100, 0, 0, 0),
    ("dashscope-first-range", "dashscope/acme-qwen", "dashscope", 1000, 500, 0, 0, 0),
    ("dashscope-range-end-is-inclusive", "dashscope/acme-qwen", "dashscope", 256_000, 500, 0, 0, 0),
    ("dashscope-second-range", "dashscope/acme-qwen", "dashscope", 256_001, 500, 0, 0, 0),
    ("prefixed-key-string-price", "openai/acme-prefixed", "openai", 1000, 1000, 0, 0, 0),
]


def main() -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from litellm.types.utils import Usage

    prices = json.loads((HERE / "litellm_prices.json").read_text())
    litellm.register_model(model_cost=prices)
    out: list[dict[str, Any]] = []
    for case_id, key, provider, prompt, completion, cached, creation, reasoning in CASES:
        details: dict[str, int] = {}
        if cached:
            details["cached_tokens"] = cached
        if creation:
            details["cache_creation_tokens"] = creation
        usage = Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=details or None,
            completion_tokens_details={"reasoning_tokens": reasoning} if reasoning else None,
        )
        model = key.split("/", 1)[1] if key.startswith(provider + "/") else key
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, custom_llm_provider=provider, usage_object=usage
        )
        out.append(
            {
                "id": case_id,
                "key": key,
                "litellm_provider": provider,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cached_tokens": cached,
                "cache_creation_tokens": creation,
                "reasoning_tokens": reasoning,
                "prompt_cost": repr(prompt_cost),
                "completion_cost": repr(completion_cost),
                "total_cost": repr(prompt_cost + completion_cost),
            }
        )
    doc = {
        "litellm_version": litellm.__version__ if hasattr(litellm, "__version__") else _version(),
        "command": "LITELLM_LOCAL_MODEL_COST_MAP=True python tests/pricing/data/litellm_reference.py",
        "price_file": "litellm_prices.json",
        "cases": out,
    }
    (HERE / "litellm_reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(out)} cases written to {HERE / 'litellm_reference.json'}", file=sys.stderr)
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("litellm")


if __name__ == "__main__":
    raise SystemExit(main())
