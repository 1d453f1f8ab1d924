"""The usage matrix of higress-compat.md §5, row by row, through the sans-IO observer.

For each output (model, input, output, total) the alternatives are tried in the spec's order: a
document holding alternatives k..n must yield alternative k. Then the stream rules: the last
usage-bearing event wins and nothing is summed; a details map in a later event replaces the
earlier one while an event without details keeps it; the Higress total fallback; and
`disable_openai_usage`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from driver import Call, run_call, sse

REQ = {"model": "req-model", "messages": [{"role": "user", "content": "hi"}]}


def deep_merge(*docs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in docs:
        for k, v in d.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = v
    return out


def nest(path: str, value: Any) -> dict[str, Any]:
    doc: Any = value
    for key in reversed(path.split(".")):
        doc = {key: doc}
    return doc


def body_call(doc: dict[str, Any], **kw: Any) -> Call:
    return run_call(request=kw.pop("request", REQ), response=json.dumps(doc).encode(), **kw)


def stream_call(*events: Any, **kw: Any) -> Call:
    return run_call(
        request=kw.pop("request", REQ), response=sse(*events), content_type="text/event-stream", **kw
    )


# ------------------------------------------------------------------------------------ the matrix
MODEL_PATHS = ["model", "body.model", "response.model", "message.model", "modelVersion"]
INPUT_PATHS = [
    "usage.prompt_tokens",
    "usage.input_tokens",
    "response.usage.input_tokens",
    "usageMetadata.promptTokenCount",
    "message.usage.input_tokens",
]
OUTPUT_PATHS = [
    "usage.completion_tokens",
    "usage.output_tokens",
    "response.usage.output_tokens",
    "usageMetadata.candidatesTokenCount",
    "message.usage.output_tokens",
]
TOTAL_PATHS = ["usage.total_tokens", "response.usage.total_tokens", "usageMetadata.totalTokenCount"]


@pytest.mark.parametrize("k", range(len(MODEL_PATHS)), ids=MODEL_PATHS)
def test_model_first_existing_path(k: int) -> None:
    doc = deep_merge(*(nest(p, f"model-{j}") for j, p in enumerate(MODEL_PATHS) if j >= k))
    for call in (body_call(doc), stream_call(doc)):
        assert call.rec.response_model == f"model-{k}"
        assert call.log["model"] == f"model-{k}"


def test_model_falls_back_to_request_model() -> None:
    for call in (body_call({"usage": {"prompt_tokens": 1}}), stream_call({"usage": {"prompt_tokens": 1}})):
        assert call.rec.response_model is None and call.log["model"] == "req-model"


def test_empty_or_non_string_model_is_skipped() -> None:
    call = body_call({"model": "", "response": {"model": 7}, "message": {"model": "m-msg"}})
    assert call.log["model"] == "m-msg"


@pytest.mark.parametrize(
    ("paths", "field"),
    [(INPUT_PATHS, "input_token"), (OUTPUT_PATHS, "output_token"), (TOTAL_PATHS, "total_token")],
    ids=["input", "output", "total"],
)
def test_token_counts_first_existing_path(paths: list[str], field: str) -> None:
    for k, path in enumerate(paths):
        doc = deep_merge(*(nest(p, 100 + j) for j, p in enumerate(paths) if j >= k))
        if field == "total_token":  # a total alone is not a usage report; give it counts to total
            doc = deep_merge({"usage": {"prompt_tokens": 1, "completion_tokens": 1}}, doc)
        for call in (body_call(doc), stream_call(doc)):
            assert call.log[field] == 100 + k, path


@pytest.mark.parametrize("k", range(len(INPUT_PATHS)), ids=INPUT_PATHS)
def test_each_input_output_alternative_alone(k: int) -> None:
    """Each provider's own usage shape, with no other alternative present."""
    doc = deep_merge(nest(INPUT_PATHS[k], 7), nest(OUTPUT_PATHS[k], 5))
    call = body_call(doc)
    assert (call.log["input_token"], call.log["output_token"], call.log["total_token"]) == (7, 5, 12)


def test_non_integer_counts_are_skipped_for_the_next_alternative() -> None:
    doc = {
        "usage": {"prompt_tokens": "12", "input_tokens": 9, "completion_tokens": True, "output_tokens": 4.0}
    }
    call = body_call(doc)
    assert (call.log["input_token"], call.log["output_token"]) == (9, 4)


# ------------------------------------------------------------------------- total fallback (Higress)
def test_total_fallback_is_input_plus_output() -> None:
    call = body_call({"usage": {"prompt_tokens": 5, "completion_tokens": 8}})
    assert call.log["total_token"] == 13


def test_total_fallback_with_only_one_side() -> None:
    call = body_call({"usage": {"prompt_tokens": 8}})  # embeddings without total_tokens
    assert (call.log["input_token"], call.log["output_token"], call.log["total_token"]) == (8, 0, 8)


