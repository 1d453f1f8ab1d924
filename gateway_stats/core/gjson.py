"""GJSON paths (tidwall/gjson syntax) evaluated on already-parsed JSON values.

Why: the Higress ai-statistics plugin, whose metrics and ai_log gateway-stats reproduces, picks values
out of request and response bodies with gjson paths (``usage.prompt_tokens``,
``choices.0.delta.content``, ``messages.#(role=="user")#.content``, ...). For parity we accept the
same syntax and return the same values, but we work on the Python objects orjson already produced
instead of re-scanning JSON text. A path is parsed once (``compile_path`` is cached) into a tuple of
small step objects; evaluation then runs once per body or SSE event, on the hot path, as a plain loop
over those steps: no regex, no string parsing, no re-serialisation. Plain ``key.0.key`` paths get a
dedicated tight loop. Paths starting with ``$`` are JSONPath and are delegated to jsonpath-ng.

get() returns the document's own objects (no copies), None for a JSON null, and MISSING when the
path does not resolve. gjson's query rules are kept: the element's JSON type decides how the query's
right-hand text is compared (strings as strings, numbers numerically, booleans against
``true``/``false``, null / objects / arrays never), and only elements that have the left-hand side
can match, whatever the operator; the ``~true``/``~false``/``~null``/``~*`` conversions are supported.

Deliberate differences from gjson, which scans raw text:

* the ``..`` (JSON Lines) prefix is not supported, and syntax gjson silently tolerates (empty
  components, unbalanced brackets, text after a query or modifier argument, unknown query operators,
  a dangling ``\\``) raises PathError, so configuration mistakes surface at load time;
* ``#`` and ``#(...)`` on an object give MISSING (gjson would look for a key literally named ``#``);
* values are never re-encoded: ``@pretty`` and ``@ugly`` return the value (``@pretty`` honours
  ``sortKeys``), ``@tostr`` gives compact JSON text, and ``@join`` cannot keep duplicate keys;
* custom modifiers (gjson.AddModifier) do not exist here; an unknown ``@name`` is an ordinary key,
  as in gjson.
"""

from __future__ import annotations

import functools
import json
import operator
import re
import threading
from collections.abc import Callable
from typing import Any, Final, NoReturn

import orjson

__all__ = ["MISSING", "CompiledPath", "PathError", "compile_path", "get"]


