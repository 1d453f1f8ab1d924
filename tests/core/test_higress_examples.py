"""The Higress ai-statistics README examples, run through our loader and the sans-IO observer.

Each example config (plugins/wasm-go/extensions/ai-statistics/README_EN.md in alibaba/higress) is
written here as YAML, parsed with `parse_text`, and fed the kind of traffic the README shows; the
ai_log must carry the keys the README shows. Values are ours; types follow our contract (numbers
are JSON numbers, where old Higress printed strings). Then the attribute mechanics the README and
higress-compat.md §1-§4 describe: built-in keys without value_source, the streaming rules,
default_value, as_separate_log_field, value_length_limit, presets, path and content-type filters.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from driver import T_FIRST_CHUNK_MS, Call, run_call, sse

from gateway_stats.config import Config, parse_text
from gateway_stats.core import ai_log as ailog


def cfg(text: str) -> Config:
    return parse_text(text, "<readme example>")


CHAT_REQ = {
    "model": "qwen-turbo",
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Compute 2 to the power of 3 in Python"},
    ],
}


def chunk(content: str | None = None, *, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    return {
        "id": "chatcmpl-e4b1",
        "object": "chat.completion.chunk",
        "model": "qwen-turbo",
        "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
    }


def usage_event(inp: int, out: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-e4b1",
        "object": "chat.completion.chunk",
        "model": "qwen-turbo",
        "choices": [],
        "usage": {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out},
    }


ANSWER_STREAM = sse(
    chunk("Use "),
    chunk("`2 ** 3`"),
    chunk(", which is 8."),
    chunk(finish="stop"),
    usage_event(10, 69),
    b"[DONE]",
)
ANSWER_JSON = json.dumps(
    {
        "id": "chatcmpl-e4b2",
        "object": "chat.completion",
        "model": "qwen-turbo",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "2 ** 3 == 8"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
    }
).encode()


def stream_call(config: Any, body: bytes = ANSWER_STREAM, **kw: Any) -> Call:
    return run_call(
        config,
        request=kw.pop("request", {**CHAT_REQ, "stream": True}),
        response=body,
        content_type="text/event-stream",
        **kw,
    )


def json_call(config: Any, body: bytes = ANSWER_JSON, **kw: Any) -> Call:
    return run_call(config, request=kw.pop("request", CHAT_REQ), response=body, **kw)


# ========================================================================== README: access-log format
def test_access_log_format_line_is_json_with_the_ai_log_as_a_json_string() -> None:
    """README: log_format gets `{"ai_log":"%FILTER_STATE(wasm.ai_log:PLAIN)%"}`; the filter state is the
    ai_log JSON escaped as a string body, so the whole line stays JSON."""
    call = stream_call(cfg("{}"))
    line = '{"ai_log":"' + ailog.escaped(call.log) + '"}'
    outer = json.loads(line)
    assert json.loads(outer["ai_log"]) == call.log


# ====================================================================== README: empty configuration
def test_empty_config_stream_log_fields() -> None:
    call = stream_call(cfg(""" {} """), end="with_last")
    log = call.log
    # README: {"model":"qwen-turbo","input_token":"10","output_token":"69","llm_first_token_duration":"309",
    #          "llm_service_duration":"1955"} — the same keys, as numbers.
    assert log["model"] == "qwen-turbo"
    assert (log["input_token"], log["output_token"], log["total_token"]) == (10, 69, 79)
    assert log["llm_first_token_duration"] == T_FIRST_CHUNK_MS
    assert log["llm_service_duration"] == T_FIRST_CHUNK_MS
    for key in ("model", "input_token", "output_token", "llm_first_token_duration", "llm_service_duration"):
        assert isinstance(log[key], str if key == "model" else int), key
    assert log["response_type"] == "stream" and log["chat_round"] == 1 and log["api"] == "-"
    assert "session_id" not in log and "question" not in log and "answer" not in log  # nothing configured


def test_empty_config_stream_matches_higress_key_for_key() -> None:
    """Higress's own expectation for a content chunk and a usage chunk with an empty config (its
    main_test.go, "intact usage event"): exactly these keys, plus our documented extras
    `llm_first_content_duration` and the call's `cost`/`cost_currency` (ailog.EXTRA_KEYS)."""
    body = sse(
        {"id": "chatcmpl-parity", "choices": [{"delta": {"content": "Hello"}}], "model": "gpt-4"},
        {
            "choices": [],
            "model": "gpt-4",
            "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13},
        },
    )
    req = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hello"}]}
    log = run_call(cfg("{}"), request=req, response=body, content_type="text/event-stream").log
    timings = {
        k: log.pop(k)
        for k in ("llm_first_token_duration", "llm_first_content_duration", "llm_service_duration")
    }
    assert all(isinstance(v, int) for v in timings.values())
    cost = {k: log.pop(k) for k in ("cost", "cost_currency")}
    assert cost == {"cost": (5 * Decimal(30) + 8 * Decimal(60)) / 10**6, "cost_currency": "USD"}  # gpt-4
    assert log == {
        "api": "-",
        "chat_round": 1,
        "response_type": "stream",
        "chat_id": "chatcmpl-parity",
        "model": "gpt-4",
        "input_token": 5,
        "output_token": 8,
        "total_token": 13,
        "input_token_details": {},
        "output_token_details": {},
    }


