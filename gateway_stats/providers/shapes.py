"""Provider shapes: recognise the API from path and body, and read answer, reasoning, tool calls and
finish reasons from a response body or one stream event.

Recognition is automatic (never configured): OpenAI chat/completions/embeddings/Responses,
Anthropic messages, Gemini generateContent. Usage, model and chat id are shared rules
(`usage.py`); this module holds what differs per provider.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_stats.core.accumulate import CappedText, ToolCallAssembler


@dataclass(slots=True)
class Output:
    """What the model produced, assembled incrementally with caps."""

    answer: CappedText
    reasoning: CappedText
    tools: ToolCallAssembler
    finish_reasons: list[str]
    content_seen: bool = False  # any generated content (text, reasoning or tool call)


@dataclass(frozen=True, slots=True)
class Kind:
    provider: str  # semconv gen_ai.provider.name
    operation: str  # semconv gen_ai.operation.name
    api: str  # our finer name: chat_completions, completions, embeddings, responses, messages, gemini, rerank


OPENAI_CHAT = Kind("openai", "chat", "chat_completions")
OPENAI_COMPLETIONS = Kind("openai", "text_completion", "completions")
OPENAI_EMBEDDINGS = Kind("openai", "embeddings", "embeddings")
OPENAI_RESPONSES = Kind("openai", "chat", "responses")
ANTHROPIC = Kind("anthropic", "chat", "messages")
GEMINI = Kind("gcp.gemini", "generate_content", "gemini")
RERANK = Kind("openai", "rerank", "rerank")
UNKNOWN = Kind("unknown", "unknown", "unknown")

_GEMINI_PATH = re.compile(r"/models/([^/:?]+):(stream)?[gG]enerateContent")


def kind_from_path(path: str) -> Kind:
    p = path.split("?", 1)[0].rstrip("/")
    if p.endswith("/chat/completions"):
        return OPENAI_CHAT
    if p.endswith("/completions"):
        return OPENAI_COMPLETIONS
    if p.endswith("/embeddings"):
        return OPENAI_EMBEDDINGS
    if p.endswith("/responses"):
        return OPENAI_RESPONSES
    if p.endswith("/messages"):
        return ANTHROPIC
    if "enerateContent" in p:
        return GEMINI
    if p.endswith("/rerank"):
        return RERANK
    return UNKNOWN


def kind_from_body(doc: dict[str, Any]) -> Kind:
    if "contents" in doc:
        return GEMINI
    if "messages" in doc:
        if "system" in doc or ("max_tokens" in doc and "anthropic_version" in doc):
            return ANTHROPIC
        return OPENAI_CHAT
    if "input" in doc:
        return OPENAI_RESPONSES if "instructions" in doc or "reasoning" in doc else OPENAI_EMBEDDINGS
    if "prompt" in doc:
        return OPENAI_COMPLETIONS
    return UNKNOWN


def gemini_path_model(path: str) -> tuple[str | None, bool]:
    """Model and stream flag from a Gemini path (`…/models/gemini-2.5-pro:streamGenerateContent?alt=sse`)."""
    m = _GEMINI_PATH.search(path)
    if not m:
        return None, False
    return m.group(1), m.group(2) is not None


# --------------------------------------------------------------------------- stream events
def stream_event(kind: Kind, doc: dict[str, Any], event_name: str | None, out: Output) -> None:
    api = kind.api
    if api == "chat_completions" or api == "completions" or api == "unknown":
        _openai_chunk(doc, out)
        if api == "unknown":
            _anthropic_event(doc, out)
            _gemini_chunk(doc, out)
    elif api == "messages":
        _anthropic_event(doc, out)
    elif api == "responses":
        _responses_event(doc, out)
    elif api == "gemini":
        _gemini_chunk(doc, out)


def _openai_chunk(doc: dict[str, Any], out: Output) -> None:
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices:
        return
    choice = choices[0]
    if not isinstance(choice, dict):
        return
    fr = choice.get("finish_reason")
    if isinstance(fr, str) and fr:
        out.finish_reasons.append(fr)
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        text = choice.get("text")  # legacy completions stream
        if isinstance(text, str) and text:
            out.answer.add(text)
            out.content_seen = True
        return
    content = delta.get("content")
    if isinstance(content, str) and content:
        out.answer.add(content)
        out.content_seen = True
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        out.reasoning.add(reasoning)
        out.content_seen = True
    tcs = delta.get("tool_calls")
    if isinstance(tcs, list):
        for i, tc in enumerate(tcs):
            if not isinstance(tc, dict):
                continue
            idx = tc.get("index", i)
            fn = tc.get("function")
            if not isinstance(fn, dict):
                fn = {}
            out.tools.update(
                idx if isinstance(idx, int) else i,
                id=tc.get("id"),
                type=tc.get("type"),
                name=fn.get("name"),
                arguments=fn.get("arguments"),
            )
            out.content_seen = True


def _anthropic_event(doc: dict[str, Any], out: Output) -> None:
    t = doc.get("type")
    if t == "content_block_delta":
        delta = doc.get("delta")
        if not isinstance(delta, dict):
            return
        dt = delta.get("type")
        idx = doc.get("index", 0)
        if dt == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                out.answer.add(text)
                out.content_seen = True
        elif dt == "thinking_delta":
            th = delta.get("thinking")
            if isinstance(th, str) and th:
                out.reasoning.add(th)
                out.content_seen = True
        elif dt == "input_json_delta":
            pj = delta.get("partial_json")
            if isinstance(pj, str):
                out.tools.update(idx if isinstance(idx, int) else 0, arguments=pj)
                out.content_seen = True
    elif t == "content_block_start":
        block = doc.get("content_block")
        if isinstance(block, dict) and block.get("type") == "tool_use":
            idx = doc.get("index", 0)
            # No "{}" prefix: the empty `input` of the start block is not part of the arguments.
            out.tools.update(
                idx if isinstance(idx, int) else 0,
                id=block.get("id"),
                type="function",
                name=block.get("name"),
            )
            out.content_seen = True
    elif t == "message_delta":
        delta = doc.get("delta")
        if isinstance(delta, dict):
            sr = delta.get("stop_reason")
            if isinstance(sr, str) and sr:
                out.finish_reasons.append(sr)


def _responses_event(doc: dict[str, Any], out: Output) -> None:
    t = doc.get("type")
    if not isinstance(t, str):
        return
    if t == "response.output_text.delta":
        d = doc.get("delta")
        if isinstance(d, str) and d:
            out.answer.add(d)
            out.content_seen = True
    elif t in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        d = doc.get("delta")
        if isinstance(d, str) and d:
            out.reasoning.add(d)
            out.content_seen = True
    elif t == "response.output_item.added":
        item = doc.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            idx = doc.get("output_index", 0)
            out.tools.update(
                idx if isinstance(idx, int) else 0,
                id=item.get("call_id") or item.get("id"),
                type="function",
                name=item.get("name"),
            )
            out.content_seen = True
    elif t == "response.function_call_arguments.delta":
        idx = doc.get("output_index", 0)
        d = doc.get("delta")
        if isinstance(d, str):
            out.tools.update(idx if isinstance(idx, int) else 0, arguments=d)
            out.content_seen = True
    elif t in ("response.completed", "response.incomplete", "response.failed"):
        resp = doc.get("response")
        if isinstance(resp, dict):
            st = resp.get("status")
            if isinstance(st, str) and st:
                out.finish_reasons.append(st)


def _gemini_chunk(doc: dict[str, Any], out: Output) -> None:
    cands = doc.get("candidates")
    if not isinstance(cands, list) or not cands or not isinstance(cands[0], dict):
        return
    cand = cands[0]
    fr = cand.get("finishReason")
    if isinstance(fr, str) and fr:
        out.finish_reasons.append(fr)
    _gemini_parts(cand, out)


def _gemini_parts(cand: dict[str, Any], out: Output) -> None:
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return
    for part in parts:
        if not isinstance(part, dict):
            continue
        text = part.get("text")
        if isinstance(text, str) and text:
            (out.reasoning if part.get("thought") else out.answer).add(text)
            out.content_seen = True
        fc = part.get("functionCall")
        if isinstance(fc, dict):
            idx = len(out.tools.value()) if out.tools else 0
            out.tools.update(
                idx,
                id=fc.get("id"),
                type="function",
                name=fc.get("name"),
                arguments=orjson.dumps(fc.get("args", {})).decode(),
            )
            out.content_seen = True


# ----------------------------------------------------------------------------- whole bodies
def response_body(kind: Kind, doc: dict[str, Any], out: Output) -> None:
    api = kind.api
    if api in ("chat_completions", "completions", "unknown"):
        choices = doc.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            ch = choices[0]
            fr = ch.get("finish_reason")
            if isinstance(fr, str) and fr:
                out.finish_reasons.append(fr)
            msg = ch.get("message")
            if isinstance(msg, dict):
                c = msg.get("content")
                if isinstance(c, str):
                    out.answer.add(c)
                rc = msg.get("reasoning_content")
                if isinstance(rc, str):
                    out.reasoning.add(rc)
                tcs = msg.get("tool_calls")
                if isinstance(tcs, list):
                    for i, tc in enumerate(tcs):
                        if isinstance(tc, dict):
                            fn = tc.get("function")
                            if not isinstance(fn, dict):
                                fn = {}
                            out.tools.update(
                                i,
                                id=tc.get("id"),
                                type=tc.get("type"),
                                name=fn.get("name"),
                                arguments=fn.get("arguments"),
                            )
            elif isinstance(ch.get("text"), str):
                out.answer.add(ch["text"])
            out.content_seen = bool(out.answer) or bool(out.tools) or bool(out.reasoning)
            return
    if api in ("messages", "unknown"):
        content = doc.get("content")
        if isinstance(content, list):
            for i, block in enumerate(content):
                if not isinstance(block, dict):
                    continue
                bt = block.get("type")
                if bt == "text" and isinstance(block.get("text"), str):
                    out.answer.add(block["text"])
                elif bt == "thinking" and isinstance(block.get("thinking"), str):
                    out.reasoning.add(block["thinking"])
                elif bt == "tool_use":
                    out.tools.update(
                        i,
                        id=block.get("id"),
                        type="function",
                        name=block.get("name"),
                        arguments=orjson.dumps(block.get("input", {})).decode(),
                    )
            sr = doc.get("stop_reason")
            if isinstance(sr, str) and sr:
                out.finish_reasons.append(sr)
    if api in ("responses", "unknown"):
        output = doc.get("output")
        if isinstance(output, list):
            _responses_output(output, out)
            st = doc.get("status")
            if isinstance(st, str) and st:
                out.finish_reasons.append(st)
    if api in ("gemini", "unknown"):
        cands = doc.get("candidates")
        if isinstance(cands, list) and cands and isinstance(cands[0], dict):
            fr = cands[0].get("finishReason")
            if isinstance(fr, str) and fr:
                out.finish_reasons.append(fr)
            _gemini_parts(cands[0], out)
    out.content_seen = bool(out.answer) or bool(out.tools) or bool(out.reasoning)


def _responses_output(output: list[Any], out: Output) -> None:
    for i, item in enumerate(output):
        if not isinstance(item, dict):
            continue
        it = item.get("type")
        if it == "message":
            for c in item.get("content") or ():
                if isinstance(c, dict) and c.get("type") == "output_text" and isinstance(c.get("text"), str):
                    out.answer.add(c["text"])
        elif it == "reasoning":
            for s in item.get("summary") or ():
                if isinstance(s, dict) and isinstance(s.get("text"), str):
                    out.reasoning.add(s["text"])
        elif it == "function_call":
            out.tools.update(
                i,
                id=item.get("call_id") or item.get("id"),
                type="function",
                name=item.get("name"),
                arguments=item.get("arguments") if isinstance(item.get("arguments"), str) else None,
            )
