"""Which API shape a call is: from its path first, its request body when the path says nothing, and
the dispatch of stream events and whole bodies to that shape's module.

Recognition is automatic (never configured). To add an API, write its module (see `base.Shape`) and
list it in SHAPES, in the order paths are tried.
"""

from __future__ import annotations

from typing import Any

from gateway_stats.providers import anthropic, completions, embeddings, gemini, openai_chat, rerank, responses
from gateway_stats.providers.base import UNKNOWN, Kind, Output, Shape

# Order matters: "/chat/completions" before "/completions".
SHAPES: tuple[Shape, ...] = (
    openai_chat.SHAPE,
    completions.SHAPE,
    embeddings.SHAPE,
    responses.SHAPE,
    anthropic.SHAPE,
    gemini.SHAPE,
    rerank.SHAPE,
)
_BY_API: dict[str, Shape] = {s.kind.api: s for s in SHAPES}


def kind_from_path(path: str) -> Kind:
    p = path.split("?", 1)[0].rstrip("/")
    for shape in SHAPES:
        if shape.matches_path(p):
            return shape.kind
    return UNKNOWN


def kind_from_body(doc: dict[str, Any]) -> Kind:
    if "contents" in doc:
        return gemini.KIND
    if "messages" in doc:
        if "system" in doc or ("max_tokens" in doc and "anthropic_version" in doc):
            return anthropic.KIND
        return openai_chat.KIND
    if "input" in doc:
        return responses.KIND if "instructions" in doc or "reasoning" in doc else embeddings.KIND
    if "prompt" in doc:
        return completions.KIND
    return UNKNOWN


def stream_event(kind: Kind, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
    shape = _BY_API.get(kind.api)
    if shape is not None:
        shape.stream_event(doc, event_name, out)
        return
    # Unrecognised API: the event formats that cannot be mistaken for one another.
    openai_chat.read_chunk(doc, out)
    anthropic.read_event(doc, out)
    gemini.read_chunk(doc, out)


def response_body(kind: Kind, doc: dict[str, Any], out: Output) -> None:
    shape = _BY_API.get(kind.api)
    if shape is not None:
        shape.response_body(doc, out)
    elif not openai_chat.read_body(doc, out):
        # Unrecognised API without `choices`: every other body shape that is present.
        anthropic.read_body(doc, out)
        responses.read_body(doc, out)
        gemini.read_body(doc, out)
    out.content_seen = bool(out.answer) or bool(out.tools) or bool(out.reasoning)
