"""The pricing truth table: every provider shape x cache reads/writes x reasoning x tier boundaries x
overrides x aliases x DIAL units x unknown model / no usage, each with its cost derived by hand.

Each expected value is written as the arithmetic it stands for, in `Decimal`, from the prices listed in
`data/litellm_prices.json`, the MODEL_RATES and overrides below, and (for the two built-in cases)
genai-prices 0.2.3, which is pinned. Usage is given as the observer fills the record
(`gateway_stats.core.record.Usage`): OpenAI input includes the cache, Anthropic input excludes it,
Gemini output excludes the thoughts. The second half drives the real observer with provider bodies,
JSON and SSE, and checks the record it produces prices the same either way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from driver import run_call, sse

from gateway_stats.core.record import Usage
from gateway_stats.pricing import CharCounts, Cost, parse_pricing, price_call
from gateway_stats.pricing.catalogue import Catalogue

DATA = Path(__file__).parent / "data"

CONFIG = {
    "files": ["litellm_prices.json"],
    "model_rates": {
        "dial-gpt": {"unit": "token", "prompt_price": "0.00003", "completion_price": "0.00006"},
        "dial-embed": {"unit": "token", "prompt_price": "0.0000001"},
        "dial-bison": {
            "unit": "char_without_whitespace",
            "prompt_price": "0.0000005",
            "completion_price": "0.000001",
        },
    },
    "overrides": [
        {
            "route": "team-a",
            "model": "acme-chat",
            "input_cost_per_token": 1e-06,
            "output_cost_per_token": 4e-06,
        },
        {"route": "team-b", "unit": "token", "prompt_price": "0.000005", "completion_price": "0.00001"},
        {
            "route": "team-b",
            "model": "acme-chat",
            "input_cost_per_token": 5e-07,
            "output_cost_per_token": 5e-07,
        },
        {"model": "my-finetune", "input_cost_per_token": 1.5e-05, "output_cost_per_token": 6e-05},
    ],
    "aliases": {"prod-chat": "acme-chat", "deploy-dial": "dial-gpt", "claude-deploy": "acme-claude"},
}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return parse_pricing(CONFIG, source="test.yaml", base_dir=str(DATA), environ={}).catalogue()


@dataclass
class Rec:
    """The record fields pricing reads (`CallLike`); `usage` is the real record's Usage."""

    provider: str = "openai"
    route: str = "route-1"
    request_model: str | None = None
    response_model: str | None = None
    usage: Usage = field(default_factory=Usage)


def U(
    i: int | None = None,
    o: int | None = None,
    *,
    c: int | None = None,
    w: int | None = None,
    r: int | None = None,
    t: int | None = None,
    x: bool = False,
) -> Usage:
    """Usage as the observer fills it: input, output, cached (reads), cache writes, reasoning, total."""
    return Usage(
        input_tokens=i,
        output_tokens=o,
        total_tokens=t,
        cached_tokens=c,
        cache_creation_tokens=w,
        reasoning_tokens=r,
        input_excludes_cache=x,
    )


