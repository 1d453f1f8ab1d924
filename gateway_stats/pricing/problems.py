"""Collecting validation problems the way the config reader reports them: `source: field.path: message`.

Every parser in this package walks its whole input and records each problem with the path of the
field it concerns, so one run of `check-config` lists them all.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    Decimal: "number",
    bool: "boolean",
    list: "list",
    dict: "mapping",
    type(None): "null",
}


def describe(value: object) -> str:
    name = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list) or value is None:
        return name
    text = str(value) if isinstance(value, Decimal) else repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name} {text}"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def at(path: str, index: int) -> str:
    return f"{path}[{index}]"


def suggest(word: str, choices: Iterable[str]) -> str | None:
    choices = list(choices)
    norm = word.lower().replace("_", "").replace("-", "")
    for c in choices:
        if c.lower().replace("_", "").replace("-", "") == norm:
            return c
    match = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if match:
        for c in choices:
            if c.lower() == match[0]:
                return c
    return None


class Problems:
    """Errors found while reading one document; `source` is the file (or variable) they are in."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.source}: {path or '(document)'}: {message}")

    def mapping(self, value: object, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {describe(value)}")
            return None
        return value

    def fields(self, m: Mapping[Any, Any], path: str, known: Sequence[str]) -> None:
        for k in m:
            if not isinstance(k, str):
                self.error(path, f"field names must be strings, got {describe(k)}")
            elif k not in known:
                guess = suggest(k, known)
                hint = f"did you mean '{guess}'?" if guess else f"known fields: {', '.join(known)}"
                self.error(join(path, k), f"unknown field ({hint})")

    def string(self, m: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
        v = m.get(key)
        p = join(path, key)
        if v is None:
            if required:
                self.error(p, "required field is missing" if key not in m else "must not be null")
            return None
        if not isinstance(v, str):
            self.error(p, f"expected a string, got {describe(v)}")
            return None
        if not v:
            self.error(p, "must not be empty")
            return None
        return v

    def price(self, value: object, path: str) -> Decimal | None:
        """A price: a number or a decimal string, finite and >= 0. None (absent) stays None."""
        if value is None:
            return None
        d = to_decimal(value)
        if d is None:
            self.error(path, f"expected a price (a number or a decimal string), got {describe(value)}")
            return None
        if not d.is_finite():
            self.error(path, f"must be a finite price, got {describe(value)}")
            return None
        if d < 0:
            self.error(path, f"must not be negative, got {describe(value)}")
            return None
        return d


def to_decimal(value: object) -> Decimal | None:
    """The exact decimal a config or JSON value spells; floats (YAML) go through their shortest repr."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return Decimal("NaN")
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None
