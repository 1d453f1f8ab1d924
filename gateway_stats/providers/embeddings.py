"""OpenAI embeddings (`/embeddings`): usage only; there is no generated output to read."""

from __future__ import annotations

from typing import Any

from gateway_stats.providers.base import Kind, Output

KIND = Kind("openai", "embeddings", "embeddings")


class Embeddings:
    kind = KIND

    def matches_path(self, path: str) -> bool:
        return path.endswith("/embeddings")

    def stream_event(self, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
        return None

    def response_body(self, doc: dict[str, Any], out: Output) -> bool:
        return False


SHAPE = Embeddings()
