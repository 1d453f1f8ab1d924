"""Reading raw documents field by field: the checker every parser uses, and the errors it reports.

Every problem names the file, the field path and what is wrong, with a suggestion for a near miss.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from gateway_stats.core.gjson import PathError, compile_path

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ errors


class ConfigError(ValueError):
    """Every problem found in a config; `str()` gives one problem per line."""

    def __init__(self, errors: Sequence[str] | str) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


# -------------------------------------------------------------------------------------------- reading

_TYPE_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "list",
    dict: "mapping",
    type(None): "null",
}


def describe(value: object) -> str:
    name = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list) or value is None:
        return name
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name} {text}"


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def suggest(word: str, choices: Iterable[str]) -> str | None:
    choices = list(choices)
    for c in choices:
        if _norm(c) == _norm(word):
            return c
    match = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if match:
        for c in choices:
            if c.lower() == match[0]:
                return c
    return None


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def at_index(path: str, index: int) -> str:
    return f"{path}[{index}]"


class Reader:
    """Collects errors while walking the document; typed getters return None when absent or invalid."""

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

    def fields(
        self,
        m: Mapping[Any, Any],
        path: str,
        known: Sequence[str],
        ignored: Sequence[str] = (),
        hints: Mapping[str, str] | None = None,
    ) -> None:
        """Report unknown (and non-string) field names."""
        for k in m:
            if not isinstance(k, str):
                self.error(path, f"field names must be strings, got {describe(k)}")
                continue
            if k in known or k in ignored:
                continue
            if hints and k in hints:
                self.error(join_path(path, k), f"unknown field ({hints[k]})")
                continue
            guess = suggest(k, known)
            if guess:
                self.error(join_path(path, k), f"unknown field (did you mean '{guess}'?)")
            else:
                self.error(join_path(path, k), f"unknown field (known fields: {', '.join(known)})")

    def choice(self, value: str, path: str, choices: Sequence[str]) -> bool:
        if value in choices:
            return True
        msg = f"unknown value '{value}' (expected one of: {', '.join(choices)}"
        guess = suggest(value, choices)
        msg += f"; did you mean '{guess}'?)" if guess else ")"
        self.error(path, msg)
        return False

    def string(self, m: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
        v = m.get(key)
        p = join_path(path, key)
        if v is None:
            if required:
                self.error(p, "required field is missing" if key not in m else "must not be null")
            return None
        if not isinstance(v, str):
            self.error(p, f"expected a string, got {describe(v)}")
            return None
        if required and not v:
            self.error(p, "must not be empty")
            return None
        return v

    def boolean(self, m: Mapping[str, Any], key: str, path: str) -> bool | None:
        v = m.get(key)
        if v is None:
            return None
        if not isinstance(v, bool):
            self.error(join_path(path, key), f"expected a boolean (true or false), got {describe(v)}")
            return None
        return v

    def integer(self, m: Mapping[str, Any], key: str, path: str, minimum: int = 1) -> int | None:
        v = m.get(key)
        if v is None:
            return None
        p = join_path(path, key)
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(p, f"expected an integer, got {describe(v)}")
            return None
        if v < minimum:
            self.error(p, f"must be >= {minimum}, got {v}")
            return None
        return v

    def strings(
        self, m: Mapping[str, Any], key: str, path: str, *, nonempty_items: bool = False
    ) -> tuple[str, ...] | None:
        v = m.get(key)
        if v is None:
            return None
        p = join_path(path, key)
        if not isinstance(v, list):
            self.error(p, f"expected a list of strings, got {describe(v)}")
            return None
        ok = True
        for i, item in enumerate(v):
            if not isinstance(item, str):
                self.error(at_index(p, i), f"expected a string, got {describe(item)}")
                ok = False
            elif nonempty_items and not item:
                self.error(at_index(p, i), "must not be empty")
                ok = False
        return tuple(v) if ok else None


def json_problem(value: object, depth: int = 0) -> str | None:
    if depth > 64:
        return "nested too deeply"
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    if isinstance(value, list):
        for item in value:
            problem = json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return f"mapping keys must be strings, got {describe(k)}"
            problem = json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"{describe(value)} is not a JSON value"


# ------------------------------------------------------------------------------------- path checking


@cache
def path_problem(path: str) -> str | None:
    """Why `path` cannot be compiled, or None."""
    try:
        compile_path(path)
    except PathError as exc:
        return str(exc) or type(exc).__name__
    except Exception as exc:  # a compiler bug must not take config loading down with it
        log.exception("compiling path %r failed unexpectedly", path)
        return f"could not be compiled ({type(exc).__name__}: {exc})"
    return None