# (id, record, char counts, expected Decimal or the reason it is unpriced)
CASES: list[tuple[str, Rec, CharCounts | None, D | str]] = [
    # ---------------------------------------------------------------- OpenAI chat completions
    (
        "openai-chat-plain",
        Rec(request_model="acme-chat", usage=U(1000, 200, t=1200)),
        None,
        1000 * D("2e-6") + 200 * D("8e-6"),
    ),
    (
        "openai-chat-cached",
        Rec(request_model="acme-chat", usage=U(1000, 50, c=600)),
        None,
        400 * D("2e-6") + 600 * D("5e-7") + 50 * D("8e-6"),
    ),
    (
        "openai-chat-all-cached",
        Rec(request_model="acme-chat", usage=U(1000, 10, c=1000)),
        None,
        1000 * D("5e-7") + 10 * D("8e-6"),
    ),
    (
        "openai-shape-cache-write-at-input-price",
        Rec(request_model="acme-chat", usage=U(1000, 50, c=300, w=100)),
        None,
        600 * D("2e-6") + 300 * D("5e-7") + 100 * D("2e-6") + 50 * D("8e-6"),
    ),
    (
        "openai-reasoning-without-reasoning-price",
        Rec(request_model="acme-chat", usage=U(500, 300, r=200)),
        None,
        500 * D("2e-6") + 100 * D("8e-6") + 200 * D("8e-6"),
    ),
    (
        "openai-reasoning-with-reasoning-price",
        Rec(request_model="acme-reasoner", usage=U(500, 300, r=200)),
        None,
        500 * D("1.1e-6") + 100 * D("4.4e-6") + 200 * D("6e-6"),
    ),
    (
        "openai-cached-and-reasoning",
        Rec(request_model="acme-reasoner", usage=U(2000, 1000, c=1500, r=800)),
        None,
        500 * D("1.1e-6") + 1500 * D("2.75e-7") + 200 * D("4.4e-6") + 800 * D("6e-6"),
    ),
    (
        "response-model-wins",
        Rec(request_model="acme-chat", response_model="acme-reasoner", usage=U(100, 100)),
        None,
        100 * D("1.1e-6") + 100 * D("4.4e-6"),
    ),
    (
        "unpriced-response-model-falls-back-to-request-model",
        Rec(request_model="acme-chat", response_model="acme-chat-2026-01-01", usage=U(100, 100)),
        None,
        100 * D("2e-6") + 100 * D("8e-6"),
    ),
    (
        "provider-prefixed-key-and-string-price",
        Rec(request_model="acme-prefixed", usage=U(1000, 1000)),
        None,
        1000 * D("4e-7") + 1000 * D("1.6e-6"),
    ),
    (
        "prefixed-name-matches-bare-key",
        Rec(response_model="openai/acme-chat", usage=U(10, 10)),
        None,
        10 * D("2e-6") + 10 * D("8e-6"),
    ),
    ("name-case-insensitive", Rec(request_model="ACME-Chat", usage=U(10, 0)), None, 10 * D("2e-6")),
    # ------------------------------------------------- OpenAI completions, embeddings, Responses
    (
        "openai-completions",
        Rec(request_model="acme-chat", usage=U(7, 16, t=23)),
        None,
        7 * D("2e-6") + 16 * D("8e-6"),
    ),
    (
        "openai-embeddings",
        Rec(request_model="acme-embed", usage=U(1234, None, t=1234)),
        None,
        1234 * D("2e-8"),
    ),
    (
        "dial-embeddings-without-completion-price",
        Rec(request_model="dial-embed", usage=U(1000, None)),
        None,
        1000 * D("0.0000001"),
    ),
    (
        "openai-responses-cached-and-reasoning",
        Rec(request_model="acme-reasoner", usage=U(3000, 600, c=1000, r=400)),
        None,
        2000 * D("1.1e-6") + 1000 * D("2.75e-7") + 200 * D("4.4e-6") + 400 * D("6e-6"),
    ),
    # ----------------------------------------------------------------------------- Anthropic
    (
        "anthropic-plain",
        Rec("anthropic", request_model="acme-claude", usage=U(472, 89)),
        None,
        472 * D("3e-6") + 89 * D("1.5e-5"),
    ),
    (
        "anthropic-cache-read-and-write",
        Rec("anthropic", request_model="acme-claude", usage=U(472, 89, c=2000, w=100, x=True)),
        None,
        472 * D("3e-6") + 2000 * D("3e-7") + 100 * D("3.75e-6") + 89 * D("1.5e-5"),
    ),
    (
        "anthropic-stream-cut-after-message-start",
        Rec("anthropic", request_model="acme-claude", usage=U(472, 1, c=2000, w=100, x=True)),
        None,
        472 * D("3e-6") + 2000 * D("3e-7") + 100 * D("3.75e-6") + 1 * D("1.5e-5"),
    ),
    (
        "anthropic-provider-alone-means-input-excludes-cache",
        Rec("anthropic", request_model="acme-claude", usage=U(472, 89, c=2000, w=100, x=False)),
        None,
        472 * D("3e-6") + 2000 * D("3e-7") + 100 * D("3.75e-6") + 89 * D("1.5e-5"),
    ),
    (
        "tier-exactly-at-threshold-counts-the-cache",
        Rec("anthropic", request_model="acme-long", usage=U(100_000, 500, c=20_000, w=8000, x=True)),
        None,
        100_000 * D("3e-6") + 20_000 * D("3e-7") + 8000 * D("3.75e-6") + 500 * D("1.5e-5"),
    ),
    (
        "tier-one-above-threshold",
        Rec("anthropic", request_model="acme-long", usage=U(100_001, 500, c=20_000, w=8000, x=True)),
        None,
        100_001 * D("6e-6") + 20_000 * D("6e-7") + 8000 * D("7.5e-6") + 500 * D("2.25e-5"),
    ),
    (
        "tier-crossed-by-cache-reads",
        Rec("anthropic", request_model="acme-long", usage=U(120_000, 100, c=8001, x=True)),
        None,
        120_000 * D("6e-6") + 8001 * D("6e-7") + 100 * D("2.25e-5"),
    ),
    # -------------------------------------------------------------------------------- Gemini
    (
        "gemini-thoughts-and-cache",
        Rec("gcp.gemini", request_model="acme-gemini", usage=U(9, 6, c=4, r=25, t=40)),
        None,
        5 * D("1.25e-6") + 4 * D("1.25e-7") + (6 + 25) * D("1e-5"),
    ),
    (
        "gemini-thoughts-billed-as-output",
        Rec("gcp.gemini", request_model="acme-gemini", usage=U(100, 50, r=200)),
        None,
        100 * D("1.25e-6") + 250 * D("1e-5"),
    ),
    (
        "gemini-tier-exactly-at-200k",
        Rec("gcp.gemini", request_model="acme-gemini", usage=U(200_000, 1000)),
        None,
        200_000 * D("1.25e-6") + 1000 * D("1e-5"),
    ),
    (
        "gemini-tier-above-200k",
        Rec("gcp.gemini", request_model="acme-gemini", usage=U(200_001, 600, c=50_000, r=400)),
        None,
        150_001 * D("2.5e-6") + 50_000 * D("2.5e-7") + 1000 * D("1.5e-5"),
    ),
    (
        "unknown-shape-gemini-total",
        Rec("unknown", request_model="acme-gemini", usage=U(100, 50, r=200, t=350)),
        None,
        100 * D("1.25e-6") + 250 * D("1e-5"),
    ),
    (
        "unknown-shape-openai-total",
        Rec("unknown", request_model="acme-gemini", usage=U(100, 250, r=200, t=350)),
        None,
        100 * D("1.25e-6") + 250 * D("1e-5"),
    ),
    # --------------------------------------------------------- LiteLLM tier variants (xAI, DashScope)
    (
        "xai-tier-from-the-threshold-itself",
        Rec(request_model="acme-grok", response_model="xai/acme-grok", usage=U(128_000, 100)),
        None,
        128_000 * D("6e-6") + 100 * D("3e-5"),
    ),
    (
        "xai-below-threshold",
        Rec(response_model="xai/acme-grok", usage=U(127_999, 100)),
        None,
        127_999 * D("3e-6") + 100 * D("1.5e-5"),
    ),
    (
        "dashscope-range-end-stays-in-range",
        Rec(response_model="acme-qwen", usage=U(256_000, 500)),
        None,
        256_000 * D("5e-8") + 500 * D("4e-7"),
    ),
    (
        "dashscope-next-range",
        Rec(response_model="acme-qwen", usage=U(256_001, 500)),
        None,
        256_001 * D("2.5e-7") + 500 * D("2e-6"),
    ),
    # ----------------------------------------------------------------------------- overrides
    (
        "override-route-and-model",
        Rec(route="team-a", request_model="acme-chat", usage=U(1000, 100)),
        None,
        1000 * D("1e-6") + 100 * D("4e-6"),
    ),
    (
        "override-other-route-keeps-file-price",
        Rec(route="team-z", request_model="acme-chat", usage=U(1000, 100)),
        None,
        1000 * D("2e-6") + 100 * D("8e-6"),
    ),
    (
        "override-route-only-dial-style",
        Rec(
            "anthropic", route="team-b", request_model="acme-claude", usage=U(472, 89, c=2000, w=100, x=True)
        ),
        None,
        (472 + 2000 + 100) * D("0.000005") + 89 * D("0.00001"),
    ),
    (
        "override-route-and-model-beats-route-only",
        Rec(route="team-b", request_model="acme-chat", usage=U(100, 100)),
        None,
        100 * D("5e-7") + 100 * D("5e-7"),
    ),
    (
        "override-model-only",
        Rec(request_model="my-finetune", usage=U(100, 100)),
        None,
        100 * D("1.5e-05") + 100 * D("6e-05"),
    ),
    # ------------------------------------------------------------------------------- aliases
    (
        "alias-to-file-price",
        Rec(request_model="prod-chat", usage=U(1000, 50, c=600)),
        None,
        400 * D("2e-6") + 600 * D("5e-7") + 50 * D("8e-6"),
    ),
    (
        "alias-to-model-rates",
        Rec(request_model="deploy-dial", usage=U(1000, 100, c=200)),
        None,
        1000 * D("0.00003") + 100 * D("0.00006"),
    ),
    (
        "alias-anthropic",
        Rec("anthropic", request_model="claude-deploy", usage=U(10, 10)),
        None,
        10 * D("3e-6") + 10 * D("1.5e-5"),
    ),
    # ----------------------------------------------------------------------- DIAL MODEL_RATES
    (
        "dial-token-whole-prompt-and-completion",
        Rec(request_model="dial-gpt", usage=U(1000, 100, c=200, r=50)),
        None,
        1000 * D("0.00003") + 100 * D("0.00006"),
    ),
    (
        "dial-token-gemini-thoughts-are-completion",
        Rec("gcp.gemini", request_model="dial-gpt", usage=U(10, 5, r=20)),
        None,
        10 * D("0.00003") + (5 + 20) * D("0.00006"),
    ),
    (
        "dial-char-unit",
        Rec(request_model="dial-bison", usage=U(30, 12)),
        CharCounts(120, 45),
        120 * D("0.0000005") + 45 * D("0.000001"),
    ),
    ("dial-char-unit-needs-no-usage", Rec(request_model="dial-bison"), CharCounts(7, 0), 7 * D("0.0000005")),
    (
        "dial-char-unit-without-counts",
        Rec(request_model="dial-bison", usage=U(30, 12)),
        None,
        "unsupported_unit",
    ),
    (
        "litellm-per-character-entry",
        Rec(request_model="acme-chars", usage=U(30, 12)),
        CharCounts(100, 40),
        100 * D("1.25e-7") + 40 * D("3.75e-7"),
    ),
    # ------------------------------------------------------------ built-in (genai-prices 0.2.3)
    (
        "builtin-gpt-4o-cached",
        Rec(request_model="gpt-4o", usage=U(1000, 100, c=200)),
        None,
        800 * D("2.5") / 10**6 + 200 * D("1.25") / 10**6 + 100 * D("10") / 10**6,
    ),
    (
        "builtin-claude-tier-above-200k",
        Rec("anthropic", response_model="claude-sonnet-4-5", usage=U(150_000, 100, c=50_000, w=1, x=True)),
        None,
        150_000 * D("6") / 10**6 + 50_000 * D("0.6") / 10**6 + 1 * D("7.5") / 10**6 + 100 * D("22.5") / 10**6,
    ),
    # ----------------------------------------------------------------- never silently zero
    ("unknown-model", Rec(request_model="no-such-model-xyz", usage=U(10, 10)), None, "unknown_model"),
    ("no-model-at-all", Rec(usage=U(10, 10)), None, "unknown_model"),
    ("known-model-without-usage", Rec(request_model="acme-chat"), None, "no_usage"),
    (
        "only-prices-we-cannot-count",
        Rec(request_model="acme-image", usage=U(10, 10)),
        None,
        "unsupported_unit",
    ),
    (
        "entry-without-prices-is-not-a-price",
        Rec(request_model="acme-metadata-only", usage=U(10, 10)),
        None,
        "unknown_model",
    ),
]


