"""Where feedback goes: the hub that joins it to the rated call and hands it to every consumer, and the
`POST /v1/feedback` handler of the side port.

The hub is fed from two places: a DIAL rate call crossing Envoy (a finished record whose `feedback` is
set) and the side port's `POST /v1/feedback`. Either way it joins the feedback to the rated call
(`joins.RecentCalls`), then gives it to every sink that has a `feedback(fb)` method (the Prometheus
counter, the stores, Athina). A consumer that raises is logged once and counted; the others still get it.

The handler is sans-IO: plain headers and body in, (status, JSON body, Feedback or None) out, so the
HTTP server stays a thin adapter and every rule here is a unit test.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from gateway_stats.analytics.joins import RecentCalls
from gateway_stats.config.analytics import FeedbackSettings
from gateway_stats.core.feedback import Feedback, FeedbackError, parse_feedback_body
from gateway_stats.core.record import CallRecord

log = logging.getLogger(__name__)

FEEDBACK_PATH = "/v1/feedback"


class FeedbackHub:
    def __init__(
        self,
        recent: RecentCalls,
        consumers: Callable[[], list[Callable[[Feedback], None]]],
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.recent = recent
        self._consumers = consumers  # looked up per feedback: sinks are added at run time
        self._on_error = on_error
        self._warned: set[str] = set()
        self.dropped: dict[str, int] = {}

    def note_call(self, rec: CallRecord) -> None:
        """Every finished LLM call: remember its ids for feedback that comes later."""
        self.recent.add(rec)

    def from_rate_call(self, rec: CallRecord) -> Feedback | None:
        """A finished DIAL rate call. Kept when its body was valid and the upstream accepted it."""
        fb = rec.feedback
        if fb is None:
            return None
        problem = rec.extra.get("feedback_problem")
        if problem is None and fb.rating is None:
            problem = "incomplete rate call"
        if problem is None and (rec.status_code is None or rec.status_code >= 400):
            problem = f"the upstream answered {rec.status_code or 'nothing'}"
        if problem is not None:
            self._drop("dial_rate", f"DIAL rate call {rec.request_id} not counted: {problem}")
            return None
        fb.route = rec.route
        fb.consumer = rec.consumer
        fb.user_hash = rec.user_hash
        fb.session_id = rec.session_id
        fb.model = fb.deployment
        self.submit(fb)
        return fb

    def submit(self, fb: Feedback) -> None:
        self.recent.join(fb)
        for consume in self._consumers():
            try:
                consume(fb)
            except Exception:
                name = getattr(getattr(consume, "__self__", None), "__class__", type(consume)).__name__
                if self._on_error is not None:
                    self._on_error(name)
                if name not in self._warned:
                    self._warned.add(name)
                    log.exception("feedback consumer %s failed (logged once)", name)

    def _drop(self, reason: str, msg: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if reason in self._warned:
            log.debug(msg)
        else:
            self._warned.add(reason)
            log.warning("%s (logged once; further ones at debug level)", msg)


def _json(status: int, doc: dict[str, Any]) -> tuple[int, bytes]:
    return status, orjson.dumps(doc) + b"\n"


def authorized(settings: FeedbackSettings, headers: Mapping[str, str]) -> bool:
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), settings.token.encode())


def handle_feedback(
    settings: FeedbackSettings, method: str, headers: Mapping[str, str], body: bytes, hub: FeedbackHub | None
) -> tuple[int, bytes]:
    """`POST /v1/feedback`. Headers are lower-cased names. Returns (status, JSON body)."""
    if not settings.endpoint_enabled or hub is None:
        return _json(404, {"error": "not found (the feedback endpoint is off: set gateway_stats.feedback)"})
    if not authorized(settings, headers):
        return _json(401, {"error": "missing or wrong bearer token"})
    if method != "POST":
        return _json(405, {"error": "use POST"})
    ctype = headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        return _json(415, {"error": "content-type must be application/json"})
    if len(body) > settings.max_body_bytes:
        return _json(413, {"error": f"body larger than {settings.max_body_bytes} bytes"})
    try:
        fb = parse_feedback_body(body)
    except FeedbackError as exc:
        doc: dict[str, Any] = {"error": exc.message}
        if exc.field:
            doc["field"] = exc.field
            doc["error"] = f"{exc.field}: {exc.message}"
        return _json(400, doc)
    hub.submit(fb)
    return _json(202, {"status": "accepted", "joined": fb.joined})
