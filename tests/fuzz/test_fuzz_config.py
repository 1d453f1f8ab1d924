"""Fuzzing the config loader: wrong types, unknown keys, YAML bombs, deep nesting, huge files.

Properties: loading never raises anything but ConfigError, in bounded time; a valid config with one
field made wrong gives exactly one error, and that error names the field.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzzkit import budget, json_values
from hypothesis import given
from hypothesis import strategies as st

from gateway_stats.config import ConfigError, guards, load_config, parse_config, parse_text

REPO = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((REPO / "config" / "gateway-stats.yaml").read_text())


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _leaves(v, (*path, i))
    return out


LEAVES = _leaves(BASE)


def _dotted(path: tuple[Any, ...]) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    cur: Any = doc
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value


def _load(data: object) -> list[str]:
    t0 = time.perf_counter()
    try:
        parse_config(data, "f.yaml")
        errors: list[str] = []
    except ConfigError as exc:
        errors = exc.errors
    assert time.perf_counter() - t0 < 2.0
    return errors


@budget(300)
@given(st.sampled_from(LEAVES), json_values)
def test_one_wrong_field_gives_one_error_naming_it(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(BASE)
    old: Any = doc
    for p in path:
        old = old[p]
    if isinstance(old, dict | list) and isinstance(value, dict | list):
        return  # a whole section replaced by another one is many changes (or missing fields), not one
    if isinstance(value, dict | list) and value:
        return  # a non-empty container brings content of its own: several changes, not one
    _set(doc, path, value)
    errors = _load(doc)
    if not errors:
        return  # the new value happens to be valid there
    assert len(errors) == 1, errors
    # The error names the field (or, for a list item that is no longer a mapping, the item itself).
    names = [_dotted(path[:i]) for i in range(len(path), 0, -1)]
    assert any(f"f.yaml: {n}" in errors[0] for n in names), (path, errors)


@budget(150)
@given(
    st.sampled_from(
        [
            (),
            ("gateway_stats",),
            ("gateway_stats", "limits"),
            ("gateway_stats", "metrics"),
            ("gateway_stats", "tracing"),
            ("attributes", 0),
            ("gateway_stats", "metrics", "extra_labels", 0),
        ]
    ),
    st.text(min_size=1, max_size=12).filter(lambda k: k not in ("_rules_",)),
    json_values,
)
def test_unknown_key_gives_one_error_naming_it(where: tuple[Any, ...], key: str, value: Any) -> None:
    doc = copy.deepcopy(BASE)
    cur: Any = doc
    for p in where:
        cur = cur[p]
    if key in cur:
        return
    cur[key] = value
    errors = _load(doc)
    assert len(errors) == 1, errors
    assert "unknown field" in errors[0] or "belongs at the top level" in errors[0], errors
    assert key in errors[0] or repr(key)[1:-1] in errors[0], errors


@budget(300)
@given(json_values)
def test_any_document_loads_or_fails_cleanly(doc: Any) -> None:
    _load(doc)


@budget(300)
@given(st.text(max_size=300))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    t0 = time.perf_counter()
    try:
        parse_text(text, "t.yaml")
    except ConfigError as exc:
        assert exc.errors and all(e.startswith("t.yaml") for e in exc.errors)
    assert time.perf_counter() - t0 < 2.0


# ------------------------------------------------------------------ found: crashes and hangs
def _laughs(levels: int) -> str:
    items = ['&a0 ["x","x","x","x","x","x","x","x","x"]']
    items += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    joined = ", ".join(items)
    return f"attributes:\n- {{key: k, value_source: fixed_value, value: v, default_value: [{joined}]}}\n"


def test_billion_laughs_is_one_error_in_bounded_time() -> None:
    """Was: accepted after exponential time (9 levels: ~100 s in the JSON-value check), and every
    ai_log would then have serialised 387 million strings."""
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_text(_laughs(9), "bomb.yaml")
    assert time.perf_counter() - t0 < 1.0
    assert len(info.value.errors) == 1
    assert "bomb.yaml: line 2" in info.value.errors[0] and "YAML bomb" in info.value.errors[0]


def test_shared_anchors_within_bounds_still_work() -> None:
    cfg = parse_text(
        "x_common: &c {apply_to_log: true}\n"
        if False
        else "attributes:\n- &a {key: k1, value_source: fixed_value, value: v, apply_to_log: true}\n"
        "- {key: k2, value_source: fixed_value, value: &v w, default_value: *v}\n"
    )
    assert [a.key for a in cfg.default.attributes][-2:] == ["k1", "k2"]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5_000,
        '{"a": ' * 5_000,
        "a: " + "[" * 5_000,
        "a: " + "{b: " * 5_000,
        "attributes: [{key: k, value_source: fixed_value, value: v, default_value: "
        + "[" * 3000
        + "]" * 3000
        + "}]",
        "a: &x [*x]",
    ],
    ids=["json-array", "json-object", "yaml-flow", "yaml-mapping", "yaml-in-field", "recursive-alias"],
)
def test_deep_nesting_is_a_config_error(text: str) -> None:
    """Was: RecursionError out of parse_text (check-config printed a traceback)."""
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_text(text, "deep.yaml")
    assert time.perf_counter() - t0 < 3.0
    assert len(info.value.errors) == 1 and info.value.errors[0].startswith("deep.yaml")


def test_huge_file_is_refused_without_parsing(tmp_path: Path) -> None:
    """Was: a 64 MiB file was read and parsed whole (PyYAML's pure-Python loader: minutes)."""
    p = tmp_path / "huge.yaml"
    with p.open("w") as fh:
        fh.write("attributes:\n")
        line = "- {key: k, value_source: fixed_value, value: " + "v" * 1000 + "}\n"
        for _ in range(64 * 1024):
            fh.write(line)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(str(p))
    assert time.perf_counter() - t0 < 1.0
    assert info.value.errors == [
        f"{p}: larger than the {guards.MAX_CONFIG_BYTES} bytes a config file may have"
    ]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("attributes", 1, "value_source"), None, "attributes[1].value_source"),
        (("attributes", 0, "value"), [], "attributes[0].value"),
        (
            ("gateway_stats", "metrics", "extra_labels", 0, "request_header"),
            [],
            "extra_labels[0].request_header",
        ),
    ],
)
def test_found_cascades_are_one_error(path: tuple[Any, ...], value: Any, field: str) -> None:
    """Found by test_one_wrong_field_gives_one_error_naming_it: each gave a second, derived error
    (`rule: only meaningful with ... no value_source`, `value: required with value_source ...`,
    `exactly one of request_header or attribute must be set`)."""
    doc = copy.deepcopy(BASE)
    _set(doc, path, value)
    errors = _load(doc)
    assert len(errors) == 1 and field in errors[0], errors
