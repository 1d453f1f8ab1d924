"""gateway_stats.core.gjson: gjson path syntax on parsed JSON, with Higress (tidwall/gjson) parity.

Expected values come from the gjson SYNTAX.md examples and from gjson's documented semantics.
Timing is not asserted here; run this file directly for the hand-run benchmark:

    .venv/bin/python tests/test_gjson.py
"""

from __future__ import annotations

import collections
import copy
import json
import pickle
import random
from typing import Any

import pytest

from gateway_stats.core.gjson import MISSING, CompiledPath, PathError, compile_path, get

# The example document of gjson's README / SYNTAX.md.
README: dict[str, Any] = {
    "name": {"first": "Tom", "last": "Anderson"},
    "age": 37,
    "children": ["Sara", "Alex", "Jack"],
    "fav.movie": "Deer Hunter",
    "friends": [
        {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]},
        {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]},
        {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]},
    ],
}
DALE, ROGER, JANE = README["friends"]

# SYNTAX.md's "~" (convert to boolean) example.
VALS: dict[str, Any] = {
    "vals": [
        {"a": 1, "b": True},
        {"a": 2, "b": True},
        {"a": 3, "b": False},
        {"a": 4, "b": "0"},
        {"a": 5, "b": 0},
        {"a": 6, "b": "1"},
        {"a": 7, "b": 1},
        {"a": 8, "b": "true"},
        {"a": 9, "b": False},
        {"a": 10, "b": None},
        {"a": 11},
    ]
}

# Chat-completion shapes: a request, a streamed chunk, the final usage chunk, a non-streamed response.
REQUEST: dict[str, Any] = {
    "model": "qwen-max",
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Tell me a joke"},
    ],
    "stream": True,
    "stream_options": {"include_usage": True},
}
CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "model": "qwen-max",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Why"}, "finish_reason": None}],
    "usage": None,
}
FINAL_CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "choices": [],
    "usage": {"prompt_tokens": 23, "completion_tokens": 17, "total_tokens": 40},
}
RESPONSE: dict[str, Any] = {
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Because."}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Also."}, "finish_reason": "length"},
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}

# Query operators on mixed elements.
ITEMS: dict[str, Any] = {
    "items": [
        {"id": 1, "name": "alpha", "n": 5, "ok": True, "tag": "yes"},
        {"id": 2, "name": "beta", "n": 10, "ok": False, "tag": None},
        {"id": 3, "name": "gamma", "n": 5.5, "tag": "no"},
        {"id": 4, "n": "7", "ok": "true"},
        {"id": 5, "name": "Delta", "nested": {"k": "v"}},
        "scalar",
        7,
    ]
}

DOCS: dict[str, Any] = {
    "readme": README,
    "vals": VALS,
    "request": REQUEST,
    "chunk": CHUNK,
    "final": FINAL_CHUNK,
    "response": RESPONSE,
    "items": ITEMS,
}