class _Missing:
    """Type of MISSING: a path that did not resolve (distinct from a JSON null, which is None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: object) -> _Missing:
        return self


MISSING: Final = _Missing()


class PathError(ValueError):
    """A syntactically invalid path; the message says what is wrong and at which position."""


# ----------------------------------------------------------------------------------- glob matching

_STAR: Final = 0  # glob token: any run of characters
_ANY: Final = 1  # glob token: exactly one character
_Token = str | int


class _Segment:
    """A fixed-length run of a glob pattern between two stars; '?' positions match any character."""

    __slots__ = ("length", "plain", "runs")

    def __init__(self, tokens: list[_Token]) -> None:
        self.length = len(tokens)
        runs: list[tuple[int, str]] = []  # (offset, literal text) between the '?' positions
        text: list[str] = []
        for k, t in enumerate(tokens):
            if isinstance(t, str):
                text.append(t)
                continue
            if text:
                runs.append((k - len(text), "".join(text)))
                text = []
        if text:
            runs.append((self.length - len(text), "".join(text)))
        self.runs = tuple(runs)
        # Without '?' the segment is plain text, and str methods do all the work.
        self.plain: str | None = None
        if all(isinstance(t, str) for t in tokens):
            self.plain = "".join(str(t) for t in tokens)

    def at(self, s: str, pos: int) -> bool:
        """Whether the segment matches s at pos (the caller has checked that it fits)."""
        if self.plain is not None:
            return s.startswith(self.plain, pos)
        return all(s.startswith(text, pos + off) for off, text in self.runs)

    def find(self, s: str, start: int, end: int) -> int:
        """Leftmost position in [start, end) where the whole segment fits and matches, or -1."""
        if self.plain is not None:
            return s.find(self.plain, start, end)
        for pos in range(start, end - self.length + 1):
            if self.at(s, pos):
                return pos
        return -1


class _Glob:
    """A '*' / '?' pattern, compiled once. Matching is linear-ish: stars are resolved greedily,
    leftmost first, which is exact for fixed-length segments (no backtracking blow-up)."""

    __slots__ = ("head", "mids", "minlen", "star", "tail")

    def __init__(self, tokens: list[_Token]) -> None:
        parts: list[list[_Token]] = [[]]
        for t in tokens:
            if not isinstance(t, str) and t == _STAR:
                parts.append([])
            else:
                parts[-1].append(t)
        self.star = len(parts) > 1
        self.head = _Segment(parts[0])
        self.tail = _Segment(parts[-1]) if self.star else _Segment([])
        self.mids = tuple(_Segment(p) for p in parts[1:-1] if p)
        self.minlen = self.head.length + self.tail.length + sum(m.length for m in self.mids)

    def match(self, s: str) -> bool:
        n = len(s)
        if not self.star:
            return n == self.head.length and self.head.at(s, 0)
        if n < self.minlen or not self.head.at(s, 0):
            return False
        end = n - self.tail.length
        if not self.tail.at(s, end):
            return False
        pos = self.head.length
        for seg in self.mids:
            found = seg.find(s, pos, end)
            if found < 0:
                return False
            pos = found + seg.length
        return True


def _glob_tokens(pattern: str) -> list[_Token]:
    """Tokens of a query pattern (tidwall/match syntax: '*', '?', backslash escapes)."""
    tokens: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            tokens.append(pattern[i + 1])
            i += 2
            continue
        tokens.append(_STAR if c == "*" else _ANY if c == "?" else c)
        i += 1
    return tokens


# ------------------------------------------------------------------------------------------- steps


class _Step:
    """One path component. apply() maps a value to a value or MISSING and never sees MISSING
    except for "special" steps (modifiers, multipaths, literals), which gjson also runs on nothing."""

    __slots__ = ()

    def apply(self, v: object) -> object:  # pragma: no cover - abstract
        raise NotImplementedError

    def registers(self, prev: object) -> bool:
        """Whether gjson, reaching this (last) component of a piped segment with `prev`, would still
        run the pipe after a miss (it does once it has entered the containing object or array)."""
        return isinstance(prev, (dict, list))


class _Key(_Step):
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def apply(self, v: object) -> object:
        if isinstance(v, dict):
            return v.get(self.key, MISSING)
        return MISSING


class _Index(_Step):
    """A numeric component: an index on arrays, the key of the same text on objects."""

    __slots__ = ("index", "key")

    def __init__(self, index: int, key: str) -> None:
        self.index = index
        self.key = key

    def apply(self, v: object) -> object:
        if isinstance(v, list):
            return v[self.index] if self.index < len(v) else MISSING
        if isinstance(v, dict):
            return v.get(self.key, MISSING)
        return MISSING


def _run_steps(steps: tuple[_Step, ...], v: object) -> object:
    for step in steps:
        v = step.apply(v)
        if v is MISSING:
            return v
    return v


class _Wild(_Step):
    """A key with '*' or '?'. Like gjson, keys are tried in object order and the first one for which
    the rest of the segment resolves wins (with nothing after it: simply the first matching key)."""

    __slots__ = ("glob", "rest")

    def __init__(self, glob: _Glob) -> None:
        self.glob = glob
        self.rest: tuple[_Step, ...] = ()

    def apply(self, v: object) -> object:
        if not isinstance(v, dict):
            return MISSING
        match, rest = self.glob.match, self.rest
        for k, item in v.items():
            if isinstance(k, str) and match(k):
                r = _run_steps(rest, item) if rest else item
                if r is not MISSING:
                    return r
        return MISSING


class _Count(_Step):
    __slots__ = ()

    def apply(self, v: object) -> object:
        return len(v) if isinstance(v, list) else MISSING


class _Map(_Step):
    """``#.rest``: rest (up to the next top-level '|') on every element; misses are dropped."""

    __slots__ = ("sub",)

    def __init__(self, sub: _Program) -> None:
        self.sub = sub

    def apply(self, v: object) -> object:
        if not isinstance(v, list):
            return MISSING
        run = self.sub.run
        out = []
        for item in v:
            r = run(item)
            if r is not MISSING:
                out.append(r)
        return out

    def registers(self, prev: object) -> bool:
        return isinstance(prev, list)


_Cond = Callable[[object], bool]