def test_empty_config_json_log_fields() -> None:
    log = json_call(cfg("{}")).log
    assert (log["model"], log["input_token"], log["output_token"]) == ("qwen-turbo", 10, 7)
    assert "llm_first_token_duration" not in log and isinstance(log["llm_service_duration"], int)
    assert log["response_type"] == "normal"


@pytest.mark.parametrize(
    "header", ["x-openclaw-session-key", "x-clawdbot-session-key", "x-moltbot-session-key", "x-agent-session"]
)
def test_empty_config_session_id_from_default_headers(header: str) -> None:
    """README: "If the request contains a session ID header, the log will automatically include a
    session_id field"."""
    log = stream_call(cfg("{}"), req_headers={header: "sess_abc123"}).log
    assert log["session_id"] == "sess_abc123" and log["model"] == "qwen-turbo"


def test_session_id_header_priority() -> None:
    both = {"x-agent-session": "low", "x-openclaw-session-key": "high", "x-session-id": "custom"}
    assert stream_call(cfg("{}"), req_headers=both).log["session_id"] == "high"
    custom = cfg("session_id_header: X-Session-Id")
    assert stream_call(custom, req_headers=both).log["session_id"] == "custom"
    # the configured header is tried first, the defaults still follow when it is absent
    assert stream_call(custom, req_headers={"x-agent-session": "fallback"}).log["session_id"] == "fallback"


def test_api_from_route_name() -> None:
    assert json_call(cfg("{}"), route="api-1@team@v1@extra@x").log["api"] == "api-1@team@v1"
    assert json_call(cfg("{}"), route="ai-route-aliyun.internal").log["api"] == "-"


# ========================================================== README: token usage of a non-OpenAI protocol
BAILIAN = """
attributes:
  - key: model
    value_source: response_body
    value: usage.models.0.model_id
    apply_to_log: true
    apply_to_span: false
  - key: input_token
    value_source: response_body
    value: usage.models.0.input_tokens
    apply_to_log: true
    apply_to_span: false
  - key: output_token
    value_source: response_body
    value: usage.models.0.output_tokens
    apply_to_log: true
    apply_to_span: false
"""

BAILIAN_RESPONSE = json.dumps(
    {
        "output": {"finish_reason": "stop", "session_id": "0e4c...", "text": "Hangzhou is sunny today."},
        "usage": {"models": [{"output_tokens": 153, "model_id": "qwen-max", "input_tokens": 343}]},
        "request_id": "d1f0ea8e-4a2b-9a4d-a6f1-8e1c0d9f7e20",
    }
).encode()