def same(a: object, b: object) -> bool:
    """Equality that also tells 1 from True from 1.0 and checks object key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# (document, path, expected)
CASES: list[tuple[str, str, object]] = [
    # SYNTAX.md: basic
    ("readme", "name.last", "Anderson"),
    ("readme", "name.first", "Tom"),
    ("readme", "age", 37),
    ("readme", "children", ["Sara", "Alex", "Jack"]),
    ("readme", "children.0", "Sara"),
    ("readme", "children.1", "Alex"),
    ("readme", "friends.1", ROGER),
    ("readme", "friends.1.first", "Roger"),
    # wildcards and escapes
    ("readme", "child*.2", "Jack"),
    ("readme", "c?ildren.0", "Sara"),
    ("readme", r"fav\.movie", "Deer Hunter"),
    ("readme", "fav.movie", MISSING),
    ("readme", "*.first", "Tom"),
    # arrays
    ("readme", "friends.#", 3),
    ("readme", "friends.#.age", [44, 68, 47]),
    ("readme", "friends.#.nets.0", ["ig", "fb", "ig"]),
    ("readme", "friends.#.nets|0", ["ig", "fb", "tw"]),
    ("readme", "friends.#.nets.#", [3, 2, 2]),
    ("readme", "friends.#.age|#", 3),
    ("readme", "friends.#.nope", []),
    ("readme", "friends.#.nets.@reverse", [["tw", "fb", "ig"], ["tw", "fb"], ["tw", "ig"]]),
    ("readme", "children.#.x", []),
    ("readme", "name.#", MISSING),
    # queries
    ("readme", 'friends.#(last=="Murphy").first', "Dale"),
    ("readme", 'friends.#(last=="Murphy")#.first', ["Dale", "Jane"]),
    ("readme", "friends.#(age>45)#.last", ["Craig", "Murphy"]),
    ("readme", 'friends.#(first%"D*").last', "Murphy"),
    ("readme", 'friends.#(first!%"D*").last', "Craig"),
    ("readme", 'children.#(!%"*a*")', "Alex"),
    ("readme", 'children.#(%"*a*")#', ["Sara", "Jack"]),
    ("readme", 'friends.#(nets.#(=="fb"))#.first', ["Dale", "Roger"]),
    ("readme", 'friends.#(name.first=="Dale")', MISSING),
    ("readme", "friends.#(first=Dale).nets.@reverse", ["tw", "fb", "ig"]),
    ("readme", 'friends.#[last=="Craig"].first', "Roger"),
    ("readme", "friends.#( age >= 47 )#.first", ["Roger", "Jane"]),
    ("readme", 'friends.#(last=="Nobody")', MISSING),
    ("readme", 'friends.#(last=="Nobody")#', []),
    ("readme", 'friends.#(last=="Nobody")#.first', []),
    ("readme", 'friends.#(last=="Nobody")#|#', 0),
    # dot vs pipe (the SYNTAX.md table)
    ("readme", "friends.0.first", "Dale"),
    ("readme", "friends|0.first", "Dale"),
    ("readme", "friends.0|first", "Dale"),
    ("readme", "friends|0|first", "Dale"),
    ("readme", "friends|#", 3),
    ("readme", 'friends.#(last="Murphy")#', [DALE, JANE]),
    ("readme", 'friends.#(last="Murphy")#.first', ["Dale", "Jane"]),
    ("readme", 'friends.#(last="Murphy")#|first', MISSING),
    ("readme", 'friends.#(last="Murphy")#.0', []),
    ("readme", 'friends.#(last="Murphy")#|0', DALE),
    ("readme", 'friends.#(last="Murphy")#.#', []),
    ("readme", 'friends.#(last="Murphy")#|#', 2),
    # modifiers
    ("readme", "children.@reverse", ["Jack", "Alex", "Sara"]),
    ("readme", "children.@reverse.0", "Jack"),
    ("readme", "children|@reverse|0", "Jack"),
    ("readme", "children.@reverse.@reverse", ["Sara", "Alex", "Jack"]),
    ("readme", "name.@reverse", {"last": "Anderson", "first": "Tom"}),
    ("readme", "age.@reverse", 37),
    ("readme", "@reverse.friends.0.first", "Dale"),
    ("readme", "@this.name.first", "Tom"),
    ("readme", "@keys", ["name", "age", "children", "fav.movie", "friends"]),
    ("readme", "name.@keys", ["first", "last"]),
    ("readme", "age.@keys", [None]),
    ("readme", "children.@keys", [None, None, None]),
    ("readme", "name.@values", ["Tom", "Anderson"]),
    ("readme", "age.@values", [37]),
    ("readme", "children.@values", ["Sara", "Alex", "Jack"]),
    ("readme", "friends.@join", {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]}),
    ("readme", "friends.#.nets.@flatten", [["ig", "fb", "tw"], ["fb", "tw"], ["ig", "tw"]]),
    ("readme", "friends.#.nets|@flatten", ["ig", "fb", "tw", "fb", "tw", "ig", "tw"]),
    ("readme", "name.@tostr", '{"first":"Tom","last":"Anderson"}'),
    ("readme", "name.first.@tostr", '"Tom"'),
    ("readme", "name.@tostr.@fromstr", {"first": "Tom", "last": "Anderson"}),
    ("readme", "age.@fromstr", 37),
    ("readme", "@dig:first", ["Tom", "Dale", "Roger", "Jane"]),
    ("readme", "friends.@dig:nets.0", ["ig", "fb", "ig"]),
    ("readme", "@foo", MISSING),
    # multipaths and literals
    (
        "readme",
        '{name.first,age,"the_murphys":friends.#(last="Murphy")#.first}',
        {"first": "Tom", "age": 37, "the_murphys": ["Dale", "Jane"]},
    ),
    (
        "readme",
        '{name.first,age,"company":!"Happysoft","employed":!true}',
        {"first": "Tom", "age": 37, "company": "Happysoft", "employed": True},
    ),
    ("readme", "[name.first,age,nope]", ["Tom", 37]),
    ("readme", "[name.first,age].1", 37),
    ("readme", "[name.first,age]|#", 2),
    ("readme", "{name.first,nope}", {"first": "Tom"}),
    ("readme", "{nope,nada}", {}),
    ("readme", "{}", {}),
    ("readme", "[]", []),
    ("readme", "{friends.#}", {"_": 3}),
    (
        "readme",
        "{name:name.last,n:!1.5,z:!null,f:!false}",
        {"name": "Anderson", "n": 1.5, "z": None, "f": False},
    ),
    ("readme", "name.{first,x:last}", {"first": "Tom", "x": "Anderson"}),
    ("readme", "friends.#.{first,age}", [{"first": f["first"], "age": f["age"]} for f in README["friends"]]),
    ("readme", "friends.#.[first,nets.#]", [["Dale", 3], ["Roger", 2], ["Jane", 2]]),
    ("readme", "!true", True),
    ("readme", '![1,{"a":2}].1.a', 2),
    ("readme", "a.!true", MISSING),  # '!' literals only start a path (or follow '|'), else a key
    # "~" conversions (SYNTAX.md)
    ("vals", "vals.#(b==~true)#.a", [1, 2, 6, 7, 8]),
    ("vals", "vals.#(b==~false)#.a", [3, 4, 5, 9, 10, 11]),
    ("vals", "vals.#(b!=~true)#.a", [3, 4, 5, 9, 10, 11]),
    ("vals", "vals.#(b==~null)#.a", [10, 11]),
    ("vals", "vals.#(b==~*)#.a", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    ("vals", "vals.#(b!=~*)#.a", [11]),
    # chat completions
    ("request", "messages.@reverse.0.content", "Tell me a joke"),
    ("request", 'messages.#(role=="user")#.content', ["Hello", "Tell me a joke"]),
    ("request", 'messages.#(role=="user")', REQUEST["messages"][1]),
    ("request", 'messages.#(role=="user").content', "Hello"),
    ("request", 'messages.#(role=="user")#|@reverse|0.content', "Tell me a joke"),
    ("request", 'messages.#(role=="tool")', MISSING),
    ("request", 'messages.#(role=="tool").content', MISSING),
    ("request", 'messages.#(role=="tool")#', []),
    ("request", 'messages.#(role=="tool")#.content', []),
    ("request", 'messages.#(role!="user")#.role', ["system", "assistant"]),
    ("request", "messages.#", 4),
    ("request", "messages.#.role", ["system", "user", "assistant", "user"]),
    ("request", "messages.4", MISSING),
    ("request", "messages.-1", MISSING),
    ("request", "stream_options.include_usage", True),
    ("request", "model.0", MISSING),
    ("request", "model.x", MISSING),
    ("request", "model.#", MISSING),
    ("request", "stream.x", MISSING),
    ("request", "mess*", REQUEST["messages"]),
    ("request", "mess*.3.content", "Tell me a joke"),
    ("request", "stream*", True),
    ("request", "stream*.include_usage", True),  # the first matching key whose rest resolves
    ("request", "m?del", "qwen-max"),
    ("request", '{model,nope,"n":messages.#}', {"model": "qwen-max", "n": 4}),
    ("chunk", "choices.0.delta.content", "Why"),
    ("chunk", "choices.0.finish_reason", None),
    ("chunk", "choices.0.finish_reason.x", MISSING),
    ("chunk", "usage", None),
    ("chunk", "usage.prompt_tokens", MISSING),
    ("chunk", "choices.1.delta.content", MISSING),
    ("final", "choices.0.delta.content", MISSING),
    ("final", "usage.prompt_tokens", 23),
    ("final", "usage.total_tokens", 40),
    ("response", "choices.0.message.content", "Because."),
    ("response", "choices.#.message.content", ["Because.", "Also."]),
    ("response", 'choices.#(finish_reason=="length").index', 1),
    # JSONPath, delegated to jsonpath-ng
    ("response", "$.choices[0].message.content", "Because."),
    ("response", "$.choices[*].message.content", ["Because.", "Also."]),
    ("response", "$.usage.total_tokens", 12),
    ("response", "$.nope", MISSING),
    ("request", "$..content", ["You are helpful.", "Hello", "Hi! How can I help?", "Tell me a joke"]),
    ("request", "$.messages[?(@.role == 'user')].content", ["Hello", "Tell me a joke"]),
    # query operators: the element's type decides how the query text is compared; elements lacking
    # the left-hand side never match, whatever the operator
    ("items", "items.#(n==5)#.id", [1]),
    ("items", 'items.#(n=="5")#.id', [1]),
    ("items", "items.#(n!=5)#.id", [2, 3, 4]),
    ("items", "items.#(n<6)#.id", [1, 3]),
    ("items", "items.#(n<=5)#.id", [1]),
    ("items", "items.#(n>5)#.id", [2, 3, 4]),
    ("items", "items.#(n>=10)#.id", [2, 4]),  # "7" >= "10" as strings
    ("items", 'items.#(name%"?e*")#.id', [2, 5]),
    ("items", 'items.#(name!%"?e*")#.id', [1, 3]),
    ("items", "items.#(ok==true)#.id", [1, 4]),
    ("items", "items.#(ok!=true)#.id", [2]),
    ("items", "items.#(ok==false)#.id", [2]),
    ("items", "items.#(tag!=true)#.id", [1, 3]),  # "yes" != true matches; null never compares
    ("items", "items.#(tag==null)#.id", []),
    ("items", "items.#(tag)#.id", [1, 2, 3]),
    ("items", "items.#(nested.k)#.id", [5]),
    ("items", 'items.#(nested.k=="v").id', 5),
    ("items", 'items.#(=="scalar")', "scalar"),
    ("items", "items.#(==7)", 7),
    ("items", "items.#(>6)#", ["scalar", 7]),
    ("items", "items.#(id>2)#.name", ["gamma", "Delta"]),
    ("items", "items.#(id>100)", MISSING),
    ("items", "items.#(id>100)#", []),
    ("items", "items.#(id==1)|name", "alpha"),
    ("items", "items.#( id == 2 ).name", "beta"),
    ("items", "items.#(n>1)#|#", 4),
    ("items", "items.#(name)#.#", []),
]


@pytest.mark.parametrize(("doc", "path", "expected"), CASES, ids=[f"{d}:{p}" for d, p, _ in CASES])
def test_paths(doc: str, path: str, expected: object) -> None:
    got = get(DOCS[doc], path)
    assert same(got, expected), f"{path!r}: got {got!r}, want {expected!r}"


# ------------------------------------------------------------------------------------ finer points


def test_values_are_the_documents_own_objects() -> None:
    messages: list[Any] = REQUEST["messages"]
    assert get(REQUEST, "messages") is messages
    assert get(REQUEST, 'messages.#(role=="user")') is messages[1]
    users = get(REQUEST, 'messages.#(role=="user")#')
    assert isinstance(users, list)
    assert users[1] is messages[3]
    assert get(README, "@this") is README
    nets = get(README, "friends.#.nets")
    dale_nets: list[str] = DALE["nets"]
    assert isinstance(nets, list)
    assert nets[0] is dale_nets
    for modifier in ("@valid", "@pretty", "@ugly", "@this"):
        assert get(README, f"name.{modifier}") is README["name"]
    assert get(README, "children.@values") is README["children"]
    # modifiers that build a value do not touch the document
    before = copy.deepcopy(README)
    get(README, "children.@reverse")
    get(README, "friends.@join")
    get(README, '@pretty:{"sortKeys":true}')
    assert before == README


def test_null_is_none_and_missing_is_missing() -> None:
    assert get({"a": None}, "a") is None
    assert get({"a": None}, "b") is MISSING
    assert get({"a": [None]}, "a.0") is None
    assert get({"a": [None]}, "a.1") is MISSING
    assert get({"a": [None, 1]}, "a.#") == 2
    assert get({"a": [{"b": None}, {"c": 1}]}, "a.#.b") == [None]  # nulls are kept, misses dropped


def test_numeric_components() -> None:
    doc = {"0": "zero", "a": {"1": "one", "01": "zero-one"}, "l": ["x", "y"]}
    assert get(doc, "0") == "zero"
    assert get(doc, "a.1") == "one"
    assert get(doc, "a.01") == "zero-one"
    assert get(doc, "l.01") == "y"  # an index on arrays
    assert get(doc, "l.1x") is MISSING
    assert get(["a", "b"], "1") == "b"
    assert get(["a", "b"], "#") == 2
    assert get([{"x": 1}, {"x": 2}], "#.x") == [1, 2]
    assert get({"1": "key"}, r"\1") == "key"


def test_escapes_and_wildcards() -> None:
    doc = {"a.b": 1, "a": {"b": 2}, "a*": 3, "ab": 4, "a|b": 5, "k\\": 6, "x?": 7}
    assert get(doc, r"a\.b") == 1
    assert get(doc, "a.b") == 2
    assert get(doc, r"a\*") == 3
    assert get(doc, "a*") == 1  # first matching key in object order
    assert get(doc, "a?") == 3
    assert get(doc, r"a\|b") == 5
    assert get(doc, "k\\\\") == 6
    assert get(doc, r"x\?") == 7
    assert get({"message_id": "m1", "messages": [{"role": "user"}]}, "mess*") == "m1"
    # with more path, keys are tried in order until the rest resolves (gjson does the same)
    assert get({"message_id": "m1", "messages": [{"role": "user"}]}, "mess*.0.role") == "user"
    assert get({"ab": {"x": 1}, "ac": {"y": 2}}, "a*.y") == 2


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("*", "", True),
        ("", "", True),
        ("", "a", False),
        ("a", "a", True),
        ("a", "ab", False),
        ("a*", "a", True),
        ("*a", "ba", True),
        ("*a", "ab", False),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "aXbY", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("*?", "", False),
        ("*?", "x", True),
        ("?*?", "a", False),
        ("?*?", "ab", True),
        ("*ab*ab*", "xabyab", True),
        ("*ab*ab*", "xaby", False),
        ("*aba*", "ab", False),
        ("a*a", "a", False),
        ("h?llo*w?rld", "hello big world", True),
        ("**a**", "xxaxx", True),
        ("*a?b*", "xxa-b", True),
        ("*a?b*", "xxab", False),
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("日本*", "日本語", True),
        ("?", "語", True),
        ("a*a*a*a*a*a*b", "a" * 5000, False),  # no exponential backtracking
    ],
)
def test_like_patterns(pattern: str, text: str, matches: bool) -> None:
    path = f"#(%{json.dumps(pattern)})"
    assert get([text], path) == (text if matches else MISSING)
    assert get([text], f"#(!%{json.dumps(pattern)})") == (MISSING if matches else text)


def test_query_string_escapes_and_unquoted_values() -> None:
    doc = {"q": [{"s": 'say "hi"'}, {"s": "a)b"}, {"s": "Murphy"}]}
    assert get(doc, r'q.#(s=="say \"hi\"")') is doc["q"][0]
    assert get(doc, 'q.#(s=="a)b")') is doc["q"][1]
    assert get(doc, "q.#(s==Murphy)") is doc["q"][2]  # gjson compares with the raw text


def test_modifier_details() -> None:
    assert get([1, [2], [3, [4, [5]]], []], "@flatten") == [1, 2, 3, [4, [5]]]
    assert get([1, [2], [3, [4, [5]]], []], '@flatten:{"deep":true}') == [1, 2, 3, 4, 5]
    assert get({"a": 1}, "@flatten") == {"a": 1}
    joined = get([{"a": 1, "b": 2}, {"b": 3, "c": 4}, 5, [6]], "@join")
    assert same(joined, {"a": 1, "b": 3, "c": 4})
    assert get({"a": 1}, "@join") == {"a": 1}
    assert same(
        get({"b": 1, "a": {"d": 1, "c": 2}}, '@pretty:{"sortKeys":true}'), {"a": {"c": 2, "d": 1}, "b": 1}
    )
    assert get({"s": '{"a":[1,2]}'}, "s.@fromstr.a.1") == 2
    assert get({"s": "not json"}, "s.@fromstr") is MISSING
    assert get({"s": None}, "s.@fromstr") is MISSING
    assert get({"a": [1, "x", None, {"k": True}]}, "a.@tostr") == '[1,"x",null,{"k":true}]'
    assert get({"big": 2**70}, "big.@tostr") == str(2**70)
    assert get({"a": [1, 2, 3], "b": ["x", "y"], "c": 5}, "@group") == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 3},
    ]
    assert get([1, 2], "@group") is MISSING
    assert get(None, "@keys") == [None]
    assert get(None, "@values") == [None]
    assert get("text", "@this") == "text"
    assert get({"@foo": 1, "x": {"@bar": 2}}, "@foo") == 1  # unknown modifiers are keys, as in gjson
    assert get({"@foo": 1, "x": {"@bar": 2}}, "x.@bar") == 2


def test_pipe_after_a_miss_follows_gjson() -> None:
    """gjson still runs a piped modifier when the miss happened on the last key of an object or
    array it had entered; @keys / @values / @tostr and multipaths then build a value from nothing."""
    doc = {"a": {}, "l": [1]}
    assert get(doc, "nope.@keys") == []
    assert get(doc, "a.nope|@values") == []
    assert get(doc, "l.5.@keys") == []
    assert get(doc, "nope.@tostr") == ""
    assert get(doc, "nope.{x}") == {}
    assert get(doc, "nope|@this|@keys") == []
    assert get(doc, "nope.@this") is MISSING
    assert get(doc, "nope.x.@keys") is MISSING  # the miss was before the last component
    assert get(doc, "a.nope.x|@keys") is MISSING
    assert get("text", "nope.@keys") is MISSING  # never entered an object
    assert get(doc, "nope.@reverse") is MISSING


def test_multipath_names_and_dropping() -> None:
    doc = {"a": 1, "b": {"c": 2}, "n": None}
    assert same(get(doc, "{a,b.c,n,zz}"), {"a": 1, "c": 2, "n": None})
    assert same(get(doc, '{"x y":a,"q\\"t":b.c}'), {"x y": 1, 'q"t': 2})
    assert same(get(doc, "[a,b.c,n,zz]"), [1, 2, None])
    assert same(get(doc, "{a.@tostr}"), {"@tostr": "1"})  # gjson names it after the last component
    assert same(get(doc, "{b|c}"), {"c": 2})
    assert same(get(doc, "{b.@dig:c}"), {"@dig:c": [2]})
    assert same(get(doc, "{b.#}"), {})  # b is an object: "#" misses


def test_jsonpath() -> None:
    assert get(RESPONSE, "$.choices[0].message.content") == "Because."
    assert get(RESPONSE, "$.choices[5].message.content") is MISSING
    assert get(RESPONSE, "$.choices[0]") is RESPONSE["choices"][0]
    assert get(RESPONSE, "$") is RESPONSE
    assert get("not a container", "$.a") is MISSING
    assert compile_path("$.a.b").source == "$.a.b"


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("", "position 0"),
        ("a..b", "position 2"),
        (".a", "position 0"),
        ("a.", "position 2"),
        ("a|", "position 2"),
        ("..a", "'..'"),
        ("..#", "'..'"),
        ("a.#(b==1", "position 3"),
        ('messages.#(role=="user"', "position 10"),
        ("a.#(b.#(==1)", "position 3"),
        ("#(", "position 1"),
        ("#()", "position 2"),
        ("{a,b", "position 0"),
        ("[a,b", "position 0"),
        ("{a,}", "position 3"),
        ("{,a}", "position 1"),
        ("{a:}", "position 3"),
        ("a.{b,c", "position 2"),
        ("a.#(b==1)x", "position 9"),
        ("{a}x", "position 3"),
        ("a.#(b!1)", "position 5"),
        ("a.#(b=~maybe)", "position 6"),
        ('a.#(b=="x)', "position 7"),
        ('a.#(b=="x"y)', "position 7"),
        ("a.#(b==1]", "position 8"),
        ("@flatten:{bad", "position 9"),
        ("@flatten:{bad}", "position 9"),
        ('@flatten:{"deep":true}x', "position 22"),
        ("a\\", "position 1"),
        ("!{bad}", "position 1"),
        ("!-x", "position 1"),
        ("#.", "position 2"),
        ("a.#(b==1).", "position 10"),
        ("$[[[", "JSONPath"),
        ("$.a[?(", "JSONPath"),
    ],
)
def test_invalid_paths(path: str, where: str) -> None:
    with pytest.raises(PathError) as info:
        compile_path(path)
    assert where in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)


def test_compile_path_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        compile_path(3)  # lru_cache accepts any hashable; compile_path itself rejects it


# -------------------------------------------------------------------------------------- public API


def test_api() -> None:
    cp = compile_path("choices.0.delta.content")
    assert isinstance(cp, CompiledPath)
    assert cp is compile_path("choices.0.delta.content")  # cached
    assert cp.source == "choices.0.delta.content"
    assert "choices.0.delta.content" in repr(cp)
    assert cp.get(CHUNK) == "Why"
    assert get(CHUNK, "choices.0.delta.content") == "Why"
    assert repr(MISSING) == "MISSING"
    assert not MISSING
    assert MISSING is not None
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert copy.copy(MISSING) is MISSING
    assert copy.deepcopy([MISSING])[0] is MISSING


def test_dict_and_list_subclasses() -> None:
    class D(dict[str, Any]):
        pass

    class L(list[Any]):
        pass

    doc = D(choices=L([D(delta=D(content="x"))]))
    assert get(doc, "choices.0.delta.content") == "x"
    assert get(doc, "choices.1.delta.content") is MISSING
    assert get(collections.OrderedDict(a=[1, 2]), "a.#") == 2
    assert get(collections.OrderedDict(a=[1, 2]), "a.1") == 2


# ---------------------------------------------------------------------------------------- property

KEYS = ["a", "b", "0", "1", "name", "first", "messages", "role", "content", "choices", "a.b", "mess", "", "#"]
STRINGS = ["", "user", "Dale", "x", "0", "1", "true", "false", "D*", '{"a":1}', "[1,2]", "null", "日本"]


def random_doc(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 5 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 5, 44, 2**70, 0.5, -3.25, 1e300])
    if kind in (3, 4):
        return rng.choice(STRINGS)
    if kind in (5, 6):
        return {rng.choice(KEYS): random_doc(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [random_doc(rng, depth + 1) for _ in range(rng.randrange(5))]


def random_docs(count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    docs = [random_doc(rng) for _ in range(count)]
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    cyclic_obj: dict[str, Any] = {"a": {"b": 1}}
    cyclic_obj["a"]["self"] = cyclic_obj
    odd = {"set": {1, 2}, "bytes": b"x", "obj": object(), 3: "int key", "nan": float("nan")}
    return [*docs, cyclic, cyclic_obj, odd, [odd], "", 0, None, True, b"raw", object()]


EXTRA_PATHS = [
    '@flatten:{"deep":true}',
    "@dig:a",
    "@dig:0",
    "*.*.*",
    "a*.b?",
    "#.#.#",
    "#(a)#.b",
    "#(0==1)#",
    '#(%"*")',
    "#(a.#(==1))#",
    '{a,b,"c":0.0}',
    "[#,0,1]",
    "@tostr",
    "@tostr.@fromstr",
    "a|@keys|#",
    "$..a",
    "$[*]",
]
ALL_PATHS = [p for _, p, _ in CASES] + EXTRA_PATHS


def is_json_value(v: object) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(is_json_value(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and is_json_value(x) for k, x in v.items())
    return False


def test_get_never_raises_on_random_documents() -> None:
    docs = random_docs(400, seed=20240611)
    compiled = [compile_path(p) for p in ALL_PATHS]
    for i, doc in enumerate(docs):
        from_json = i < 400  # the rest are odd Python objects (cyclic, sets, bytes, ...)
        for cp in compiled:
            if not from_json and cp.source.startswith("$"):
                continue  # jsonpath-ng's '..' does not terminate on self-referencing objects
            got = cp.get(doc)  # must not raise, whatever the document
            if from_json:
                assert got is MISSING or is_json_value(got), (cp.source, doc, got)


def reference(doc: object, parts: list[str]) -> object:
    """The obvious walker, for plain key / index paths."""
    cur = doc
    for part in parts:
        if isinstance(cur, dict):
            if part not in cur:
                return MISSING
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur


def test_plain_paths_match_a_reference_walker() -> None:
    rng = random.Random(7)
    docs = random_docs(300, seed=99)
    parts_pool = [k for k in KEYS if k and "." not in k and k != "#"] + ["2", "3", "01"]
    for _ in range(300):
        parts = [rng.choice(parts_pool) for _ in range(rng.randrange(1, 5))]
        cp = compile_path(".".join(parts))
        for doc in docs:
            want = reference(doc, parts)
            got = cp.get(doc)
            assert got is want or (got == want and type(got) is type(want)), (parts, doc)


def test_random_path_strings_compile_or_raise_path_error() -> None:
    rng = random.Random(12345)
    alphabet = 'ab01.#()|@*?\\"=!<>%{}[],:~ '
    words = [
        "reverse",
        "keys",
        "this",
        "flatten",
        "tostr",
        "fromstr",
        "dig:",
        "true",
        "#(",
        ")#",
        "==",
        '"x"',
    ]
    docs = random_docs(25, seed=3)
    compiled = 0
    for _ in range(4000):
        pieces = [
            rng.choice(words) if rng.random() < 0.2 else rng.choice(alphabet)
            for _ in range(rng.randrange(1, 12))
        ]
        path = "".join(pieces)
        try:
            cp = compile_path(path)
        except PathError:
            continue
        compiled += 1
        for doc in docs:
            cp.get(doc)
    assert compiled > 100  # the generator does produce valid paths too


# ------------------------------------------------------------------------------- hand-run timings


def _bench() -> None:
    import timeit

    import orjson

    event = orjson.loads(orjson.dumps(CHUNK))
    request = orjson.loads(
        orjson.dumps(
            {
                "messages": [{"role": "system", "content": "s"}]
                + [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(10)]
            }
        )
    )
    runs = [
        ("choices.0.delta.content", event),
        ("usage.prompt_tokens", event),
        ("model", event),
        ("messages.@reverse.0.content", request),
        ('messages.#(role=="user").content', request),
        ('messages.#(role=="user")#.content', request),
        ("messages.#", request),
        ("$.choices[0].delta.content", event),
    ]
    direct = timeit.Timer(lambda: event["choices"][0]["delta"]["content"])
    number = 200_000
    base = min(direct.repeat(5, number)) / number
    print(f"{'plain Python indexing (baseline)':40} {base * 1e9:7.0f} ns")
    for path, doc in runs:
        cp = compile_path(path)
        n = number if not path.startswith("$") else 5_000
        t = min(timeit.Timer(lambda cp=cp, doc=doc: cp.get(doc)).repeat(5, n)) / n  # type: ignore[misc]
        print(f"{path:40} {t * 1e9:7.0f} ns   {cp.get(doc)!r}")
    n = 20_000
    uncached = compile_path.__wrapped__
    t = min(timeit.Timer(lambda: uncached("choices.0.delta.content")).repeat(3, n)) / n
    print(f"{'compile (uncached) choices.0.delta.content':40} {t * 1e6:7.1f} us")


if __name__ == "__main__":
    _bench()