class _Query(_Step):
    """``#(cond)`` (first match) or ``#(cond)#`` (all matches), optionally followed by ``.rest``,
    which like in gjson is evaluated on each match (and mapped, for ``#``)."""

    __slots__ = ("cond", "match_all", "qkey", "qpath", "sub")

    def __init__(self, cond: _Cond, qpath: _Program | None, match_all: bool, sub: _Program | None) -> None:
        self.cond = cond
        self.qpath = qpath
        self.match_all = match_all
        self.sub = sub
        # The usual left-hand side is one plain key (role=="user"): look it up directly.
        simple = qpath.simple if qpath is not None else None
        self.qkey = simple[0][0] if simple is not None and len(simple) == 1 and simple[0][1] < 0 else None

    def _matches(self, item: object) -> bool:
        qpath = self.qpath
        if type(item) is dict and self.qkey is not None:
            return self.cond(item.get(self.qkey, MISSING))
        if isinstance(item, (dict, list)):
            # A bare query (no left-hand path) only compares scalar elements.
            return self.cond(qpath.run(item) if qpath is not None else MISSING)
        if qpath is not None:
            return False
        return self.cond(item)

    def apply(self, v: object) -> object:
        if not isinstance(v, list):
            return MISSING
        sub = self.sub
        if not self.match_all:
            for item in v:
                if self._matches(item):
                    return sub.run(item) if sub is not None else item
            return MISSING
        out = []
        for item in v:
            if self._matches(item):
                r = sub.run(item) if sub is not None else item
                if r is not MISSING:
                    out.append(r)
        return out


class _Modifier(_Step):
    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: Callable[[object], object]) -> None:
        self.name = name
        self.fn = fn

    def apply(self, v: object) -> object:
        return self.fn(v)


class _Multi(_Step):
    """``{a,"n":b}`` (object) or ``[a,b]`` (array) built from sub-paths; misses are dropped."""

    __slots__ = ("as_object", "members")

    def __init__(self, as_object: bool, members: tuple[tuple[str, _Program], ...]) -> None:
        self.as_object = as_object
        self.members = members

    def apply(self, v: object) -> object:
        if self.as_object:
            obj: dict[str, object] = {}
            for name, prog in self.members:
                r = prog.run(v)
                if r is not MISSING:
                    obj[name] = r
            return obj
        arr = []
        for _, prog in self.members:
            r = prog.run(v)
            if r is not MISSING:
                arr.append(r)
        return arr


class _Literal(_Step):
    """``!true``, ``!"text"``, ``!{...}``: a constant (gjson "JSON literals")."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def apply(self, v: object) -> object:
        return self.value


# Modifiers that produce a value even from nothing (gjson runs them on an empty input).
_GENERATIVE_MODIFIERS: Final = frozenset({"keys", "values", "tostr", "dig"})


def _is_generative(step: _Step) -> bool:
    if isinstance(step, _Modifier):
        return step.name in _GENERATIVE_MODIFIERS
    return isinstance(step, (_Multi, _Literal))


class _Program:
    """A compiled gjson path: segments separated by pipes. A plain segment is a run of key / index
    / wildcard / # / query steps applied left to right; a special segment is one modifier,
    multipath or literal. As in gjson, the rest of the path still runs after a miss when a later
    segment can build a value from nothing and the miss happened inside an object or array."""

    __slots__ = ("chunks", "revive", "simple", "special")

    def __init__(self, chunks: list[tuple[_Step, ...]], special: list[bool]) -> None:
        self.chunks = tuple(chunks)
        self.special = tuple(special)
        generative = [sp and _is_generative(c[0]) for c, sp in zip(chunks, special, strict=True)]
        self.revive = tuple(any(generative[i + 1 :]) for i in range(len(chunks)))
        self.simple: tuple[tuple[str, int], ...] | None = None
        if len(chunks) == 1 and not special[0]:
            simple: list[tuple[str, int]] = []
            for step in chunks[0]:
                if type(step) is _Key:
                    simple.append((step.key, -1))
                elif type(step) is _Index:
                    simple.append((step.key, step.index))
                else:
                    break
            else:
                self.simple = tuple(simple)

    def run(self, doc: object) -> object:
        simple = self.simple
        if simple is not None:
            cur = doc
            for key, index in simple:
                if isinstance(cur, dict):
                    cur = cur.get(key, MISSING)
                    if cur is MISSING:
                        return cur
                elif isinstance(cur, list) and 0 <= index < len(cur):
                    cur = cur[index]
                else:
                    return MISSING
            return cur
        return self.run_general(doc)

    def run_general(self, doc: object) -> object:
        cur = doc
        last = len(self.chunks) - 1
        for i, steps in enumerate(self.chunks):
            inp = cur
            if self.special[i]:
                cur = steps[0].apply(inp)
            else:
                if inp is MISSING:
                    return MISSING
                for step in steps:
                    cur = step.apply(cur)
                    if cur is MISSING:
                        break
            if cur is MISSING and i < last:
                if not self.revive[i]:
                    return MISSING
                if not self.special[i] and not self._registered(steps, inp):
                    return MISSING
        return cur

    @staticmethod
    def _registered(steps: tuple[_Step, ...], inp: object) -> bool:
        prev = _run_steps(steps[:-1], inp)
        return prev is not MISSING and steps[-1].registers(prev)


def _finish_plain(steps: list[_Step]) -> tuple[_Step, ...]:
    """Close a plain segment: the steps after a wildcard belong to it (it may try several keys)."""
    for k, step in enumerate(steps):
        if isinstance(step, _Wild) and k < len(steps) - 1:
            step.rest = _finish_plain(steps[k + 1 :])
            return tuple(steps[: k + 1])
    return tuple(steps)


class _JsonPath:
    """``$``-prefixed paths: jsonpath-ng. One match gives its value, several a list, none MISSING."""

    __slots__ = ("expr",)

    def __init__(self, expr: Any) -> None:
        self.expr = expr

    def run(self, doc: object) -> object:
        matches = self.expr.find(doc)
        if not matches:
            return MISSING
        if len(matches) == 1:
            return matches[0].value
        return [m.value for m in matches]


# --------------------------------------------------------------------------------------- modifiers


def _gjson_bool(v: object) -> bool:
    """gjson Result.Bool(): true, a non-zero number, or a string strconv.ParseBool reads as true."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return v.lower() in ("1", "t", "true")
    if isinstance(v, (int, float)):
        return v != 0
    return False


