"""Configured Higress attributes: evaluated per call, incrementally over streams, with caps.

Paths are compiled once per config (cached by the path module) and evaluated on the already-parsed
request, response or event; streaming rules (first / replace / append) update per event, so nothing
is buffered beyond the capped append values. Semantics follow the Higress ai-statistics plugin:
a later attribute with the same key wins when it resolves; `default_value` stands in for a missing
or empty result; a built-in key falls back to its built-in value when its path finds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway_stats.config import Attribute, PluginConfig
from gateway_stats.core.accumulate import CappedText
from gateway_stats.core.gjson import MISSING, CompiledPath, compile_path
from gateway_stats.core.record import CallRecord
from gateway_stats.core.redact import named_secrets, redact

_USAGE_BUILTINS = frozenset(
    {"reasoning_tokens", "cached_tokens", "input_token_details", "output_token_details"}
)
_RESPONSE_BUILTINS = frozenset({"answer", "reasoning", "tool_calls"}) | _USAGE_BUILTINS
_REQUEST_SOURCES = frozenset({"fixed_value", "request_header", "request_body"})


def request_side(a: Attribute) -> bool:
    """Known once the request body is: fixed values, request headers and body, request built-ins."""
    if a.value_source in _REQUEST_SOURCES:
        return True
    return not a.value_source and a.builtin and a.key not in _RESPONSE_BUILTINS


def text_of(v: Any) -> str:
    """Higress's string form for append: null → "", numbers → text, objects → raw JSON."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if isinstance(v, float) and not v.is_integer() else str(int(v))
    return orjson.dumps(v).decode()


def _present(v: Any) -> bool:
    return v is not MISSING and v is not None and v != ""


class _Streaming:
    __slots__ = ("acc", "attr", "path", "value")

    def __init__(self, attr: Attribute, path: CompiledPath, cap: int) -> None:
        self.attr = attr
        self.path = path
        self.value: Any = MISSING
        self.acc = CappedText(cap) if self._rule == "append" else None

    @property
    def _rule(self) -> str:
        r = self.attr.rule
        if not r and self.attr.key in ("answer", "reasoning"):
            return "append"  # our fix: Higress logs null for a streamed answer without an explicit rule
        return r or "first"


class AttributeEngine:
    """One per call. Fills rec.attributes / log_keys / span_attributes / separate_log_keys."""

    __slots__ = ("_body_attrs", "_req_attrs", "_results", "_stream_attrs", "cap", "plugin", "rec")

    def __init__(self, plugin: PluginConfig, rec: CallRecord, cap: int) -> None:
        self.plugin = plugin
        self.rec = rec
        self.cap = cap
        self._results: dict[int, Any] = {}  # attribute index -> resolved value
        self._stream_attrs: list[tuple[int, _Streaming]] = []
        self._body_attrs: list[tuple[int, Attribute, CompiledPath]] = []
        self._req_attrs: list[tuple[int, Attribute, CompiledPath | None]] = []
        for i, a in enumerate(plugin.attributes):
            src = a.value_source
            if src == "response_streaming_body" and a.value:
                self._stream_attrs.append((i, _Streaming(a, compile_path(a.value), cap)))
            elif src == "response_body" and a.value:
                self._body_attrs.append((i, a, compile_path(a.value)))
            elif src == "request_body" and a.value:
                self._req_attrs.append((i, a, compile_path(a.value)))
        for a in plugin.attributes:
            if a.apply_to_log and a.key not in rec.log_keys:
                if a.as_separate_log_field:
                    if a.key not in rec.separate_log_keys:
                        rec.separate_log_keys.append(a.key)
                else:
                    rec.log_keys.append(a.key)

    # ------------------------------------------------------------- per phase
    def on_request_headers(self, headers: Mapping[str, str]) -> None:
        for i, a in enumerate(self.plugin.attributes):
            if a.value_source == "fixed_value":
                self._results[i] = a.value
            elif a.value_source == "request_header":
                self._results[i] = headers.get(a.value, "")  # Higress: an absent header reads as ""

    def on_request_body(self, doc: Any) -> None:
        if doc is None:
            return
        for i, _a, path in self._req_attrs:
            if path is not None:
                self._results[i] = path.get(doc)

    def on_response_headers(self, headers: Mapping[str, str]) -> None:
        for i, a in enumerate(self.plugin.attributes):
            if a.value_source == "response_header":
                self._results[i] = headers.get(a.value, "")  # Higress: an absent header reads as ""

    def on_event(self, doc: Any) -> None:
        for _i, st in self._stream_attrs:
            v = st.path.get(doc)
            if v is MISSING:
                continue
            if st.acc is not None:
                st.acc.add(text_of(v))
                st.value = True
            elif st._rule == "first":
                if st.value is MISSING and _present(v):
                    st.value = v
            elif _present(v):  # replace
                st.value = v

    def on_response_body(self, doc: Any) -> None:
        for i, _a, path in self._body_attrs:
            self._results[i] = path.get(doc)

    # ----------------------------------------------------------------- finish
    def finish(self, builtins: Mapping[str, Any], *, request_only: bool = False) -> None:
        """Resolve every key (idempotent: may run when the answer completes and again at the end).

        `request_only`: only the request-side attributes (end of the request body, as Higress writes
        them then; or a response whose content type is not analysed). Response-side keys stay unset.
        """
        rec = self.rec
        if not request_only:
            for i, st in self._stream_attrs:
                if st.acc is not None:  # append is always a string, "" when the path never matched
                    self._results[i] = st.acc.value()
                    if st.acc.truncated and "attribute:" + st.attr.key not in rec.caps_hit:
                        rec.caps_hit.append("attribute:" + st.attr.key)
                elif st.value is not MISSING:
                    self._results[i] = st.value
        stream = rec.is_stream
        values: dict[str, Any] = {}
        for i, a in enumerate(self.plugin.attributes):
            if request_only and not request_side(a):
                continue
            src = a.value_source
            if (src == "response_body" and stream) or (src == "response_streaming_body" and not stream):
                values.setdefault(a.key, MISSING)  # the other shape's attribute; a same-key one may apply
                continue
            v = self._results.get(i, MISSING)
            if not _present(v) and a.builtin:
                v = builtins.get(a.key, v)
            if not _present(v) and a.default_value is not None:
                v = a.default_value
            if v is MISSING or v is None:
                values.setdefault(a.key, MISSING)
            else:
                # Secrets inside an output value are redacted, except what the attribute names itself.
                values[a.key] = redact(v, named_secrets(a.value) if a.value_source else frozenset())
        attrs = rec.attributes
        for key, v in values.items():
            attrs[key] = None if v is MISSING else v
        for a in self.plugin.attributes:
            if a.apply_to_span:
                v = attrs.get(a.key)
                if v is not None and v != "":  # Higress sets no span attribute for an empty value
                    rec.span_attributes[a.trace_span_key or a.key] = v


