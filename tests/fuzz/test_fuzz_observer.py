"""The whole CallObserver fuzzed: arbitrary phase sequences and byte splits.

Properties:
- no exception escapes a phase handler, `finish()` or the sinks' view of the record (ai_log text,
  span tags, metrics), whatever the order, headers or bytes;
- for a valid answer (the mock LLM's own `build_events` / `build_json`, every provider, text or tool
  calls, LF / CRLF / CR line endings, identity / gzip / deflate / br), any split of the response
  bytes gives the same record as the unsplit answer, and that record has the mock's ground truth.
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from typing import Any

import brotli
import orjson
from fuzzkit import API_PATHS, budget, shaped_docs, splits
from hypothesis import given
from hypothesis import strategies as st

from gateway_stats.config import default_config, parse_text
from gateway_stats.config.store import ConfigStore
from gateway_stats.core import ai_log as ailog
from gateway_stats.core.observer import CallObserver
from gateway_stats.sinks import span_tags
from gateway_stats.sinks.metrics import MetricsSink
from gateway_stats.testing.mockllm import build_events, build_json, expected

MS = 1_000_000
DEMO = parse_text(
    """
use_default_attributes: true
attributes:
  - {key: fr, value_source: response_streaming_body, value: choices.0.finish_reason, rule: replace,
     apply_to_log: true}
  - {key: fr, value_source: response_body, value: choices.0.finish_reason, apply_to_log: true}
  - {key: user, value_source: request_body, value: user, default_value: anonymous, apply_to_log: true}
  - {key: ua, value_source: request_header, value: user-agent, apply_to_log: true, apply_to_span: true}
  - {key: q, value_source: request_body, value: 'messages.#(role=="user")#.content', apply_to_log: true}
gateway_stats:
  metrics: {extra_labels: [{name: client, request_header: x-client-name}]}
