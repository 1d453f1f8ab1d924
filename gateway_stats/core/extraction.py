"""Per-call extraction: turns the parsed request, response and stream events into record fields.

The observer owns framing, decoding and caps on raw bytes; this object owns meaning: provider,
model, usage, answer, tool calls, failure, and (with the attribute engine) configured attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from gateway_stats import providers
from gateway_stats.config import Limits, PluginConfig
from gateway_stats.core import usage
from gateway_stats.core.accumulate import CappedText, ToolCallAssembler
from gateway_stats.core.ai_log import build_ai_log
from gateway_stats.core.attributes import AttributeEngine, builtin_values
from gateway_stats.core.record import CallRecord
from gateway_stats.core.redact import scrub_text
from gateway_stats.core.sse import SSEEvent
from gateway_stats.pricing import CharCounts, price_call
from gateway_stats.pricing.chars import chars_without_spaces, joined_chars, request_texts
from gateway_stats.pricing.config import PricingConfig

log = logging.getLogger(__name__)

_REQUEST_PARAMS = (
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
)

_TERMINAL_TYPES = frozenset({"message_stop", "response.completed", "response.failed", "response.incomplete"})


def _gemini_finished(doc: dict[str, Any]) -> bool:
    c = doc.get("candidates")
    return isinstance(c, list) and bool(c) and isinstance(c[0], dict) and bool(c[0].get("finishReason"))


class Extraction:
    __slots__ = (
        "_attrs",
        "_priced",
        "_pricing",
        "_req_builtins",
        "kind",
        "limits",
        "out",
        "plugin",
        "rec",
        "terminal_seen",
    )

    def __init__(
        self, plugin: PluginConfig, limits: Limits, rec: CallRecord, pricing: PricingConfig | None = None
    ) -> None:
        self.plugin = plugin
        self.limits = limits
        self.rec = rec
        self._pricing = pricing  # None: calls are not priced
        self._priced: tuple[Any, ...] | None = None  # what the cost was computed from
        self.kind = providers.UNKNOWN
        cap = limits.max_attribute_bytes
        self.out = providers.Output(CappedText(cap), CappedText(cap), ToolCallAssembler(cap), [])
        self.terminal_seen = False  # the stream's last event ([DONE], message_stop, response.completed)
        self._attrs = AttributeEngine(plugin, rec, cap) if plugin.attributes else None
        self._req_builtins: dict[str, Any] = {}

    # ------------------------------------------------------------------ notes
    def note_cap(self, name: str) -> None:
        if name not in self.rec.caps_hit:
            self.rec.caps_hit.append(name)

    def note_bad_json(self, where: str) -> None:
        self.rec.extra[f"bad_json_{where}"] = True
        log.debug("unparsable %s body for request %s", where, self.rec.request_id)

    # ----------------------------------------------------------------- request
    def on_request_headers(self, headers: Mapping[str, str]) -> None:
        rec = self.rec
        self.kind = providers.kind_from_path(rec.path)
        if self.kind is providers.GEMINI:
            model, stream = providers.gemini_path_model(rec.path)
            rec.request_model = model
            rec.request_stream = stream
        if self._attrs is not None:
            self._attrs.on_request_headers(headers)

    def on_request_body(self, doc: Any) -> None:
        rec = self.rec
        if isinstance(doc, dict):
            if self.kind is providers.UNKNOWN:
                self.kind = providers.kind_from_body(doc)
            model = doc.get("model")
            if isinstance(model, str) and model:
                rec.request_model = model
            if doc.get("stream") is True:
                rec.request_stream = True
            for p in _REQUEST_PARAMS:
                v = doc.get(p)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    rec.request_params[p] = v
            msgs = doc.get("messages")
            if isinstance(msgs, list):
                rec.chat_round = sum(1 for m in msgs if isinstance(m, dict) and m.get("role") == "user")
                rec.request_messages = len(msgs)
            contents = doc.get("contents")
            if isinstance(contents, list):
                rec.chat_round = sum(
                    1 for c in contents if isinstance(c, dict) and c.get("role") in (None, "user")
                )
                rec.request_messages = len(contents)
            if rec.request_messages is None:  # embeddings / Responses / completions input
                inp = doc.get("input", doc.get("prompt"))
                if isinstance(inp, list):  # a list of texts (a list of token ids is one input)
                    rec.request_messages = 1 if inp and isinstance(inp[0], int) else len(inp)
                elif isinstance(inp, str):
                    rec.request_messages = 1
        rec.provider = self.kind.provider
        rec.operation = self.kind.operation
        rec.extra["api_kind"] = self.kind.api
        if isinstance(doc, dict) and self._pricing is not None and self._pricing.catalogue().has_char_prices:
            # Some price is per character (DIAL): count the request's, once, here (the body is not kept).
            rec.extra["request_chars"] = joined_chars(request_texts(doc))
        if self._attrs is not None:
            self._attrs.on_request_body(doc)
            self._req_builtins = builtin_values(rec, doc)
            self._attrs.finish(self._req_builtins, request_only=True)  # Higress logs them from here on

    # ---------------------------------------------------------------- response
    def on_response_headers(self, headers: Mapping[str, str]) -> None:
        if self._attrs is not None:
            self._attrs.on_response_headers(headers)

    def _take_common(self, doc: dict[str, Any]) -> bool:
        """Model, id, usage and errors shared by every provider. True if the ai_log should be re-attached."""
        rec = self.rec
        changed = False
        if rec.chat_id is None:
            cid = usage.chat_id(doc)
            if cid:
                rec.chat_id = cid
                changed = True  # first event: attach early so a cut stream keeps its id and TTFT
        err = usage.error_of(doc)
        if err is not None:
            rec.failed = True
            rec.error_type, rec.error_message = err[0], scrub_text(err[1]) if err[1] else err[1]
        if self.plugin.disable_openai_usage:  # skips model and tokens only (Higress keeps chat_id)
            return changed
        m = usage.response_model(doc)
        if m:
            rec.response_model = m
        return usage.apply_usage(doc, rec) or changed

    def on_event(self, event: SSEEvent, now: int) -> bool:
        """One complete SSE event. True when the ai_log should be re-attached (usage arrived)."""
        rec = self.rec
        rec.sse_events += 1
        data = event.data
        if not data:
            return False
        if data == b"[DONE]":
            self.terminal_seen = True
            return False
        rec.note_chunk(now)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            rec.extra["bad_json_events"] = rec.extra.get("bad_json_events", 0) + 1
            return False
        if not isinstance(doc, dict):
            return False
        changed = self._take_common(doc)
        t = doc.get("type")  # untrusted: a list or an object is unhashable, so never a bare set lookup
        if (isinstance(t, str) and t in _TERMINAL_TYPES) or (
            self.kind is providers.GEMINI and _gemini_finished(doc)
        ):
            self.terminal_seen = True
        out = self.out
        seen = out.content_seen
        providers.stream_event(self.kind, doc, event.event, out)
        if out.content_seen and not seen and not rec.t_first_content:
            rec.t_first_content = now
        if self._attrs is not None:
            self._attrs.on_event(doc)
        return changed

    def on_response_body(self, doc: Any, now: int) -> None:
        rec = self.rec
        if isinstance(doc, dict):
            self._take_common(doc)
            providers.response_body(self.kind, doc, self.out)
            if self.out.content_seen:
                rec.t_first_content = rec.t_first_byte or now
            if self._attrs is not None:
                self._attrs.on_response_body(doc)

    # ------------------------------------------------------------------ finish
    def finish(self, reason: str) -> None:
        rec = self.rec
        if rec.status_code is not None and rec.status_code >= 400:
            rec.failed = True
            if rec.error_type is None:
                rec.error_type = str(rec.status_code)
        if reason != "complete" and not rec.failed and rec.status_code is None:
            rec.failed = True
            rec.error_type = reason
        out = self.out
        rec.finish_reasons = out.finish_reasons
        if out.answer.seen:
            rec.answer = out.answer.value()
            if out.answer.truncated:
                self.note_cap("answer")
        if out.reasoning.seen:
            rec.reasoning = out.reasoning.value()
            if out.reasoning.truncated:
                self.note_cap("reasoning")
        if out.tools:
            rec.tool_calls = out.tools.value()
            if out.tools.truncated:
                self.note_cap("tool_calls")
            elif out.tool_calls_as_sent is not None:
                rec.tool_calls = out.tool_calls_as_sent  # Higress: a body's tool_calls verbatim
        if self._attrs is not None and not rec.response_observed:
            self._attrs.finish(self._req_builtins, request_only=True)
        elif self._attrs is not None:
            builtins = builtin_values(rec, None)
            builtins.update(self._req_builtins)
            self._attrs.finish(builtins)
            self._usage_from_attributes()
        self._price()

    def _price(self) -> None:
        """The call's cost, from its final usage: at most once per distinct usage (the observer finishes
        a call when its answer is complete and again at Envoy's end of stream), never per chunk."""
        if self._pricing is None:
            return
        rec = self.rec
        u = rec.usage
        key = (
            rec.response_model,
            rec.request_model,
            u.input_tokens,
            u.output_tokens,
            u.cached_tokens,
            u.cache_creation_tokens,
            u.reasoning_tokens,
            rec.answer,
        )
        if key == self._priced:
            return
        self._priced = key
        catalogue = self._pricing.catalogue()
        chars = None
        if catalogue.has_char_prices and "request_chars" in rec.extra:
            chars = CharCounts(rec.extra["request_chars"], chars_without_spaces(rec.answer or ""))
        cost = price_call(rec, catalogue, chars)
        rec.cost = cost.amount
        rec.cost_currency = cost.currency if cost.amount is not None else None
        if cost.amount is None:
            rec.extra["unpriced_reason"] = cost.reason
        else:
            rec.extra.pop("unpriced_reason", None)
        if cost.source:
            rec.extra["cost_source"] = cost.source
            rec.extra["cost_model"] = cost.model

    def _usage_from_attributes(self) -> None:
        """Higress: attributes keyed `model` / `input_token` / `output_token` / `total_token` (how its
        README maps non-OpenAI protocols) replace the extracted values, for metrics too, not just ai_log."""
        rec = self.rec
        attrs = rec.attributes
        model = attrs.get("model")
        if isinstance(model, str) and model:
            rec.response_model = model
        u = rec.usage
        for key, name in (
            ("input_token", "input_tokens"),
            ("output_token", "output_tokens"),
            ("total_token", "total_tokens"),
        ):
            v = attrs.get(key)
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, str):
                digits = v.strip()  # untrusted: str.isdigit() admits '²', and int() refuses > 4300 digits
                if not (digits.isascii() and digits.isdigit() and len(digits) <= 18):
                    continue
                v = int(digits)
            if isinstance(v, int | float) and v >= 0:
                setattr(u, name, int(v))

    def ai_log(self) -> dict[str, Any]:
        return build_ai_log(self.rec, self.plugin.value_length_limit)