@pytest.mark.parametrize(("rec", "chars", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_truth_table(catalogue: Catalogue, rec: Rec, chars: CharCounts | None, expected: D | str) -> None:
    cost = price_call(rec, catalogue, chars)
    if isinstance(expected, str):
        assert cost.amount is None and cost.reason == expected
    else:
        assert cost.reason is None
        assert cost.amount == expected
        assert isinstance(cost.amount, D)
        assert cost.currency == "USD" and cost.source


def test_truth_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_cost_says_where_the_price_came_from(catalogue: Catalogue) -> None:
    cost = price_call(Rec(request_model="prod-chat", usage=U(1, 1)), catalogue)
    assert (cost.model, cost.source) == ("acme-chat", "file litellm_prices.json")
    cost = price_call(Rec(route="team-a", request_model="acme-chat", usage=U(1, 1)), catalogue)
    assert cost.source == "overrides[0]"
    cost = price_call(Rec(request_model="deploy-dial", usage=U(1, 1)), catalogue)
    assert (cost.model, cost.source) == ("dial-gpt", "MODEL_RATES")
    cost = price_call(Rec(request_model="gpt-4o", usage=U(1, 1)), catalogue)
    assert cost.model == "openai/gpt-4o" and cost.source == "genai-prices 0.2.3"
    unknown = price_call(Rec(request_model="no-such-model-xyz", usage=U(1, 1)), catalogue)
    assert unknown == Cost(None, reason="unknown_model", model="no-such-model-xyz")


# ===================================================== the same costs from the record the observer fills

CHAT_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 50,
    "total_tokens": 1050,
    "prompt_tokens_details": {"cached_tokens": 600},
}
CHAT_COST = 400 * D("2e-6") + 600 * D("5e-7") + 50 * D("8e-6")


def _chat_json() -> bytes:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": "acme-chat",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}
            ],
            "usage": CHAT_USAGE,
        }
    ).encode()


