"""Forwarding to Athina: each LLM call as Athina's inference-log JSON, each feedback as its update.

Fire-and-forget, as Athina's own logger: `emit()` only puts the record on a bounded queue (a full queue
drops and counts, never waits); one daemon thread takes batches off it, has language and topic computed
(the enricher's child process), builds the bodies and POSTs them with `athina-api-key`, retrying
connection errors, 429 and 5xx with exponential backoff. Nothing here can slow or fail the traffic.

Bodies (`inference_body`, `feedback_body`) are plain functions of the record, tested field by field:

- calls go to `athina.url` (default `https://log.athina.ai/api/v1/log/inference`): model, prompt
  (the request's messages), response (the answer text), user query, response time, status, error,
  tokens, cost, Athina's segmentation fields (`prompt_slug`, `environment`, `customer_id`,
  `customer_user_id`, `session_id`, `external_reference_id`), model options, tools and tool calls, and
  `custom_attributes` (route, provider, language, topic, user hash …). `external_reference_id` is the
  configured header's value, else Envoy's request id, so feedback can later name the call.
- feedback goes to `athina.feedback_url` (default `…/api/v1/prompt_run/user-feedback`, PATCH) with the
  rated call's `external_reference_id`, `user_feedback`, `user_feedback_comment`, `grader_feedback`.

`include_content: false` leaves out prompt, response, user query, tools and tool calls. Raw end-user ids
are never sent: `customer_user_id` is the user hash unless `analytics.user.store_raw` says otherwise.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from gateway_stats.analytics.joins import RecentCalls, reference_id
from gateway_stats.config.analytics import AthinaSettings
from gateway_stats.core.feedback import Feedback
from gateway_stats.core.record import CallRecord
from gateway_stats.sinks.metrics import is_llm_call
from gateway_stats.warn_once import WarnOnce

if TYPE_CHECKING:
    from gateway_stats.analytics.enricher import Enricher

log = logging.getLogger(__name__)

BATCH = 64
_MODEL_OPTION_KEYS = ("stop", "response_format", "tool_choice", "reasoning_effort")


def _prompt(doc: Any) -> Any:
    if not isinstance(doc, dict):
        return None
    msgs = doc.get("messages")
    if isinstance(msgs, list):
        system = doc.get("system")  # Anthropic keeps the system prompt beside the messages
        if system is not None:
            return [{"role": "system", "content": system}, *msgs]
        return msgs
    for key in ("input", "prompt", "contents"):
        if doc.get(key) is not None:
            return doc[key]
    return None


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def inference_body(rec: CallRecord, settings: AthinaSettings) -> dict[str, Any]:
    """Athina's `POST /api/v1/log/inference` body for one finished call."""
    u = rec.usage
    seg = rec.segments or {}
    failed = rec.failed
    customer_user_id = seg.get("customer_user_id") or (rec.user_id if rec.user_id else rec.user_hash)
    body: dict[str, Any] = {
        "language_model_id": rec.model or "unknown",
        "response_time": rec.service_duration_ms,
        "status_code": rec.status_code,
        "error": (rec.error_message or rec.error_type) if failed else None,
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens
        if u.total_tokens is not None
        else (None if not u.known else (u.input_tokens or 0) + (u.output_tokens or 0)),
        "cost": float(rec.cost) if isinstance(rec.cost, Decimal) else None,
        "prompt_slug": seg.get("prompt_slug"),
        "environment": seg.get("environment"),
        "customer_id": seg.get("customer_id"),
        "customer_user_id": customer_user_id,
        "session_id": rec.session_id,
        "external_reference_id": reference_id(rec),
        "model_options": dict(rec.request_params) or None,
        "custom_attributes": _drop_none(
            {
                "request_id": rec.request_id,
                "route": rec.route or None,
                "cluster": rec.cluster or None,
                "provider": rec.provider,
                "operation": rec.operation,
                "consumer": rec.consumer,
                "stream": rec.is_stream or rec.request_stream,
                "response_id": rec.chat_id,
                "user_hash": rec.user_hash,
                "language": rec.language,
                "topic": rec.topic,
                "outcome": "error" if failed else ("ok" if rec.end_reason in ("complete", "") else "aborted"),
                "currency": rec.cost_currency,
            }
        ),
    }
    doc = rec.request_doc
    if isinstance(doc, dict) and body["model_options"] is not None:
        for k in _MODEL_OPTION_KEYS:
            if doc.get(k) is not None:
                body["model_options"][k] = doc[k]
    if settings.include_content:
        body["prompt"] = _prompt(doc)
        body["response"] = rec.answer
        body["user_query"] = rec.user_text
        body["tools"] = doc.get("tools") if isinstance(doc, dict) else None
        body["tool_calls"] = rec.tool_calls or None
    return _drop_none(body)


