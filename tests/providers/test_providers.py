"""Each provider shape, stream and non-stream, through the sans-IO observer: record and ai_log.

The fixtures are hand-written after the providers' public formats (OpenAI chat completion and
chunk objects with `stream_options.include_usage`, legacy completions, embeddings, the Responses
API object and its SSE events, Anthropic messages and their SSE events, Gemini generateContent and
streamGenerateContent?alt=sse chunks). Every stream is also replayed one byte per chunk and at
random cuts: the result must not depend on how the transport split the bytes.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from driver import MS, T_FIRST_CHUNK_MS, Call, run_call, sse, start_call

FULL = {"use_default_attributes": True, "value_length_limit": 100000}

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "Which unit?"},
    {"role": "user", "content": "Celsius."},
]


def splits(body: bytes) -> list[dict[str, Any]]:
    """Ways to deliver one body: whole, one byte per chunk, and at a few seeded random cuts."""
    rnd = random.Random(len(body))
    ways: list[dict[str, Any]] = [{}, {"chunk_size": 1}]
    for _ in range(3):
        ways.append({"cuts": rnd.sample(range(1, len(body)), min(5, len(body) - 1))})
    return ways


TIMINGS = ("llm_first_token_duration", "llm_first_content_duration", "llm_service_duration")


def untimed(log: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in log.items() if k not in TIMINGS}


def run_all_ways(body: bytes, **kw: Any) -> list[Call]:
    calls = [run_call(response=body, **kw, **way) for way in splits(body)]
    first = untimed(calls[0].log)
    for c in calls[1:]:
        assert untimed(c.log) == first, "the ai_log must not depend on how the body was split"
    return calls


# ============================================================================ OpenAI chat completions
CHAT_JSON = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "It is 18 degrees in Paris.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 31,
        "completion_tokens": 9,
        "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_3f58d112f7",
}


def test_openai_chat_json() -> None:
    body = json.dumps(CHAT_JSON).encode()
    (call, *_) = run_all_ways(body, config=FULL, request={"model": "gpt-4.1", "messages": MESSAGES})
    rec, log = call.rec, call.log
    assert (rec.provider, rec.operation, rec.request_model, rec.response_model) == (
        "openai",
        "chat",
        "gpt-4.1",
        "gpt-4.1-2025-04-14",
    )
    assert rec.answer == "It is 18 degrees in Paris." and rec.finish_reasons == ["stop"]
    assert rec.usage.cached_tokens == 16 and rec.usage.reasoning_tokens == 0
    assert not rec.failed and rec.end_reason == "complete"
    assert log["model"] == "gpt-4.1-2025-04-14"
    assert (log["input_token"], log["output_token"], log["total_token"]) == (31, 9, 40)
    assert log["input_token_details"] == {"cached_tokens": 16, "audio_tokens": 0}
    assert log["output_token_details"]["reasoning_tokens"] == 0
    assert log["cached_tokens"] == 16 and log["reasoning_tokens"] == 0
    assert log["answer"] == "It is 18 degrees in Paris."
    assert log["question"] == "Celsius." and log["messages"] == MESSAGES
    assert log["chat_id"] == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    assert log["chat_round"] == 2 and log["response_type"] == "normal"
    assert log["reasoning"] is None and log["tool_calls"] is None and log["system"] is None
    assert "llm_first_token_duration" not in log  # streams only
    # complete at Content-Length; the trailing end-of-stream message does not move the end
    assert log["llm_service_duration"] == T_FIRST_CHUNK_MS


def test_openai_chat_json_tool_calls_and_reasoning_content() -> None:
    body = {
        "id": "chatcmpl-tools",
        "object": "chat.completion",
        "model": "deepseek-reasoner",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "The user wants weather; call the tool.",
                    "tool_calls": [
                        {
                            "id": "call_abc",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "call_def",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
                            "extra_content": {"google": {"thought_signature": "c2ln"}},  # kept as sent
                        },
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
    }
    call = run_call(
        FULL, request={"model": "deepseek-reasoner", "messages": MESSAGES}, response=json.dumps(body).encode()
    )
    log = call.log
    assert log["answer"] is None  # content null: nothing answered in text
    assert log["reasoning"] == "The user wants weather; call the tool."
    # Higress 2.0.1: the message's tool_calls exactly as sent, no key added
    assert log["tool_calls"] == body["choices"][0]["message"]["tool_calls"]  # type: ignore[index]
    assert "index" not in log["tool_calls"][0] and "index" not in log["tool_calls"][1]
    assert call.rec.finish_reasons == ["tool_calls"]


def chat_chunk(
    delta: dict[str, Any] | None = None, *, finish: str | None = None, cid: str = "chatcmpl-s1"
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        "usage": None,  # include_usage: every chunk but the last carries `usage: null`
    }


def usage_chunk(usage: dict[str, Any], cid: str = "chatcmpl-s1") -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],  # the include_usage chunk: empty choices
        "usage": usage,
    }


CHAT_STREAM = sse(
    chat_chunk({"role": "assistant", "content": "", "refusal": None}),
    chat_chunk({"reasoning_content": "Paris… "}),
    chat_chunk({"reasoning_content": "use the tool."}),
    chat_chunk({"content": "Let me "}),
    chat_chunk({"content": "check."}),
    chat_chunk(
        {
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
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    chat_chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        }
    ),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}),
    chat_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz":"CET"}'}}]}),
    chat_chunk({}, finish="tool_calls"),
    usage_chunk(
        {
            "prompt_tokens": 50,
            "completion_tokens": 21,
            "total_tokens": 71,
            "prompt_tokens_details": {"cached_tokens": 32},
            "completion_tokens_details": {"reasoning_tokens": 7},
        }
    ),
    b"[DONE]",
)


def test_openai_chat_stream_include_usage_tools_reasoning() -> None:
    req = {
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": MESSAGES,
    }
    (call, *_) = run_all_ways(CHAT_STREAM, config=FULL, request=req, content_type="text/event-stream")
    rec, log = call.rec, call.log
    assert rec.request_stream and rec.is_stream and log["response_type"] == "stream"
    assert log["model"] == "gpt-4o-mini-2024-07-18"
    assert (log["input_token"], log["output_token"], log["total_token"]) == (50, 21, 71)
    assert log["cached_tokens"] == 32 and log["reasoning_tokens"] == 7
    assert log["input_token_details"] == {"cached_tokens": 32}
    assert log["output_token_details"] == {"reasoning_tokens": 7}
    assert log["answer"] == "Let me check."
    assert log["reasoning"] == "Paris… use the tool."
    assert log["tool_calls"] == [  # assembled: `index` omitted when 0 (Higress's Go omitempty)
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "index": 1,
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
        },
    ]
    assert log["chat_id"] == "chatcmpl-s1" and log["chat_round"] == 2
    assert rec.finish_reasons == ["tool_calls"]
    assert rec.sse_events == 13  # 12 JSON chunks and [DONE]
    assert not rec.failed


def test_openai_chat_stream_timings_come_from_the_clock_given() -> None:
    first_content = CHAT_STREAM.index(b"Paris")  # the first reasoning delta
    event_end = CHAT_STREAM.index(b"\n\n", first_content) + 2
    call = run_call(
        request={"model": "gpt-4o-mini", "stream": True, "messages": MESSAGES},
        response=CHAT_STREAM,
        content_type="text/event-stream",
        cuts=[first_content - 20, event_end],  # 3 chunks at 20, 21, 22 ms; the content event ends the 2nd
        end="with_last",
    )
    log = call.log
    assert log["llm_first_token_duration"] == T_FIRST_CHUNK_MS  # first body byte (Higress's "first token")
    assert log["llm_first_content_duration"] == T_FIRST_CHUNK_MS + 1  # first generated content
    assert log["llm_service_duration"] == T_FIRST_CHUNK_MS + 2  # end of stream with the last chunk


def test_openai_chat_stream_without_usage_records_no_tokens() -> None:
    body = sse(chat_chunk({"content": "Hi"}), chat_chunk({}, finish="stop"), b"[DONE]")
    call = run_call(
        request={"model": "gpt-4o-mini", "messages": MESSAGES},
        response=body,
        content_type="text/event-stream",
    )
    log = call.log
    assert not call.rec.usage.known
    assert "input_token" not in log and "output_token" not in log and "total_token" not in log
    assert log["model"] == "gpt-4o-mini-2024-07-18" and not call.rec.failed
    assert call.rec.answer == "Hi"


# ============================================================================= OpenAI legacy completions
COMPLETIONS_REQ = {
    "model": "gpt-3.5-turbo-instruct",
    "prompt": "Say this is a test",
    "max_tokens": 7,
    "temperature": 0,
}


def test_openai_completions_json() -> None:
    body = {
        "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
        "object": "text_completion",
        "created": 1589478378,
        "model": "gpt-3.5-turbo-instruct",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [
            {"text": "\n\nThis is indeed a test", "index": 0, "logprobs": None, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
    call = run_call(FULL, path="/v1/completions", request=COMPLETIONS_REQ, response=json.dumps(body).encode())
    rec, log = call.rec, call.log
    assert (rec.provider, rec.operation) == ("openai", "text_completion")
    assert rec.request_params == {"max_tokens": 7, "temperature": 0}
    assert log["answer"] == "\n\nThis is indeed a test" and rec.finish_reasons == ["length"]
    assert (log["input_token"], log["output_token"], log["total_token"]) == (5, 7, 12)
    assert log["question"] == "Say this is a test"  # the prompt stands in for the last message
    assert log["chat_id"] == "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7" and log["model"] == "gpt-3.5-turbo-instruct"


def test_openai_completions_stream() -> None:
    def piece(text: str, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "cmpl-7iA7iJjj8V2zOkCGvWF2hAkDWBQZe",
            "object": "text_completion",
            "created": 1690759702,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            "model": "gpt-3.5-turbo-instruct",
            "system_fingerprint": "fp_44709d6fcb",
        }

    usage = {
        "id": "cmpl-7iA7iJjj8V2zOkCGvWF2hAkDWBQZe",
        "object": "text_completion",
        "created": 1690759702,
        "choices": [],
        "model": "gpt-3.5-turbo-instruct",
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }
    body = sse(piece("This"), piece(" is"), piece(" a test", "stop"), usage, b"[DONE]")
    (call, *_) = run_all_ways(
        body,
        config=FULL,
        path="/v1/completions",
        request={**COMPLETIONS_REQ, "stream": True},
        content_type="text/event-stream",
    )
    log = call.log
    assert log["answer"] == "This is a test" and call.rec.finish_reasons == ["stop"]
    assert (log["input_token"], log["output_token"], log["total_token"]) == (5, 3, 8)
    assert log["chat_id"] == "cmpl-7iA7iJjj8V2zOkCGvWF2hAkDWBQZe" and log["response_type"] == "stream"


# =================================================================================== OpenAI embeddings
def test_openai_embeddings() -> None:
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0023064255, -0.009327292, 0.015797347]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    req = {"model": "text-embedding-3-small", "input": "The food was delicious", "encoding_format": "float"}
    call = run_call(FULL, path="/v1/embeddings", request=req, response=json.dumps(body).encode())
    rec, log = call.rec, call.log
    assert (rec.provider, rec.operation) == ("openai", "embeddings")
    assert (log["input_token"], log["output_token"], log["total_token"]) == (8, 0, 8)
    assert log["model"] == "text-embedding-3-small" and "chat_id" not in log  # embeddings carry no id
    assert log["chat_round"] == 0  # no messages: zero rounds, still logged (Higress always writes it)
    assert log["input_token_details"] == {} and log["output_token_details"] == {}  # usage without details
    # embedding inputs are not questions: null, as in Higress (which reads only `messages`)
    assert log["answer"] is None and log["question"] is None
    assert rec.answer is None and rec.finish_reasons == [] and not rec.failed


# ===================================================================================== Responses API
RESPONSES_REQ = {
    "model": "o4-mini",
    "input": "Weather in Paris?",
    "reasoning": {"effort": "low", "summary": "auto"},
}
RESPONSES_USAGE = {
    "input_tokens": 36,
    "input_tokens_details": {"cached_tokens": 12},
    "output_tokens": 87,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 123,
}
RESPONSES_OUTPUT = [
    {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Need the weather tool."}],
    },
    {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "arguments": '{"location":"Paris, France"}',
        "call_id": "call_12345xyz",
        "name": "get_weather",
    },
    {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Checking the weather.", "annotations": []}],
    },
]


def responses_object(status: str, output: list[Any], usage: Any) -> dict[str, Any]:
    return {
        "id": "resp_67ccd3a9da748190baa7f1570fe91ac6",
        "object": "response",
        "created_at": 1741476777,
        "status": status,
        "error": None,  # present and null on every Responses object: not a failure
        "incomplete_details": None,
        "model": "o4-mini-2025-04-16",
        "output": output,
        "parallel_tool_calls": True,
        "usage": usage,
    }


def assert_responses_log(call: Call) -> None:
    rec, log = call.rec, call.log
    assert (rec.provider, rec.extra["api_kind"]) == ("openai", "responses")
    assert log["model"] == "o4-mini-2025-04-16"
    assert (log["input_token"], log["output_token"], log["total_token"]) == (36, 87, 123)
    assert log["cached_tokens"] == 12 and log["reasoning_tokens"] == 64
    assert log["input_token_details"] == {"cached_tokens": 12}
    assert log["output_token_details"] == {"reasoning_tokens": 64}
    assert log["answer"] == "Checking the weather."
    assert log["reasoning"] == "Need the weather tool."
    assert log["tool_calls"] == [
        {
            "index": 1,
            "id": "call_12345xyz",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Paris, France"}'},
        }
    ]
    assert log["chat_id"] == "resp_67ccd3a9da748190baa7f1570fe91ac6"
    assert log["question"] == "Weather in Paris?"
    assert rec.finish_reasons == ["completed"] and not rec.failed


def test_responses_json() -> None:
    body = responses_object("completed", RESPONSES_OUTPUT, RESPONSES_USAGE)
    call = run_call(FULL, path="/v1/responses", request=RESPONSES_REQ, response=json.dumps(body).encode())
    assert_responses_log(call)
    assert call.log["response_type"] == "normal"


def responses_stream() -> bytes:
    seq = iter(range(100))

    def ev(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    reasoning_item = {"id": "rs_1", "type": "reasoning", "summary": []}
    fc_item = {
        "id": "fc_1",
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": "call_12345xyz",
        "name": "get_weather",
    }
    msg_item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    return sse(
        ev("response.created", response=responses_object("in_progress", [], None)),
        ev("response.in_progress", response=responses_object("in_progress", [], None)),
        ev("response.output_item.added", output_index=0, item=reasoning_item),
        ev(
            "response.reasoning_summary_part.added",
            item_id="rs_1",
            output_index=0,
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        ),
        ev(
            "response.reasoning_summary_text.delta",
            item_id="rs_1",
            output_index=0,
            summary_index=0,
            delta="Need the ",
        ),
        ev(
            "response.reasoning_summary_text.delta",
            item_id="rs_1",
            output_index=0,
            summary_index=0,
            delta="weather tool.",
        ),
        ev(
            "response.reasoning_summary_text.done",
            item_id="rs_1",
            output_index=0,
            summary_index=0,
            text="Need the weather tool.",
        ),
        ev("response.output_item.done", output_index=0, item=RESPONSES_OUTPUT[0]),
        ev("response.output_item.added", output_index=1, item=fc_item),
        ev("response.function_call_arguments.delta", item_id="fc_1", output_index=1, delta='{"location":'),
        ev(
            "response.function_call_arguments.delta", item_id="fc_1", output_index=1, delta='"Paris, France"}'
        ),
        ev(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=1,
            arguments='{"location":"Paris, France"}',
        ),
        ev("response.output_item.done", output_index=1, item=RESPONSES_OUTPUT[1]),
        ev("response.output_item.added", output_index=2, item=msg_item),
        ev(
            "response.content_part.added",
            item_id="msg_1",
            output_index=2,
            content_index=0,
            part={"type": "output_text", "text": "", "annotations": []},
        ),
        ev(
            "response.output_text.delta",
            item_id="msg_1",
            output_index=2,
            content_index=0,
            delta="Checking ",
            logprobs=[],
        ),
        ev(
            "response.output_text.delta",
            item_id="msg_1",
            output_index=2,
            content_index=0,
            delta="the weather.",
            logprobs=[],
        ),
        ev(
            "response.output_text.done",
            item_id="msg_1",
            output_index=2,
            content_index=0,
            text="Checking the weather.",
            logprobs=[],
        ),
        ev("response.output_item.done", output_index=2, item=RESPONSES_OUTPUT[2]),
        ev("response.completed", response=responses_object("completed", RESPONSES_OUTPUT, RESPONSES_USAGE)),
    )


def test_responses_stream_events() -> None:
    body = responses_stream()
    (call, *_) = run_all_ways(
        body,
        config=FULL,
        path="/v1/responses",
        request={**RESPONSES_REQ, "stream": True},
        content_type="text/event-stream",
    )
    assert_responses_log(call)  # the `.done` events and the final object repeat the text: never doubled
    assert call.log["response_type"] == "stream"


def test_responses_stream_is_complete_at_response_completed_without_done_marker() -> None:
    """No `[DONE]` in the Responses API: `response.completed` ends the answer, so the ai_log is whole
    (and re-attached) on the chunk that carries it, before Envoy's end-of-stream message arrives."""
    body = responses_stream()
    obs = start_call(FULL, path="/v1/responses", request=RESPONSES_REQ, content_type="text/event-stream")
    cut = body.index(b"event: response.completed")
    assert obs.on_response_body(body[:cut], False, T_FIRST_CHUNK_MS * MS) is True  # the id arrived
    assert "input_token" not in obs.ai_log() and obs.ai_log()["chat_id"]
    assert obs.on_response_body(body[cut:], False, (T_FIRST_CHUNK_MS + 1) * MS) is True
    log = obs.ai_log()
    assert not obs.record.finished
    assert (log["input_token"], log["output_token"], log["answer"]) == (36, 87, "Checking the weather.")
    assert log["llm_service_duration"] == T_FIRST_CHUNK_MS + 1