"""
)
CONFIGS = [default_config(), DEMO]
METRICS = MetricsSink(ConfigStore(None))

# ------------------------------------------------------------------------ arbitrary phase sequences
header_names = st.sampled_from(
    [
        ":method",
        ":path",
        ":authority",
        ":status",
        "content-type",
        "content-encoding",
        "content-length",
        "x-mse-consumer",
        "user-agent",
        "x-client-name",
        "traceparent",
        "x-session-id",
        "x-agent-session",
    ]
)
header_values = st.sampled_from(
    [
        *("POST", "200", "500", "abc", "", "text/event-stream", "application/json", "gzip", "br", "deflate"),
        *("identity", "12", "99999999999999999999", "-1"),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        *API_PATHS,
    ]
) | st.text(max_size=12)
headers = st.dictionaries(header_names, header_values, max_size=8)
attributes = st.dictionaries(
    st.sampled_from(["xds.route_name", "xds.cluster_name", "request.id", "response.code"]),
    st.text(max_size=8),
    max_size=3,
)
body_bytes = st.one_of(
    st.binary(max_size=64),
    shaped_docs.map(orjson.dumps),
    shaped_docs.map(lambda d: b"data: " + orjson.dumps(d) + b"\n\n"),
    st.just(b"data: [DONE]\n\n"),
    st.just(gzip.compress(b'{"usage":{"prompt_tokens":1}}')),
)
phase = st.one_of(
    st.tuples(st.just("request_headers"), headers, attributes, st.booleans()),
    st.tuples(st.just("request_body"), body_bytes, st.booleans()),
    st.tuples(st.just("response_headers"), headers, attributes, st.booleans()),
    st.tuples(st.just("response_body"), body_bytes, st.booleans()),
)


def _check_outputs(obs: CallObserver) -> None:
    doc = obs.ai_log()
    ailog.escaped(doc)
    rec = obs.record
    span_tags.tag_values(rec)
    if obs.observed:
        METRICS.emit(rec, doc)


@budget(600)
@given(
    st.sampled_from(CONFIGS),
    st.tuples(st.just("request_headers"), headers, attributes, st.booleans()),
    st.lists(phase, max_size=10),
    st.sampled_from(["complete", "aborted", "cancelled"]),
)
def test_no_exception_escapes_any_phase_sequence(
    cfg: Any, first: Any, phases: list[Any], reason: str
) -> None:
    obs = CallObserver(cfg)
    now = 0
    for step in [first, *phases]:
        now += MS
        name = step[0]
        if name == "request_headers":
            obs.on_request_headers(step[1], step[2], step[3], now)
        elif name == "response_headers":
            obs.on_response_headers(step[1], step[2], step[3], now)
        elif name == "request_body":
            obs.on_request_body(step[1], step[2], now)
        else:
            obs.on_response_body(step[1], step[2], now)
        _check_outputs(obs)
    obs.finish(now + MS, reason)
    _check_outputs(obs)
    METRICS.render()


# ------------------------------------------------------------------------- valid answers, any split
PROVIDER_PATHS = {
    "openai.chat": "/v1/chat/completions",
    "openai.completions": "/v1/completions",
    "openai.responses": "/v1/responses",
    "anthropic.messages": "/v1/messages",
    "gemini": "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    "gemini-json": "/v1beta/models/gemini-2.5-flash:generateContent",
    "openai.embeddings": "/v1/embeddings",
}


def _encode(enc: str, data: bytes) -> bytes:
    if enc == "gzip":
        return gzip.compress(data)
    if enc == "br":
        return brotli.compress(data)
    if enc == "deflate":
        return zlib.compress(data)
    return data


def _run(cfg: Any, path: str, req: bytes, resp_headers: dict[str, str], chunks: list[bytes]) -> Any:
    obs = CallObserver(cfg)
    obs.on_request_headers({":method": "POST", ":path": path, ":authority": "h"}, {}, False, MS)
    obs.on_request_body(req, True, 2 * MS)
    obs.on_response_headers(resp_headers, {}, False, 3 * MS)
    for c in chunks:
        obs.on_response_body(c, False, 4 * MS)
    obs.on_response_body(b"", True, 5 * MS)
    rec = obs.finish(6 * MS)
    d = dataclasses.asdict(rec)
    d.pop("wall_start")
    g = rec.chunk_gaps
    d["chunk_gaps"] = None if g is None else (g.counts, g.sum, g.count)
    return d, obs.ai_log()


@budget(250)
@given(
    st.sampled_from(sorted(PROVIDER_PATHS)),
    st.booleans(),
    st.integers(0, 12),
    st.integers(0, 3),
    st.integers(0, 40),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from(["", "gzip", "deflate", "br"]),
    st.lists(st.integers(0, 1 << 20), max_size=10),
    st.sampled_from(CONFIGS),
)
def test_valid_answer_same_record_for_every_split(
    provider: str,
    stream: bool,
    events: int,
    tools: int,
    cached: int,
    eol: str,
    enc: str,
    cuts: list[int],
    cfg: Any,
) -> None:
    path = PROVIDER_PATHS[provider]
    if provider.startswith("gemini"):
        stream = provider == "gemini"
    if provider == "openai.embeddings":
        stream = False
    body = {
        "model": "m-1",
        "stream": stream,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hello there"}],
        "input": "hi",
        "prompt": "hi",
    }
    hdrs = {"x-mock-events": str(events), "x-mock-tools": str(tools), "x-mock-cached-tokens": str(cached)}
    t = expected(path, hdrs, body)
    if t.stream:
        evs, _, _ = build_events(t, created=1)
        raw = b"".join(evs)
        if eol != "\n":
            raw = raw.replace(b"\n", eol.encode())
        ctype = "text/event-stream"
    else:
        raw = orjson.dumps(build_json(t, body, created=1))
        ctype = "application/json"
    wire = _encode(enc, raw)
    rh = {":status": "200", "content-type": ctype}
    if enc:
        rh["content-encoding"] = enc
    req = orjson.dumps(body)
    whole = _run(cfg, path, req, rh, [wire])
    assert _run(cfg, path, req, rh, splits(wire, cuts)) == whole
    rec, _ = whole
    if t.usage_reported:
        assert rec["usage"]["input_tokens"] == t.input_tokens
        if t.provider != "openai.embeddings":  # embeddings report no output tokens at all
            assert rec["usage"]["output_tokens"] == t.output_tokens
    if t.answer and t.provider != "openai.embeddings":
        assert rec["answer"] == t.answer
    assert len(rec["tool_calls"] or []) == len(t.tool_calls)
    if t.provider != "openai.embeddings":  # an embeddings answer has no id
        assert rec["chat_id"] == t.chat_id
    assert rec["caps_hit"] == []
