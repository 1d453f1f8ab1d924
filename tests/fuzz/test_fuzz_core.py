"""Property-based fuzzing of the pieces of the core: the SSE framer, the GJSON evaluator, JSONPath,
each provider's parser, usage extraction and the decoders (truncated, corrupt, split, bombs).

Properties: nothing raises on any input (except the documented PathError at compile time); the
framer gives the same events for every split and keeps its buffer under its cap; a decoder gives the
same bytes for every split, and its pieces never exceed decoding.PIECE.
"""

from __future__ import annotations

import contextlib
import gzip
import time
import zlib
from typing import Any

import brotli
import orjson
from fuzzkit import budget, json_values, shaped_docs, splits
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway_stats import providers as shapes
from gateway_stats.core import decoding, gjson, usage
from gateway_stats.core.accumulate import CappedText, ToolCallAssembler
from gateway_stats.core.record import CallRecord
from gateway_stats.core.sse import SSEFramer
from gateway_stats.providers.recognise import SHAPES

# ------------------------------------------------------------------------------------------ SSE
sse_pieces = st.lists(
    st.sampled_from(
        [
            b"data: ",
            b"data:",
            b"event: x",
            b"id: 1",
            b"retry: 5",
            b": c",
            b"\n",
            b"\r",
            b"\r\n",
            b"\n\n",
            b'{"a":1}',
            b"[DONE]",
            b"\xef\xbb\xbf",
            b"\x00",
            b"x" * 40,
        ]
    )
    | st.binary(max_size=16),
    max_size=40,
).map(b"".join)


def _events(framer: SSEFramer, chunks: list[bytes]) -> list[tuple[bytes, str | None, str | None]]:
    out = []
    for c in chunks:
        out += framer.feed(c)
        assert len(framer._buf) <= framer._max + 1
    out += framer.finish()
    return [(e.data, e.event, e.id) for e in out]


@budget(400)
@given(sse_pieces, st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=12), st.integers(1, 64))
def test_sse_framer_same_events_for_every_split(stream: bytes, cuts: list[int], cap: int) -> None:
    whole = _events(SSEFramer(cap), [stream])
    assert _events(SSEFramer(cap), splits(stream, cuts)) == whole
    assert _events(SSEFramer(cap), [bytes([b]) for b in stream]) == whole


# ---------------------------------------------------------------------------------------- GJSON
_PATH_TOKENS = [
    "a",
    "b",
    "choices",
    "0",
    "1",
    "-1",
    "#",
    "#(",
    ")",
    ")#",
    "==",
    "=",
    "!=",
    "<",
    ">=",
    "%",
    "!%",
    '"x"',
    "1",
    "true",
    "null",
    "~true",
    "~*",
    "*",
    "?",
    "@reverse",
    "@keys",
    "@values",
    "@flatten",
    "@join",
    "@dig:a",
    "@tostr",
    "@fromstr",
    "@this",
    "@valid",
    "@pretty",
    "@ugly",
    "@group",
    ":",
    "|",
    ".",
    "\\",
    "\\.",
    "[",
    "]",
    "{",
    "}",
    ",",
    "!",
    "'",
    '"',
    " ",
    "@",
    "..",
]
gjson_paths = st.lists(st.sampled_from(_PATH_TOKENS) | st.text(max_size=3), min_size=1, max_size=12).map(
    "".join
)


def _compile(path: str) -> gjson.CompiledPath | None:
    t0 = time.perf_counter()
    try:
        p = gjson.compile_path(path)
    except gjson.PathError:
        p = None
    assert time.perf_counter() - t0 < 5.0  # jsonpath-ng builds its PLY parser per path: slow, bounded
    return p


@budget(1500)
@given(gjson_paths, json_values)
def test_gjson_compile_and_run_never_raise(path: str, doc: Any) -> None:
    p = _compile(path)
    if p is None:
        return
    prog = p._prog
    # The evaluator's own loop, below CompiledPath.get's safety net: a raise here is a bug that the
    # net would only have hidden as MISSING.
    t0 = time.perf_counter()
    prog.run(doc)
    assert p.get(doc) is not None or True
    assert time.perf_counter() - t0 < 1.0