def _option(arg: object, name: str) -> bool:
    return isinstance(arg, dict) and _gjson_bool(arg.get(name))


def _m_identity(v: object) -> object:
    return v


def _m_reverse(v: object) -> object:
    if isinstance(v, list):
        return v[::-1]
    if isinstance(v, dict):
        return dict(reversed(v.items()))
    return v


def _m_keys(v: object) -> object:
    if v is MISSING:
        return []
    if isinstance(v, dict):
        return list(v)
    if isinstance(v, list):
        return [None] * len(v)
    return [None]


def _m_values(v: object) -> object:
    if v is MISSING:
        return []
    if isinstance(v, dict):
        return list(v.values())
    if isinstance(v, list):
        return v
    return [v]


def _flatten(items: list[Any], deep: bool) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, list):
            out.extend(_flatten(item, True) if deep else item)
        else:
            out.append(item)
    return out


def _m_join(v: object) -> object:
    if not isinstance(v, list):
        return v
    out: dict[Any, Any] = {}
    for item in v:
        if isinstance(item, dict):
            out.update(item)
    return out


def _to_json_text(v: object) -> str:
    try:
        return orjson.dumps(v).decode()
    except TypeError:  # integers beyond 64 bits, non-string keys: the stdlib copes
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _m_tostr(v: object) -> object:
    return "" if v is MISSING else _to_json_text(v)


def _m_fromstr(v: object) -> object:
    if isinstance(v, str):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return MISSING
    if v is None:
        return MISSING  # gjson: a null's string form is empty, which is not JSON
    return v


def _m_group(v: object) -> object:
    if not isinstance(v, dict):
        return MISSING
    rows: list[dict[Any, Any]] = []
    for key, column in v.items():
        if isinstance(column, list):
            for i, item in enumerate(column):
                if i == len(rows):
                    rows.append({})
                rows[i][key] = item
    return rows


def _sort_keys(v: object) -> object:
    if isinstance(v, dict):
        return {k: _sort_keys(v[k]) for k in sorted(v, key=str)}
    if isinstance(v, list):
        return [_sort_keys(item) for item in v]
    return v


_DIG_MAX_DEPTH: Final = 10_000  # far beyond any parsed JSON; stops a self-referencing Python object


def _dig(sub: _Program | None, v: object) -> object:
    """@dig:path - the path's value at every depth (pre-order), like a recursive descent."""
    out: list[object] = []
    if sub is None:
        return out
    stack: list[tuple[object, int]] = [(v, 0)]
    while stack:
        node, depth = stack.pop()
        r = sub.run(node)
        if r is not MISSING:
            out.append(r)
        if depth >= _DIG_MAX_DEPTH:
            raise RecursionError("@dig: document too deep (or cyclic)")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in reversed(node.values()))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in reversed(node))
    return out


