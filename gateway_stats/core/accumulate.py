"""Capped, incremental accumulators for streamed text and tool calls.

Streams can be long and hostile; every accumulation here has a byte cap, and hitting it is
reported (never an out-of-memory, never silent: Higress OOM #3814).
"""

from __future__ import annotations

from typing import Any


class CappedText:
    """Appends string pieces up to `cap` UTF-8 bytes (counted in characters)."""

    __slots__ = ("_n", "_parts", "cap", "truncated")

    def __init__(self, cap: int) -> None:
        self._parts: list[str] = []
        self._n = 0
        self.cap = cap
        self.truncated = False

    def add(self, piece: str) -> None:
        if not piece:
            return
        room = self.cap - self._n
        if room <= 0:
            self.truncated = True
            return
        if len(piece) > room:
            piece = piece[:room]
            self.truncated = True
        self._parts.append(piece)
        self._n += len(piece)

    def __bool__(self) -> bool:
        return self._n > 0

    @property
    def seen(self) -> bool:
        return bool(self._parts) or self.truncated

    def value(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""


class ToolCallAssembler:
    """Assembles streamed tool calls by index: id/type/name overwrite, arguments concatenate."""

    __slots__ = ("_args", "_calls", "cap", "truncated")

    def __init__(self, cap: int) -> None:
        self._calls: dict[int, dict[str, Any]] = {}
        self._args: dict[int, CappedText] = {}
        self.cap = cap
        self.truncated = False

    def update(
        self,
        index: int,
        *,
        id: str | None = None,
        type: str | None = None,
        name: str | None = None,
        arguments: str | None = None,
    ) -> None:
        call = self._calls.get(index)
        if call is None:
            call = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            if index:  # Higress's Go struct has `index,omitempty`: index 0 is left out
                call["index"] = index
            self._calls[index] = call
            self._args[index] = CappedText(self.cap)
        if id:
            call["id"] = id
        if type:
            call["type"] = type
        if name:
            call["function"]["name"] = name
        if arguments:
            acc = self._args[index]
            acc.add(arguments)
            if acc.truncated:
                self.truncated = True

    def __bool__(self) -> bool:
        return bool(self._calls)

    def value(self) -> list[dict[str, Any]]:
        out = []
        for idx in sorted(self._calls):
            call = self._calls[idx]
            call["function"]["arguments"] = self._args[idx].value()
            out.append(call)
        return out
