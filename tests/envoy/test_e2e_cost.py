"""Money cost end to end: real Envoy + gateway-stats + the mock LLM, prices from every source.

Each case sends one call with known token counts (the mock's `x-mock-*` headers) and its own consumer,
then checks that Envoy's access-log `ai_log` carries the exact cost derived by hand below, written as a
JSON number (read here as a Decimal, never a float), and that `gateway_stats_cost_total` for that
consumer shows the very same decimal. Unpriced calls log `cost: null` (or no cost without usage) and
are counted in `gateway_stats_unpriced_calls_total`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from conftest import access_lines, metrics_text, post, running, wait_for

from gateway_stats.testing.procs import Stack, complete_lines

PRICES = {
    "e2e-chat": {
        "input_cost_per_token": 2e-06,
        "output_cost_per_token": 8e-06,
        "cache_read_input_token_cost": 5e-07,
    },
    "e2e-reasoner": {
        "input_cost_per_token": 1.1e-06,
        "output_cost_per_token": 4.4e-06,
        "cache_read_input_token_cost": 2.75e-07,
        "output_cost_per_reasoning_token": 6e-06,
    },
    "anthropic/e2e-claude": {
        "litellm_provider": "anthropic",
        "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 3e-07,
        "cache_creation_input_token_cost": 3.75e-06,
    },
    "e2e-gemini": {
        "input_cost_per_token": 1.25e-06,
        "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-07,
        "input_cost_per_token_above_200k_tokens": 2.5e-06,
        "output_cost_per_token_above_200k_tokens": 1.5e-05,
        "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
    },
}

CONFIG = """
gateway_stats:
  pricing:
    files: [prices.json]
    model_rates: '{"e2e-dial": {"unit": "token", "prompt_price": "0.00003", "completion_price": "0.00006"},
                   "e2e-bison": {"unit": "char_without_whitespace", "prompt_price": "0.0000005",
                                 "completion_price": "0.000001"}}'
    overrides:
      - model: e2e-override
        input_cost_per_token: 0.000015
        output_cost_per_token: 0.00006
    aliases:
      e2e-alias: e2e-chat