def _chat_sse() -> bytes:
    def chunk(delta: dict[str, Any], usage: Any = None, finish: str | None = None) -> dict[str, Any]:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta or finish else []
        return {
            "id": "c1",
            "object": "chat.completion.chunk",
            "model": "acme-chat",
            "choices": choices,
            "usage": usage,
        }

    return sse(chunk({"content": "Hi."}), chunk({}, finish="stop"), chunk({}, usage=CHAT_USAGE), b"[DONE]")


ANTHROPIC_USAGE = {
    "input_tokens": 472,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 2000,
    "output_tokens": 89,
}
ANTHROPIC_COST = 472 * D("3e-6") + 2000 * D("3e-7") + 100 * D("3.75e-6") + 89 * D("1.5e-5")


def _anthropic_json() -> bytes:
    return json.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "acme-claude",
            "content": [{"type": "text", "text": "Hi."}],
            "stop_reason": "end_turn",
            "usage": ANTHROPIC_USAGE,
        }
    ).encode()


def _anthropic_sse() -> bytes:
    start = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "acme-claude",
        "content": [],
        "usage": {**ANTHROPIC_USAGE, "output_tokens": 1},
    }
    return sse(
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi."}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 89}},
        ),
        ("message_stop", {"type": "message_stop"}),
    )


