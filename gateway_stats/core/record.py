"""The per-call record: the one object every sink (access log, metrics, spans, stores) is fed from.

It is filled incrementally by the sans-IO observer and frozen in spirit once `finished` is set.
Fields the roadmap needs later (cost, analytics, feedback joins) already have a home here, so
adding a sink never means reshaping the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway_stats.core.buckets import DURATION_BUCKETS, BucketCounts
from gateway_stats.core.feedback import Feedback

NS_PER_MS = 1_000_000


@dataclass(slots=True)
class Usage:
    """Token usage as the provider reported it; the last usage-bearing event wins (never summed)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None  # cache reads (OpenAI cached_tokens, Anthropic cache_read_input_tokens)
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    input_token_details: dict[str, Any] | None = None
    output_token_details: dict[str, Any] | None = None
    input_excludes_cache: bool = False  # Anthropic: input_tokens does not count cache reads/writes

    @property
    def known(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None


@dataclass(slots=True)
class CallRecord:
    # --- identity and routing (from Envoy attributes and request headers)
    request_id: str = ""
    route: str = ""
    cluster: str = ""
    virtual_host: str = ""
    host: str = ""
    method: str = ""
    path: str = ""
    consumer: str = "none"
    session_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    # W3C context of Envoy's span for the ext_proc side call (gRPC metadata; present when Envoy traces)
    envoy_traceparent: str | None = None
    envoy_tracestate: str | None = None
    label_headers: dict[str, str] = field(default_factory=dict)  # request headers wanted as metric labels

    # --- what kind of call (recognised from path and body)
    provider: str = "unknown"  # openai, anthropic, gcp.gemini, ...
    operation: str = "unknown"  # chat, text_completion, embeddings, responses, ...
    observed: bool = True  # False when the path is not enabled by the config
    # False when the response's content type is not enabled: the request side is still logged (Higress),
    # the response is not analysed (no tokens, no response attributes, no metrics)
    response_observed: bool = True

    # --- request
    request_model: str | None = None
    request_stream: bool = False
    request_params: dict[str, Any] = field(default_factory=dict)  # max_tokens, temperature, top_p, ...
    chat_round: int = 0
    request_body_bytes: int = 0
    request_body_truncated: bool = False  # only a bounded prefix was analysed
    request_doc: Any = None  # the parsed request body, kept only when spans capture message content

    # --- response
    status_code: int | None = None
    content_type: str = ""
    content_encoding: str = ""
    response_type: str = "normal"  # "stream" for SSE, as Higress logs it
    response_model: str | None = None
    chat_id: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    response_body_bytes: int = 0
    sse_events: int = 0
    # gaps between consecutive stream chunks (SSE events with data), bucketed as they arrive
    chunk_gaps: BucketCounts | None = None
    t_last_chunk: int = 0

    # --- failure
    failed: bool = False
    error_type: str | None = None  # semconv error.type: "http_429", provider error type, "aborted", ...
    error_message: str | None = None

    # --- timing, monotonic nanoseconds (0 = not seen)
    t_start: int = 0  # request headers reached us
    t_request_end: int = 0
    t_response_headers: int = 0
    t_first_byte: int = 0  # first response body byte (Higress's "first token")
    t_first_content: int = 0  # first event that carried generated content
    t_end: int = 0
    wall_start: float = 0.0  # epoch seconds, for spans and records

    # --- how the call ended
    finished: bool = False
    end_reason: str = ""  # "complete", "aborted" (gRPC stream ended early), "error"

    # --- configured attributes (Higress `attributes`), in config order; None = unresolved
    attributes: dict[str, Any] = field(default_factory=dict)
    log_keys: list[str] = field(default_factory=list)  # keys with apply_to_log
    separate_log_keys: list[str] = field(default_factory=list)  # keys with as_separate_log_field
    span_attributes: dict[str, Any] = field(default_factory=dict)  # apply_to_span, untruncated
    tool_calls: list[dict[str, Any]] | None = None
    answer: str | None = None
    reasoning: str | None = None

    # --- resource caps hit while observing (never silent)
    caps_hit: list[str] = field(default_factory=list)

    # --- money cost (sinks/pricing fills it once per call, when usage is final; never per chunk)
    cost: Decimal | None = None  # exact; None = not priced (see extra["unpriced_reason"])
    cost_currency: str | None = None

    # --- analytics (records, feedback, language, topic, user hashing)
    request_messages: int | None = None  # DIAL number_request_messages: chat messages or embedding inputs
    user_hash: str | None = None  # keyed HMAC of the end-user id; the raw id is never kept
    language: str | None = None  # filled off the request path (records writer)
    topic: str | None = None
    # captured on the request path for the analytics above (core/capture.py); never logged or exported
    # as such: `user_text` is the last user text (capped) that language and topic are computed from
    user_text: str | None = None
    user_id: str | None = None  # the raw end-user id: only with analytics.user.store_raw
    segments: dict[str, str] | None = None  # Athina segmentation fields from configured headers
    feedback: Feedback | None = None  # set on a DIAL rate call: feedback, not an LLM call
    extra: dict[str, Any] = field(default_factory=dict)

    def note_chunk(self, now: int) -> None:
        """A stream chunk arrived: bucket the gap since the previous one (semconv time_per_output_chunk)."""
        if self.t_last_chunk:
            if self.chunk_gaps is None:
                self.chunk_gaps = BucketCounts(DURATION_BUCKETS)
            self.chunk_gaps.observe(max(0, now - self.t_last_chunk) / 1e9)
        self.t_last_chunk = now

    # ---------------------------------------------------------------- derived values
    @property
    def model(self) -> str | None:
        """Response model, else request model (Higress; also keeps the model on error answers, #4234)."""
        return self.response_model or self.request_model

    @property
    def is_stream(self) -> bool:
        return self.response_type == "stream"

    def _ms(self, t: int) -> int | None:
        if not t:
            return None
        return max(0, (t - self.t_start) // NS_PER_MS)

    @property
    def service_duration_ms(self) -> int | None:
        """Higress `llm_service_duration`: request start to end of response, in ms."""
        return self._ms(self.t_end)

    @property
    def first_token_duration_ms(self) -> int | None:
        """Higress `llm_first_token_duration`: request start to first response body byte, in ms."""
        return self._ms(self.t_first_byte)

    @property
    def first_content_duration_ms(self) -> int | None:
        return self._ms(self.t_first_content)

    def seconds(self, t: int) -> float | None:
        if not t:
            return None
        return max(0, t - self.t_start) / 1e9

    @property
    def status_class(self) -> str:
        if self.status_code is None:
            return "none"
        return f"{self.status_code // 100}xx"
