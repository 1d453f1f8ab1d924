"""Price sources and the catalogue: genai-prices conversion, precedence, name matching, DIAL characters."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal as D

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from test_pricing_engine import Rec, U

from gateway_stats.pricing import Catalogue, ModelPrice, price_call
from gateway_stats.pricing.builtin import BuiltinPrices
from gateway_stats.pricing.catalogue import PriceTable
from gateway_stats.pricing.chars import char_counts, chars_without_spaces, joined_chars, request_texts
from gateway_stats.pricing.config import BUILTIN
from gateway_stats.pricing.model import Tier
from gateway_stats.pricing.overrides import Override


def P(inp: str, out: str = "0", source: str = "", **kw: object) -> ModelPrice:
    return ModelPrice(input=D(inp), output=D(out), source=source, key=source, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ genai-prices


@pytest.mark.parametrize(
    ("model", "provider", "whole_input", "cache_read", "cache_write", "output"),
    [
        ("gpt-4o", "openai", 1000, 200, 0, 100),
        ("gpt-4o-mini", "openai", 5000, 0, 0, 700),
        ("o3", "openai", 12_000, 4000, 0, 3000),
        ("claude-sonnet-4-5", "anthropic", 2572, 2000, 100, 89),
        ("claude-sonnet-4-5", "anthropic", 250_000, 100_000, 1000, 89),
        ("gemini-2.5-pro", "gcp.gemini", 199_999, 1000, 0, 500),
        ("gemini-2.5-pro", "gcp.gemini", 250_000, 1000, 0, 500),
        ("gemini-2.5-flash", "gcp.gemini", 1234, 0, 0, 4321),
    ],
)
def test_builtin_prices_equal_genai_prices_own_calculation(
    model: str, provider: str, whole_input: int, cache_read: int, cache_write: int, output: int
) -> None:
    theirs = calc_price(
        GenaiUsage(
            input_tokens=whole_input,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            output_tokens=output,
        ),
        model_ref=model,
        provider_id={"openai": "openai", "anthropic": "anthropic", "gcp.gemini": "google"}[provider],
    ).total_price
    if provider == "anthropic":  # the record's Anthropic input excludes the cache
        usage = U(whole_input - cache_read - cache_write, output, c=cache_read, w=cache_write, x=True)
    else:
        usage = U(whole_input, output, c=cache_read)
    ours = price_call(Rec(provider, request_model=model, usage=usage), Catalogue(builtin=BUILTIN))
    assert ours.amount == theirs


def test_builtin_lookup_forms() -> None:
    b = BuiltinPrices()
    gpt = b.lookup("gpt-4o")
    assert gpt is not None and (gpt.input, gpt.output, gpt.cache_read) == (
        D("2.5E-6"),
        D("0.00001"),
        D("1.25E-6"),
    )
    assert gpt.key == "openai/gpt-4o" and gpt.source == "genai-prices 0.2.3"
    assert "web_searches_kcount" in gpt.ignored
    assert b.lookup("openai/gpt-4o") == gpt
    assert b.lookup("gpt-4o-2024-08-06") == gpt
    assert b.lookup("models/gemini-2.5-pro", "gcp.gemini") == b.lookup("gemini-2.5-pro")
    assert b.lookup("text-embedding-3-small") is None  # only found with the provider's help:
    emb = b.lookup("text-embedding-3-small", "openai")
    assert emb is not None and emb.input == D("2E-8")
    assert b.lookup("no-such-model-xyz") is None and b.lookup("") is None
    free = b.lookup("gpt-4o", "github-copilot")  # listed without prices: free, as genai-prices computes it
    assert free is not None and free.priceable
    tiered = b.lookup("gemini-2.5-pro")
    assert tiered is not None and tiered.tiers == (
        Tier(200_000, input=D("0.0000025"), output=D("0.000015"), cache_read=D("2.5E-7")),
    )


def test_whisper_priced_per_hour_is_unsupported() -> None:
    cost = price_call(Rec(request_model="groq/whisper-large-v3", usage=U(10, 10)), Catalogue(builtin=BUILTIN))
    assert cost.amount is None and cost.reason == "unsupported_unit"


# --------------------------------------------------------------------------------------- precedence


def catalogue_with_every_layer(**kw: object) -> Catalogue:
    return Catalogue(
        overrides=(Override(None, "m", P("4", source="override")),),
        model_rates={"m": P("3", source="rates"), "r": P("3", source="rates")},
        files={"m": P("2", source="file"), "r": P("2", source="file"), "f": P("2", source="file")},
        builtin=PriceTable(
            {"m": P("1", source="builtin"), "r": P("1"), "f": P("1"), "b": P("1", source="builtin")}
        ),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("model", "source"), [("m", "override"), ("r", "rates"), ("f", "file"), ("b", "builtin")]
)
def test_precedence_builtin_files_model_rates_overrides(model: str, source: str) -> None:
    price = catalogue_with_every_layer().resolve(model)
    assert price is not None and price.source == source


def test_a_user_price_for_the_request_model_beats_the_builtin_one_for_the_response_model() -> None:
    cat = Catalogue(files={"gpt-4o": P("9", source="file")}, builtin=BUILTIN)
    price = cat.resolve("gpt-4o-2024-08-06", "gpt-4o")
    assert price is not None and price.source == "file"
    price = Catalogue(builtin=BUILTIN).resolve("gpt-4o-2024-08-06", "gpt-4o")
    assert price is not None and price.key == "openai/gpt-4o"


def test_deployment_price_wins_over_its_alias_target_in_the_same_table() -> None:
    cat = Catalogue(aliases={"deploy": "gpt-4"}, model_rates={"deploy": P("2"), "gpt-4": P("1")})
    assert cat.resolve("deploy") == P("2")
    assert Catalogue(aliases={"deploy": "gpt-4"}, model_rates={"gpt-4": P("1")}).resolve("deploy") == P("1")


def test_override_order() -> None:
    o = (
        Override(None, "m", P("1", source="model")),
        Override("r", None, P("2", source="route")),
        Override("r", "m", P("3", source="route+model")),
        Override("r", "m", P("4", source="second route+model")),
    )
    cat = Catalogue(overrides=o)
    assert [cat.resolve(m, route=r).source for m, r in [("m", "r"), ("x", "r"), ("m", "z")]] == [  # type: ignore[union-attr]
        "route+model",
        "route",
        "model",
    ]
    assert cat.resolve("x", route="z") is None


def test_table_name_matching() -> None:
    t = PriceTable(
        {"GPT-X": P("1"), "openai/only-openai": P("2"), "azure/dup": P("3"), "bedrock/dup": P("4")}
    )
    assert t.lookup("gpt-x") == P("1")
    assert t.lookup("only-openai") == P("2")
    assert t.lookup("vendor/gpt-x") == P("1")
    assert t.lookup("dup") is None  # two providers list it: ambiguous
    assert t.lookup("dup", "openai") == P("3")  # azure/ is an OpenAI-shaped provider


def test_cache_is_bounded_and_answers_stay_right() -> None:
    cat = Catalogue(files={"m": P("1")}, cache_size=4)
    for i in range(10):
        assert cat.resolve(f"unknown-{i}") is None
        assert cat.resolve("m") == P("1")
    assert len(cat._cache) <= 4


def test_route_is_not_part_of_the_cache_key_without_route_overrides() -> None:
    cat = Catalogue(files={"m": P("1")})
    cat.resolve("m", route="a")
    cat.resolve("m", route="b")
    assert len(cat._cache) == 1


# ------------------------------------------------------------------------------- DIAL characters


def test_dial_counts_every_character_but_spaces() -> None:
    assert chars_without_spaces("a b\tc\nd  ") == 6
    assert joined_chars(["ab c", "de"]) == 3 + 1 + 2  # joined by a newline, which counts


@pytest.mark.parametrize(
    ("doc", "pieces"),
    [
        ({"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi there"}]},
         ["Be terse.", "Hi there"]),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image"}]}]},
         ["Look"]),
        ({"system": "Sys", "messages": [{"role": "user", "content": [{"type": "text", "text": "Q"}]}]},
         ["Sys", "Q"]),
        ({"contents": [{"parts": [{"text": "A"}, {"text": "B"}]}],
          "systemInstruction": {"parts": [{"text": "S"}]}},
         ["A", "B", "S"]),
        ({"input": ["one", "two"]}, ["one", "two"]),
        ({"input": "single"}, ["single"]),
        ({"instructions": "Be nice", "input": [{"role": "user", "content": "Hey"}]}, ["Be nice", "Hey"]),
        ({"prompt": "Say this"}, ["Say this"]),
        (None, []),
    ],
)  # fmt: skip
def test_request_texts(doc: object, pieces: list[str]) -> None:
    assert request_texts(doc) == pieces


def test_char_counts_of_a_chat_call() -> None:
    doc = {"messages": [{"role": "user", "content": "What is up?"}, {"role": "user", "content": "Tell me."}]}
    assert char_counts(doc, "Not much.").request == len("Whatisup?") + 1 + len("Tellme.")
    assert char_counts(doc, "Not much.").response == len("Notmuch.")
    assert char_counts(None, None).response == 0


# ------------------------------------------------------------------------------------------ sans-IO


def test_the_package_imports_no_transport() -> None:
    code = (
        "import sys\n"
        "import gateway_stats.pricing as p\n"
        "from gateway_stats.core.record import CallRecord, Usage\n"
        "rates = {'m': {'unit': 'token', 'prompt_price': 1}}\n"
        "cat = p.parse_pricing({'builtin': False, 'model_rates': rates}, environ={}).catalogue()\n"
        "assert p.price_call(CallRecord(request_model='m', usage=Usage(input_tokens=2)), cat).amount == 2\n"
        "bad = [m for m in ('grpc', 'asyncio', 'prometheus_client', 'opentelemetry', 'uvloop', 'socket')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
