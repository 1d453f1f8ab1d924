"""OpenAI Responses API (`/responses`): typed stream events (`response.output_text.delta`, …) and an
`output` list of items in whole bodies."""

from __future__ import annotations

from typing import Any

from gateway_stats.providers.base import Kind, Output, add_finish_reason, index_or

KIND = Kind("openai", "chat", "responses")
_REASONING_DELTAS = ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")
_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def read_event(doc: dict[str, Any], out: Output) -> None:
    t = doc.get("type")
    if not isinstance(t, str):
        return
    if t == "response.output_text.delta":
        d = doc.get("delta")
        if isinstance(d, str) and d:
            out.answer.add(d)
            out.content_seen = True
    elif t in _REASONING_DELTAS:
        d = doc.get("delta")
        if isinstance(d, str) and d:
            out.reasoning.add(d)
            out.content_seen = True
    elif t == "response.output_item.added":
        item = doc.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            out.tools.update(
                index_or(doc.get("output_index", 0), 0),
                id=item.get("call_id") or item.get("id"),
                type="function",
                name=item.get("name"),
            )
            out.content_seen = True
    elif t == "response.function_call_arguments.delta":
        d = doc.get("delta")
        if isinstance(d, str):
            out.tools.update(index_or(doc.get("output_index", 0), 0), arguments=d)
            out.content_seen = True
    elif t in _FINAL_EVENTS:
        resp = doc.get("response")
        if isinstance(resp, dict):
            add_finish_reason(resp.get("status"), out)


def read_body(doc: dict[str, Any], out: Output) -> bool:
    output = doc.get("output")
    if not isinstance(output, list):
        return False
    for i, item in enumerate(output):
        if not isinstance(item, dict):
            continue
        it = item.get("type")
        if it == "message":
            for c in item.get("content") or ():
                if isinstance(c, dict) and c.get("type") == "output_text" and isinstance(c.get("text"), str):
                    out.answer.add(c["text"])
        elif it == "reasoning":
            for s in item.get("summary") or ():
                if isinstance(s, dict) and isinstance(s.get("text"), str):
                    out.reasoning.add(s["text"])
        elif it == "function_call":
            out.tools.update(
                i,
                id=item.get("call_id") or item.get("id"),
                type="function",
                name=item.get("name"),
                arguments=item.get("arguments") if isinstance(item.get("arguments"), str) else None,
            )
    add_finish_reason(doc.get("status"), out)
    return True


class Responses:
    kind = KIND

    def matches_path(self, path: str) -> bool:
        return path.endswith("/responses")

    def stream_event(self, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
        read_event(doc, out)

    def response_body(self, doc: dict[str, Any], out: Output) -> bool:
        return read_body(doc, out)


SHAPE = Responses()
