"""What every API shape shares: the call's kind, the output it assembles, and the interface a shape
module implements. Shapes never see bytes or sockets, only parsed JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gateway_stats.core.accumulate import CappedText, ToolCallAssembler


@dataclass(slots=True)
class Output:
    """What the model produced, assembled incrementally with caps."""

    answer: CappedText
    reasoning: CappedText
    tools: ToolCallAssembler
    finish_reasons: list[str]
    content_seen: bool = False  # any generated content (text, reasoning or tool call)
    # a whole body's tool calls exactly as the provider sent them (OpenAI `message.tool_calls`), which
    # Higress logs verbatim; the assembled `tools` stay the fallback (and the cap check)
    tool_calls_as_sent: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Kind:
    provider: str  # semconv gen_ai.provider.name
    operation: str  # semconv gen_ai.operation.name
    api: str  # our finer name: chat_completions, completions, embeddings, responses, messages, gemini, rerank


UNKNOWN = Kind("unknown", "unknown", "unknown")


class Shape(Protocol):
    """One API shape. `recognise.py` lists them in the order their paths are tried."""

    kind: Kind

    def matches_path(self, path: str) -> bool:
        """`path` has no query string and no trailing slash."""
        ...

    def stream_event(self, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
        """Read one SSE event's JSON into `out`."""
        ...

    def response_body(self, doc: dict[str, Any], out: Output) -> bool:
        """Read a whole JSON response body into `out`; True when the body had this shape's output."""
        ...


def add_finish_reason(value: object, out: Output) -> None:
    if isinstance(value, str) and value:
        out.finish_reasons.append(value)


def index_or(value: object, default: int) -> int:
    return value if isinstance(value, int) else default
