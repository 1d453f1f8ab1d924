"""Configured attributes, built-in keys and the ai_log, through the sans-IO observer."""

from __future__ import annotations

import json
from typing import Any

from higress_readme import README_A  # the Higress README's first example config

from gateway_stats.config import parse_config
from gateway_stats.core.attributes import truncate_for_log
from gateway_stats.core.observer import CallObserver

MS = 1_000_000

REQ = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "what is 2+2?"},
    ],
}


def sse(*docs: Any) -> bytes:
    return b"".join(
        b"data: " + (d if isinstance(d, bytes) else json.dumps(d).encode()) + b"\n\n" for d in docs
    )


def chunk(content: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    delta.update(extra.pop("delta", {}))
    return {
        "id": "c1",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": extra.pop("finish", None)}],
        **extra,
    }


def run(
    cfg: dict[str, Any],
    req: dict[str, Any],
    body: bytes,
    *,
    stream: bool,
    path: str = "/v1/chat/completions",
    req_headers: dict[str, str] | None = None,
    resp_headers: dict[str, str] | None = None,
    chunks: int = 3,
) -> tuple[CallObserver, dict[str, Any]]:
    obs = CallObserver(parse_config(cfg))
    h = {":method": "POST", ":path": path, ":authority": "api.example.com", **(req_headers or {})}
    obs.on_request_headers(h, {"xds.route_name": "r"}, False, 1 * MS)
    obs.on_request_body(json.dumps(req).encode(), True, 2 * MS)
    ct = "text/event-stream" if stream else "application/json"
    obs.on_response_headers({":status": "200", "content-type": ct, **(resp_headers or {})}, {}, False, 3 * MS)
    step = max(1, len(body) // chunks)
    for i in range(0, len(body), step):
        obs.on_response_body(body[i : i + step], False, 4 * MS)
    obs.on_response_body(b"", True, 5 * MS)
    obs.finish(6 * MS)
    return obs, obs.ai_log()


def test_readme_example_stream_and_json() -> None:
    body = sse(chunk("2+2"), chunk(" is"), chunk(" 4"), chunk(finish="stop"), b"[DONE]")
    _, log = run(README_A, REQ, body, stream=True)
    assert log["question"] == "what is 2+2?"
    assert log["answer"] == "2+2 is 4"
    resp = {"id": "x", "model": "gpt-4o", "choices": [{"message": {"content": "four"}}]}
    _, log = run(README_A, REQ, json.dumps(resp).encode(), stream=False)
    assert log["answer"] == "four" and log["question"] == "what is 2+2?"


def test_default_preset_stream_with_reasoning_tools_and_usage_details() -> None:
    body = sse(
        chunk(delta={"reasoning_content": "think "}),
        chunk(delta={"reasoning_content": "hard"}),
        chunk("Hi"),
        chunk(
            delta={
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk(delta={"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk(delta={"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        {
            "id": "c1",
            "model": "gpt-4o",
            "choices": [],
            "usage": {
                "prompt_tokens": 20,
                "completion_tokens": 9,
                "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 8},
                "completion_tokens_details": {"reasoning_tokens": 4},
            },
        },
        b"[DONE]",
    )
    _, log = run({"use_default_attributes": True}, REQ, body, stream=True, chunks=7)
    assert log["question"] == "what is 2+2?"
    assert log["messages"] == REQ["messages"]
    assert log["system"] is None  # no top-level system: configured but unresolved → null
    assert log["answer"] == "Hi"
    assert log["reasoning"] == "think hard"
    assert log["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert log["reasoning_tokens"] == 4 and log["cached_tokens"] == 8
    assert log["input_token_details"] == {"cached_tokens": 8}
    assert log["output_token_details"] == {"reasoning_tokens": 4}
    assert (log["input_token"], log["output_token"], log["total_token"]) == (20, 9, 29)


def test_streaming_rules_first_replace_append_and_defaults() -> None:
    cfg = {
        "attributes": [
            {
                "key": "f",
                "value_source": "response_streaming_body",
                "value": "choices.0.delta.content",
                "rule": "first",
                "apply_to_log": True,
            },
            {
                "key": "r",
                "value_source": "response_streaming_body",
                "value": "choices.0.delta.content",
                "rule": "replace",
                "apply_to_log": True,
            },
            {
                "key": "a",
                "value_source": "response_streaming_body",
                "value": "n",
                "rule": "append",
                "apply_to_log": True,
            },
            {
                "key": "missing",
                "value_source": "response_streaming_body",
                "value": "nope",
                "rule": "first",
                "default_value": "dflt",
                "apply_to_log": True,
            },
            {
                "key": "unresolved",
                "value_source": "response_streaming_body",
                "value": "nope",
                "rule": "replace",
                "apply_to_log": True,
            },
            {"key": "fixed", "value_source": "fixed_value", "value": "team-x", "apply_to_log": True},
            {"key": "ua", "value_source": "request_header", "value": "User-Agent", "apply_to_log": True},
            {"key": "rid", "value_source": "response_header", "value": "x-upstream-id", "apply_to_log": True},
        ]
    }
    body = sse(chunk("", n=1), chunk("one", n=None), chunk(None, n={"k": 2}), chunk("two", n="s"))
    _, log = run(
        cfg,
        REQ,
        body,
        stream=True,
        req_headers={"user-agent": "curl/8"},
        resp_headers={"x-upstream-id": "u-7"},
    )
    assert log["f"] == "one" and log["r"] == "two"
    assert log["a"] == '1{"k":2}s'
    assert log["missing"] == "dflt" and log["unresolved"] is None
    assert log["fixed"] == "team-x" and log["ua"] == "curl/8" and log["rid"] == "u-7"


def test_numbers_stay_numbers_and_objects_objects() -> None:
    cfg = {
        "attributes": [
            {"key": "temp", "value_source": "request_body", "value": "temperature", "apply_to_log": True},
            {"key": "first_msg", "value_source": "request_body", "value": "messages.0", "apply_to_log": True},
            {
                "key": "n_user",
                "value_source": "request_body",
                "value": 'messages.#(role=="user")#|#',
                "apply_to_log": True,
            },
            {
                "key": "jp",
                "value_source": "request_body",
                "value": "$.messages[1].content",
                "apply_to_log": True,
            },
        ]
    }
    _, log = run(cfg, {**REQ, "temperature": 0.5}, b'{"model":"m"}', stream=False)
    assert log["temp"] == 0.5 and log["first_msg"] == {"role": "system", "content": "be nice"}
    assert log["n_user"] == 2 and log["jp"] == "first"


def test_value_length_limit_is_utf8_safe_and_json_stays_valid() -> None:
    assert truncate_for_log("abcdefghij", 4) == "ab [truncated] ij"
    cut = truncate_for_log("é" * 10, 5)  # 20 bytes; halves of 2 bytes each
    assert cut == "é [truncated] é"
    assert truncate_for_log({"k": "v" * 50}, 10).startswith('{"k":')
    cfg = {
        "value_length_limit": 9,
        "attributes": [
            {
                "key": "question",
                "value_source": "request_body",
                "value": "messages.@reverse.0.content",
                "apply_to_log": True,
            }
        ],
    }
    _, log = run(
        cfg, {"messages": [{"role": "user", "content": "日本語のテキストです"}]}, b"{}", stream=False
    )
    assert " [truncated] " in log["question"]
    from gateway_stats.core import ai_log as ailog

    json.loads(json.loads('"' + ailog.escaped(log) + '"'))  # the escaped form is valid JSON-in-JSON


def test_separate_log_field_and_span_attributes() -> None:
    cfg = {
        "attributes": [
            {
                "key": "question",
                "value_source": "request_body",
                "value": "messages.@reverse.0.content",
                "apply_to_log": True,
                "as_separate_log_field": True,
                "apply_to_span": True,
                "trace_span_key": "gen_ai.prompt",
            },
            {"key": "user", "value_source": "request_header", "value": "x-user", "apply_to_span": True},
        ]
    }
    obs, log = run(cfg, REQ, b"{}", stream=False, req_headers={"x-user": "u1"})
    assert "question" not in log
    assert obs.record.separate_log_keys == ["question"]
    assert obs.record.attributes["question"] == "what is 2+2?"
    assert obs.record.span_attributes == {"gen_ai.prompt": "what is 2+2?", "user": "u1"}


def test_anthropic_stream_answer_tools_without_brace_prefix_and_cache_tokens() -> None:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "model": "claude-x",
                    "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 30},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Let me check"},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
            },
        ),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 25}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    body = b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)
    obs, log = run(
        {"use_default_attributes": True},
        {
            "model": "claude-x",
            "max_tokens": 9,
            "system": "sys",
            "messages": [{"role": "user", "content": "w?"}],
        },
        body,
        stream=True,
        path="/v1/messages",
        chunks=5,
    )
    assert log["answer"] == "Let me check" and log["system"] == "sys"
    assert log["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Oslo"}'}
    assert log["tool_calls"][0]["id"] == "toolu_1"
    assert (log["input_token"], log["output_token"]) == (12, 25)
    assert log["cached_tokens"] == 30 and log["total_token"] == 12 + 25 + 30
    assert obs.record.finish_reasons == ["tool_use"] and obs.record.provider == "anthropic"


def test_disable_openai_usage_and_path_suffixes() -> None:
    body = json.dumps({"model": "gpt-4o", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()
    _, log = run({"disable_openai_usage": True}, REQ, body, stream=False)
    assert "input_token" not in log and log["model"] == "gpt-4o"  # the request model still names the call
    obs, log = run({"enable_path_suffixes": ["/messages"]}, REQ, body, stream=False)
    assert log == {} and not obs.record.observed


def test_match_rules_select_by_route() -> None:
    cfg = {
        "defaultConfig": {
            "attributes": [{"key": "d", "value_source": "fixed_value", "value": "1", "apply_to_log": True}]
        },
        "matchRules": [
            {
                "_match_route_": ["r"],
                "config": {
                    "attributes": [
                        {"key": "m", "value_source": "fixed_value", "value": "2", "apply_to_log": True}
                    ]
                },
            }
        ],
    }
    _, log = run(cfg, REQ, b"{}", stream=False)
    assert log["d"] == "1" and log["m"] == "2"  # the rule inherits defaultConfig (Higress #4173 fixed)


def test_request_side_values_are_in_the_ai_log_written_at_the_end_of_the_request_body() -> None:
    """Higress 2.0.1 writes `question` (and every request-side attribute) with the ai_log at the end of
    the request body, so a stream cut before its end still logs them; response-side keys come later."""
    cfg = {
        **README_A,
        "attributes": [
            *README_A["attributes"],
            {"key": "tenant", "value_source": "request_header", "value": "x-tenant", "apply_to_log": True},
            {"key": "temp", "value_source": "request_body", "value": "temperature", "apply_to_log": True},
        ],
    }
    obs = CallObserver(parse_config(cfg))
    h = {":method": "POST", ":path": "/v1/chat/completions", ":authority": "a", "x-tenant": "acme"}
    obs.on_request_headers(h, {"xds.route_name": "r"}, False, 1 * MS)
    assert obs.on_request_body(json.dumps({**REQ, "temperature": 0.5}).encode(), True, 2 * MS) is True
    log = obs.ai_log()  # what the answer to the request body carries
    assert (log["question"], log["tenant"], log["temp"]) == ("what is 2+2?", "acme", 0.5)
    assert "answer" not in log and "response_type" not in log  # response side: not known yet (Higress)
    obs.on_response_headers({":status": "200", "content-type": "text/event-stream"}, {}, False, 3 * MS)
    assert obs.on_response_body(sse(chunk("2+2")), False, 4 * MS) is True  # first event: chat id
    log = obs.ai_log()
    assert log["question"] == "what is 2+2?" and log["chat_id"] == "c1"
    obs.finish(5 * MS, "aborted")  # the client hung up: the record has the partial answer
    assert obs.ai_log()["answer"] == "2+2" and obs.ai_log()["question"] == "what is 2+2?"
