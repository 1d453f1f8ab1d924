"""The `gateway_stats.pricing` config block: parsed, validated, price files read.

```yaml
gateway_stats:
  pricing:
    builtin: true                 # the genai-prices data (default true)
    files: [prices/negotiated.json]   # LiteLLM format; relative to the config file; later wins
    model_rates: {...}            # AI DIAL MODEL_RATES (a mapping or its JSON text);
                                  # default: the MODEL_RATES environment variable
    overrides: [...]              # a price per route and/or model (overrides.py)
    aliases: {my-deployment: gpt-4o}
    currency: USD                 # currency of the prices in files, model_rates and overrides
```

`parse_pricing` raises `gateway_stats.config.ConfigError` listing every problem, each naming the file
and field path (`config.yaml: gateway_stats.pricing.files[0]: prices.json: gpt-4o.input_cost_per_token:
must not be negative, got number -1`). Price files are read here, so a config (re)load re-reads them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway_stats.pricing import litellm_file
from gateway_stats.pricing.builtin import BuiltinPrices
from gateway_stats.pricing.catalogue import Catalogue, merged
from gateway_stats.pricing.model import DEFAULT_CURRENCY, ModelPrice
from gateway_stats.pricing.model_rates import parse_model_rates
from gateway_stats.pricing.overrides import Override, parse_aliases, parse_overrides
from gateway_stats.pricing.problems import Problems, at, describe, join

PRICING_FIELDS = ("builtin", "files", "model_rates", "overrides", "aliases", "currency")
MODEL_RATES_ENV = "MODEL_RATES"
_CURRENCY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,15}$")
_MAX_ERRORS_PER_FILE = 20

# One genai-prices source for the process: its data never changes, only its cache warms up.
BUILTIN = BuiltinPrices()


@dataclass(frozen=True, slots=True)
class PriceFile:
    path: str  # as resolved (relative to the config file's folder)
    prices: Mapping[str, ModelPrice]


@dataclass(frozen=True, slots=True)
class PricingConfig:
    builtin: bool = True
    files: tuple[PriceFile, ...] = ()
    model_rates: Mapping[str, ModelPrice] = field(default_factory=dict)
    model_rates_from: str | None = None  # "config" or "environment"
    overrides: tuple[Override, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    currency: str = DEFAULT_CURRENCY

    # Built once per config (a reload builds a new one): its per-model cache lives as long as the config.
    _catalogue: Catalogue | None = field(default=None, init=False, repr=False, compare=False)

    def catalogue(self) -> Catalogue:
        cat = self._catalogue
        if cat is None:
            cat = Catalogue(
                overrides=self.overrides,
                aliases=self.aliases,
                model_rates=self.model_rates,
                files=merged(f.prices for f in self.files),
                builtin=BUILTIN if self.builtin else None,
            )
            object.__setattr__(self, "_catalogue", cat)  # frozen: set once, a cache
        return cat

    @property
    def file_paths(self) -> tuple[str, ...]:
        """What a config watcher must also watch to reload prices with the config."""
        return tuple(f.path for f in self.files)


def parse_pricing(
    raw: object,
    path: str = "gateway_stats.pricing",
    *,
    source: str = "<string>",
    base_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> PricingConfig:
    """Validate the pricing block (None: defaults) and read its price files."""
    p = Problems(source)
    cfg = _parse(p, raw, path, base_dir, os.environ if environ is None else environ)
    if p.errors:
        from gateway_stats.config import ConfigError  # deferred: config imports this module (cycle)

        raise ConfigError(p.errors)
    return cfg


def _parse(
    p: Problems, raw: object, path: str, base_dir: str | None, environ: Mapping[str, str]
) -> PricingConfig:
    m: dict[str, Any] = {}
    if raw is not None:
        got = p.mapping(raw, path)
        if got is None:
            return PricingConfig()
        m = got
        p.fields(m, path, PRICING_FIELDS)

    currency = DEFAULT_CURRENCY
    cur = p.string(m, "currency", path)
    if cur is not None:
        if _CURRENCY.match(cur):
            currency = cur
        else:
            p.error(join(path, "currency"), f"expected a currency code such as USD, got {describe(cur)}")

    builtin = m.get("builtin", True)
    if not isinstance(builtin, bool):
        p.error(join(path, "builtin"), f"expected a boolean (true or false), got {describe(builtin)}")
        builtin = True

    files = _parse_files(p, m.get("files"), join(path, "files"), base_dir, currency)

    model_rates: dict[str, ModelPrice] = {}
    rates_from: str | None = None
    if m.get("model_rates") is not None:
        model_rates = parse_model_rates(m["model_rates"], p, join(path, "model_rates"), currency=currency)
        rates_from = "config"
    elif environ.get(MODEL_RATES_ENV):
        env = Problems(f"{p.source}: ${MODEL_RATES_ENV} (environment variable)")
        model_rates = parse_model_rates(environ[MODEL_RATES_ENV], env, "", currency=currency)
        p.errors.extend(env.errors)
        rates_from = "environment"

    overrides = parse_overrides(m.get("overrides"), p, join(path, "overrides"), currency=currency)
    aliases = parse_aliases(m.get("aliases"), p, join(path, "aliases"))
    return PricingConfig(
        builtin=builtin,
        files=files,
        model_rates=model_rates,
        model_rates_from=rates_from,
        overrides=overrides,
        aliases=aliases,
        currency=currency,
    )


def _parse_files(
    p: Problems, value: object, path: str, base_dir: str | None, currency: str
) -> tuple[PriceFile, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        p.error(path, f"expected a list of price file paths, got {describe(value)}")
        return ()
    out: list[PriceFile] = []
    for i, item in enumerate(value):
        ip = at(path, i)
        if not isinstance(item, str) or not item:
            p.error(ip, f"expected a file path, got {describe(item)}")
            continue
        full = item if os.path.isabs(item) or base_dir is None else os.path.join(base_dir, item)
        prices = load_price_file(full, p, ip, label=item, currency=currency)
        if prices is not None:
            out.append(PriceFile(full, prices))
    return tuple(out)


def load_price_file(
    filename: str, p: Problems, path: str, *, label: str | None = None, currency: str = DEFAULT_CURRENCY
) -> dict[str, ModelPrice] | None:
    """Read and validate one LiteLLM-format file; None (and problems in `p`, at most 20) when invalid."""
    label = label or filename
    try:
        with open(filename, "rb") as fh:
            text = fh.read().decode("utf-8-sig")
    except OSError as exc:
        p.error(path, f"cannot read {label}: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError as exc:
        p.error(path, f"{label}: not UTF-8 text: {exc}")
        return None
    try:
        doc = litellm_file.load_json_text(text)
    except ValueError as exc:
        p.error(path, f"{label}: invalid JSON: {exc}")
        return None
    fp = Problems(f"{p.source}: {path}: {label}")
    prices = litellm_file.parse_document(
        doc, fp, "", source=f"file {os.path.basename(filename)}", currency=currency
    )
    if not fp.errors:
        return prices
    shown = fp.errors[:_MAX_ERRORS_PER_FILE]
    p.errors.extend(shown)
    if len(fp.errors) > len(shown):
        p.errors.append(f"{fp.source}: ... and {len(fp.errors) - len(shown)} more problems")
    return None
