"""Sinks consume finished records. Each is independent; one failing never affects another or traffic."""

from __future__ import annotations

import logging
import sys
import threading
from typing import IO, Any, Protocol

import orjson

from gateway_stats.core import ai_log as ailog
from gateway_stats.core.record import CallRecord

log = logging.getLogger(__name__)


class Sink(Protocol):
    def emit(self, rec: CallRecord, ai_log: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class SinkSet:
    """Fans a record out to every sink; exceptions are logged once per sink type and counted."""

    def __init__(self, sinks: list[Sink], on_error: Any = None) -> None:
        self.sinks = sinks
        self._on_error = on_error
        self._warned: set[str] = set()

    def emit(self, rec: CallRecord, ai_log: dict[str, Any]) -> None:
        for s in self.sinks:
            try:
                s.emit(rec, ai_log)
            except Exception:
                name = type(s).__name__
                if self._on_error is not None:
                    self._on_error(name)
                if name not in self._warned:
                    self._warned.add(name)
                    log.exception("sink %s failed (logged once; counted in gateway_stats_errors_total)", name)

    def close(self) -> None:
        for s in self.sinks:
            try:
                s.close()
            except Exception:
                log.exception("closing sink %s", type(s).__name__)


class AiLogLineSink:
    """Writes `{"ai_log":"…","request_id":"…"}` lines itself, for observability mode where Envoy
    ignores every answer and so never sees our dynamic metadata."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: IO[bytes]
        if path == "-":
            self._fh = sys.stdout.buffer
            self._own = False
        else:
            self._fh = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the sink
            self._own = True

    def emit(self, rec: CallRecord, ai_log: dict[str, Any]) -> None:
        if not rec.observed:
            return
        line = orjson.dumps({"ai_log": ailog.dumps(ai_log).decode(), "request_id": rec.request_id}) + b"\n"
        with self._lock:
            self._fh.write(line)
            if not self._own:
                self._fh.flush()

    def close(self) -> None:
        if self._own:
            self._fh.close()
