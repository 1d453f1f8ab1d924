"""The sans-IO core: one CallObserver per HTTP request, fed phase events, producing one CallRecord.

No gRPC, no sockets, no clock: the adapter passes headers, body chunks, end-of-stream flags and
monotonic timestamps. Every extraction rule is therefore testable with plain Python, and the hot
path is one object's methods. The record is finalized exactly once: on the response end of
stream, or by `finish()` when the side stream ends early, with whatever was seen so far.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import orjson

from gateway_stats.config import Config, Limits, PluginConfig
from gateway_stats.core import capture
from gateway_stats.core import feedback as fbk
from gateway_stats.core.decoding import Decoder, decoder_for
from gateway_stats.core.extraction import Extraction
from gateway_stats.core.record import CallRecord
from gateway_stats.core.redact import redact, redact_path
from gateway_stats.core.sse import SSEFramer

log = logging.getLogger(__name__)

# A compressed stream is decoded only while its output stays below this ratio to the bytes on the
# wire (after a floor): real SSE compresses ~5-20x; gzip can reach ~1030x, brotli far more.
DECODED_STREAM_FLOOR = 64 << 20
DECODED_RATIO = 256

SESSION_HEADERS = (
    "x-openclaw-session-key",
    "x-clawdbot-session-key",
    "x-moltbot-session-key",
    "x-agent-session",
)


class CallObserver:
    """Watches one request/response exchange. Methods return True when the ai_log changed."""

    __slots__ = (
        "_body_prefix",
        "_body_seen",
        "_complete",
        "_config",
        "_content_length",
        "_decoded",
        "_decoder",
        "_framer",
        "_limits",
        "_plugin",
        "_resp_body",
        "_resp_done",
        "_resp_seen",
        "_user_id",
        "extraction",
        "record",
    )

    def __init__(self, config: Config) -> None:
        self._config = config
        self._limits: Limits = config.extensions.limits
        self._plugin: PluginConfig = config.default
        self.record = CallRecord()
        self.extraction: Extraction | None = None  # None: this call is not observed
        self._body_prefix: list[bytes] = []
        self._body_seen = 0
        self._decoder: Decoder | None = None
        self._decoded = 0  # decoded bytes analysed
        self._framer: SSEFramer | None = None
        self._resp_body: list[bytes] = []
        self._resp_seen = 0
        self._content_length = -1
        self._resp_done = False
        self._complete = False  # the whole answer was seen before Envoy's end-of-stream message
        self._user_id: str | None = None  # raw end-user id until finish() hashes it

    @property
    def observed(self) -> bool:
        """An LLM call being analysed, or a DIAL rate call (feedback) being read."""
        return self.extraction is not None or self.record.feedback is not None

    @property
    def response_analysed(self) -> bool:
        """False when nothing more is read from this call: not observed, or a response content type
        the config does not analyse (the request side is still logged then)."""
        return self.extraction is not None and self.record.response_observed

    # ------------------------------------------------------------------ request
    def on_request_headers(
        self, headers: Mapping[str, str], attributes: Mapping[str, str], end_of_stream: bool, now: int
    ) -> bool:
        rec = self.record
        rec.t_start = now
        rec.wall_start = time.time()
        rec.method = headers.get(":method", "")
        rec.path = redact_path(headers.get(":path", ""))  # Gemini's ?key=… never reaches an output
        rec.host = headers.get(":authority", "") or headers.get("host", "")
        rec.request_id = attributes.get("request.id") or headers.get("x-request-id", "")
        rec.route = attributes.get("xds.route_name", "")
        rec.cluster = attributes.get("xds.cluster_name", "")
        rec.virtual_host = attributes.get("xds.virtual_host_name", "")
        ext = self._config.extensions
        rec.consumer = headers.get(ext.consumer_header) or "none"
        for label in ext.metrics.extra_labels:
            if label.request_header:
                v = headers.get(label.request_header)
                if v is not None:
                    rec.label_headers[label.request_header] = v
        rec.traceparent = headers.get("traceparent")
        rec.tracestate = headers.get("tracestate")
        an = ext.analytics
        if an.user.header:
            self._user_id = headers.get(an.user.header) or None
        if an.segmentation:
            rec.segments = capture.segments(headers, an.segmentation)
        if an.feedback.dial_rate and rec.method == "POST":
            deployment = fbk.rate_deployment(rec.path)
            if deployment is not None:  # DIAL's rate call: read its body, it is feedback, not traffic
                rec.feedback = fbk.Feedback(
                    source="dial_rate",
                    ts=rec.wall_start,
                    deployment=deployment,
                    via_request_id=rec.request_id,
                )
                if end_of_stream:
                    rec.extra["feedback_problem"] = "no body"
                return False

        plugin = self._config.select(rec.route, rec.host.split(":", 1)[0], rec.cluster)
        self._plugin = plugin
        if not plugin.enabled or not plugin.path_enabled(rec.path):
            rec.observed = False
            return False
        sid_header = plugin.session_id_header
        if sid_header and headers.get(sid_header.lower()):
            rec.session_id = headers.get(sid_header.lower())
        else:
            for h in SESSION_HEADERS:
                v = headers.get(h)
                if v:
                    rec.session_id = v
                    break
        self.extraction = Extraction(plugin, self._limits, rec, self._config.extensions.pricing)
        self.extraction.on_request_headers(headers)
        if end_of_stream:
            rec.t_request_end = now
            self.extraction.on_request_body(None)
            return True
        # Like Higress, the ai_log is first attached at the end of the request body: an answer
        # without metadata is cheaper for us and for Envoy.
        return False

    def on_request_body(self, chunk: bytes, end_of_stream: bool, now: int) -> bool:
        ex = self.extraction
        if ex is None:
            if self.record.feedback is not None:
                self._rate_body(chunk, end_of_stream)
            return False
        rec = self.record
        n = len(chunk)
        rec.request_body_bytes += n
        room = self._limits.max_request_body_bytes - self._body_seen
        if room > 0 and n:
            self._body_prefix.append(chunk if n <= room else chunk[:room])
            self._body_seen += min(n, room)
        elif n:
            rec.request_body_truncated = True
        if not end_of_stream:
            return False
        rec.t_request_end = now
        body = b"".join(self._body_prefix)
        self._body_prefix = []
        if rec.request_body_truncated:
            if "request_body" not in rec.caps_hit:
                rec.caps_hit.append("request_body")
            log.info("request body of %d bytes: analysed the first %d", rec.request_body_bytes, len(body))
        doc = None
        if body and not rec.request_body_truncated:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                ex.note_bad_json("request")
        ex.on_request_body(doc)
        an = self._config.extensions.analytics
        if isinstance(doc, dict):
            if an.wants_text:
                rec.user_text = capture.last_user_text(doc, an.text_cap, ex.kind.api)
            if an.user.body and an.user.enabled and self._user_id is None:
                self._user_id = capture.user_id_from_body(doc)
        tracing = self._config.extensions.tracing
        keep_doc = (tracing.enabled and tracing.capture_content) or (
            an.athina.enabled and an.athina.include_content
        )
        if keep_doc and isinstance(doc, dict):
            # opt-in: message content for the span, or the prompt for Athina (secrets redacted)
            rec.request_doc = redact(doc)
        return True

    def _rate_body(self, chunk: bytes, end_of_stream: bool) -> None:
        """DIAL's rate body is tiny; a bounded prefix is kept and parsed at its end."""
        room = self._config.extensions.analytics.feedback.max_body_bytes - self._body_seen
        if chunk and room > 0:
            self._body_prefix.append(chunk[:room])
            self._body_seen += min(len(chunk), room)
        if not end_of_stream:
            return
        fb = self.record.feedback
        assert fb is not None
        body = b"".join(self._body_prefix)
        self._body_prefix = []
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        problem = fbk.apply_rate_body(fb, doc)
        if problem:
            self.record.extra["feedback_problem"] = problem

    # ----------------------------------------------------------------- response
    def on_response_headers(
        self, headers: Mapping[str, str], attributes: Mapping[str, str], end_of_stream: bool, now: int
    ) -> bool:
        rec = self.record
        rec.t_response_headers = now
        status = headers.get(":status") or attributes.get("response.code") or ""
        if status.isascii() and status.isdigit() and len(status) <= 3:  # untrusted: not '²', not 5000 digits
            rec.status_code = int(status)
        rec.content_type = headers.get("content-type", "")
        rec.content_encoding = headers.get("content-encoding", "")
        ex = self.extraction
        if ex is None:
            return False
        if not rec.t_request_end:
            rec.t_request_end = now  # the upstream answered before the request body ended
            ex.on_request_body(None)
        if not self._plugin.content_type_enabled(rec.content_type):
            # Higress: the request-side ai_log (attached at the end of the request body) stands; the
            # response is not analysed, so no tokens, no response attributes and no metrics.
            rec.response_observed = False
            return False
        cl = headers.get("content-length", "")
        if cl.isascii() and cl.isdigit() and len(cl) <= 18:
            self._content_length = int(cl)
        dec = decoder_for(rec.content_encoding)
        if dec is None:
            ex.note_cap("undecodable_encoding")
        self._decoder = dec
        if "text/event-stream" in rec.content_type.lower():
            rec.response_type = "stream"
            self._framer = SSEFramer(self._limits.max_event_bytes)
        ex.on_response_headers(headers)
        if end_of_stream:
            return self._end_response(now)
        return False  # the body's end (or a usage event) attaches the ai_log

    def on_response_body(self, chunk: bytes, end_of_stream: bool, now: int) -> bool:
        rec = self.record
        if chunk and not rec.t_first_byte:
            rec.t_first_byte = now
        rec.response_body_bytes += len(chunk)
        ex = self.extraction
        if ex is None or not rec.response_observed:
            if end_of_stream:
                rec.t_end = now
            return False
        changed = False
        data = b""
        dec = self._decoder
        if dec is not None and chunk:
            # Pieces are taken one at a time (each at most decoding.PIECE bytes) and dropped once
            # used, so a decompression bomb costs CPU up to the caps below, never memory.
            pieces = dec.feed(chunk)
            while True:
                try:
                    data = next(pieces)
                except StopIteration:
                    break
                except Exception:  # a corrupt compressed stream: stop analysing, never raise
                    self._decoder = None
                    ex.note_cap("decode_error")
                    break
                if self._take(data, now):
                    changed = True
                if self._decoder is None:  # a cap stopped decoding
                    break
        if end_of_stream:
            return self._end_response(now) or changed
        if not self._complete and self._answer_complete(data):
            # Envoy does not always wait for our answer to a trailing empty end-of-stream message,
            # so the ai_log is attached as soon as the whole answer is known.
            self._complete = True
            self._settle(now)
            return True
        return changed

    def _take(self, data: bytes, now: int) -> bool:
        """One piece of decoded body: frame it (SSE) or keep it up to the body cap."""
        ex = self.extraction
        assert ex is not None
        self._decoded += len(data)
        framer = self._framer
        if framer is not None:
            changed = False
            for event in framer.feed(data):
                if ex.on_event(event, now):
                    changed = True
            decoded = self._decoded
            if decoded > DECODED_STREAM_FLOOR and decoded > DECODED_RATIO * self.record.response_body_bytes:
                ex.note_cap("decode_ratio")  # a compression bomb in a stream: stop decoding it
                self._decoder = None
            return changed
        room = self._limits.max_response_body_bytes - self._resp_seen
        if room > 0:
            part = data if len(data) <= room else data[:room]
            self._resp_body.append(part)
            self._resp_seen += len(part)
        if len(data) > room:
            ex.note_cap("response_body")
            self._decoder = None  # nothing past the cap is analysed: stop decoding
        return False

    def _answer_complete(self, data: bytes) -> bool:
        if self._framer is not None:
            return self.extraction is not None and self.extraction.terminal_seen
        if self._content_length >= 0:
            return self.record.response_body_bytes >= self._content_length
        tail = data.rstrip()
        return tail.endswith((b"}", b"]")) and self._try_parse() is not None

    def _try_parse(self) -> object:
        body = b"".join(self._resp_body)
        self._resp_body = [body]
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return None

    def _settle(self, now: int) -> None:
        """Analyse what is complete now, as if the response had ended (idempotent)."""
        rec = self.record
        rec.t_end = now
        ex = self.extraction
        if ex is None:
            return
        if self._framer is None and not self._resp_done:
            self._parse_response_body(now)
        ex.finish("complete")

    def _end_response(self, now: int) -> bool:
        rec = self.record
        ex = self.extraction
        if not self._complete:
            # Once settled, the answer ended with its last byte: a trailing empty end-of-stream message
            # must not move t_end, or the metrics would disagree with the ai_log Envoy already logged.
            rec.t_end = now
        if ex is None:
            return False
        dec = self._decoder
        if dec is not None:
            pieces = dec.flush()
            while True:
                try:
                    piece = next(pieces)
                except StopIteration:
                    break
                except Exception:
                    ex.note_cap("decode_error")
                    break
                self._take(piece, now)
                if self._decoder is None:
                    break
        framer = self._framer
        if framer is not None:
            for event in framer.finish():
                ex.on_event(event, now)
            self._note_framer(framer)
        elif not self._resp_done:
            self._parse_response_body(now)
        return True

    def _parse_response_body(self, now: int) -> None:
        rec = self.record
        ex = self.extraction
        assert ex is not None
        self._resp_done = True
        capped = "response_body" in rec.caps_hit
        body = b"" if capped else b"".join(self._resp_body)
        self._resp_body = []
        doc = None
        if body:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                if rec.status_code is not None and rec.status_code < 400:
                    ex.note_bad_json("response")
        ex.on_response_body(doc, now)

    def _note_framer(self, framer: SSEFramer) -> None:
        st = framer.stats
        if st.oversized and self.extraction is not None:
            self.extraction.note_cap("sse_event")
        if st.resyncs:
            self.record.extra["sse_resyncs"] = st.resyncs

    # ------------------------------------------------------------------- finish
    def finish(self, now: int, reason: str = "complete") -> CallRecord:
        """Finalize with what was seen. Idempotent: the first call wins."""
        rec = self.record
        if rec.finished:
            return rec
        if not rec.t_end:
            rec.t_end = now
            if self.extraction is not None and self._framer is not None:
                # Stream cut: events fully received were already processed; a complete JSON
                # tail is still taken, as at a normal end.
                for event in self._framer.finish():
                    self.extraction.on_event(event, now)
                self._note_framer(self._framer)
        rec.end_reason = reason
        if self.extraction is not None:
            self.extraction.finish(reason)
        self._finish_identity()
        rec.finished = True
        return rec

    def _finish_identity(self) -> None:
        """Hash the end-user id (and Athina's customer_user_id): raw ids leave only with store_raw."""
        user = self._config.extensions.analytics.user
        if not user.enabled:
            self._user_id = None
            return
        rec = self.record
        raw = self._user_id
        self._user_id = None
        if raw:
            rec.user_hash = capture.user_hash(user.key, raw)
            if user.store_raw:
                rec.user_id = raw
        seg = rec.segments
        if seg and "customer_user_id" in seg and not user.store_raw:
            seg["customer_user_id"] = capture.user_hash(user.key, seg["customer_user_id"])

    def ai_log(self) -> dict[str, object]:
        if self.extraction is None:
            return {}
        return self.extraction.ai_log()
