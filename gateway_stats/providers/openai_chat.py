"""OpenAI chat completions (`/chat/completions`), the shape most gateways speak: `choices[0].delta` in
stream chunks, `choices[0].message` in whole bodies. Legacy completions reuse these readers."""

from __future__ import annotations

from typing import Any

from gateway_stats.providers.base import Kind, Output, add_finish_reason, index_or

KIND = Kind("openai", "chat", "chat_completions")


def read_chunk(doc: dict[str, Any], out: Output) -> None:
    """One `chat.completion.chunk` (or a legacy `text_completion` chunk)."""
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices:
        return
    choice = choices[0]
    if not isinstance(choice, dict):
        return
    add_finish_reason(choice.get("finish_reason"), out)
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        text = choice.get("text")  # legacy completions stream
        if isinstance(text, str) and text:
            out.answer.add(text)
            out.content_seen = True
        return
    content = delta.get("content")
    if isinstance(content, str) and content:
        out.answer.add(content)
        out.content_seen = True
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        out.reasoning.add(reasoning)
        out.content_seen = True
    tcs = delta.get("tool_calls")
    if isinstance(tcs, list):
        for i, tc in enumerate(tcs):
            if not isinstance(tc, dict):
                continue
            fn = tc.get("function")
            if not isinstance(fn, dict):
                fn = {}
            out.tools.update(
                index_or(tc.get("index", i), i),
                id=tc.get("id"),
                type=tc.get("type"),
                name=fn.get("name"),
                arguments=fn.get("arguments"),
            )
            out.content_seen = True


def read_body(doc: dict[str, Any], out: Output) -> bool:
    """A whole `chat.completion` (or legacy `text_completion`) body; False when it has no choices."""
    choices = doc.get("choices")
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        return False
    ch = choices[0]
    add_finish_reason(ch.get("finish_reason"), out)
    msg = ch.get("message")
    if isinstance(msg, dict):
        c = msg.get("content")
        if isinstance(c, str):
            out.answer.add(c)
        rc = msg.get("reasoning_content")
        if isinstance(rc, str):
            out.reasoning.add(rc)
        tcs = msg.get("tool_calls")
        if isinstance(tcs, list):
            if tcs and all(isinstance(tc, dict) for tc in tcs):
                out.tool_calls_as_sent = tcs
            for i, tc in enumerate(tcs):
                if isinstance(tc, dict):
                    fn = tc.get("function")
                    if not isinstance(fn, dict):
                        fn = {}
                    out.tools.update(
                        i,
                        id=tc.get("id"),
                        type=tc.get("type"),
                        name=fn.get("name"),
                        arguments=fn.get("arguments"),
                    )
    elif isinstance(ch.get("text"), str):
        out.answer.add(ch["text"])
    return True


class ChatCompletions:
    kind = KIND

    def matches_path(self, path: str) -> bool:
        return path.endswith("/chat/completions")

    def stream_event(self, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
        read_chunk(doc, out)

    def response_body(self, doc: dict[str, Any], out: Output) -> bool:
        return read_body(doc, out)


SHAPE = ChatCompletions()
