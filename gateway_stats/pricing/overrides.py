"""Overrides (a price per route and/or model) and aliases (a deployment name → the model priced).

```yaml
overrides:
  - route: team-a-chat          # Envoy route name (the ai_route label); optional
    model: gpt-4o               # optional; at least one of route and model
    input_cost_per_token: 0.000002      # LiteLLM's price keys ...
    output_cost_per_token: 0.000008
  - model: my-deployment
    unit: token                 # ... or DIAL's (unit, prompt_price, completion_price)
    prompt_price: "0.00001"
aliases:
  my-deployment: gpt-4o
```

An override wins over every price source. Among overrides, the most specific wins (DIAL: a
deployment's price wins over its model's): route and model, then route alone, then model alone;
the first listed wins a tie. An alias makes a name also try the price of its target; the name's own
price, where one exists, comes first (the deployment's price before its model's). Aliases are
one level: a target that is itself an alias is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway_stats.pricing import litellm_file, model_rates
from gateway_stats.pricing.model import ModelPrice
from gateway_stats.pricing.problems import Problems, at, describe, join

_SELECTORS = ("route", "model", "currency")


@dataclass(frozen=True, slots=True)
class Override:
    route: str | None
    model: str | None
    price: ModelPrice


def parse_overrides(value: object, p: Problems, path: str, *, currency: str) -> tuple[Override, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        p.error(path, f"expected a list of overrides, got {describe(value)}")
        return ()
    out: list[Override] = []
    for i, item in enumerate(value):
        ip = at(path, i)
        m = p.mapping(item, ip)
        if m is None:
            continue
        o = _parse_override(m, p, ip, index=i, currency=currency)
        if o is not None:
            out.append(o)
    return tuple(out)


def _parse_override(
    m: Mapping[str, Any], p: Problems, path: str, *, index: int, currency: str
) -> Override | None:
    route = p.string(m, "route", path)
    model = p.string(m, "model", path)
    cur = p.string(m, "currency", path) or currency
    if "route" not in m and "model" not in m:
        p.error(path, "an override needs a route, a model, or both")
    prices = {k: v for k, v in m.items() if k not in _SELECTORS}
    dial = [k for k in prices if k in model_rates.RATE_FIELDS]
    source = f"overrides[{index}]"
    name = model or f"route {route}"
    if dial:
        other = [k for k in prices if k not in model_rates.RATE_FIELDS]
        if other:
            p.error(
                join(path, other[0]),
                "use either DIAL's fields (unit, prompt_price, completion_price) or LiteLLM's price "
                "keys in one override, not both",
            )
            return None
        price = model_rates.parse_rate(name, prices, p, path, source=source, currency=cur)
    else:
        known = (*_SELECTORS, *litellm_file.TOKEN_KEYS, *litellm_file.CHAR_KEYS, *model_rates.RATE_FIELDS)
        unknown = {k: v for k, v in prices.items() if not litellm_file.is_applied_key(k)}
        if unknown:
            p.fields(unknown, path, known)
            return None
        if not prices:
            p.error(path, "an override needs prices (LiteLLM's price keys, or DIAL's unit and prices)")
            return None
        price = litellm_file.parse_entry(name, prices, p, path, source=source, currency=cur)
    if price is None:
        return None
    return Override(route, model, price)


def parse_aliases(value: object, p: Problems, path: str) -> dict[str, str]:
    if value is None:
        return {}
    m = p.mapping(value, path)
    if m is None:
        return {}
    out: dict[str, str] = {}
    for name, target in m.items():
        np = join(path, str(name))
        if not isinstance(name, str) or not name:
            p.error(path, f"alias names must be non-empty strings, got {describe(name)}")
        elif not isinstance(target, str) or not target:
            p.error(np, f"expected the name of a priced model, got {describe(target)}")
        elif target == name:
            p.error(np, "an alias cannot point to itself")
        else:
            out[name] = target
    for name, target in out.items():
        if target in out:
            p.error(join(path, name), f"'{target}' is itself an alias (aliases are one level)")
    return out