def test_bailian_config_extracts_model_and_tokens_from_its_own_shape() -> None:
    call = run_call(
        cfg(BAILIAN),
        path="/api/v1/apps/app-1/completion",
        request={"input": {"prompt": "weather?"}},
        response=BAILIAN_RESPONSE,
    )
    log = call.log
    # README: {"model":"qwen-max","input_token":"343","output_token":"153","llm_service_duration":"19110"}
    assert (log["model"], log["input_token"], log["output_token"]) == ("qwen-max", 343, 153)
    assert isinstance(log["llm_service_duration"], int)
    assert call.rec.span_attributes == {}  # apply_to_span: false
    # As in Higress, these attributes feed the metrics too: the record (what every sink reads) has them.
    assert call.rec.model == "qwen-max"
    assert (call.rec.usage.input_tokens, call.rec.usage.output_tokens) == (343, 153)


def test_bailian_config_does_not_hide_usage_of_an_openai_shaped_answer() -> None:
    """The same route may answer in OpenAI format: the unresolved attributes must not blank the
    model and tokens extracted automatically (they would log `null`)."""
    log = json_call(cfg(BAILIAN)).log
    assert (log["model"], log["input_token"], log["output_token"]) == ("qwen-turbo", 10, 7)
    log = stream_call(cfg(BAILIAN)).log  # response_body attributes do not apply to a stream
    assert (log["model"], log["input_token"], log["output_token"]) == ("qwen-turbo", 10, 69)


# ============================================================================= README: record consumer
def test_consumer_from_request_header() -> None:
    text = """
attributes:
  - key: consumer
    value_source: request_header
    value: x-mse-consumer
    apply_to_log: true
"""
    call = json_call(cfg(text), req_headers={"x-mse-consumer": "consumer-a"})
    assert call.log["consumer"] == "consumer-a" and call.rec.consumer == "consumer-a"
    # Higress 2.0.1: an absent header reads as "" (the key is logged with ""), not null
    assert json_call(cfg(text)).log["consumer"] == ""


def test_absent_headers_log_empty_strings_and_absent_body_paths_null() -> None:
    text = """
attributes:
  - {key: rq, value_source: request_header, value: x-absent, apply_to_log: true}
  - {key: rs, value_source: response_header, value: x-absent, apply_to_log: true}
  - {key: rd, value_source: response_header, value: x-absent, default_value: dflt, apply_to_log: true}
  - {key: b, value_source: request_body, value: nope, apply_to_log: true}
  - {key: rb, value_source: response_body, value: nope, apply_to_log: true}
"""
    log = json_call(cfg(text)).log
    assert (log["rq"], log["rs"], log["rd"], log["b"], log["rb"]) == ("", "", "dflt", None, None)


def test_consumer_as_separate_log_field() -> None:
    """README: with as_separate_log_field the value gets its own access-log field
    (`%FILTER_STATE(wasm.consumer:PLAIN)%` in Higress), not a key of ai_log."""
    text = """
attributes:
  - key: consumer
    value_source: request_header
    value: x-mse-consumer
    apply_to_log: true
    as_separate_log_field: true
"""
    call = json_call(cfg(text), req_headers={"x-mse-consumer": "consumer-a"})
    assert "consumer" not in call.log
    assert call.rec.separate_log_keys == ["consumer"] and call.rec.attributes["consumer"] == "consumer-a"


# ===================================================================== README: questions and answers
QA = """
attributes:
  - key: question
    value_source: request_body
    value: messages.@reverse.0.content
    apply_to_log: true
  - key: answer
    value_source: response_streaming_body
    value: choices.0.delta.content
    rule: append
    apply_to_log: true
  - key: answer
    value_source: response_body
    value: choices.0.message.content
    apply_to_log: true
"""


def test_current_turn_question_and_answer_stream_and_json() -> None:
    log = stream_call(cfg(QA)).log
    assert log["question"] == "Compute 2 to the power of 3 in Python"
    assert log["answer"] == "Use `2 ** 3`, which is 8."
    log = json_call(cfg(QA)).log
    assert log["question"] == "Compute 2 to the power of 3 in Python" and log["answer"] == "2 ** 3 == 8"