def test_total_fallback_adds_anthropic_cache_tokens() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 40,
    }
    call = body_call({"type": "message", "usage": usage}, path="/v1/messages")
    assert call.log["total_token"] == 10 + 20 + 300 + 40
    assert call.log["input_token"] == 10  # Anthropic's input excludes the cache: logged as sent


def test_anthropic_json_cache_fields_are_the_input_token_details_as_sent() -> None:
    """Higress 2.0.1: a non-streamed Anthropic usage with cache fields gives them as input_token_details,
    as the provider sent them, zeros included."""
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 7,
        "output_tokens": 2,
    }
    call = body_call({"type": "message", "usage": usage}, path="/v1/messages")
    assert call.log["input_token_details"] == {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 7}
    assert call.log["output_token_details"] == {}
    assert call.rec.usage.cached_tokens == 7 and call.rec.usage.cache_creation_tokens == 0
    plain = body_call(
        {"type": "message", "usage": {"input_tokens": 1, "output_tokens": 2}}, path="/v1/messages"
    )
    assert plain.log["input_token_details"] == {}  # no cache fields sent: no details


def test_total_fallback_does_not_add_openai_cached_tokens() -> None:
    """OpenAI prompt_tokens already include cached tokens."""
    call = body_call(
        {
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 40},
            }
        }
    )
    assert call.log["total_token"] == 55 and call.rec.usage.cached_tokens == 40