def _make_modifier(name: str, arg: object, sub: _Program | None) -> _Modifier:
    fn: Callable[[object], object]
    if name in ("this", "valid", "ugly"):
        fn = _m_identity
    elif name == "pretty":
        fn = _sort_keys if _option(arg, "sortKeys") else _m_identity
    elif name == "reverse":
        fn = _m_reverse
    elif name == "keys":
        fn = _m_keys
    elif name == "values":
        fn = _m_values
    elif name == "flatten":
        deep = _option(arg, "deep")
        fn = functools.partial(_m_flatten, deep=deep)
    elif name == "join":
        fn = _m_join
    elif name == "tostr":
        fn = _m_tostr
    elif name == "fromstr":
        fn = _m_fromstr
    elif name == "group":
        fn = _m_group
    else:  # dig
        fn = functools.partial(_dig, sub)
    return _Modifier(name, fn)


def _m_flatten(v: object, deep: bool) -> object:
    return _flatten(v, deep) if isinstance(v, list) else v


_MODIFIERS: Final = frozenset(
    {
        "reverse",
        "this",
        "keys",
        "values",
        "flatten",
        "join",
        "valid",
        "pretty",
        "ugly",
        "tostr",
        "fromstr",
        "group",
        "dig",
    }
)


# ----------------------------------------------------------------------------------------- queries


def _go_parse_float(text: str) -> float:
    """strconv.ParseFloat as gjson uses it for numeric comparisons (0 when unparsable)."""
    if "_" in text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    if "x" in text.lower():
        try:
            return float.fromhex(text)
        except ValueError:
            pass
    return 0.0


def _exists(v: object) -> bool:
    return v is not MISSING


def _never(v: object) -> bool:
    return False


def _truthy(v: object) -> bool:
    if v is True:
        return True
    if isinstance(v, str):
        return v.lower() in ("1", "t", "true")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    return False


def _falsy(v: object) -> bool:
    if v is None or v is MISSING or v is False:
        return True
    if isinstance(v, str):
        return v.lower() in ("0", "f", "false")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v == 0
    return False


def _nullish(v: object) -> bool:
    return v is None or v is MISSING


_TILDE: Final[dict[str, _Cond]] = {"*": _exists, "null": _nullish, "true": _truthy, "false": _falsy}
_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _make_cond(op: str, rpv: str, tilde: str | None) -> _Cond:
    """The element test of a query, following gjson: the element's JSON type decides how the
    query's right-hand text is compared; only elements where the left side exists can match
    (except with the ~ boolean conversions, where a missing value is null-ish and false-ish)."""
    if not op:
        return _exists
    if tilde is not None:
        conv = _TILDE[tilde]
        if op in ("=", ">="):
            return conv
        if op in ("!=", "<", "<="):
            return lambda v: not conv(v)
        return _never
    if op in ("%", "!%"):
        glob = _Glob(_glob_tokens(rpv))
        want = op == "%"

        def like(v: object) -> bool:
            return isinstance(v, str) and glob.match(v) is want

        return like
    cmp = _COMPARE[op]
    num = _go_parse_float(rpv)
    if_true = {"=": rpv == "true", "!=": rpv != "true", ">": rpv == "false", ">=": True}.get(op, False)
    if_false = {"=": rpv == "false", "!=": rpv != "false", "<": rpv == "true", "<=": True}.get(op, False)

    def compare(v: object) -> bool:
        if isinstance(v, str):
            return cmp(v, rpv)
        if isinstance(v, bool):
            return if_true if v else if_false
        if isinstance(v, (int, float)):
            return cmp(v, num)
        return False  # null, object, array, MISSING

    return compare


# ------------------------------------------------------------------------------------------ parser

_CLOSERS: Final = {"(": ")", "[": "]", "{": "}"}
_NUMBER_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NOT_SIMPLE_NAME: Final = frozenset("[]{}()#|!")


def _name_of_last(path: str) -> str:
    """gjson's default multipath key: the text after the last unescaped '.' or '|', or '_'."""
    last = path
    for k in range(len(path) - 1, -1, -1):
        if path[k] in ".|" and not (k > 0 and path[k - 1] == "\\"):
            last = path[k + 1 :]
            break
    if any(c < " " or c in _NOT_SIMPLE_NAME for c in last):
        return "_"
    return last