# ========================================================================================= Anthropic
ANTHROPIC_REQ = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": "You are a weather bot.",
    "thinking": {"type": "enabled", "budget_tokens": 512},
    "messages": [
        {"role": "user", "content": "Weather in San Francisco?"},
        {"role": "assistant", "content": "Which unit?"},
        {"role": "user", "content": [{"type": "text", "text": "Fahrenheit"}]},
    ],
}
ANTHROPIC_USAGE = {
    "input_tokens": 472,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 2000,
    "output_tokens": 89,
}


def assert_anthropic_log(call: Call) -> None:
    rec, log = call.rec, call.log
    assert (rec.provider, rec.operation) == ("anthropic", "chat")
    assert log["model"] == "claude-sonnet-4-5-20250929"
    assert (log["input_token"], log["output_token"]) == (472, 89)
    # no total in Anthropic usage: input + output + cache reads + cache writes (input excludes the cache)
    assert log["total_token"] == 472 + 89 + 2000 + 100
    assert log["cached_tokens"] == 2000 and rec.usage.cache_creation_tokens == 100
    assert log["answer"] == "I'll look that up."
    assert log["reasoning"] == "The user wants SF weather."
    assert log["tool_calls"] == [
        {
            "index": 2,
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"F"}'},
        }
    ]
    assert log["system"] == "You are a weather bot."
    assert log["question"] == [{"type": "text", "text": "Fahrenheit"}]
    assert log["chat_id"] == "msg_01XFDUDYJgAACzvnptvVoYEL" and log["chat_round"] == 2
    assert rec.finish_reasons == ["tool_use"] and not rec.failed