def test_explicit_total_is_taken_as_sent() -> None:
    call = body_call({"usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 20}})
    assert call.log["total_token"] == 20


# ------------------------------------------------------------------- last usage-bearing event wins
def test_last_usage_event_wins_never_summed() -> None:
    first = {"model": "gpt-4", "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
    final = {"model": "gpt-4", "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}}
    for cuts in ((), (10,), (len(sse(first)) + 7,)):
        call = run_call(
            request=REQ, response=sse(first, final, b"[DONE]"), content_type="text/event-stream", cuts=cuts
        )
        assert (call.log["input_token"], call.log["output_token"], call.log["total_token"]) == (5, 8, 13)


def test_final_event_without_total_recomputes_it_from_its_own_counts() -> None:
    """A later event silent on total never keeps the earlier total (8) nor regresses it to 0."""
    first = {"usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
    partial = {"usage": {"prompt_tokens": 5, "completion_tokens": 8}}
    call = stream_call(first, partial)
    assert call.log["total_token"] == 13


def test_events_without_usage_or_with_null_usage_keep_the_values() -> None:
    call = stream_call(
        {"usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}},
        {"choices": [{"delta": {"content": "x"}}], "usage": None},
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
        b"[DONE]",
    )
    assert (call.log["input_token"], call.log["output_token"], call.log["total_token"]) == (5, 8, 13)


def test_anthropic_message_start_input_then_message_delta_cumulative_output() -> None:
    call = stream_call(
        {
            "type": "message_start",
            "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 25, "output_tokens": 1}},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
        {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 15}},  # cumulative, not +15
        {"type": "message_stop"},
        path="/v1/messages",
    )
    assert (call.log["input_token"], call.log["output_token"], call.log["total_token"]) == (25, 15, 40)


def test_anthropic_cache_tokens_from_message_start_still_count_in_the_total() -> None:
    call = stream_call(
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 4,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": 1,
                }
            },
        },
        {"type": "message_delta", "usage": {"output_tokens": 6}},
        path="/v1/messages",
    )
    assert call.log["total_token"] == 4 + 6 + 100 and call.rec.usage.cached_tokens == 100


def test_gemini_repeated_cumulative_usage_last_wins() -> None:
    events = [
        {
            "candidates": [{"content": {"parts": [{"text": "a"}]}}],
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        },
        {
            "candidates": [{"content": {"parts": [{"text": "b"}]}}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
        },
        {
            "candidates": [{"content": {"parts": [{"text": "c"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12},
        },
    ]
    call = stream_call(
        *events,
        path="/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        request={"contents": []},
    )
    assert (call.log["input_token"], call.log["output_token"], call.log["total_token"]) == (9, 3, 12)


def test_gemini_thoughts_keep_the_provider_key_in_output_token_details() -> None:
    """Higress 2.0.1: `output_token_details` is `{"thoughts_token_count": N}`; our `reasoning_tokens`
    (spec §9) carries N as well."""
    meta = {"promptTokenCount": 4, "candidatesTokenCount": 2, "thoughtsTokenCount": 11, "totalTokenCount": 17}
    doc = {
        "candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}],
        "usageMetadata": meta,
    }
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    call = body_call(
        doc, path=path, request={"contents": []}, config={"use_default_response_attributes": True}
    )
    assert call.log["output_token_details"] == {"thoughts_token_count": 11}
    assert call.log["reasoning_tokens"] == 11 and call.rec.usage.reasoning_tokens == 11


def test_responses_usage_only_in_response_completed() -> None:
    call = stream_call(
        {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-4.1", "usage": None}},
        {"type": "response.output_text.delta", "delta": "hi"},
        {
            "type": "response.completed",
            "response": {
                "id": "resp_1",
                "model": "gpt-4.1",
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
            },
        },
        path="/v1/responses",
    )
    assert (call.log["input_token"], call.log["output_token"], call.log["total_token"]) == (3, 2, 5)


def test_usage_event_reattaches_the_ai_log() -> None:
    """Higress rewrites the ai_log after every event carrying usage: the observer reports a change."""
    usage_event = sse({"usage": {"prompt_tokens": 5, "completion_tokens": 3}})
    plain_event = sse({"choices": [{"delta": {"content": "x"}}]})
    cuts = [len(plain_event), len(plain_event) + len(usage_event)]
    call = run_call(
        request=REQ,
        response=plain_event + usage_event + plain_event,
        content_type="text/event-stream",
        cuts=cuts,
    )
    # chunk 0: first event (brings no id, no usage); chunk 1: usage; chunk 2: no usage; then end of stream
    assert call.changed == [False, True, False, True]


# ------------------------------------------------------------------------------- details maps
DETAILS_CFG = {"use_default_response_attributes": True}
WITH_DETAILS = {
    "model": "gpt-4o",
    "usage": {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    },
}


def test_details_kept_when_a_later_usage_event_has_none() -> None:
    without = {"model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}}
    call = stream_call(WITH_DETAILS, without, b"[DONE]", config=DETAILS_CFG)
    log = call.log
    assert (log["input_token"], log["output_token"], log["total_token"]) == (10, 7, 17)
    assert log["input_token_details"] == {"cached_tokens": 4}
    assert log["output_token_details"] == {"reasoning_tokens": 2}
    assert log["cached_tokens"] == 4 and log["reasoning_tokens"] == 2


def test_details_map_present_later_replaces_absent_is_kept() -> None:
    second = {
        "model": "gpt-4o",
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 7,
            "total_tokens": 17,
            "completion_tokens_details": {"reasoning_tokens": 6},
        },
    }
    call = stream_call(WITH_DETAILS, second, config=DETAILS_CFG)
    log = call.log
    assert log["input_token_details"] == {"cached_tokens": 4}  # absent: retained
    assert log["output_token_details"] == {"reasoning_tokens": 6}  # present: replaces the whole map
    assert log["reasoning_tokens"] == 6  # replaced, never 2 + 6


def test_details_replace_whole_map_never_merged_or_summed() -> None:
    first = {"usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 1}}}
    second = {"usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 9}}}
    call = stream_call(first, second, config=DETAILS_CFG)
    assert call.log["input_token_details"] == {"cached_tokens": 9}
    assert call.log["cached_tokens"] == 9


def test_responses_api_details_names() -> None:
    doc = {
        "usage": {
            "input_tokens": 3,
            "output_tokens": 2,
            "input_tokens_details": {"cached_tokens": 1},
            "output_tokens_details": {"reasoning_tokens": 1},
        }
    }
    call = body_call(doc, config=DETAILS_CFG, path="/v1/responses")
    assert call.log["input_token_details"] == {"cached_tokens": 1} and call.log["reasoning_tokens"] == 1


def test_light_preset_logs_only_the_four_detail_keys() -> None:
    call = body_call(WITH_DETAILS, config=DETAILS_CFG)
    log = call.log
    assert {k: log[k] for k in ("reasoning_tokens", "cached_tokens")} == {
        "reasoning_tokens": 2,
        "cached_tokens": 4,
    }
    for key in ("question", "answer", "messages", "tool_calls", "reasoning", "system"):
        assert key not in log


def test_detail_builtins_are_null_without_usage() -> None:
    call = body_call({"model": "m", "choices": [{"message": {"content": "x"}}]}, config=DETAILS_CFG)
    log = call.log
    assert all(
        log[k] is None
        for k in ("reasoning_tokens", "cached_tokens", "input_token_details", "output_token_details")
    )


# --------------------------------------------------------------------------- disable_openai_usage
def test_disable_openai_usage_skips_model_and_tokens() -> None:
    doc = {
        "id": "chatcmpl-1",
        "model": "resp-model",
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    for call in (
        body_call(doc, config={"disable_openai_usage": True}),
        stream_call(doc, config={"disable_openai_usage": True}),
    ):
        log = call.log
        assert not call.rec.usage.known and call.rec.response_model is None
        assert "input_token" not in log and "output_token" not in log and "total_token" not in log
        assert log["model"] == "req-model"  # the request model still names the call (our choice)


def test_disable_openai_usage_still_records_chat_id_and_failure() -> None:
    """The option skips model/token extraction only: chat id and failures are not usage."""
    cfg = {"disable_openai_usage": True}
    call = body_call({"id": "chatcmpl-9", "usage": {"prompt_tokens": 3}}, config=cfg)
    assert call.log["chat_id"] == "chatcmpl-9"
    call = stream_call({"id": "chatcmpl-9", "choices": [{"delta": {"content": "a"}}]}, config=cfg)
    assert call.log["chat_id"] == "chatcmpl-9"
    call = body_call({"error": {"type": "invalid_request_error", "message": "bad"}}, config=cfg, status=400)
    assert call.rec.failed and call.rec.error_type == "invalid_request_error"