jsonpaths = st.lists(
    st.sampled_from(
        [
            "$",
            ".",
            "..",
            "a",
            "b",
            "[0]",
            "[*]",
            "[-1]",
            "[?(@.a)]",
            "[?(@.a == 1)]",
            "['a']",
            "*",
            "[0:2]",
            "`this`",
            "(",
            ")",
            "[",
            "]",
            "@",
            "|",
            " ",
        ]
    ),
    min_size=1,
    max_size=8,
).map(lambda parts: "$" + "".join(parts))


@budget(300)
@given(jsonpaths, json_values)
def test_jsonpath_compile_and_run_never_raise(path: str, doc: Any) -> None:
    p = _compile(path)
    if p is None:
        return
    p.get(doc)  # documented never to raise


# ------------------------------------------------------------------------------------ providers
KINDS = [*(sh.kind for sh in SHAPES), shapes.UNKNOWN]  # one module per provider API, and unknown


def _output(cap: int = 64) -> shapes.Output:
    return shapes.Output(CappedText(cap), CappedText(cap), ToolCallAssembler(cap), [])


@budget(1500)
@given(st.sampled_from(KINDS), shaped_docs, st.none() | st.text(max_size=10))
def test_provider_parsers_never_raise(kind: shapes.Kind, doc: dict[str, Any], event: str | None) -> None:
    out = _output()
    shapes.stream_event(kind, doc, event, out)
    shapes.response_body(kind, doc, out)
    out.answer.value()
    out.tools.value()
    shapes.kind_from_body(doc)
    rec = CallRecord()
    usage.apply_usage(doc, rec)
    usage.error_of(doc)
    usage.chat_id(doc)
    usage.response_model(doc)
    usage.has_usage(doc)
    for v in (out.answer.value(), out.reasoning.value()):
        assert len(v) <= 64
    orjson.dumps(out.tools.value())  # the tool calls stay serialisable for the ai_log


@budget(300)
@given(st.text(max_size=60))
def test_kind_from_path_never_raises(path: str) -> None:
    shapes.kind_from_path(path)
    shapes.gemini_path_model(path)


# ------------------------------------------------------------------------------------- decoders
def _decode(enc: str, chunks: list[bytes]) -> bytes:
    d = decoding.decoder_for(enc)
    assert d is not None
    out = []
    for c in chunks:
        for piece in d.feed(c):
            assert 0 < len(piece) <= decoding.PIECE * 2
            out.append(piece)
    out += list(d.flush())
    return b"".join(out)


def _encode(enc: str, data: bytes) -> bytes:
    if enc == "gzip":
        return gzip.compress(data)
    if enc == "br":
        return brotli.compress(data)
    if enc == "deflate-raw":
        c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    return zlib.compress(data)


bodies = st.one_of(
    st.binary(max_size=2000),
    st.integers(0, 300_000).map(lambda n: b"z" * n),
    st.lists(st.binary(min_size=1, max_size=8), max_size=50).map(lambda xs: b"".join(xs) * 500),
)


@budget(200)
@given(
    st.sampled_from(["gzip", "br", "deflate", "deflate-raw"]),
    bodies,
    st.lists(st.integers(0, 1 << 20), max_size=8),
)
def test_decoders_same_bytes_for_every_split(enc: str, body: bytes, cuts: list[int]) -> None:
    wire = _encode(enc, body)
    name = "deflate" if enc == "deflate-raw" else enc
    assert _decode(name, splits(wire, cuts)) == body


@budget(400)
@given(
    st.sampled_from(["gzip", "br", "deflate"]),
    st.binary(max_size=3000),
    st.integers(0, 1 << 16),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=5),
    st.lists(st.integers(0, 1 << 16), max_size=5),
)
def test_decoders_truncated_or_corrupt_raise_only_their_error(
    enc: str, body: bytes, cut: int, flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    wire = bytearray(_encode(enc, body))
    wire = wire[: cut % (len(wire) + 1)]
    for pos, val in flips:
        if wire:
            wire[pos % len(wire)] = val
    assume(wire)
    with contextlib.suppress(zlib.error, brotli.error):  # the observer turns these into decode_error
        _decode(enc, splits(bytes(wire), cuts))


@budget(200)
@given(st.sampled_from(["gzip", "br", "deflate"]), st.binary(min_size=1, max_size=400))
def test_decoders_random_bytes_raise_only_their_error(enc: str, junk: bytes) -> None:
    with contextlib.suppress(zlib.error, brotli.error):
        _decode(enc, [junk])