GEMINI_USAGE = {
    "promptTokenCount": 9,
    "candidatesTokenCount": 6,
    "totalTokenCount": 40,
    "thoughtsTokenCount": 25,
    "cachedContentTokenCount": 4,
}
GEMINI_COST = 5 * D("1.25e-6") + 4 * D("1.25e-7") + (6 + 25) * D("1e-5")


def _gemini_doc(text: str, usage: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": "acme-gemini", "responseId": "r1"}


def _gemini_sse() -> bytes:
    first = {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 20, "thoughtsTokenCount": 9}
    return sse(_gemini_doc("Sun", first), _gemini_doc("ny.", GEMINI_USAGE, "STOP"), crlf=True)


RESPONSES_USAGE = {
    "input_tokens": 3000,
    "input_tokens_details": {"cached_tokens": 1000},
    "output_tokens": 600,
    "output_tokens_details": {"reasoning_tokens": 400},
    "total_tokens": 3600,
}
RESPONSES_COST = 2000 * D("1.1e-6") + 1000 * D("2.75e-7") + 200 * D("4.4e-6") + 400 * D("6e-6")


def _responses_obj(status: str) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "model": "acme-reasoner",
        "status": status,
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi."}]}],
        "usage": RESPONSES_USAGE if status == "completed" else None,
    }


