"""Transport scenarios: the ``x-mock-*`` headers that shape how an answer goes on the wire.

What is answered (tokens, text, tool calls, status) is ground truth and lives in ``truth``; this module is
the other half: first-byte and inter-event delays, CRLF line ends, the usage event split into several
writes, content encoding flushed per event, aborts (FIN or RST), an unterminated last event, padding.
``_Scenario.parse`` reads the headers once per request; the helpers below are the byte-level transforms
the server (``mock_server``) applies.  ``SCENARIO_HEADERS`` documents every ``x-mock-*`` header.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import brotli

from gateway_stats.testing.truth import _int

__all__ = ["DEFAULT_SPLIT_PAUSE_MS", "SCENARIO_HEADERS"]

DEFAULT_SPLIT_PAUSE_MS = 20.0

SCENARIO_HEADERS: dict[str, str] = {
    "x-mock-events": "N content deltas (words, or argument fragments per tool call); default 5",
    "x-mock-input-tokens": "reported input/prompt tokens; default words in the prompt + 7",
    "x-mock-output-tokens": "reported output tokens; default the number of content deltas",
    "x-mock-cached-tokens": "reported cached input tokens; default 0",
    "x-mock-reasoning-tokens": "reported reasoning/thinking tokens; default 0",
    "x-mock-model": "model name in the RESPONSE (the request model is echoed otherwise)",
    "x-mock-chat-id": "response id (chatcmpl-/cmpl-/resp_/msg_/responseId) verbatim",
    "x-mock-tools": "K > 0: answer with K tool calls instead of text",
    "x-mock-interval-ms": "delay between SSE events (float ms)",
    "x-mock-first-byte-ms": "delay before the response headers and first byte (float ms)",
    "x-mock-status": "HTTP status; >= 400 gives a JSON error body",
    "x-mock-status-empty": "1: the error response has an empty body",
    "x-mock-crlf": "1: SSE lines end with CRLF",
    "x-mock-split-usage": "K: the usage-carrying SSE event is sent as K separate writes",
    "x-mock-split-pause-ms": "pause between those writes (float ms); default 20",
    "x-mock-gzip": "1: same as x-mock-encoding: gzip",
    "x-mock-encoding": "gzip | deflate | br content-encoding (SSE: flushed per event)",
    "x-mock-abort-after": "N: after N SSE events abort the connection (no terminating chunk)",
    "x-mock-abort-rst": "1: make that abort a TCP RST (SO_LINGER 0) instead of a FIN",
    "x-mock-abort-mid-event": "1: before that abort, send the first half of the next event",
    "x-mock-unterminated-final": "1: last SSE event lacks the blank line; 2: lacks every trailing newline",
    "x-mock-event-bytes": "N: pad the first content SSE event to about N bytes",
    "x-mock-created": "N: the `created` timestamp (default: now), for byte-for-byte comparisons",
    "x-mock-content-type": "content-type of a JSON answer (e.g. text/plain); the body is unchanged",
    "x-mock-error-after": 'N: after N SSE events send an error event ({"error": …}) and end the stream',
}


def _float(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        v = float(value.strip())
    except ValueError:
        return default
    return v if v > 0.0 else 0.0


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


class _Encoder:
    """Streaming content-encoder, flushed per write so every SSE event decodes on arrival."""

    __slots__ = ("_br", "_z")

    def __init__(self, kind: str) -> None:
        self._br: Any = None
        self._z: Any = None
        if kind == "br":
            self._br = brotli.Compressor()
        else:
            self._z = zlib.compressobj(6, zlib.DEFLATED, 31 if kind == "gzip" else 15)

    def chunk(self, data: bytes) -> bytes:
        if self._br is not None:
            return bytes(self._br.process(data) + self._br.flush())
        return bytes(self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH))

    def finish(self) -> bytes:
        if self._br is not None:
            return bytes(self._br.finish())
        return bytes(self._z.flush())


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "br":
        return bytes(brotli.compress(data))
    z = zlib.compressobj(6, zlib.DEFLATED, 31 if kind == "gzip" else 15)
    return z.compress(data) + z.flush()


@dataclass(slots=True)
class _Scenario:
    first_byte_s: float = 0.0
    interval_s: float = 0.0
    status_empty: bool = False
    crlf: bool = False
    split_usage: int = 1
    split_pause_s: float = DEFAULT_SPLIT_PAUSE_MS / 1000.0
    encoding: str = ""
    abort_after: int = -1
    abort_rst: bool = False
    abort_mid_event: bool = False
    unterminated: int = 0
    event_bytes: int = 0
    created: int | None = None  # fixed `created` timestamp, so two answers can be compared byte for byte
    content_type: str = ""  # content-type of a JSON answer ("" = application/json)
    error_after: int = -1  # SSE: an error event replaces the rest of the stream after this many events

    @classmethod
    def parse(cls, h: Mapping[str, str]) -> _Scenario:
        enc = (h.get("x-mock-encoding") or "").strip().lower()
        if enc not in ("gzip", "deflate", "br"):
            enc = "gzip" if _flag(h.get("x-mock-gzip")) else ""
        return cls(
            first_byte_s=_float(h.get("x-mock-first-byte-ms"), 0.0) / 1000.0,
            interval_s=_float(h.get("x-mock-interval-ms"), 0.0) / 1000.0,
            status_empty=_flag(h.get("x-mock-status-empty")),
            crlf=_flag(h.get("x-mock-crlf")),
            split_usage=_int(h.get("x-mock-split-usage"), 1, 1, 1 << 20),
            split_pause_s=_float(h.get("x-mock-split-pause-ms"), DEFAULT_SPLIT_PAUSE_MS) / 1000.0,
            encoding=enc,
            abort_after=_int(h.get("x-mock-abort-after"), -1, 0),
            abort_rst=_flag(h.get("x-mock-abort-rst")),
            abort_mid_event=_flag(h.get("x-mock-abort-mid-event")),
            unterminated=_int(h.get("x-mock-unterminated-final"), 0, 0, 2),
            event_bytes=_int(h.get("x-mock-event-bytes"), 0, 0, 1 << 31),
            created=_int(h.get("x-mock-created"), 0) or None,
            content_type=(h.get("x-mock-content-type") or "").strip(),
            error_after=_int(h.get("x-mock-error-after"), -1, 0),
        )


_DEFAULT_SCENARIO = _Scenario()
_PAD_KEY = b'"x_mock_padding":"'


def _pad_event(event: bytes, target: int) -> bytes:
    pos = event.find(b"data: {")
    extra = target - len(event) - len(_PAD_KEY) - 2
    if pos < 0 or extra <= 0:
        return event
    pos += 7
    return event[:pos] + _PAD_KEY + b"x" * extra + b'",' + event[pos:]


def _split_bytes(data: bytes, k: int) -> list[bytes]:
    k = max(1, min(k, len(data)))
    q, r = divmod(len(data), k)
    out, pos = [], 0
    for i in range(k):
        size = q + (1 if i < r else 0)
        out.append(data[pos : pos + size])
        pos += size
    return out
