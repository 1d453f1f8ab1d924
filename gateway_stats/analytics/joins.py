"""Recent calls by id, so feedback can name the call it rates without a store round trip.

Feedback arrives after the call it rates, carrying only an id: DIAL's `responseId` (the chat/response
id), or for `POST /v1/feedback` a request id, response id or Athina `external_reference_id`. The
counter `gateway_stats_feedback_total{ai_model,ai_route,…}` and the Athina update need the rated call's
model, route and reference id at once, in memory. A bounded LRU (oldest out first) holds the few fields
needed for the last N calls (`feedback.recent_calls`, 50,000 by default: ~30-40 MB); the stores
join on their own (by response id) for history beyond it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from gateway_stats.core.feedback import Feedback
from gateway_stats.core.record import CallRecord


@dataclass(frozen=True, slots=True)
class CallRef:
    request_id: str
    response_id: str | None
    reference_id: str  # Athina external_reference_id (configured header, else the request id)
    model: str | None
    route: str
    consumer: str
    user_hash: str | None
    session_id: str | None


def reference_id(rec: CallRecord) -> str:
    seg = rec.segments
    return (seg.get("external_reference_id") if seg else None) or rec.request_id


class RecentCalls:
    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._by: OrderedDict[str, CallRef] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by)

    def resize(self, capacity: int) -> None:
        """A config reload's `feedback.recent_calls`: a smaller table drops its oldest calls at once."""
        with self._lock:
            self.capacity = capacity
            while len(self._by) > capacity * 3:
                self._by.popitem(last=False)

    def add(self, rec: CallRecord) -> None:
        if not self.capacity:
            return
        ref = CallRef(
            request_id=rec.request_id,
            response_id=rec.chat_id,
            reference_id=reference_id(rec),
            model=rec.model,
            route=rec.route,
            consumer=rec.consumer,
            user_hash=rec.user_hash,
            session_id=rec.session_id,
        )
        keys = {f"q:{ref.request_id}", f"x:{ref.reference_id}"}
        if ref.response_id:
            keys.add(f"r:{ref.response_id}")
        with self._lock:
            for k in keys:
                if k != "q:" and k != "x:":
                    self._by[k] = ref
                    self._by.move_to_end(k)
            while len(self._by) > self.capacity * 3:
                self._by.popitem(last=False)

    def find(self, fb: Feedback) -> CallRef | None:
        with self._lock:
            for prefix, v in (
                ("r:", fb.response_id),
                ("q:", fb.request_id),
                ("x:", fb.external_reference_id),
            ):
                if v:
                    ref = self._by.get(prefix + v)
                    if ref is not None:
                        return ref
        return None

    def join(self, fb: Feedback) -> None:
        """Fill the feedback with what is known about the rated call (its values win over the rate call's)."""
        ref = self.find(fb)
        if ref is None:
            return
        fb.joined = True
        fb.request_id = fb.request_id or ref.request_id
        fb.response_id = fb.response_id or ref.response_id
        fb.external_reference_id = fb.external_reference_id or ref.reference_id
        fb.model = ref.model or fb.model
        fb.route = ref.route or fb.route
        fb.consumer = ref.consumer if ref.consumer != "none" else fb.consumer
        fb.user_hash = fb.user_hash or ref.user_hash
        fb.session_id = fb.session_id or ref.session_id