def builtin_values(rec: CallRecord, request: Any) -> dict[str, Any]:
    """Values of the built-in keys for this call (Higress §2, plus the provider shapes we know)."""
    out: dict[str, Any] = {}
    if isinstance(request, dict):
        # embedding inputs are not questions: none, as in Higress
        q = question_of(request) if rec.operation != "embeddings" else MISSING
        if q is not MISSING:
            out["question"] = q
        sys_ = request.get("system")
        if sys_ is not None:
            out["system"] = sys_
        msgs = request.get("messages")
        if msgs is not None:
            out["messages"] = msgs
    if rec.answer is not None:
        out["answer"] = rec.answer
    if rec.reasoning is not None:
        out["reasoning"] = rec.reasoning
    if rec.tool_calls:
        out["tool_calls"] = rec.tool_calls
    u = rec.usage
    if u.reasoning_tokens is not None:
        out["reasoning_tokens"] = u.reasoning_tokens
    if u.cached_tokens is not None:
        out["cached_tokens"] = u.cached_tokens
    if u.input_token_details is not None:
        out["input_token_details"] = u.input_token_details
    if u.output_token_details is not None:
        out["output_token_details"] = u.output_token_details
    return out


def question_of(req: dict[str, Any]) -> Any:
    msgs = req.get("messages")
    if isinstance(msgs, list) and msgs:
        last = msgs[-1]
        if isinstance(last, dict) and "content" in last:
            return last["content"]
        return MISSING
    contents = req.get("contents")  # Gemini
    if isinstance(contents, list) and contents:
        last = contents[-1]
        parts = last.get("parts") if isinstance(last, dict) else None
        if isinstance(parts, list) and parts and isinstance(parts[0], dict) and "text" in parts[0]:
            return parts[0]["text"]
        return MISSING
    inp = req.get("input")  # Responses API
    if inp is None:
        inp = req.get("prompt")  # legacy completions
    if isinstance(inp, str):
        return inp
    if isinstance(inp, list) and inp:
        last = inp[-1]
        if isinstance(last, str):
            return last
        if isinstance(last, dict) and "content" in last:
            return last["content"]
    return MISSING


def truncate_for_log(v: Any, limit: int) -> Any:
    """Higress: a value longer than the limit becomes first limit/2 + " [truncated] " + last limit/2.

    Lengths are UTF-8 bytes, and cuts never split a character (Higress can); non-strings are measured
    by their JSON text and, when cut, logged as that (cut) text.
    """
    if v is None or isinstance(v, bool | int | float):
        return v
    s = v if isinstance(v, str) else orjson.dumps(v).decode()
    b = s.encode()
    if len(b) <= limit:
        return v
    half = limit // 2
    head = b[:half].decode("utf-8", "ignore")
    tail = b[len(b) - half :].decode("utf-8", "ignore") if half else ""
    return head + " [truncated] " + tail
