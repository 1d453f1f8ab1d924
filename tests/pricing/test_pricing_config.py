"""The `gateway_stats.pricing` block: every problem reported with the file and the field path."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway_stats.config import ConfigError
from gateway_stats.pricing import parse_pricing
from gateway_stats.pricing.model import ModelPrice

DATA = Path(__file__).parent / "data"


def errors(raw: Any, *, environ: dict[str, str] | None = None, base_dir: Path = DATA) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_pricing(raw, source="gs.yaml", base_dir=str(base_dir), environ=environ or {})
    return info.value.errors


def write(tmp_path: Path, name: str, doc: Any) -> str:
    (tmp_path / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return name


def test_defaults_builtin_only() -> None:
    cfg = parse_pricing(None, environ={})
    assert cfg.builtin and not cfg.files and not cfg.model_rates and cfg.currency == "USD"
    assert cfg.catalogue().sources[0][0] == "built-in"


def test_a_full_block() -> None:
    cfg = parse_pricing(
        {
            "builtin": False,
            "files": ["litellm_prices.json"],
            "model_rates": json.dumps(
                {"gpt-4": {"unit": "token", "prompt_price": "0.00003", "completion_price": 6e-5}}
            ),
            "overrides": [{"route": "r", "input_cost_per_token": "1e-6"}],
            "aliases": {"a": "gpt-4"},
            "currency": "EUR",
        },
        source="gs.yaml",
        base_dir=str(DATA),
        environ={"MODEL_RATES": '{"ignored": {"unit": "token"}}'},
    )
    assert cfg.file_paths == (str(DATA / "litellm_prices.json"),)
    assert cfg.model_rates_from == "config" and list(cfg.model_rates) == ["gpt-4"]
    rate = cfg.model_rates["gpt-4"]
    assert (rate.input, rate.output, rate.currency, rate.source) == (
        Decimal("0.00003"),
        Decimal("0.00006"),
        "EUR",
        "MODEL_RATES",
    )
    assert cfg.files[0].prices["acme-chat"].currency == "EUR"
    assert cfg.overrides[0].price.currency == "EUR"
    assert [name for name, _ in cfg.catalogue().sources] == ["MODEL_RATES", "files"]


def test_model_rates_from_the_environment() -> None:
    env = {
        "MODEL_RATES": '{"chat-bison@001": {"unit": "char_without_whitespace", "prompt_price": "0.0000005"}}'
    }
    cfg = parse_pricing({}, environ=env)
    assert cfg.model_rates_from == "environment"
    price = cfg.model_rates["chat-bison@001"]
    assert price.unit == "char_without_whitespace" and price.output_char == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], ": expected a mapping, got list"),
        ({"file": []}, ".file: unknown field (did you mean 'files'?)"),
        ({"files": "x.json"}, ".files: expected a list of price file paths, got string"),
        ({"files": [3]}, ".files[0]: expected a file path, got integer 3"),
        ({"files": ["nope.json"]}, ".files[0]: cannot read nope.json: No such file"),
        ({"currency": "US$"}, ".currency: expected a currency code such as USD"),
        ({"builtin": "yes"}, ".builtin: expected a boolean (true or false)"),
        ({"model_rates": "{nope"}, ".model_rates: invalid JSON"),
        ({"model_rates": []}, ".model_rates: expected a mapping, got list"),
        (
            {"model_rates": {"gpt-4": {"unit": "tokens", "prompt_price": "1"}}},
            ".model_rates.gpt-4.unit: unknown unit string 'tokens' "
            "(expected one of: token, char_without_whitespace; did you mean 'token'?)",
        ),
        (
            {"model_rates": {"gpt-4": {"prompt_price": "1"}}},
            ".model_rates.gpt-4.unit: required field is missing",
        ),
        (
            {"model_rates": {"gpt-4": {"unit": "token", "prompt_price": "-0.1"}}},
            ".model_rates.gpt-4.prompt_price: must not be negative, got string '-0.1'",
        ),
        (
            {"model_rates": {"gpt-4": {"unit": "token", "completion_price": "cheap"}}},
            ".model_rates.gpt-4.completion_price: expected a price "
            "(a number or a decimal string), got string 'cheap'",
        ),
        (
            {"model_rates": {"gpt-4": {"unit": "token", "promt_price": "1"}}},
            ".model_rates.gpt-4.promt_price: unknown field (did you mean 'prompt_price'?)",
        ),
        (
            {"overrides": [{"input_cost_per_token": 1}]},
            ".overrides[0]: an override needs a route, a model, or both",
        ),
        (
            {"overrides": [{"model": "m"}]},
            ".overrides[0]: an override needs prices",
        ),
        (
            {"overrides": [{"model": "m", "input_cost_per_tokens": 1}]},
            ".overrides[0].input_cost_per_tokens: unknown field (did you mean 'input_cost_per_token'?)",
        ),
        (
            {"overrides": [{"model": "m", "unit": "token", "input_cost_per_token": 1}]},
            ".overrides[0].input_cost_per_token: use either DIAL's fields",
        ),
        (
            {"overrides": [{"route": "", "input_cost_per_token": 1}]},
            ".overrides[0].route: must not be empty",
        ),
        (
            {"overrides": [{"model": "m", "output_cost_per_token": float("nan")}]},
            ".overrides[0].output_cost_per_token: must be a finite price",
        ),
        ({"aliases": {"a": ""}}, ".aliases.a: expected the name of a priced model"),
        ({"aliases": {"a": "a"}}, ".aliases.a: an alias cannot point to itself"),
        (
            {"aliases": {"a": "b", "b": "c"}},
            ".aliases.a: 'b' is itself an alias (aliases are one level)",
        ),
    ],
)
def test_each_problem_names_its_field(raw: Any, expected: str) -> None:
    errs = errors(raw)
    assert any(e.startswith("gs.yaml: gateway_stats.pricing" + expected) for e in errs), errs


def test_price_file_problems_name_the_file_and_the_entry(tmp_path: Path) -> None:
    name = write(
        tmp_path,
        "bad.json",
        {
            "m1": {"input_cost_per_token": -1, "output_cost_per_token": "abc", "max_tokens": "ignored"},
            "m2": "not a mapping",
            "m3": {"input_cost_per_token_above_200k_tokens": True, "output_cost_per_image": "ignored"},
            "m4": {
                "tiered_pricing": [{"range": [0], "input_cost_per_token": 1}, {"input_cost_per_query": 1}]
            },
        },
    )
    errs = errors({"files": [name]}, base_dir=tmp_path)
    prefix = "gs.yaml: gateway_stats.pricing.files[0]: bad.json: "
    assert errs == [
        prefix + "m1.input_cost_per_token: must not be negative, got number -1",
        prefix
        + "m1.output_cost_per_token: expected a price (a number or a decimal string), got string 'abc'",
        prefix + "m2: expected a mapping of prices, got string 'not a mapping'",
        prefix
        + "m3.input_cost_per_token_above_200k_tokens: expected a price (a number or a decimal string), "
        "got boolean True",
        prefix + "m4.tiered_pricing[0].range: expected [from, to] input tokens, got list",
    ]


def test_price_file_not_json_or_not_a_mapping(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", "{oops")
    b = write(tmp_path, "b.json", "[]")
    errs = errors({"files": [a, b]}, base_dir=tmp_path)
    assert errs[0].startswith("gs.yaml: gateway_stats.pricing.files[0]: a.json: invalid JSON: ")
    assert (
        errs[1] == "gs.yaml: gateway_stats.pricing.files[1]: b.json: (document): expected a mapping, got list"
    )


def test_a_broken_file_shows_twenty_problems_then_a_count(tmp_path: Path) -> None:
    name = write(tmp_path, "many.json", {f"m{i}": {"input_cost_per_token": -1} for i in range(25)})
    errs = errors({"files": [name]}, base_dir=tmp_path)
    assert len(errs) == 21
    assert errs[-1] == "gs.yaml: gateway_stats.pricing.files[0]: many.json: ... and 5 more problems"


def test_model_rates_env_problems_name_the_variable() -> None:
    errs = errors({}, environ={"MODEL_RATES": '{"gpt-4": {"unit": "tok"}}'})
    assert errs == [
        "gs.yaml: $MODEL_RATES (environment variable): gpt-4.unit: unknown unit string 'tok' "
        "(expected one of: token, char_without_whitespace; did you mean 'token'?)"
    ]


def test_later_files_override_earlier_ones(tmp_path: Path) -> None:
    a = write(
        tmp_path,
        "a.json",
        {"m": {"input_cost_per_token": 1, "output_cost_per_token": 2}, "n": {"input_cost_per_token": 5}},
    )
    b = write(tmp_path, "b.json", {"m": {"input_cost_per_token": 3}})
    cat = parse_pricing({"builtin": False, "files": [a, b]}, base_dir=str(tmp_path), environ={}).catalogue()
    m = cat.resolve("m")
    n = cat.resolve("n")
    assert isinstance(m, ModelPrice) and isinstance(n, ModelPrice)
    assert (m.input, m.output, m.source) == (3, None, "file b.json")
    assert (n.input, n.source) == (5, "file a.json")