class _Parser:
    __slots__ = ("src",)

    def __init__(self, src: str) -> None:
        self.src = src

    def fail(self, pos: int, msg: str) -> NoReturn:
        raise PathError(f"{msg} at position {pos}")

    def trim(self, start: int, end: int) -> tuple[int, int]:
        src = self.src
        while start < end and src[start] <= " ":
            start += 1
        while end > start and src[end - 1] <= " ":
            end -= 1
        return start, end

    def skip_string(self, i: int, end: int) -> int:
        """src[i] is '"': the index just after the closing quote."""
        src = self.src
        j = i + 1
        while j < end:
            c = src[j]
            if c == "\\":
                j += 2
            elif c == '"':
                return j + 1
            else:
                j += 1
        self.fail(i, "unterminated string")

    def skip_group(self, i: int, end: int) -> int:
        """src[i] is '(', '[' or '{': the index just after its matching closer."""
        src = self.src
        depth = 0
        j = i
        while j < end:
            c = src[j]
            if c == "\\":
                j += 2
                continue
            if c == '"':
                j = self.skip_string(j, end)
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
                if depth == 0:
                    if c != _CLOSERS[src[i]]:
                        self.fail(j, f"{c!r} does not close {src[i]!r} opened at position {i}")
                    return j + 1
            j += 1
        self.fail(i, f"unbalanced {src[i]!r}")

    def parse_program(self, start: int, end: int, stop_at_pipe: bool) -> tuple[_Program, int]:
        """Parse src[start:end] as a full path (a gjson Get). With stop_at_pipe, stop before the
        first top-level '|' (the mapped part of ``#.`` and of queries ends there)."""
        src = self.src
        chunks: list[tuple[_Step, ...]] = []
        special: list[bool] = []
        steps: list[_Step] = []

        def flush() -> None:
            if steps:
                chunks.append(_finish_plain(steps))
                special.append(False)
                steps.clear()

        def add_special(step: _Step) -> None:
            flush()
            chunks.append((step,))
            special.append(True)

        i = start
        get_start = True  # at the start of a gjson Get: where '!' literals are recognised
        while True:
            if i >= end:
                self.fail(i, "empty path" if i == start else "missing path component after separator")
            c = src[i]
            if c in ".|":
                self.fail(i, f"empty path component before {c!r}")
            was_special = False
            literal = self.parse_literal(i, end) if get_start and c == "!" else None
            modifier = self.parse_modifier(i, end) if literal is None and c == "@" else None
            if literal is not None:
                add_special(literal[0])
                i, was_special = literal[1], True
            elif modifier is not None:
                add_special(modifier[0])
                i, was_special = modifier[1], True
            elif c in "{[":
                multi, i = self.parse_multi(i, end)
                add_special(multi)
                was_special = True
            elif c == "#" and i + 1 < end and src[i + 1] in "([":
                query, i = self.parse_query(i, end)
                steps.append(query)
            elif c == "#" and (i + 1 == end or src[i + 1] in ".|"):
                if i + 1 < end and src[i + 1] == ".":
                    sub, i = self.parse_program(i + 2, end, True)
                    steps.append(_Map(sub))
                else:
                    steps.append(_Count())
                    i += 1
            else:
                key, i = self.parse_key(i, end)
                steps.append(key)
            if i >= end:
                break
            sep = src[i]
            if sep == "|":
                if stop_at_pipe:
                    break
                flush()
                get_start = True
            elif sep == ".":
                get_start = was_special  # after a modifier or multipath, the rest is a fresh Get
            else:
                self.fail(i, f"unexpected {sep!r} after path component")
            i += 1
        flush()
        return _Program(chunks, special), i

    def parse_key(self, i: int, end: int) -> tuple[_Step, int]:
        src = self.src
        start = i
        chars: list[str] = []
        tokens: list[_Token] = []
        wild = escaped = False
        while i < end:
            c = src[i]
            if c == "\\":
                if i + 1 >= end:
                    self.fail(i, "dangling '\\' escape")
                chars.append(src[i + 1])
                tokens.append(src[i + 1])
                escaped = True
                i += 2
                continue
            if c in ".|":
                break
            if c in "*?":
                wild = True
                tokens.append(_STAR if c == "*" else _ANY)
            else:
                tokens.append(c)
            chars.append(c)
            i += 1
        if wild:
            return _Wild(_Glob(tokens)), i
        raw = src[start:i]
        if not escaped and raw.isascii() and raw.isdigit():
            return _Index(int(raw), raw), i
        return _Key("".join(chars)), i

    def parse_literal(self, i: int, end: int) -> tuple[_Step, int] | None:
        """``!`` followed by a JSON value or true/false/null/nan/inf; None when not a literal."""
        src = self.src
        a = i + 1
        if a >= end:
            return None
        c = src[a]
        if c in '{["':
            stop = self.skip_string(a, end) if c == '"' else self.skip_group(a, end)
            try:
                return _Literal(orjson.loads(src[a:stop])), stop
            except orjson.JSONDecodeError:
                self.fail(a, "invalid JSON literal")
        if c == "-" or c.isdigit():
            m = _NUMBER_RE.match(src, a, end)
            if m is None:
                self.fail(a, "invalid number literal")
            return _Literal(orjson.loads(m.group())), m.end()
        stop = a
        while stop < end and src[stop] not in ".|":
            stop += 1
        word = src[a:stop]
        if word in ("true", "false", "null"):
            return _Literal({"true": True, "false": False, "null": None}[word]), stop
        if word.lower() in ("nan", "inf"):
            return _Literal(float(word)), stop
        return None  # gjson: not a literal, so an ordinary key such as "!x"

    def parse_modifier(self, i: int, end: int) -> tuple[_Step, int] | None:
        """``@name`` or ``@name:arg`` for a known modifier; None otherwise (then it is a key)."""
        src = self.src
        k = i + 1
        while k < end and src[k] not in ".|:":
            k += 1
        name = src[i + 1 : k]
        if name not in _MODIFIERS:
            return None
        arg: object = None
        sub: _Program | None = None
        if k < end and src[k] == ":":
            a = k + 1
            if a < end and src[a] in '{["':
                stop = self.skip_string(a, end) if src[a] == '"' else self.skip_group(a, end)
                json_arg = True
            else:  # a plain argument runs to the next top-level '|', as in gjson
                stop = a
                while stop < end and src[stop] != "|":
                    if src[stop] in "{[(":
                        stop = self.skip_group(stop, end)
                    elif src[stop] == '"':
                        stop = self.skip_string(stop, end)
                    else:
                        stop += 1
                json_arg = False
            if name == "dig":
                if stop > a:
                    sub = self.parse_program(a, stop, False)[0]
            elif json_arg:
                try:
                    arg = orjson.loads(src[a:stop])
                except orjson.JSONDecodeError:
                    self.fail(a, f"invalid JSON argument for @{name}")
            k = stop
        return _make_modifier(name, arg, sub), k

    def parse_multi(self, i: int, end: int) -> tuple[_Step, int]:
        src = self.src
        stop = self.skip_group(i, end)
        inner, inner_end = i + 1, stop - 1
        members: list[tuple[str, _Program]] = []
        if inner < inner_end:
            depth = 0
            member = inner
            colon = -1
            in_modifier = False
            j = inner
            bounds: list[tuple[int, int, int]] = []
            while j < inner_end:
                c = src[j]
                if c == "\\":
                    j += 2
                    continue
                if c == '"':
                    j = self.skip_string(j, inner_end)
                    continue
                if c == "@" and (j == member or src[j - 1] in ".|"):
                    in_modifier = True  # a modifier argument's ':' does not name the member
                elif c == ":" and depth == 0 and colon < 0 and not in_modifier:
                    colon = j
                elif c == "," and depth == 0:
                    bounds.append((member, colon, j))
                    member, colon, in_modifier = j + 1, -1, False
                elif c in "([{":
                    depth += 1
                elif c in ")]}":
                    depth -= 1
                j += 1
            bounds.append((member, colon, inner_end))
            for m_start, m_colon, m_end in bounds:
                p_start = m_start if m_colon < 0 else m_colon + 1
                if p_start >= m_end:
                    self.fail(p_start, "empty multipath member")
                prog = self.parse_program(p_start, m_end, False)[0]
                if m_colon < 0:
                    name = _name_of_last(src[p_start:m_end])
                else:
                    name = src[m_start:m_colon]
                    if name.startswith('"'):
                        try:
                            decoded = orjson.loads(name)
                        except orjson.JSONDecodeError:
                            decoded = None
                        if isinstance(decoded, str):
                            name = decoded
                members.append((name, prog))
        return _Multi(src[i] == "{", tuple(members)), stop

    def parse_query(self, i: int, end: int) -> tuple[_Step, int]:
        src = self.src
        stop = self.skip_group(i + 1, end)
        cond, qpath = self.parse_condition(i + 2, stop - 1)
        match_all = stop < end and src[stop] == "#"
        if match_all:
            stop += 1
        sub: _Program | None = None
        if stop < end and src[stop] == ".":
            sub, stop = self.parse_program(stop + 1, end, True)
        return _Query(cond, qpath, match_all, sub), stop

    def parse_condition(self, start: int, end: int) -> tuple[_Cond, _Program | None]:
        src = self.src
        depth = 0
        j = start
        op_pos = -1
        while j < end:
            c = src[j]
            if depth == 0 and c in "!=<>%":
                op_pos = j
                break
            if c == "\\":
                j += 2
                continue
            if c == '"':
                j = self.skip_string(j, end)
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            j += 1
        p_start, p_end = self.trim(start, end if op_pos < 0 else op_pos)
        qpath = self.parse_program(p_start, p_end, False)[0] if p_start < p_end else None
        if op_pos < 0:
            if qpath is None:
                self.fail(start, "empty query")
            return _exists, qpath
        two = src[op_pos : op_pos + 2]
        if two in ("==", "!=", "<=", ">=", "!%"):
            op, v_start = ("=" if two == "==" else two), op_pos + 2
        elif src[op_pos] in "=<>%":
            op, v_start = src[op_pos], op_pos + 1
        else:
            self.fail(op_pos, "invalid query operator (expected ==, !=, <, <=, >, >=, % or !%)")
        v_start, v_end = self.trim(v_start, end)
        text = src[v_start:v_end]
        tilde: str | None = None
        if text.startswith('"'):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                value = None
            if not isinstance(value, str):
                self.fail(v_start, "invalid string in query")
            rpv = value
        elif text.startswith("~"):
            tilde = text[1:]
            if tilde not in _TILDE:
                self.fail(v_start, "invalid '~' conversion (expected ~true, ~false, ~null or ~*)")
            rpv = "true"
        else:
            rpv = text  # gjson compares against the raw text: numbers, true/false/null, bare words
        return _make_cond(op, rpv, tilde), qpath