def test_anthropic_json() -> None:
    body = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {
                "type": "thinking",
                "thinking": "The user wants SF weather.",
                "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h",
            },
            {"type": "text", "text": "I'll look that up."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "F"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": ANTHROPIC_USAGE,
    }
    call = run_call(FULL, path="/v1/messages", request=ANTHROPIC_REQ, response=json.dumps(body).encode())
    assert_anthropic_log(call)
    assert call.log["response_type"] == "normal"
    # Higress 2.0.1: the cache fields as sent are the input details
    assert call.log["input_token_details"] == {
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2000,
    }


def anthropic_stream(final_usage: dict[str, Any]) -> bytes:
    def ev(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, **fields}

    start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
    delta = "content_block_delta"
    return sse(
        ev(
            "message_start",
            message={
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-4-5-20250929",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        ),
        ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        ev(delta, index=0, delta={"type": "thinking_delta", "thinking": "The user wants "}),
        ev(delta, index=0, delta={"type": "thinking_delta", "thinking": "SF weather."}),
        ev(delta, index=0, delta={"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}),
        ev("content_block_stop", index=0),
        ev("content_block_start", index=1, content_block={"type": "text", "text": ""}),
        ("ping", {"type": "ping"}),
        ev(delta, index=1, delta={"type": "text_delta", "text": "I'll look "}),
        ev(delta, index=1, delta={"type": "text_delta", "text": "that up."}),
        ev("content_block_stop", index=1),
        ev(
            "content_block_start",
            index=2,
            content_block={
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {},
            },
        ),
        ev(delta, index=2, delta={"type": "input_json_delta", "partial_json": ""}),
        ev(delta, index=2, delta={"type": "input_json_delta", "partial_json": '{"location":"San Fra'}),
        ev(delta, index=2, delta={"type": "input_json_delta", "partial_json": 'ncisco, CA","unit":"F"}'}),
        ev("content_block_stop", index=2),
        ev("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage=final_usage),
        ev("message_stop"),
    )


@pytest.mark.parametrize(
    "final_usage",
    [
        {"output_tokens": 89},  # the documented message_delta: cumulative output only
        ANTHROPIC_USAGE,  # newer API versions repeat every counter in message_delta
    ],
    ids=["delta-output-only", "delta-all-counters"],
)
def test_anthropic_stream(final_usage: dict[str, Any]) -> None:
    body = anthropic_stream(final_usage)
    (call, *_) = run_all_ways(
        body,
        config=FULL,
        path="/v1/messages",
        request={**ANTHROPIC_REQ, "stream": True},
        content_type="text/event-stream",
    )
    assert_anthropic_log(call)  # tool arguments without a "{}" prefix from the empty start-block input
    assert call.log["response_type"] == "stream"


def test_anthropic_stream_cut_after_message_start_keeps_input_and_id() -> None:
    body = anthropic_stream({"output_tokens": 89})
    cut = body.index(b"event: content_block_start")
    call = run_call(
        FULL,
        path="/v1/messages",
        request=ANTHROPIC_REQ,
        response=body[:cut],
        content_type="text/event-stream",
        end="abort",
    )
    log = call.log
    assert call.rec.end_reason == "aborted" and not call.rec.failed  # status 200 was seen
    assert log["chat_id"] == "msg_01XFDUDYJgAACzvnptvVoYEL" and log["model"] == "claude-sonnet-4-5-20250929"
    assert (log["input_token"], log["output_token"]) == (472, 1)


# ============================================================================================ Gemini
GEMINI_REQ = {
    "contents": [
        {"role": "user", "parts": [{"text": "Capital of France?"}]},
        {"role": "model", "parts": [{"text": "Paris."}]},
        {"parts": [{"text": "And its weather?"}]},  # role may be omitted: counts as user
    ],
    "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
}


def test_gemini_generate_content_json() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "Weather lookup needed.", "thought": True},
                        {"text": "Let me check."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 9,
            "candidatesTokenCount": 6,
            "totalTokenCount": 40,
            "thoughtsTokenCount": 25,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
    }
    call = run_call(
        FULL,
        path="/v1beta/models/gemini-2.5-flash:generateContent",
        request=GEMINI_REQ,
        response=json.dumps(body).encode(),
    )
    rec, log = call.rec, call.log
    assert (rec.provider, rec.request_model, rec.request_stream) == ("gcp.gemini", "gemini-2.5-flash", False)
    assert log["model"] == "gemini-2.5-flash"
    assert (log["input_token"], log["output_token"], log["total_token"]) == (9, 6, 40)
    assert log["reasoning_tokens"] == 25 and log["output_token_details"] == {"thoughts_token_count": 25}
    assert log["answer"] == "Let me check." and log["reasoning"] == "Weather lookup needed."
    assert log["tool_calls"] == [
        {
            "id": "",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert log["chat_id"] == "mAitaLmkHPPlz7IPvtfUqQ4" and log["chat_round"] == 2
    assert log["question"] == "And its weather?" and rec.finish_reasons == ["STOP"]


def gemini_chunk(
    parts: list[dict[str, Any]], usage: dict[str, Any], *, finish: str | None = None, version: bool = True
) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    doc: dict[str, Any] = {
        "candidates": [cand],
        "usageMetadata": usage,
        "responseId": "tTCwacuEBMvnitYP06qsgQY",
    }
    if version:
        doc["modelVersion"] = "gemini-2.5-pro-preview"
    return doc


def gemini_stream(version: bool = True) -> bytes:
    # Gemini repeats cumulative usage on every chunk; its SSE uses CRLF line endings.
    return sse(
        gemini_chunk(
            [{"text": "Checking ", "thought": True}],
            {"promptTokenCount": 9, "totalTokenCount": 9},
            version=version,
        ),
        gemini_chunk(
            [{"text": "the sky."}],
            {
                "promptTokenCount": 9,
                "candidatesTokenCount": 3,
                "totalTokenCount": 30,
                "thoughtsTokenCount": 18,
            },
            version=version,
        ),
        gemini_chunk(
            [{"text": " Sunny."}],
            {
                "promptTokenCount": 9,
                "candidatesTokenCount": 6,
                "totalTokenCount": 40,
                "thoughtsTokenCount": 25,
                "cachedContentTokenCount": 4,
            },
            finish="STOP",
            version=version,
        ),
        crlf=True,
    )


def test_gemini_stream_generate_content_sse() -> None:
    path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    (call, *_) = run_all_ways(
        gemini_stream(), config=FULL, path=path, request=GEMINI_REQ, content_type="text/event-stream"
    )
    rec, log = call.rec, call.log
    assert (rec.request_model, rec.request_stream) == ("gemini-2.5-pro", True)
    assert log["model"] == "gemini-2.5-pro-preview"  # modelVersion wins over the path
    assert (log["input_token"], log["output_token"], log["total_token"]) == (
        9,
        6,
        40,
    )  # last chunk, never summed
    assert log["reasoning_tokens"] == 25 and log["cached_tokens"] == 4
    assert log["output_token_details"] == {"thoughts_token_count": 25}  # Gemini's key (Higress)
    assert log["input_token_details"] == {"cached_tokens": 4}
    assert log["answer"] == "the sky. Sunny." and log["reasoning"] == "Checking "
    assert log["chat_id"] == "tTCwacuEBMvnitYP06qsgQY" and log["response_type"] == "stream"
    assert rec.finish_reasons == ["STOP"]


def test_gemini_model_from_stream_path_when_chunks_carry_no_model() -> None:
    """Higress #4565: the model of a `…:streamGenerateContent?alt=sse` call comes from its path."""
    path = (
        "/v1/projects/p1/locations/us-central1/publishers/google/models/"
        "gemini-2.5-flash:streamGenerateContent?alt=sse"
    )
    call = run_call(
        path=path, request=GEMINI_REQ, response=gemini_stream(version=False), content_type="text/event-stream"
    )
    assert call.log["model"] == "gemini-2.5-flash"
    assert call.rec.response_model is None and call.rec.request_model == "gemini-2.5-flash"


# =========================================================================================== chat_id
@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"id": "a", "response": {"id": "b"}, "responseId": "c", "message": {"id": "d"}}, "a"),
        ({"response": {"id": "b"}, "responseId": "c", "message": {"id": "d"}}, "b"),
        ({"responseId": "c", "message": {"id": "d"}}, "c"),
        ({"message": {"id": "d"}}, "d"),
        ({"id": "", "message": {"id": "d"}}, "d"),
    ],
)
def test_chat_id_first_of_id_response_id_response_id_message_id(doc: dict[str, Any], expected: str) -> None:
    call = run_call(request={"model": "m", "messages": []}, response=json.dumps(doc).encode())
    assert call.log["chat_id"] == expected


def test_chat_id_is_taken_from_the_first_event_that_has_one() -> None:
    body = sse(
        {"type": "ping"},
        chat_chunk({"content": "a"}, cid="first"),
        chat_chunk({"content": "b"}, cid="second"),
    )
    call = run_call(request={"model": "m"}, response=body, content_type="text/event-stream")
    assert call.log["chat_id"] == "first"


# =========================================================================================== failures
def test_error_body_fails_and_keeps_request_model() -> None:
    """Higress #4234: an error answer has no model; the request model names the call."""
    body = {
        "error": {
            "message": "Rate limit reached for gpt-4o",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    call = run_call(
        request={"model": "gpt-4o", "messages": MESSAGES}, response=json.dumps(body).encode(), status=429
    )
    rec, log = call.rec, call.log
    assert (
        rec.failed and rec.error_type == "requests" and rec.error_message == "Rate limit reached for gpt-4o"
    )
    assert log["model"] == "gpt-4o" and rec.response_model is None
    assert "input_token" not in log


def test_gemini_error_keeps_model_from_path() -> None:
    body = {"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}
    call = run_call(
        path="/v1beta/models/gemini-2.5-pro:generateContent",
        request=GEMINI_REQ,
        response=json.dumps(body).encode(),
        status=429,
    )
    assert call.rec.failed and call.log["model"] == "gemini-2.5-pro"


def test_anthropic_error_event_mid_stream_fails_the_call() -> None:
    body = anthropic_stream({"output_tokens": 89})
    cut = body.index(b"event: content_block_start")
    err = sse(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    call = run_call(
        path="/v1/messages",
        request=ANTHROPIC_REQ,
        response=body[:cut] + err,
        content_type="text/event-stream",
    )
    rec = call.rec
    assert rec.status_code == 200 and rec.failed
    assert (rec.error_type, rec.error_message) == ("overloaded_error", "Overloaded")
    assert call.log["model"] == "claude-sonnet-4-5-20250929" and call.log["input_token"] == 472


def test_openai_error_event_in_the_middle_of_a_stream_fails_the_call() -> None:
    body = sse(
        {"choices": [{"delta": {"content": "Hello"}}]},
        {"error": {"type": "api_error", "message": "Something went wrong"}},
        b"[DONE]",
    )
    call = run_call(
        request={"model": "gpt-4", "messages": MESSAGES}, response=body, content_type="text/event-stream"
    )
    assert call.rec.failed and call.rec.error_type == "api_error" and call.log["model"] == "gpt-4"


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_empty_body_with_error_status_fails(status: int) -> None:
    for response in (b"", None):  # an empty body, or no body at all (end_of_stream on the headers)
        call = run_call(request={"model": "gpt-4o", "messages": MESSAGES}, response=response, status=status)
        assert call.rec.failed and call.rec.error_type == str(status)
        assert call.log["model"] == "gpt-4o"


def test_empty_body_with_200_is_not_a_failure() -> None:
    call = run_call(request={"model": "gpt-4o"}, response=b"")
    assert not call.rec.failed and call.rec.error_type is None


@pytest.mark.parametrize(
    "doc",
    [
        {"error": None, "model": "m"},
        {"error": "", "model": "m"},
        {"choices": [{"error": "x", "message": {"content": "hi"}}], "model": "m"},  # not at the root
        {"data": {"error": {"message": "nested"}}, "model": "m"},
    ],
)
def test_not_a_failure_without_a_root_error(doc: dict[str, Any]) -> None:
    for stream in (False, True):
        body = sse(doc, b"[DONE]") if stream else json.dumps(doc).encode()
        call = run_call(
            request={"model": "m"},
            response=body,
            content_type="text/event-stream" if stream else "application/json",
        )
        assert not call.rec.failed, (doc, stream)


@pytest.mark.parametrize(
    "err", [{"message": "boom", "type": "server_error"}, "boom", {"code": "invalid_api_key"}, 1, True]
)
def test_root_error_in_a_200_body_fails(err: Any) -> None:
    call = run_call(request={"model": "m"}, response=json.dumps({"error": err}).encode())
    assert call.rec.failed and call.rec.error_type
