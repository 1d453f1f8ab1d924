"""Incremental Server-Sent-Events framer for observing streamed LLM responses.

Why: ext_proc hands us a response body as arbitrary transport reads. One read can hold several
events and one event can be split at any byte (inside a ``\\r\\n`` too), yet token usage and
time-to-first-token need whole events. The framer puts the events back together without touching
the bytes sent on to the client. Its memory is bounded, and the usual chunk of a few
``data: {...}\\n\\n`` events costs only a few C-level ``bytes`` scans.

The semantics follow the Higress ai-statistics plugin (an event ends at two consecutive line
endings), with these additions: every mix of ``\\n`` / ``\\r\\n`` / lone ``\\r`` is handled, even
when a ``\\r`` ends a chunk; after an oversized event the framer skips to the next delimiter and
carries on; and a final event with no delimiter is kept if its data is complete JSON.

How it works: line endings are normalised to ``\\n`` per chunk (``\\r\\n`` -> ``\\n`` and lone
``\\r`` -> ``\\n``). Both are one line ending, so the number of line endings, and so where the
delimiters fall, does not change. A ``\\r`` that ends a chunk is already a line ending; only a
``\\n`` at the start of the next chunk is left to decide (it is dropped as the second half of
``\\r\\n``). After that an event delimiter is just ``\\n\\n``. Rules that don't depend on
how the stream is split into chunks:

* An event's size is its byte length after normalisation, without its delimiter. An event over
  ``max_event_bytes`` is never parsed or yielded, whether it came in one chunk or in many. It is
  counted in ``stats.oversized``, and in ``stats.resyncs`` once its delimiter has been seen.
  The buffered tail never grows beyond ``max_event_bytes + 1`` bytes.
* A UTF-8 BOM at the very start of the stream is ignored (as in the WHATWG parser).
* ``id`` values containing NUL are ignored and ``retry`` must be ASCII digits (WHATWG).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

__all__ = ["SSEEvent", "SSEFramer", "SSEStats"]

_LF = 0x0A
_CR = 0x0D
_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event; ``data`` is the data lines joined with ``b"\\n"``."""

    data: bytes
    event: str | None
    id: str | None
    has_data: bool
    retry: int | None = None
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    def text(self) -> str:
        """``data`` decoded as UTF-8 (invalid bytes replaced); decoded once and then cached."""
        t = self._text
        if t is None:
            t = self._text = self.data.decode("utf-8", "replace")
        return t


@dataclass(slots=True)
class SSEStats:
    events: int = 0  # events yielded (feed + finish)
    comments: int = 0  # events not yielded that held at least one comment line
    empty: int = 0  # events not yielded with neither data, event nor comment (blank, id/retry only...)
    oversized: int = 0  # events (or tails) larger than max_event_bytes, dropped
    resyncs: int = 0  # times parsing resumed after the delimiter that closed an oversized event
    discarded_tail: int = 0  # unterminated final events dropped by finish()
    bytes: int = 0  # raw bytes fed


def _parse(raw: bytes) -> tuple[SSEEvent | None, bool]:
    """Parse one normalised event (no ``\\r``, no ``\\n\\n``). Returns (event or None, saw comment)."""
    data: list[bytes] = []
    event: str | None = None
    ident: str | None = None
    retry: int | None = None
    comment = False
    for line in raw.split(b"\n"):
        if not line:
            continue
        c = line.find(b":")
        if c == 0:
            comment = True
            continue
        if c < 0:
            name, value = line, b""
        else:
            name = line[:c]
            value = line[c + 2 :] if line[c + 1 : c + 2] == b" " else line[c + 1 :]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                ident = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            retry = int(value)
    if not data and event is None:
        return None, comment
    return SSEEvent(b"\n".join(data), event, ident, bool(data), retry), comment


