"""AI DIAL's `MODEL_RATES`, accepted unchanged.

`{"gpt-4": {"unit": "token", "prompt_price": "0.00003", "completion_price": "0.00006"},
  "chat-bison@001": {"unit": "char_without_whitespace", "prompt_price": "...", "completion_price": "..."}}`

`unit` is required (`token` or `char_without_whitespace`); each price is a decimal string (or a
number) and defaults to 0 when absent, as in DIAL (an embedding has no `completion_price`).

- `token`: `prompt_price * prompt_tokens + completion_price * completion_tokens`, where DIAL's
  `prompt_tokens` is the whole input (cache reads and writes included) and `completion_tokens` the
  whole output (reasoning included). As a `ModelPrice`: `input = prompt_price`, no cache or reasoning
  price (they fall back to the input and output prices), `output = completion_price`.
- `char_without_whitespace`: `prompt_price * request characters + completion_price * response
  characters`, spaces not counted (`chars.py`).

Unlike DIAL, a model without a rate is not priced at 0: the catalogue goes on to the next source, and
a call nobody prices is counted as unpriced.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway_stats.pricing.litellm_file import load_json_text
from gateway_stats.pricing.model import UNITS, ModelPrice
from gateway_stats.pricing.problems import Problems, describe, join, suggest

RATE_FIELDS = ("unit", "prompt_price", "completion_price")


def parse_rate(
    name: str, entry: object, p: Problems, path: str, *, source: str, currency: str
) -> ModelPrice | None:
    m = p.mapping(entry, path)
    if m is None:
        return None
    p.fields(m, path, RATE_FIELDS)
    unit = m.get("unit")
    up = join(path, "unit")
    if unit is None:
        p.error(up, "required field is missing (token or char_without_whitespace)")
        return None
    if unit not in UNITS:
        guess = suggest(unit, UNITS) if isinstance(unit, str) else None
        hint = f"; did you mean '{guess}'?" if guess else ""
        p.error(up, f"unknown unit {describe(unit)} (expected one of: {', '.join(UNITS)}{hint})")
        return None
    prompt = p.price(m.get("prompt_price"), join(path, "prompt_price"))
    completion = p.price(m.get("completion_price"), join(path, "completion_price"))
    prompt = prompt if prompt is not None else Decimal(0)
    completion = completion if completion is not None else Decimal(0)
    if unit == "token":
        return ModelPrice(
            unit="token", input=prompt, output=completion, currency=currency, source=source, key=name
        )
    return ModelPrice(
        unit="char_without_whitespace",
        input_char=prompt,
        output_char=completion,
        currency=currency,
        source=source,
        key=name,
    )


def parse_model_rates(
    value: object, p: Problems, path: str, *, source: str = "MODEL_RATES", currency: str
) -> dict[str, ModelPrice]:
    """A `MODEL_RATES` mapping, or its JSON text (as the environment variable holds it)."""
    doc: Any = value
    if isinstance(value, str):
        try:
            doc = load_json_text(value)
        except ValueError as exc:
            p.error(path, f"invalid JSON: {exc}")
            return {}
    m = p.mapping(doc, path)
    if m is None:
        return {}
    out: dict[str, ModelPrice] = {}
    for name, entry in m.items():
        if not isinstance(name, str) or not name:
            p.error(path, f"model names must be non-empty strings, got {describe(name)}")
            continue
        price = parse_rate(name, entry, p, join(path, name), source=source, currency=currency)
        if price is not None:
            out[name] = price
    return out