# ---------------------------------------------------------------------------------------- public API

_jsonpath_lock = threading.Lock()  # jsonpath-ng's PLY parser is not known to be thread-safe


class CompiledPath:
    """A compiled path. get() returns the value (the document's own object, not a copy) or MISSING,
    and never raises, whatever the document."""

    __slots__ = ("_prog", "_simple", "source")

    def __init__(self, source: str, prog: _Program | _JsonPath) -> None:
        self.source = source
        self._prog = prog
        self._simple = prog.simple if isinstance(prog, _Program) else None

    def __repr__(self) -> str:
        return f"CompiledPath({self.source!r})"

    def get(self, doc: object) -> object:
        try:
            simple = self._simple
            if simple is None:
                return self._prog.run(doc)
            cur = doc
            for key, index in simple:
                if type(cur) is dict:
                    cur = cur.get(key, MISSING)
                    if cur is MISSING:
                        return cur
                elif type(cur) is list:
                    if not 0 <= index < len(cur):
                        return MISSING
                    cur = cur[index]
                elif isinstance(cur, (dict, list)):
                    return self._prog.run(doc)  # dict / list subclasses: the general loop
                else:
                    return MISSING
            return cur
        except Exception:
            return MISSING


@functools.lru_cache(maxsize=4096)
def compile_path(path: str) -> CompiledPath:
    """Compile a gjson path (or a ``$`` JSONPath) once; raises PathError when it is invalid."""
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, not {type(path).__name__}")
    if path.startswith("$"):
        try:
            from jsonpath_ng.ext import parse as jsonpath_parse

            with _jsonpath_lock:
                expr = jsonpath_parse(path)
        except Exception as exc:
            raise PathError(f"invalid JSONPath: {exc}") from exc
        return CompiledPath(path, _JsonPath(expr))
    if path.startswith(".."):
        raise PathError("the '..' (JSON Lines) prefix is not supported at position 0")
    prog, _ = _Parser(path).parse_program(0, len(path), False)
    return CompiledPath(path, prog)


def get(doc: object, path: str) -> object:
    """compile_path(path).get(doc)."""
    return compile_path(path).get(doc)
