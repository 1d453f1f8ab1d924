"""Shared hypothesis settings and strategies for the fuzz tests (not a test module).

CI runs a fixed-seed slice: `derandomize=True` makes every run draw the same examples, and each
target's `max_examples` keeps the whole directory under ~60 s on the 2-core machine. Set
FUZZ_SCALE=N to multiply every budget by N for a longer local run (still derandomized unless
FUZZ_RANDOM=1).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = max(1, int(os.environ.get("FUZZ_SCALE", "1")))
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"


def budget(n: int) -> settings:
    return settings(
        max_examples=n * SCALE,
        derandomize=not RANDOM,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# JSON values, with the shapes that break naive code: unhashable where a string is expected, huge or
# negative numbers, floats that are integers, deep nesting, odd keys.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

# Keys the extraction reads, so random documents actually reach its branches.
FIELD_NAMES = [
    "type",
    "id",
    "model",
    "choices",
    "delta",
    "content",
    "text",
    "message",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "error",
    "index",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "partial_json",
    "content_block",
    "stop_reason",
    "response",
    "output",
    "status",
    "candidates",
    "parts",
    "finishReason",
    "usageMetadata",
    "thought",
    "functionCall",
    "args",
    "item",
    "output_index",
    "delta",
    "reasoning_content",
    "prompt_tokens_details",
    "completion_tokens_details",
    "cached_tokens",
    "reasoning_tokens",
    "cache_read_input_tokens",
    "modelVersion",
    "responseId",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
]
TYPE_VALUES = [
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "text_delta",
    "thinking_delta",
    "input_json_delta",
    "tool_use",
    "response.output_text.delta",
    "response.completed",
    "response.failed",
    "response.output_item.added",
    "function_call",
    "response.function_call_arguments.delta",
    "error",
    "text",
    "thinking",
    "output_text",
    "reasoning",
]
shaped_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars | st.sampled_from(TYPE_VALUES),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), children, max_size=5)
    ),
    max_leaves=30,
)
shaped_docs = st.dictionaries(st.sampled_from(FIELD_NAMES), shaped_values, max_size=6)

API_PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
    "/v1beta/models/gemini-2.5-pro:generateContent",
    "/v1/rerank",
    "/v1/other",
]


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (taken modulo its length, sorted, deduplicated)."""
    if not data:
        return []
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]