class SSEFramer:
    """Feed transport chunks, get complete events back. Bytes are only observed, never changed."""

    __slots__ = ("_at_start", "_buf", "_max", "_resync", "_resync_lf", "_skip_lf", "stats")

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be >= 1")
        self._max = max_event_bytes
        self.stats = SSEStats()
        self._buf = bytearray()  # normalised start of the current, incomplete event (<= max + 1 bytes)
        self._skip_lf = False  # previous chunk ended with \r: a leading \n is its second half
        self._resync = False  # dropping bytes until the delimiter that ends an oversized event
        self._resync_lf = False  # while resyncing: the last byte seen was \n
        self._at_start = True  # the next event is the first of the stream (BOM check)

    # ------------------------------------------------------------------ public API
    def feed(self, chunk: bytes | bytearray | memoryview) -> list[SSEEvent]:
        """Return the events completed by ``chunk``, in stream order."""
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        if not chunk:
            return []
        self.stats.bytes += len(chunk)
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == _CR
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        out: list[SSEEvent] = []
        if self._resync:
            pos = self._resync_step(chunk)
        elif self._buf:
            pos = self._join_buffered(chunk, out)
        else:
            pos = 0
        if pos < 0:
            return out

        # Fast path: the buffer is empty and chunk[pos:] starts a new event.
        cap = self._max
        find = chunk.find
        while (i := find(b"\n\n", pos)) >= 0:
            if i - pos > cap:
                self._drop_complete()
            else:
                self._emit(chunk[pos:i], out)
            pos = i + 2
        rest = len(chunk) - pos
        if rest:
            ends_lf = chunk[-1] == _LF
            if rest - ends_lf > cap:
                self._start_resync(ends_lf)
            else:
                self._buf += memoryview(chunk)[pos:] if pos else chunk
        return out

    def finish(self) -> list[SSEEvent]:
        """End of stream: return the unterminated last event if its data is complete JSON.

        Any other non-blank tail is counted in ``stats.discarded_tail``. The framer is then reset
        (stats are kept), so it can be reused for a new stream.
        """
        out: list[SSEEvent] = []
        buf = self._buf
        if buf and not self._resync:
            raw = bytes(buf)
            if len(raw) > self._max:
                self.stats.oversized += 1
            else:
                if self._at_start and raw.startswith(_BOM):
                    raw = raw[3:]
                if raw.strip(b"\n"):
                    ev, _ = _parse(raw)
                    if ev is not None and ev.has_data and _is_json(ev.data):
                        self.stats.events += 1
                        out.append(ev)
                    else:
                        self.stats.discarded_tail += 1
        buf.clear()
        self._skip_lf = self._resync = self._resync_lf = False
        self._at_start = True
        return out

    # ------------------------------------------------------------------ internals
    def _emit(self, raw: bytes, out: list[SSEEvent]) -> None:
        if self._at_start:
            self._at_start = False
            if raw.startswith(_BOM):
                raw = raw[3:]
        if raw.startswith(b"data:") and b"\n" not in raw:  # the usual single `data:` line
            out.append(SSEEvent(raw[6:] if raw[5:6] == b" " else raw[5:], None, None, True))
            self.stats.events += 1
            return
        ev, comment = _parse(raw)
        if ev is not None:
            out.append(ev)
            self.stats.events += 1
        elif comment:
            self.stats.comments += 1
        else:
            self.stats.empty += 1

    def _join_buffered(self, chunk: bytes, out: list[SSEEvent]) -> int:
        """Continue the buffered event with ``chunk``; return where the next event starts, or -1."""
        buf = self._buf
        cap = self._max
        if buf[-1] == _LF and chunk[0] == _LF:  # delimiter split across the boundary
            buf.pop()
            start = 1
        else:
            j = chunk.find(b"\n\n")
            if j < 0:
                ends_lf = chunk[-1] == _LF
                if len(buf) + len(chunk) - ends_lf > cap:
                    self._start_resync(ends_lf)
                else:
                    buf += chunk
                return -1
            start = j + 2
            if len(buf) + j > cap:
                buf.clear()
                self._drop_complete()
                return start
            buf += memoryview(chunk)[:j]
        raw = bytes(buf)  # len(raw) <= cap on both paths
        buf.clear()
        self._emit(raw, out)
        return start

    def _resync_step(self, chunk: bytes) -> int:
        """Skip bytes up to the delimiter that ends the oversized event; return the resume offset."""
        if self._resync_lf and chunk[0] == _LF:
            start = 1
        else:
            j = chunk.find(b"\n\n")
            if j < 0:
                self._resync_lf = chunk[-1] == _LF
                return -1
            start = j + 2
        self._resync = self._resync_lf = False
        self.stats.resyncs += 1
        return start

    def _drop_complete(self) -> None:
        """An oversized event whose delimiter is already seen: count it and carry on."""
        self._at_start = False
        self.stats.oversized += 1
        self.stats.resyncs += 1

    def _start_resync(self, ends_lf: bool) -> None:
        """The incomplete tail exceeds the cap: drop it and skip until its delimiter."""
        self._buf.clear()
        self._at_start = False
        self.stats.oversized += 1
        self._resync = True
        self._resync_lf = ends_lf


def _is_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True
