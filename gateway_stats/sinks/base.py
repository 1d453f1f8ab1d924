"""The sink interface and the fan-out: sinks consume finished records. Each is independent; one failing
never affects another or the traffic."""

from __future__ import annotations

import logging
from typing import Any, Protocol

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
