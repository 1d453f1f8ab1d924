"""OpenAI legacy completions (`/completions`): `choices[0].text`, read like chat's choices."""

from __future__ import annotations

from typing import Any

from gateway_stats.providers import openai_chat
from gateway_stats.providers.base import Kind, Output

KIND = Kind("openai", "text_completion", "completions")


class Completions:
    kind = KIND

    def matches_path(self, path: str) -> bool:
        return path.endswith("/completions")  # tried after /chat/completions

    def stream_event(self, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
        openai_chat.read_chunk(doc, out)

    def response_body(self, doc: dict[str, Any], out: Output) -> bool:
        return openai_chat.read_body(doc, out)


SHAPE = Completions()