"""

M = D(10) ** 6
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Price this call please"}]


def chat(model: str, *, stream: bool = False, usage: bool = True) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"model": model, "messages": PROMPT}
    if stream:
        body |= {"stream": True, **({"stream_options": {"include_usage": True}} if usage else {})}
    return "/v1/chat/completions", body


def tokens(inp: int, out: int, cached: int = 0, reasoning: int = 0) -> dict[str, str]:
    return {
        "x-mock-input-tokens": str(inp),
        "x-mock-output-tokens": str(out),
        "x-mock-cached-tokens": str(cached),
        "x-mock-reasoning-tokens": str(reasoning),
    }


GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Price this call please"}]}]}
ANTHROPIC = {"model": "e2e-claude", "max_tokens": 64, "messages": PROMPT[1:], "stream": True}

# (consumer, (path, body), mock headers, expected cost)
PRICED: list[tuple[str, tuple[str, dict[str, Any]], dict[str, str], D]] = [
    (
        "openai-json-cached",
        chat("e2e-chat"),
        tokens(1000, 200, 600),
        400 * D("2e-6") + 600 * D("5e-7") + 200 * D("8e-6"),
    ),
    (
        "openai-sse-cached",
        chat("e2e-chat", stream=True),
        tokens(1000, 200, 600),
        400 * D("2e-6") + 600 * D("5e-7") + 200 * D("8e-6"),
    ),
    (
        "responses-sse-reasoning",
        ("/v1/responses", {"model": "e2e-reasoner", "input": "Hi", "stream": True}),
        tokens(3000, 600, 1000, 400),
        2000 * D("1.1e-6") + 1000 * D("2.75e-7") + 200 * D("4.4e-6") + 400 * D("6e-6"),
    ),
    (
        "anthropic-sse-cache",
        ("/v1/messages", ANTHROPIC),
        tokens(472, 89, 2000),
        472 * D("3e-6") + 2000 * D("3e-7") + 89 * D("1.5e-5"),
    ),
    (
        "gemini-sse-above-tier",
        ("/v1beta/models/e2e-gemini:streamGenerateContent?alt=sse", GEMINI),
        tokens(200_001, 600, 50_000, 400),
        150_001 * D("2.5e-6") + 50_000 * D("2.5e-7") + (600 + 400) * D("1.5e-5"),
    ),
    (
        "gemini-json-at-tier",
        ("/v1beta/models/e2e-gemini:generateContent", GEMINI),
        tokens(200_000, 1000),
        200_000 * D("1.25e-6") + 1000 * D("1e-5"),
    ),
    ("dial-token", chat("e2e-dial"), tokens(1000, 100, 200), 1000 * D("0.00003") + 100 * D("0.00006")),
    # request: "Be brief." + "\n" + "Price this call please" = 8 + 1 + 19 characters without spaces;
    # response: the mock's 3-event answer "Hello from the" = 12
    (
        "dial-characters",
        chat("e2e-bison"),
        {"x-mock-events": "3"},
        (8 + 1 + 19) * D("0.0000005") + 12 * D("0.000001"),
    ),
    ("alias", chat("e2e-alias"), tokens(100, 10), 100 * D("2e-6") + 10 * D("8e-6")),
    ("override", chat("e2e-override"), tokens(100, 100), 100 * D("0.000015") + 100 * D("0.00006")),
    # built in (genai-prices 0.2.3): gpt-4o-mini $0.15 / $0.6 per million, cache reads $0.075
    (
        "builtin",
        chat("gpt-4o-mini"),
        tokens(1000, 100, 400),
        (600 * D("0.15") + 400 * D("0.075") + 100 * D("0.6")) / M,
    ),
    (
        "builtin-embeddings",
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a b"]}),
        {"x-mock-input-tokens": "1234"},
        1234 * D("0.02") / M,
    ),
]


@pytest.fixture(scope="module")
def cost_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    d = tmp_path_factory.mktemp("cost")
    (d / "prices.json").write_text(json.dumps(PRICES))
    (d / "config.yaml").write_text(CONFIG)
    s = Stack(d / "stack", config_path=str(d / "config.yaml"))
    yield from running(s)


def exact_ai_logs(stack: Stack) -> list[dict[str, Any]]:
    """Every ai_log of the access log, numbers read as Decimals (the exact text Envoy printed)."""
    out = []
    for line in access_lines(stack):
        v = line.get("ai_log")
        if isinstance(v, str) and v not in ("", "-"):
            out.append(json.loads(v, parse_float=D))
    return out


def log_for(stack: Stack, chat_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((d for d in exact_ai_logs(stack) if d.get("chat_id") == chat_id), None)

    return wait_for(find, 10, f"ai_log of {chat_id}")  # type: ignore[no-any-return]


def sample(text: str, family: str, **labels: str) -> str | None:
    """The value text of the one sample of `family` carrying `labels` (None when there is none)."""
    for line in text.splitlines():
        m = re.match(rf"^{family}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return m.group(2)
    return None


@pytest.mark.parametrize(("consumer", "request_", "headers", "cost"), PRICED, ids=[c[0] for c in PRICED])
def test_cost_in_ai_log_and_counter(
    cost_stack: Stack, consumer: str, request_: tuple[str, dict[str, Any]], headers: dict[str, str], cost: D
) -> None:
    path, body = request_
    chat_id = f"cost-{consumer}"
    h = {**headers, "x-mock-chat-id": chat_id, "x-mse-consumer": consumer}
    status, _, raw = post(cost_stack.envoy_port, path, body, h)
    assert status == 200, raw[:300]
    if path == "/v1/embeddings":  # embeddings carry no id: find the line by its usage
        log = wait_for(
            lambda: next((d for d in exact_ai_logs(cost_stack) if d.get("input_token") == 1234), None),
            10,
            "log",
        )
    else:
        log = log_for(cost_stack, chat_id)
    assert log["cost"] == cost and isinstance(log["cost"], D), log
    assert log["cost_currency"] == "USD"

    def counted() -> str | None:
        return sample(
            metrics_text(cost_stack), "gateway_stats_cost_total", ai_consumer=consumer, currency="USD"
        )

    assert D(wait_for(counted, 10, "cost counter")) == cost


def test_the_ai_log_line_has_the_cost_as_a_plain_json_number(cost_stack: Stack) -> None:
    post(cost_stack.envoy_port, *chat("e2e-chat"), {**tokens(1000, 200, 600), "x-mock-chat-id": "cost-raw"})
    line = wait_for(
        lambda: next((ln for ln in complete_lines(cost_stack.access_log) if "cost-raw" in ln), None),
        10,
        "access-log line",
    )
    assert (
        '\\"cost\\":0.0027,\\"cost_currency\\":\\"USD\\"' in line
    )  # 0.0008 + 0.0003 + 0.0016, no float noise


def test_unpriced_calls_are_never_zero(cost_stack: Stack) -> None:
    status, _, _ = post(
        cost_stack.envoy_port, *chat("e2e-unknown"), {**tokens(10, 5), "x-mock-chat-id": "cost-unk"}
    )
    assert status == 200
    log = log_for(cost_stack, "cost-unk")
    assert "cost" in log and log["cost"] is None and "cost_currency" not in log

    path, body = chat("e2e-chat", stream=True, usage=False)  # a stream without include_usage: no usage
    status, _, _ = post(cost_stack.envoy_port, path, body, {"x-mock-chat-id": "cost-nousage"})
    assert status == 200
    log = log_for(cost_stack, "cost-nousage")
    assert "cost" not in log and "input_token" not in log

    def counted(model: str, reason: str) -> str | None:
        text = metrics_text(cost_stack)
        return sample(text, "gateway_stats_unpriced_calls_total", ai_model=model, reason=reason)

    assert wait_for(lambda: counted("e2e-unknown", "unknown_model"), 10, "unknown_model") == "1"
    assert wait_for(lambda: counted("e2e-chat", "no_usage"), 10, "no_usage") == "1"
    assert sample(metrics_text(cost_stack), "gateway_stats_cost_total", ai_model="e2e-unknown") is None
    sidecar_log = cost_stack.procs["gateway-stats"].log_text()
    assert sidecar_log.count("call not priced, model 'e2e-unknown'") == 1


def test_price_file_change_reloads_prices(cost_stack: Stack, tmp_path: Path) -> None:
    prices = Path(str(cost_stack.config_path)).parent / "prices.json"
    changed = {**PRICES, "e2e-chat": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}}
    prices.write_text(json.dumps(changed))
    try:

        def repriced() -> D | None:
            post(
                cost_stack.envoy_port, *chat("e2e-chat"), {**tokens(10, 10), "x-mock-chat-id": "cost-reload"}
            )
            logs = [d for d in exact_ai_logs(cost_stack) if d.get("chat_id") == "cost-reload"]
            return logs[-1]["cost"] if logs and logs[-1]["cost"] == 20 * D("1e-6") else None

        assert wait_for(repriced, 15, "the new price") == 20 * D("1e-6")
    finally:
        prices.write_text(json.dumps(PRICES))
