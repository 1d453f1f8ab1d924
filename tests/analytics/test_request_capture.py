"""The last user text, capped, from every request shape; captured only when analytics need it."""

from __future__ import annotations

from typing import Any

import pytest
from driver import run_call

from gateway_stats.config import parse_config
from gateway_stats.core.capture import last_user_text


@pytest.mark.parametrize(
    ("doc", "text"),
    [
        (
            {
                "messages": [
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "last one"},
                ]
            },
            "last one",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "part 1"},
                            {"type": "image_url", "image_url": {"url": "x"}},
                            {"type": "text", "text": "part 2"},
                        ],
                    }
                ]
            },
            "part 1\npart 2",
        ),
        # Anthropic: the last user turn is a tool result (no text): the user's words are further back
        (
            {
                "messages": [
                    {"role": "user", "content": "asked"},
                    {"role": "assistant", "content": "t"},
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}],
                    },
                ]
            },
            "asked",
        ),
        ({"input": "responses api text"}, "responses api text"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": "item text"}]}]},
            "item text",
        ),
        ({"contents": [{"role": "user", "parts": [{"text": "gemini text"}]}]}, "gemini text"),
        ({"prompt": "legacy completion"}, "legacy completion"),
        ({"prompt": ["a", "b"]}, "b"),
        ({"messages": [{"role": "system", "content": "sys only"}]}, None),
        ({"messages": "nonsense"}, None),
        ({}, None),
    ],
)
def test_shapes(doc: dict[str, Any], text: str | None) -> None:
    assert last_user_text(doc, 2000) == text


def test_embeddings_input_is_not_a_question() -> None:
    assert last_user_text({"input": "embed me"}, 2000, "embeddings") is None


def test_cap() -> None:
    assert last_user_text({"messages": [{"role": "user", "content": "x" * 5000}]}, 2000) == "x" * 2000
    parts = [{"type": "text", "text": "y" * 1500}, {"type": "text", "text": "z" * 1500}]
    got = last_user_text({"messages": [{"role": "user", "content": parts}]}, 2000)
    assert got is not None and len(got) == 2000


def test_captured_only_when_wanted() -> None:
    req = {"model": "m", "messages": [{"role": "user", "content": "hello world"}]}
    assert run_call(None, request=req, response=b"{}").rec.user_text is None  # default: nothing kept
    cfg = parse_config(
        {"gateway_stats": {"analytics": {"topics": {"greeting": ["hello"]}, "language": {"max_chars": 20}}}}
    )
    rec = run_call(cfg, request=req, response=b"{}").rec
    assert rec.user_text == "hello world" and rec.language is None and rec.topic is None  # computed later


def test_language_key_in_the_ai_log_only_when_opted_in() -> None:
    from gateway_stats.core.ai_log import build_ai_log

    rec = run_call(None, request={"model": "m", "messages": []}, response=b"{}").rec
    rec.language = "de"
    assert "language" not in build_ai_log(rec)  # set by the records writer later: never leaks in
    rec.extra["language_in_ai_log"] = True
    assert build_ai_log(rec)["language"] == "de"