def feedback_body(fb: Feedback) -> dict[str, Any] | None:
    """Athina's user-feedback update for the rated call, or None when that call's reference is unknown."""
    if not fb.external_reference_id:
        return None
    return _drop_none(
        {
            "external_reference_id": fb.external_reference_id,
            "user_feedback": fb.rating,
            "user_feedback_comment": fb.comment,
            "grader_feedback": fb.grader_feedback,
        }
    )


class AthinaSink:
    """A Sink (and feedback consumer) that forwards to Athina from its own thread."""

    def __init__(
        self,
        settings: AthinaSettings,
        enricher: Enricher | None = None,
        recent: RecentCalls | None = None,
        *,
        on_count: Callable[[str, str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.enricher = enricher
        self.recent = recent
        self.counts: dict[tuple[str, str], int] = {}  # (kind, result) -> n: sent, failed, dropped
        self._on_count = on_count
        self._sleep = sleep
        self._q: queue.Queue[tuple[str, Any] | None] = queue.Queue(settings.queue_size)
        self._trouble = WarnOnce(log)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="gateway-stats-athina", daemon=True)
        self._thread.start()

    def reconfigure(self, settings: AthinaSettings) -> None:
        self.settings = settings  # the queue keeps its size until restart

    # --------------------------------------------------------------------- sink side
    def emit(self, rec: CallRecord, ai_log: dict[str, Any]) -> None:
        if rec.observed and is_llm_call(rec) and self.settings.enabled:
            self._put(("log", rec))

    def feedback(self, fb: Feedback) -> None:
        if self.settings.enabled:
            self._put(("feedback", fb))

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self._count(item[0], "dropped")
            self._trouble("full", f"Athina queue full ({self.settings.queue_size}): dropping")

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to `timeout`), then stop the thread."""
        self._stopping = True
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _count(self, kind: str, result: str) -> None:
        self.counts[(kind, result)] = self.counts.get((kind, result), 0) + 1
        if self._on_count is not None:
            self._on_count(kind, result)

    # ------------------------------------------------------------------- sender side
    def _run(self) -> None:
        while True:
            item = self._q.get()
            batch = [item]
            while len(batch) < BATCH:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            items = [b for b in batch if b is not None]
            try:
                self._send_batch(items)
            except Exception:
                log.exception("Athina forwarding failed (batch of %d dropped)", len(items))
            if stop:
                return

    def _send_batch(self, items: list[tuple[str, Any]]) -> None:
        recs = [x for k, x in items if k == "log"]
        if recs and self.enricher is not None and self.enricher.enabled:
            self.enricher.enrich(recs)
        for kind, x in items:
            if kind == "log":
                self._send("log", "POST", self.settings.url, inference_body(x, self.settings))
            else:
                body = feedback_body(x)
                if body is None:
                    self._count("feedback", "unjoined")
                    self._trouble(
                        "unjoined", "feedback for a call Athina cannot be told about (no reference id)"
                    )
                    continue
                self._send("feedback", "PATCH", self.settings.feedback_url, body)

    def _send(self, kind: str, method: str, url: str, body: dict[str, Any]) -> None:
        s = self.settings
        data = orjson.dumps(body)
        headers = {"content-type": "application/json", "athina-api-key": s.api_key}
        delay = 0.25
        for attempt in range(1, s.max_attempts + 1):
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=s.timeout_seconds) as resp:
                    resp.read()
                self._count(kind, "sent")
                return
            except urllib.error.HTTPError as exc:
                status = exc.code
                retry = status == 429 or status >= 500
                why = f"HTTP {status}"
            except (OSError, TimeoutError) as exc:
                retry = True
                why = type(exc).__name__
            if not retry or attempt == s.max_attempts or (self._stopping and attempt > 1):
                self._count(kind, "failed")
                self._trouble(f"failed {why}", f"Athina {kind} not accepted ({why}, {attempt} attempt(s))")
                return
            self._sleep(delay)
            delay = min(delay * 2, 8.0)