def _responses_sse() -> bytes:
    return sse(
        ("response.created", {"type": "response.created", "response": _responses_obj("in_progress")}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi."}),
        ("response.completed", {"type": "response.completed", "response": _responses_obj("completed")}),
    )


COMPLETIONS_USAGE = {"prompt_tokens": 7, "completion_tokens": 16, "total_tokens": 23}
COMPLETIONS_COST = 7 * D("2e-6") + 16 * D("8e-6")

OBSERVED = [
    (
        "chat-json",
        "/v1/chat/completions",
        {"model": "acme-chat", "messages": []},
        _chat_json(),
        "application/json",
        CHAT_COST,
    ),
    (
        "chat-sse",
        "/v1/chat/completions",
        {"model": "acme-chat", "stream": True, "messages": []},
        _chat_sse(),
        "text/event-stream",
        CHAT_COST,
    ),
    (
        "completions-json",
        "/v1/completions",
        {"model": "acme-chat", "prompt": "Say"},
        json.dumps(
            {
                "id": "x",
                "model": "acme-chat",
                "choices": [{"text": "so", "index": 0}],
                "usage": COMPLETIONS_USAGE,
            }
        ).encode(),
        "application/json",
        COMPLETIONS_COST,
    ),
    (
        "completions-sse",
        "/v1/completions",
        {"model": "acme-chat", "prompt": "Say", "stream": True},
        sse(
            {"id": "x", "model": "acme-chat", "choices": [{"text": "so", "index": 0}]},
            {"id": "x", "model": "acme-chat", "choices": [], "usage": COMPLETIONS_USAGE},
            b"[DONE]",
        ),
        "text/event-stream",
        COMPLETIONS_COST,
    ),
    (
        "embeddings-json",
        "/v1/embeddings",
        {"model": "acme-embed", "input": "hello"},
        json.dumps(
            {
                "object": "list",
                "data": [{"embedding": [0.1]}],
                "model": "acme-embed",
                "usage": {"prompt_tokens": 1234, "total_tokens": 1234},
            }
        ).encode(),
        "application/json",
        1234 * D("2e-8"),
    ),
    (
        "responses-json",
        "/v1/responses",
        {"model": "acme-reasoner", "input": "Hi", "reasoning": {}},
        json.dumps(_responses_obj("completed")).encode(),
        "application/json",
        RESPONSES_COST,
    ),
    (
        "responses-sse",
        "/v1/responses",
        {"model": "acme-reasoner", "input": "Hi", "reasoning": {}, "stream": True},
        _responses_sse(),
        "text/event-stream",
        RESPONSES_COST,
    ),
    (
        "anthropic-json",
        "/v1/messages",
        {"model": "acme-claude", "max_tokens": 10, "messages": []},
        _anthropic_json(),
        "application/json",
        ANTHROPIC_COST,
    ),
    (
        "anthropic-sse",
        "/v1/messages",
        {"model": "acme-claude", "max_tokens": 10, "stream": True, "messages": []},
        _anthropic_sse(),
        "text/event-stream",
        ANTHROPIC_COST,
    ),
    (
        "gemini-json",
        "/v1beta/models/acme-gemini:generateContent",
        {"contents": []},
        json.dumps(_gemini_doc("Sunny.", GEMINI_USAGE, "STOP")).encode(),
        "application/json",
        GEMINI_COST,
    ),
    (
        "gemini-sse",
        "/v1beta/models/acme-gemini:streamGenerateContent?alt=sse",
        {"contents": []},
        _gemini_sse(),
        "text/event-stream",
        GEMINI_COST,
    ),
]


@pytest.mark.parametrize(
    ("path", "request_doc", "body", "content_type", "expected"),
    [c[1:] for c in OBSERVED],
    ids=[c[0] for c in OBSERVED],
)
@pytest.mark.parametrize("chunk_size", [None, 7], ids=["whole", "7-byte-chunks"])
def test_observed_record_prices_the_same_streamed_or_not(
    catalogue: Catalogue,
    path: str,
    request_doc: dict[str, Any],
    body: bytes,
    content_type: str,
    expected: D,
    chunk_size: int | None,
) -> None:
    call = run_call(
        path=path, request=request_doc, response=body, content_type=content_type, chunk_size=chunk_size
    )
    cost = price_call(call.rec, catalogue)
    assert (cost.amount, cost.reason) == (expected, None), call.rec.usage
