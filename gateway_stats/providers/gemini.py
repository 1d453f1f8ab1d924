"""Google Gemini `generateContent` / `streamGenerateContent`: `candidates[0].content.parts` (text,
thought parts, function calls); the model and stream flag come from the path."""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway_stats.providers.base import Kind, Output, add_finish_reason

KIND = Kind("gcp.gemini", "generate_content", "gemini")

_PATH = re.compile(r"/models/([^/:?]+):(stream)?[gG]enerateContent")


def path_model(path: str) -> tuple[str | None, bool]:
    """Model and stream flag from a Gemini path (`…/models/gemini-2.5-pro:streamGenerateContent?alt=sse`)."""
    m = _PATH.search(path)
    if not m:
        return None, False
    return m.group(1), m.group(2) is not None


def _first_candidate(doc: dict[str, Any]) -> dict[str, Any] | None:
    cands = doc.get("candidates")
    if isinstance(cands, list) and cands and isinstance(cands[0], dict):
        return cands[0]
    return None


def _parts(cand: dict[str, Any], out: Output) -> None:
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return
    for part in parts:
        if not isinstance(part, dict):
            continue
        text = part.get("text")
        if isinstance(text, str) and text:
            (out.reasoning if part.get("thought") else out.answer).add(text)
            out.content_seen = True
        fc = part.get("functionCall")
        if isinstance(fc, dict):
            idx = len(out.tools.value()) if out.tools else 0
            out.tools.update(
                idx,
                id=fc.get("id"),
                type="function",
                name=fc.get("name"),
                arguments=orjson.dumps(fc.get("args", {})).decode(),
            )
            out.content_seen = True


def read_chunk(doc: dict[str, Any], out: Output) -> None:
    cand = _first_candidate(doc)
    if cand is None:
        return
    add_finish_reason(cand.get("finishReason"), out)
    _parts(cand, out)


def read_body(doc: dict[str, Any], out: Output) -> bool:
    cand = _first_candidate(doc)
    if cand is None:
        return False
    add_finish_reason(cand.get("finishReason"), out)
    _parts(cand, out)
    return True


class GenerateContent:
    kind = KIND

    def matches_path(self, path: str) -> bool:
        return "enerateContent" in path

    def stream_event(self, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
        read_chunk(doc, out)

    def response_body(self, doc: dict[str, Any], out: Output) -> bool:
        return read_body(doc, out)


SHAPE = GenerateContent()
