"""The ai_log as it leaves the sidecar: the dynamic-metadata document Envoy's access log (and tracing
custom tags) read, and the line file gateway-stats writes itself in observability mode.

The document is Higress's `ai_log` object (`gateway_stats.core.ai_log`), pre-escaped as the body of a
JSON string, next to the span-tag keys (span_tags.py) and every `as_separate_log_field` value.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Any

import orjson

from gateway_stats.core import ai_log as ailog
from gateway_stats.core.record import CallRecord
from gateway_stats.sinks import span_tags


def metadata_values(rec: CallRecord, doc: dict[str, Any]) -> dict[str, str | bytes | int]:
    """The keys of our dynamic-metadata namespace for one answer: `ai_log`, the span-tag keys known so
    far, and each separate log field (strings and bytes are final UTF-8 text; ints become protobuf
    numbers)."""
    out: dict[str, str | bytes | int] = {"ai_log": ailog.escaped_bytes(doc)}
    out.update(span_tags.tag_values(rec))
    for key in rec.separate_log_keys:
        out[key] = ailog.escaped_value(rec.attributes.get(key))
    return out


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
