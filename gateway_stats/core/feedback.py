"""Feedback on an answer (likes, dislikes, comments, grades): what it is and how it is recognised.

Two ways in, one `Feedback` object out:

- DIAL's rate call crossing Envoy: `POST …/v1/<deployment>/rate` with `{"responseId": …, "rate": true|false}`.
  It is not an LLM call (no tokens, no Higress metrics): the observer recognises it by method and path
  and reads its small body instead of treating it as traffic.
- `POST /v1/feedback` on the sidecar's side port, with Athina's fields, for apps that do not go through
  DIAL (`parse_feedback_body` validates it and names the field that is wrong).

Both are sans-IO here. What happens next (join with the rated call, counter, stores, Athina) is in
`gateway_stats.analytics.feedback`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

MAX_ID_CHARS = 256
MAX_COMMENT_CHARS = 4096

# `/v1/<deployment>/rate`, with any prefix (DIAL is often mounted under a path) and an optional query.
_RATE_PATH = re.compile(r"/v1/([^/?#]+)/rate/?(?:\?.*)?$")

RATINGS = ("like", "dislike", "none")


@dataclass(slots=True)
class Feedback:
    """One piece of feedback about one earlier call. Ids say which call; the rest says what was felt."""

    source: str  # "dial_rate" (a rate call seen at the gateway) or "api" (POST /v1/feedback)
    ts: float = 0.0  # epoch seconds when it arrived
    response_id: str | None = None  # the rated call's chat/response id (DIAL responseId)
    request_id: str | None = None  # the rated call's request id
    external_reference_id: str | None = None  # Athina's id of the rated call
    rating: int | None = None  # 1 like, -1 dislike, None = no thumbs (a comment or grade only)
    comment: str | None = None  # Athina user_feedback_comment
    grader_feedback: int | None = None  # Athina grader_feedback, 1 or -1
    deployment: str | None = None  # DIAL: the deployment in the rate path
    # what is known about the rated call (from the join, else from the rate call itself)
    model: str | None = None
    route: str = ""
    consumer: str = "none"
    user_hash: str | None = None
    session_id: str | None = None
    joined: bool = False  # the rated call was found (by response id, request id or reference id)
    via_request_id: str | None = None  # the rate call's own request id (DIAL rate crossing Envoy)

    @property
    def rating_label(self) -> str:
        return "like" if self.rating == 1 else "dislike" if self.rating == -1 else "none"

    @property
    def like_count(self) -> int:
        return 1 if self.rating == 1 else 0

    @property
    def dislike_count(self) -> int:
        return 1 if self.rating == -1 else 0


class FeedbackError(ValueError):
    """A malformed feedback body; `field` names the offending field ("" = the body itself)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


# ------------------------------------------------------------------------------------ DIAL rate call


def rate_deployment(path: str) -> str | None:
    """The deployment of a DIAL rate path (`/openai/v1/gpt-4o/rate` -> `gpt-4o`), else None."""
    if not path.endswith("/rate") and "/rate?" not in path and not path.endswith("/rate/"):
        return None  # the common case (every LLM call) leaves here without a regex
    m = _RATE_PATH.search(path)
    return m.group(1) if m else None


def apply_rate_body(fb: Feedback, doc: Any) -> str | None:
    """Fill `fb` from DIAL's rate body. Returns a problem (and leaves the rating unset) or None."""
    if not isinstance(doc, dict):
        return "body is not a JSON object"
    rid = doc.get("responseId")
    if not isinstance(rid, str) or not rid:
        return "responseId missing or not a string"
    rate = doc.get("rate")
    if not isinstance(rate, bool):
        return "rate missing or not a boolean"
    fb.response_id = rid[:MAX_ID_CHARS]
    fb.rating = 1 if rate else -1
    return None


# ------------------------------------------------------------------------------ POST /v1/feedback

FEEDBACK_FIELDS = (
    "request_id",
    "response_id",
    "external_reference_id",
    "user_feedback",
    "user_feedback_comment",
    "grader_feedback",
)


def _id(doc: dict[str, Any], key: str) -> str | None:
    v = doc.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise FeedbackError(key, "expected a non-empty string")
    if len(v) > MAX_ID_CHARS:
        raise FeedbackError(key, f"longer than {MAX_ID_CHARS} characters")
    return v


def _thumb(doc: dict[str, Any], key: str) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or v not in (1, -1):
        raise FeedbackError(key, "expected 1 (positive) or -1 (negative)")
    return int(v)


def parse_feedback_body(body: bytes) -> Feedback:
    """Validate a `POST /v1/feedback` body (Athina's fields). Raises FeedbackError naming the field."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise FeedbackError("", "body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise FeedbackError("", "body must be a JSON object")
    for k in doc:
        if k not in FEEDBACK_FIELDS:
            raise FeedbackError(k, f"unknown field (known fields: {', '.join(FEEDBACK_FIELDS)})")
    fb = Feedback(
        source="api",
        ts=time.time(),
        request_id=_id(doc, "request_id"),
        response_id=_id(doc, "response_id"),
        external_reference_id=_id(doc, "external_reference_id"),
        rating=_thumb(doc, "user_feedback"),
        grader_feedback=_thumb(doc, "grader_feedback"),
    )
    c = doc.get("user_feedback_comment")
    if c is not None:
        if not isinstance(c, str):
            raise FeedbackError("user_feedback_comment", "expected a string")
        if len(c) > MAX_COMMENT_CHARS:
            raise FeedbackError("user_feedback_comment", f"longer than {MAX_COMMENT_CHARS} characters")
        fb.comment = c
    if not (fb.request_id or fb.response_id or fb.external_reference_id):
        raise FeedbackError(
            "request_id", "one of request_id, response_id or external_reference_id is required"
        )
    if fb.rating is None and fb.comment is None and fb.grader_feedback is None:
        raise FeedbackError(
            "user_feedback", "one of user_feedback, user_feedback_comment or grader_feedback is required"
        )
    return fb
