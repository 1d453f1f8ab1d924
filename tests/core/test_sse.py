"""Tests for gateway_stats.core.sse: any chunking gives the same events; line endings, limits, stream end."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable

import orjson
import pytest

from gateway_stats.core.sse import SSEEvent, SSEFramer, SSEStats

BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------- helpers
def run(chunks: Iterable[bytes], cap: int = 1 << 20) -> tuple[list[SSEEvent], SSEStats]:
    framer = SSEFramer(max_event_bytes=cap)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(framer.feed(chunk))
    events.extend(framer.finish())
    return events, framer.stats


def split_at(stream: bytes, offsets: Iterable[int]) -> list[bytes]:
    cuts = [0, *sorted(offsets), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(cuts)]


def one_byte(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def assert_chunking_invariant(stream: bytes, cap: int = 1 << 20) -> tuple[list[SSEEvent], SSEStats]:
    """Same events and stats whole, split in two at every offset, and one byte per chunk."""
    expected = run([stream], cap)
    for k in range(len(stream) + 1):
        assert run(split_at(stream, [k]), cap) == expected, f"split at {k}"
    assert run(one_byte(stream), cap) == expected, "one byte per chunk"
    return expected


def ev(
    data: bytes | str, event: str | None = None, id: str | None = None, retry: int | None = None
) -> SSEEvent:
    raw = data.encode() if isinstance(data, str) else data
    return SSEEvent(raw, event, id, True, retry)


# --------------------------------------------------------------------------- fixtures: realistic streams
def openai_payloads() -> list[bytes]:
    base = {"id": "chatcmpl-9x", "object": "chat.completion.chunk", "created": 1718000000, "model": "gpt-4o"}
    out = [
        orjson.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
    ]
    for piece in ["Hel", "lo", ", wö", "rld ", "世界", "!"]:
        out.append(orjson.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece}}]}))
    out.append(orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    out.append(orjson.dumps({**base, "choices": [], "usage": usage}))
    out.append(b"[DONE]")
    return out


OPENAI_PAYLOADS = openai_payloads()
OPENAI_EVENTS = [ev(p) for p in OPENAI_PAYLOADS]


def openai_stream(eol: bytes | list[bytes] = b"\n") -> bytes:
    """`data: ...` events; `eol` is a line ending, or a list used in turn (line end + blank line)."""
    eols = [eol] if isinstance(eol, bytes) else eol
    parts = []
    for i, payload in enumerate(OPENAI_PAYLOADS):
        parts.append(b"data: " + payload + eols[(2 * i) % len(eols)] + eols[(2 * i + 1) % len(eols)])
    return b"".join(parts)


ANTHROPIC_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_1","model":"claude-sonnet-4",'
    b'"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: ping\n"
    b'data: {"type": "ping"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)


# --------------------------------------------------------------------------- OpenAI stream, any chunking
def test_openai_whole_stream() -> None:
    events, stats = run([openai_stream()])
    assert events == OPENAI_EVENTS
    assert events[-1].data == b"[DONE]"
    assert orjson.loads(events[-2].data)["usage"]["total_tokens"] == 19
    assert stats == SSEStats(events=len(OPENAI_EVENTS), bytes=len(openai_stream()))


def test_openai_split_at_every_offset_and_one_byte_per_chunk() -> None:
    events, stats = assert_chunking_invariant(openai_stream())
    assert events == OPENAI_EVENTS
    assert stats.events == len(OPENAI_EVENTS)


def test_openai_one_byte_chunks_yield_each_event_on_its_last_delimiter_byte() -> None:
    stream = openai_stream()
    framer = SSEFramer()
    ends = []
    for i, b in enumerate(one_byte(stream)):
        if framer.feed(b):
            ends.append(i + 1)
    expected_ends, pos = [], 0
    for payload in OPENAI_PAYLOADS:
        pos += len(b"data: ") + len(payload) + 2
        expected_ends.append(pos)
    assert ends == expected_ends


@pytest.mark.parametrize(
    "eol",
    [
        pytest.param(b"\r\n", id="crlf"),
        pytest.param(b"\r", id="lone-cr"),
        pytest.param([b"\n", b"\r\n"], id="lf-crlf"),
        pytest.param([b"\r\n", b"\n"], id="crlf-lf"),
        pytest.param([b"\r\n", b"\r"], id="crlf-cr"),
        pytest.param([b"\r", b"\r\n"], id="cr-crlf"),
        pytest.param([b"\n", b"\r", b"\r\n"], id="rotating"),
        pytest.param([b"\r", b"\n"], id="cr-lf-is-one-ending"),
    ],
)
def test_openai_stream_with_other_line_endings(eol: bytes | list[bytes]) -> None:
    stream = openai_stream(eol)
    if eol == [b"\r", b"\n"]:
        # `\r` + `\n` is ONE line ending: nothing is delimited, the whole stream is one unterminated
        # event with 10 data lines -> not JSON -> discarded at finish.
        events, stats = assert_chunking_invariant(stream)
        assert events == [] and stats.discarded_tail == 1 and stats.events == 0
        return
    events, stats = assert_chunking_invariant(stream)
    assert events == OPENAI_EVENTS
    assert stats == SSEStats(events=len(OPENAI_EVENTS), bytes=len(stream))


def test_cr_pending_at_chunk_boundary() -> None:
    framer = SSEFramer()
    assert framer.feed(b'data: {"a":1}\r') == []  # `\r` may be `\r\n`: one line ending so far
    assert framer.feed(b"\n") == []  # ... it was `\r\n`: still only one line ending
    assert framer.feed(b"\r\n") == [ev(b'{"a":1}')]

    framer = SSEFramer()
    assert framer.feed(b'data: {"a":1}\r') == []
    assert framer.feed(b"\n\r\n") == [ev(b'{"a":1}')]

    # A lone `\r`, then `\r` + `\n` in the next chunk: the delimiter is `\r` `\r\n`; the `\n` must
    # not start a new (empty) line of the next event.
    framer = SSEFramer()
    assert framer.feed(b"data: 1\r\r") == [ev(b"1")]
    assert framer.feed(b"\ndata: 2\n\n") == [ev(b"2")]
    assert framer.stats.empty == 0

    # `\r` then `\n` continuing the same event.
    framer = SSEFramer()
    assert framer.feed(b"data: a\r") == []
    assert framer.feed(b"\ndata: b\r") == []
    assert framer.feed(b"") == []  # empty chunks are harmless, the `\r` stays pending
    assert framer.feed(b"\n\r") == [ev(b"a\nb")]

    # A lone `\r` decided by a non-`\n` next byte.
    framer = SSEFramer()
    assert framer.feed(b"data: a\r") == []
    assert framer.feed(b"data: b\r") == []
    assert framer.feed(b"\r") == [ev(b"a\nb")]


@pytest.mark.parametrize(
    "delimiter",
    [b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r\n", b"\r\n\n", b"\r\n\r", b"\n\r", b"\r\r\n"],
)
def test_every_two_line_ending_delimiter(delimiter: bytes) -> None:
    stream = b"data: 1" + delimiter + b"data: 2" + delimiter
    events, stats = assert_chunking_invariant(stream)
    assert events == [ev(b"1"), ev(b"2")]
    assert stats.empty == 0


# --------------------------------------------------------------------------- fields
def test_anthropic_stream_with_event_lines() -> None:
    events, stats = assert_chunking_invariant(ANTHROPIC_STREAM)
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(e.has_data for e in events)
    assert orjson.loads(events[0].data)["message"]["usage"]["input_tokens"] == 25
    assert orjson.loads(events[5].data)["usage"]["output_tokens"] == 15
    assert stats.events == 7


def test_comment_lines_and_comment_only_events() -> None:
    stream = b': ping\n\n: hello\n: world\n\n: keep-alive\ndata: {"x":1}\n: trailing\n\n:\n\n'
    events, stats = assert_chunking_invariant(stream)
    assert events == [ev(b'{"x":1}')]
    assert stats.comments == 3 and stats.events == 1 and stats.empty == 0


def test_multi_line_data_is_joined_with_lf() -> None:
    stream = b'data: {"a":\r\ndata:   1,\ndata: "b": 2}\r\n\r\n'
    events, _ = assert_chunking_invariant(stream)
    assert events == [ev(b'{"a":\n  1,\n"b": 2}')]
    assert orjson.loads(events[0].data) == {"a": 1, "b": 2}


def test_data_without_space_and_only_one_space_stripped() -> None:
    events, _ = run([b"data:{}\n\ndata:  two\n\ndata:\n\n"])
    assert events == [ev(b"{}"), ev(b" two"), ev(b"")]


def test_field_without_colon() -> None:
    events, stats = run([b"data\ndata\n\nevent\n\ndata: x\nbogus\n\nbogus\n\n"])
    assert events == [
        ev(b"\n"),  # two empty data lines
        SSEEvent(b"", "", None, False),  # `event` alone: an event field with an empty value
        ev(b"x"),
    ]
    assert stats.empty == 1


def test_event_without_data_id_retry_and_unknown_fields() -> None:
    stream = (
        b"event: usage\nid: 7\n\n"
        b"id: 8\nretry: 1500\nfoo: bar\ndata: d\n\n"
        b"id: 9\n\n"
        b"retry: x\nid: a\0b\ndata: e\n\n"
    )
    events, stats = assert_chunking_invariant(stream)
    assert events == [
        SSEEvent(b"", "usage", "7", False),
        ev(b"d", id="8", retry=1500),
        ev(b"e"),  # bad retry and an id holding NUL are ignored
    ]
    assert stats.empty == 1  # `id: 9` alone is not yielded


def test_empty_events_and_extra_blank_lines_are_counted_not_yielded() -> None:
    stream = b"\n\n\n\ndata: a\n\n\ndata: b\n\n\n\n"
    events, stats = assert_chunking_invariant(stream)
    assert events == [ev(b"a"), ev(b"b")]
    assert stats.empty == 3


def test_utf8_bom_at_stream_start_is_ignored() -> None:
    events, _ = assert_chunking_invariant(BOM + b"data: 1\n\n" + BOM + b"data: 2\n\n")
    assert events == [ev(b"1")]  # a BOM in the middle is part of the field name -> unknown field


def test_text_is_decoded_with_replacement_and_cached() -> None:
    (event,) = run([b"data: caf\xc3\xa9 \xff\n\n"])[0]
    assert event.text() == "café \ufffd"
    assert event.text() is event.text()


def test_feed_accepts_bytearray_and_memoryview() -> None:
    framer = SSEFramer()
    assert framer.feed(bytearray(b"data: 1\n")) == []
    assert framer.feed(memoryview(b"\ndata: 2\n\n")) == [ev(b"1"), ev(b"2")]


# --------------------------------------------------------------------------- end of stream
def test_finish_returns_unterminated_event_with_complete_json() -> None:
    stream = openai_stream()[: -len(b"data: [DONE]\n\n")] + b'data: {"usage":{"total_tokens":19}}'
    for chunks in ([stream], one_byte(stream)):
        framer = SSEFramer()
        fed = [e for c in chunks for e in framer.feed(c)]
        assert fed == OPENAI_EVENTS[:-1]
        assert framer.finish() == [ev(b'{"usage":{"total_tokens":19}}')]
        assert framer.stats.discarded_tail == 0
        assert framer.stats.events == len(OPENAI_EVENTS)
    # A single trailing line ending does not terminate the event, finish still takes it.
    assert run([b'data: {"a":1}\r'])[0] == [ev(b'{"a":1}')]


@pytest.mark.parametrize(
    "tail",
    [b'data: {"usage":{"total_tok', b"data: [DONE]", b"event: x\n", b": ping", b"data:", b"id: 1"],
)
def test_finish_discards_unterminated_event_without_complete_json(tail: bytes) -> None:
    events, stats = assert_chunking_invariant(b"data: 1\n\n" + tail)
    assert events == [ev(b"1")]
    assert stats.discarded_tail == 1


def test_finish_ignores_blank_tail_and_resets() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: 1\n\n\n") == [ev(b"1")]
    assert framer.finish() == []
    assert framer.stats.discarded_tail == 0
    # reusable after finish: the stats keep accumulating
    assert framer.feed(b"data: 2\n\n") == [ev(b"2")]
    assert framer.stats.events == 2


# --------------------------------------------------------------------------- size cap
def test_oversized_event_is_dropped_and_next_event_still_yielded() -> None:
    cap = 1024
    big = b"data: " + b"x" * 4994  # 5000 bytes
    stream = b'data: {"n":1}\n\n' + big + b"\n\n" + b'data: {"n":2}\n\n'
    chunks = [stream[i : i + 100] for i in range(0, len(stream), 100)]
    framer = SSEFramer(max_event_bytes=cap)
    events = []
    for chunk in chunks:
        events.extend(framer.feed(chunk))
        assert len(framer._buf) <= cap + 1
    events.extend(framer.finish())
    assert events == [ev(b'{"n":1}'), ev(b'{"n":2}')]
    assert framer.stats.oversized == 1 and framer.stats.resyncs == 1
    # the same verdict whatever the chunking (one chunk holds the whole oversized event)
    assert run([stream], cap) == (events, framer.stats)
    assert run(one_byte(stream), cap) == (events, framer.stats)


def test_oversized_with_delimiter_split_across_chunks_and_crlf() -> None:
    cap = 64
    stream = b"data: " + b"y" * 200 + b"\r\n\r\ndata: ok\r\n\r\n"
    events, stats = assert_chunking_invariant(stream, cap)
    assert events == [ev(b"ok")]
    assert stats.oversized == 1 and stats.resyncs == 1


def test_size_limit_is_exact_and_counted_after_line_ending_normalisation() -> None:
    cap = 64
    at_cap = b"data: " + b"a" * 58  # 64 bytes
    over = b"data: " + b"b" * 59  # 65 bytes
    crlf_at_cap = b"data: x\r\ndata: " + b"c" * 50  # 65 raw, 64 after `\r\n` -> `\n`
    stream = at_cap + b"\n\n" + over + b"\n\n" + crlf_at_cap + b"\r\n\r\n"
    events, stats = assert_chunking_invariant(stream, cap)
    assert events == [ev(at_cap[6:]), ev(b"x\n" + b"c" * 50)]
    assert stats.oversized == 1 and stats.resyncs == 1

    json_at_cap = b'data: "' + b"d" * 56 + b'"'  # 64 bytes, complete JSON
    assert assert_chunking_invariant(json_at_cap, cap)[0] == [ev(json_at_cap[6:])]
    # With its trailing line ending the unterminated tail is 65 bytes: over the cap.
    events, stats = assert_chunking_invariant(json_at_cap + b"\n", cap)
    assert events == [] and stats.oversized == 1 and stats.resyncs == 0


def test_stream_without_delimiter_stays_bounded() -> None:
    cap = 1 << 20
    line = b"data: " + b"z" * 90 + b"\r\n"  # single line endings only: never a delimiter
    block = line * (65536 // len(line) + 1)
    framer = SSEFramer()
    fed = 0
    while fed < 10 * 1024 * 1024:
        chunk = block[: 65536 - (fed // 65536) % 7]  # vary the phase of `\r\n` at boundaries
        assert framer.feed(chunk) == []
        fed += len(chunk)
        assert len(framer._buf) <= cap + 1
    assert framer.stats.oversized == 1 and framer.stats.resyncs == 0
    assert framer.feed(b'\r\n\r\ndata: {"ok":true}\n\n') == [ev(b'{"ok":true}')]
    assert framer.stats.resyncs == 1 and len(framer._buf) == 0


# --------------------------------------------------------------------------- randomized vs reference
_REF_DELIM = re.compile(rb"(?:\r\n|\r(?!\n)|\n){2}")  # two line endings; never split a `\r\n`
_REF_EOL = re.compile(rb"\r\n|\r|\n")


def reference(stream: bytes, cap: int) -> tuple[list[SSEEvent], SSEStats]:
    """Whole-stream parser: split on delimiters with one regex, then parse each event."""
    stats = SSEStats(bytes=len(stream))
    events: list[SSEEvent] = []
    pieces = _REF_DELIM.split(stream)
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        if len(piece) - piece.count(b"\r\n") > cap:
            stats.oversized += 1
            stats.resyncs += not final
            continue
        if index == 0 and piece.startswith(BOM):
            piece = piece[len(BOM) :]
        data: list[bytes] = []
        event = ident = None
        retry = None
        comment = False
        for line in _REF_EOL.split(piece):
            if not line:
                continue
            if line[:1] == b":":
                comment = True
                continue
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
            elif name == b"id" and 0 not in value:
                ident = value.decode("utf-8", "replace")
            elif name == b"retry" and re.fullmatch(rb"[0-9]+", value):
                retry = int(value)
        result = SSEEvent(b"\n".join(data), event, ident, bool(data), retry)
        if final:
            if not _REF_EOL.sub(b"", piece):
                continue
            ok = bool(data)
            if ok:
                try:
                    orjson.loads(result.data)
                except orjson.JSONDecodeError:
                    ok = False
            if ok:
                events.append(result)
                stats.events += 1
            else:
                stats.discarded_tail += 1
        elif data or event is not None:
            events.append(result)
            stats.events += 1
        elif comment:
            stats.comments += 1
        else:
            stats.empty += 1
    return events, stats


_EOLS = [b"\n", b"\r\n", b"\r"]


def _random_line(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.35:
        payload = orjson.dumps({"i": rng.randint(0, 999), "t": "é" * rng.randint(0, 3)})
        return rng.choice([b"data: ", b"data:", b"data:  "]) + payload
    if r < 0.45:
        return b"data: " + bytes(rng.choice(b'ab{}[]"\xff\xc3 ') for _ in range(rng.randint(0, 12)))
    if r < 0.55:
        return b"event: " + rng.choice([b"message_start", b"ping", b"", b"caf\xc3\xa9"])
    if r < 0.62:
        return rng.choice([b"id: 1", b"id:abc", b"id: a\0b", b"retry: 3000", b"retry: 3s", b"id"])
    if r < 0.75:
        return rng.choice([b": ping", b":", b":comment: yes"])
    if r < 0.85:
        return rng.choice([b"data", b"event", b"foo: bar", b"DATA: no", b" data: leading space"])
    if r < 0.92:
        return b"data: " + b"L" * rng.randint(20, 400)  # sometimes over the cap
    return b""


def _random_stream(rng: random.Random) -> bytes:
    if rng.random() < 0.25:  # byte soup: stresses delimiter and line-ending handling
        alphabet = [b"\r", b"\n", b"\r\n", b"data", b"data:", b": ", b"x", b"{}", b"event:", b"id", b":"]
        return b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
    parts = [BOM] if rng.random() < 0.1 else []
    for _ in range(rng.randint(0, 10)):
        for _ in range(rng.randint(0, 4)):
            parts.append(_random_line(rng) + rng.choice(_EOLS))
        parts.append(rng.choice(_EOLS))  # blank line: ends the event
        if rng.random() < 0.1:
            parts.append(rng.choice(_EOLS) * rng.randint(1, 3))
    tail = rng.choice(
        [b"", b'data: {"usage":{"total_tokens":5}}', b'data: {"usage":{"tot', b"data: [DONE]", b": x", b"\r"]
    )
    parts.append(tail + (rng.choice(_EOLS) if tail and rng.random() < 0.3 else b""))
    return b"".join(parts)


def _random_chunks(rng: random.Random, stream: bytes) -> list[bytes]:
    n = len(stream)
    mode = rng.random()
    if mode < 0.2:
        return one_byte(stream)
    if mode < 0.6:
        cuts = rng.sample(range(n + 1), min(n + 1, rng.randint(0, 20)))
    else:
        cuts, pos = [], 0
        while pos < n:
            pos += rng.choice([0, 1, 1, 2, 3, 5, 17, 64])  # 0 -> an empty chunk
            cuts.append(min(pos, n))
    return split_at(stream, cuts)


@pytest.mark.parametrize("seed", range(20))
def test_randomized_against_reference(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        stream = _random_stream(rng)
        cap = rng.choice([16, 48, 100, 300, 1 << 20])
        expected = reference(stream, cap)
        for _ in range(4):
            chunks = _random_chunks(rng, stream)
            assert b"".join(chunks) == stream
            assert run(chunks, cap) == expected, (stream, cap, chunks)


def test_reference_agrees_on_fixed_streams() -> None:
    """Make sure the oracle itself is right on the fixed streams above."""
    for stream in (
        openai_stream(),
        openai_stream(b"\r\n"),
        openai_stream([b"\r", b"\r\n"]),
        ANTHROPIC_STREAM,
    ):
        assert reference(stream, 1 << 20) == run([stream])
