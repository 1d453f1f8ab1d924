"""Anthropic messages (`/messages`): content blocks, `content_block_delta` stream events (text,
thinking, tool input JSON) and `message_delta` stop reasons."""

from __future__ import annotations

from typing import Any

import orjson

from gateway_stats.providers.base import Kind, Output, add_finish_reason, index_or

KIND = Kind("anthropic", "chat", "messages")


def read_event(doc: dict[str, Any], out: Output) -> None:
    t = doc.get("type")
    if t == "content_block_delta":
        delta = doc.get("delta")
        if not isinstance(delta, dict):
            return
        dt = delta.get("type")
        idx = index_or(doc.get("index", 0), 0)
        if dt == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                out.answer.add(text)
                out.content_seen = True
        elif dt == "thinking_delta":
            th = delta.get("thinking")
            if isinstance(th, str) and th:
                out.reasoning.add(th)
                out.content_seen = True
        elif dt == "input_json_delta":
            pj = delta.get("partial_json")
            if isinstance(pj, str):
                out.tools.update(idx, arguments=pj)
                out.content_seen = True
    elif t == "content_block_start":
        block = doc.get("content_block")
        if isinstance(block, dict) and block.get("type") == "tool_use":
            # No "{}" prefix: the empty `input` of the start block is not part of the arguments.
            out.tools.update(
                index_or(doc.get("index", 0), 0),
                id=block.get("id"),
                type="function",
                name=block.get("name"),
            )
            out.content_seen = True
    elif t == "message_delta":
        delta = doc.get("delta")
        if isinstance(delta, dict):
            add_finish_reason(delta.get("stop_reason"), out)


def read_body(doc: dict[str, Any], out: Output) -> bool:
    content = doc.get("content")
    if not isinstance(content, list):
        return False
    for i, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        bt = block.get("type")
        if bt == "text" and isinstance(block.get("text"), str):
            out.answer.add(block["text"])
        elif bt == "thinking" and isinstance(block.get("thinking"), str):
            out.reasoning.add(block["thinking"])
        elif bt == "tool_use":
            out.tools.update(
                i,
                id=block.get("id"),
                type="function",
                name=block.get("name"),
                arguments=orjson.dumps(block.get("input", {})).decode(),
            )
    add_finish_reason(doc.get("stop_reason"), out)
    return True


class Messages:
    kind = KIND

    def matches_path(self, path: str) -> bool:
        return path.endswith("/messages")

    def stream_event(self, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
        read_event(doc, out)

    def response_body(self, doc: dict[str, Any], out: Output) -> bool:
        return read_body(doc, out)


SHAPE = Messages()