MULTI_TURN = """
session_id_header: "x-session-id"
attributes:
  - key: messages
    value_source: request_body
    value: messages
    apply_to_log: true
  - key: question
    apply_to_log: true
  - key: answer
    apply_to_log: true
  - key: reasoning
    apply_to_log: true
  - key: tool_calls
    apply_to_log: true
"""


def test_multi_turn_builtins_with_reasoning_and_streamed_tool_calls() -> None:
    """README "Record complete multi-turn conversation history": a DeepSeek-reasoner stream with
    reasoning_content and a tool call whose arguments arrive in pieces, assembled per index."""
    req = {
        "model": "deepseek-reasoner",
        "stream": True,
        "messages": [{"role": "user", "content": "What's the weather in Beijing?"}],
    }

    def c(**delta: Any) -> dict[str, Any]:
        return {
            "id": "chatcmpl-r1",
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }

    body = sse(
        c(
            role="assistant",
            content=None,
            reasoning_content="The user wants to know the weather in Beijing, ",
        ),
        c(reasoning_content="I need to call the weather query tool."),
        c(
            tool_calls=[
                {
                    "index": 0,
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        ),
        c(tool_calls=[{"index": 0, "function": {"arguments": '{"location":'}}]),
        c(tool_calls=[{"index": 0, "function": {"arguments": '"Beijing"}'}}]),
        {
            "id": "chatcmpl-r1",
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
        },
        {
            "id": "chatcmpl-r1",
            "model": "deepseek-reasoner",
            "choices": [],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        },
        b"[DONE]",
    )
    call = run_call(
        cfg(MULTI_TURN),
        request=req,
        response=body,
        content_type="text/event-stream",
        req_headers={"x-session-id": "sess_abc123"},
        chunk_size=7,
    )
    log = call.log
    assert log["session_id"] == "sess_abc123"
    assert log["messages"] == req["messages"]
    assert log["question"] == "What's the weather in Beijing?"
    assert (
        log["reasoning"]
        == "The user wants to know the weather in Beijing, I need to call the weather query tool."
    )
    assert log["tool_calls"] == [
        {
            "id": "call_abc123",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Beijing"}'},
        }
    ]
    assert log["model"] == "deepseek-reasoner" and (log["input_token"], log["output_token"]) == (20, 10)
    assert log["answer"] is None  # no text was answered, only a tool call


def test_multi_turn_builtins_on_a_json_answer() -> None:
    log = json_call(cfg(MULTI_TURN)).log
    assert log["question"] == "Compute 2 to the power of 3 in Python" and log["answer"] == "2 ** 3 == 8"
    assert log["reasoning"] is None and log["tool_calls"] is None and log["messages"] == CHAT_REQ["messages"]


# =================================================================== README: path and content filters
SPECIFIC_PATHS = """
enable_path_suffixes:
  - "/v1/chat/completions"
  - "/v1/embeddings"
  - "/generateContent"
"""


@pytest.mark.parametrize(
    ("path", "observed"),
    [
        ("/v1/chat/completions", True),
        ("/compatible-mode/v1/chat/completions?api-version=1", True),  # the query string is ignored
        ("/v1/embeddings", True),
        ("/v1/messages", False),
        ("/v1/chat/completions/extra", False),
        ("/v1/completions", False),
    ],
)
def test_specific_paths_only(path: str, observed: bool) -> None:
    call = json_call(cfg(SPECIFIC_PATHS), path=path)
    assert call.obs.observed is observed and call.rec.observed is observed
    if observed:
        assert call.log["input_token"] == 10
    else:  # a miss means the request is ignored entirely: nothing extracted, no ai_log
        assert call.log == {} and not call.rec.usage.known and call.rec.request_model is None


def test_wildcard_path_observes_everything() -> None:
    call = json_call(cfg('enable_path_suffixes: ["*"]'), path="/my/own/llm/endpoint")
    assert call.obs.observed and call.log["input_token"] == 10


SPECIFIC_TYPES = """
enable_content_types:
  - "text/event-stream"
  - "application/json"
"""


@pytest.mark.parametrize(
    ("content_type", "observed"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Text/Event-Stream; charset=UTF-8", True),
        ("text/plain", False),
        ("application/x-ndjson", False),
    ],
)
def test_specific_content_types_only(content_type: str, observed: bool) -> None:
    body = ANSWER_STREAM if "event-stream" in content_type.lower() else ANSWER_JSON
    call = run_call(cfg(SPECIFIC_TYPES), request=CHAT_REQ, response=body, content_type=content_type)
    assert call.obs.observed and call.rec.response_observed is observed
    if not observed:
        # Higress 2.0.1: the response is ignored (no usage, no response fields, no metrics) but the
        # request side, logged at the end of the request body, stays in the line.
        assert call.log == {"api": "-", "chat_round": 1, "model": "qwen-turbo"}
        assert not call.rec.usage.known and call.rec.observed
    else:
        assert call.rec.usage.known


def test_content_type_miss_keeps_the_request_side_attributes() -> None:
    text = (
        SPECIFIC_TYPES
        + """
session_id_header: x-session
attributes:
  - {key: question, apply_to_log: true}
  - {key: tenant, value_source: request_header, value: x-tenant, apply_to_log: true}
  - {key: temp, value_source: request_body, value: temperature, apply_to_log: true}
  - {key: env, value_source: fixed_value, value: prod, apply_to_log: true}
  - {key: answer, value_source: response_body, value: choices.0.message.content, apply_to_log: true}
  - {key: server, value_source: response_header, value: server, apply_to_log: true}
  - {key: answer, apply_to_log: true}
"""
    )
    call = run_call(
        cfg(text),
        request={**CHAT_REQ, "temperature": 0.2},
        req_headers={"x-tenant": "acme", "x-session": "s-1"},
        resp_headers={"server": "upstream"},
        response=ANSWER_JSON,
        content_type="text/plain; charset=utf-8",
    )
    assert call.log == {
        "api": "-",
        "chat_round": 1,
        "model": "qwen-turbo",
        "session_id": "s-1",
        "question": "Compute 2 to the power of 3 in Python",
        "tenant": "acme",
        "temp": 0.2,
        "env": "prod",
    }
    assert call.rec.answer is None and call.rec.chat_id is None and not call.rec.response_observed


def test_complete_configuration_example() -> None:
    text = (
        SPECIFIC_PATHS
        + SPECIFIC_TYPES
        + """
attributes:
  - key: model
    value_source: request_body
    value: model
    apply_to_log: true
  - key: consumer
    value_source: request_header
    value: x-mse-consumer
    apply_to_log: true
"""
    )
    config = cfg(text)
    call = stream_call(
        config, req_headers={"x-mse-consumer": "team-a"}, request={**CHAT_REQ, "model": "qwen-turbo-latest"}
    )
    log = call.log
    assert log["consumer"] == "team-a"
    assert log["model"] == "qwen-turbo-latest"  # the attribute named `model` wins over the response model
    assert log["input_token"] == 10
    assert run_call(config, path="/v1/messages", request=CHAT_REQ, response=ANSWER_JSON).log == {}
    html = run_call(
        config,
        request=CHAT_REQ,
        response=b"<html>",
        content_type="text/html",
        req_headers={"x-mse-consumer": "b"},
    ).log
    assert html == {"api": "-", "chat_round": 1, "model": "qwen-turbo", "consumer": "b"}  # request side only


# ======================================================================= built-in keys, no value_source
ALL_BUILTINS = "attributes:\n" + "".join(
    f"  - key: {k}\n    apply_to_log: true\n"
    for k in (
        "question",
        "system",
        "answer",
        "reasoning",
        "tool_calls",
        "reasoning_tokens",
        "cached_tokens",
        "input_token_details",
        "output_token_details",
        "messages",
    )
)


def test_builtins_without_value_source_on_anthropic_stream() -> None:
    req = {
        "model": "claude-x",
        "max_tokens": 64,
        "system": "Be brief.",
        "stream": True,
        "messages": [{"role": "user", "content": "Hi?"}],
    }
    body = sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "model": "claude-x",
                "usage": {"input_tokens": 9, "cache_read_input_tokens": 5, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Greet back."},
        },
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "!"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    )
    log = run_call(
        cfg(ALL_BUILTINS), path="/v1/messages", request=req, response=body, content_type="text/event-stream"
    ).log
    assert log["question"] == "Hi?" and log["system"] == "Be brief." and log["messages"] == req["messages"]
    assert log["answer"] == "Hello!" and log["reasoning"] == "Greet back." and log["tool_calls"] is None
    assert log["cached_tokens"] == 5 and log["reasoning_tokens"] is None


def test_builtins_without_value_source_on_openai_json() -> None:
    body = {
        "model": "o3",
        "choices": [{"message": {"content": "8", "reasoning_content": "2*2*2"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 5},
        },
    }
    log = json_call(cfg(ALL_BUILTINS), body=json.dumps(body).encode()).log
    assert log["question"] == "Compute 2 to the power of 3 in Python" and log["system"] is None
    assert log["answer"] == "8" and log["reasoning"] == "2*2*2"
    assert (log["cached_tokens"], log["reasoning_tokens"]) == (3, 5)
    assert log["input_token_details"] == {"cached_tokens": 3} and log["output_token_details"] == {
        "reasoning_tokens": 5
    }


def test_builtin_key_falls_back_when_its_path_finds_nothing() -> None:
    text = """
attributes:
  - key: answer
    value_source: response_body
    value: output.text
    apply_to_log: true
  - key: question
    value_source: request_body
    value: prompt
    apply_to_log: true
"""
    log = json_call(cfg(text)).log
    assert log["answer"] == "2 ** 3 == 8" and log["question"] == "Compute 2 to the power of 3 in Python"


# ====================================================================== streaming rules and defaults
VALUES: list[Any] = ["MISSING", None, "", 0, False, {}, [], "x", 1.5, {"a": 1}, "y"]


def rule_stream(values: list[Any]) -> bytes:
    return sse(*({"seq": i} if v == "MISSING" else {"seq": i, "v": v} for i, v in enumerate(values)))


def rule_config(rule: str, default: Any = None) -> str:
    text = (
        "attributes:\n  - key: v\n    value_source: response_streaming_body\n    value: v\n"
        f"    rule: {rule}\n    apply_to_log: true\n"
    )
    if default is not None:
        text += f"    default_value: {json.dumps(default)}\n"
    return text


def test_rule_first_skips_null_and_empty_but_not_zero() -> None:
    assert stream_call(cfg(rule_config("first")), rule_stream(VALUES)).log["v"] == 0
    assert (
        stream_call(cfg(rule_config("first")), rule_stream(["MISSING", None, "", False, "x"])).log["v"]
        is False
    )
    assert stream_call(cfg(rule_config("first")), rule_stream([None, "", {}, "x"])).log["v"] == {}


def test_rule_replace_takes_the_last_non_empty() -> None:
    assert stream_call(cfg(rule_config("replace")), rule_stream(VALUES)).log["v"] == "y"
    assert (
        stream_call(cfg(rule_config("replace")), rule_stream(["a", [], None, "", "MISSING"])).log["v"] == []
    )


def test_rule_append_concatenates_string_forms() -> None:
    log = stream_call(cfg(rule_config("append")), rule_stream(VALUES)).log
    assert log["v"] == '0false{}[]x1.5{"a":1}y'  # null → "", numbers → text, objects → raw JSON


def test_rule_append_is_always_a_string() -> None:
    assert stream_call(cfg(rule_config("append")), rule_stream(["MISSING", "MISSING"])).log["v"] == ""
    assert stream_call(cfg(rule_config("append")), rule_stream([None, None])).log["v"] == ""
    assert stream_call(cfg(rule_config("append")), rule_stream([1, 2])).log["v"] == "12"


def test_rules_hold_over_any_split_of_the_stream() -> None:
    body = rule_stream(VALUES)
    for rule, want in (("first", 0), ("replace", "y"), ("append", '0false{}[]x1.5{"a":1}y')):
        for size in (1, 3, 17):
            assert stream_call(cfg(rule_config(rule)), body, chunk_size=size).log["v"] == want


@pytest.mark.parametrize("rule", ["first", "replace", "append"])
def test_default_value_when_missing_or_empty(rule: str) -> None:
    for values in (["MISSING"], [None], [""], ["", None]):
        log = stream_call(cfg(rule_config(rule, default="dflt")), rule_stream(values)).log
        assert log["v"] == "dflt", (rule, values)
    log = stream_call(cfg(rule_config(rule, default=42)), rule_stream(["MISSING"])).log
    assert log["v"] == 42  # a typed default stays typed


def test_default_value_for_every_source() -> None:
    text = """
attributes:
  - {key: h, value_source: request_header, value: x-missing, default_value: dh, apply_to_log: true}
  - {key: rh, value_source: response_header, value: x-missing, default_value: drh, apply_to_log: true}
  - {key: b, value_source: request_body, value: nope, default_value: db, apply_to_log: true}
  - {key: e, value_source: request_body, value: empty, default_value: de, apply_to_log: true}
  - {key: rb, value_source: response_body, value: nope, default_value: drb, apply_to_log: true}
  - {key: ok, value_source: request_body, value: model, default_value: unused, apply_to_log: true}
"""
    log = json_call(cfg(text), request={**CHAT_REQ, "empty": ""}).log
    assert (log["h"], log["rh"], log["b"], log["e"], log["rb"], log["ok"]) == (
        "dh",
        "drh",
        "db",
        "de",
        "drb",
        "qwen-turbo",
    )


def test_later_attribute_with_the_same_key_wins_when_it_resolves() -> None:
    text = """
attributes:
  - {key: k, value_source: fixed_value, value: first, apply_to_log: true}
  - {key: k, value_source: request_body, value: model, apply_to_log: true}
  - {key: k, value_source: request_body, value: nope, apply_to_log: true}
"""
    assert json_call(cfg(text)).log["k"] == "qwen-turbo"


# =============================================================================== value_length_limit
def test_value_length_limit_truncates_long_values() -> None:
    text = """
value_length_limit: 10
attributes:
  - key: question
    value_source: request_body
    value: messages.@reverse.0.content
    apply_to_log: true
    apply_to_span: true
  - {key: messages, value_source: request_body, value: messages, apply_to_log: true}
  - {key: n, value_source: fixed_value, value: short, apply_to_log: true}
  - {key: t, value_source: request_body, value: temperature, apply_to_log: true}
"""
    req = {
        **CHAT_REQ,
        "temperature": 0.123456789012345,
        "messages": [{"role": "user", "content": "abcdefghijklmnopqrstuvwxyz"}],
    }
    call = json_call(cfg(text), request=req)
    log = call.log
    assert log["question"] == "abcde [truncated] vwxyz"  # first limit/2 + marker + last limit/2
    assert log["messages"] == '[{"ro [truncated] yz"}]'  # objects: their JSON text, cut, as a string
    assert log["n"] == "short" and log["t"] == 0.123456789012345  # short values and numbers untouched
    assert call.rec.span_attributes["question"] == "abcdefghijklmnopqrstuvwxyz"  # spans are untruncated


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("{}", 32000),
        ("use_default_attributes: true", 10485760),
        ("use_default_response_attributes: true", 4000),
        ("use_default_attributes: true\nvalue_length_limit: 50", 50),
    ],
)
def test_value_length_limit_defaults_by_preset(text: str, limit: int) -> None:
    assert cfg(text).default.value_length_limit == limit


def test_light_preset_truncates_at_4000() -> None:
    text = """
use_default_response_attributes: true
attributes:
  - {key: q, value_source: request_body, value: messages.0.content, apply_to_log: true}
"""
    req = {**CHAT_REQ, "messages": [{"role": "user", "content": "x" * 5000}]}
    log = json_call(cfg(text), request=req).log
    assert log["q"] == "x" * 2000 + " [truncated] " + "x" * 2000
    assert (
        "reasoning_tokens" in log and "question" not in log
    )  # the custom attribute joins the preset (#4018)
