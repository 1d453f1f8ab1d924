"""Message content in the GenAI semconv shape, for spans that opted in (`tracing.capture_content`).

`gen_ai.input.messages`, `gen_ai.output.messages` and `gen_ai.system_instructions` are JSON arrays
of `{role, parts: [...]}` (parts: `text`, `tool_call`, `tool_call_response`, `reasoning`, or the
provider's own part type with its fields). Each provider's request shape is mapped here; what is not
understood is carried as a generic part rather than dropped. Pure functions of parsed JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway_stats.core.record import CallRecord

Part = dict[str, Any]
Message = dict[str, Any]


def _json_or_text(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return v
    return v


def _tool_call(tc: dict[str, Any]) -> Part:
    """An OpenAI-shaped tool call `{id, function: {name, arguments}}` as a semconv tool_call part."""
    fn = tc.get("function")
    if not isinstance(fn, dict):
        fn = {}
    return {
        "type": "tool_call",
        "id": tc.get("id"),
        "name": fn.get("name"),
        "arguments": _json_or_text(fn.get("arguments")),
    }


def _text(s: str) -> Part:
    return {"type": "text", "content": s}


def _generic(part: dict[str, Any]) -> Part:
    t = part.get("type")
    return {**part, "type": t if isinstance(t, str) and t else "unknown"}


def _text_parts(content: Any) -> list[Part]:
    """A string, or a list of typed parts (OpenAI / Anthropic / Responses text kinds)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)]
    if not isinstance(content, list):
        return [{"type": "unknown", "content": content}]
    out: list[Part] = []
    for p in content:
        if isinstance(p, str):
            out.append(_text(p))
        elif isinstance(p, dict):
            t = p.get("type")
            if t in ("text", "input_text", "output_text") and isinstance(p.get("text"), str):
                out.append(_text(p["text"]))
            elif t == "tool_use":  # Anthropic
                out.append(
                    {
                        "type": "tool_call",
                        "id": p.get("id"),
                        "name": p.get("name"),
                        "arguments": p.get("input"),
                    }
                )
            elif t == "tool_result":  # Anthropic
                out.append(
                    {"type": "tool_call_response", "id": p.get("tool_use_id"), "response": p.get("content")}
                )
            elif t == "thinking":  # Anthropic
                out.append({"type": "reasoning", "content": p.get("thinking")})
            else:
                out.append(_generic(p))
    return out


def _openai_message(m: dict[str, Any]) -> Message:
    role = m.get("role") or "user"
    if role == "tool":
        parts: list[Part] = [
            {"type": "tool_call_response", "id": m.get("tool_call_id"), "response": m.get("content")}
        ]
    else:
        parts = _text_parts(m.get("content"))
    for tc in m.get("tool_calls") or ():
        if isinstance(tc, dict):
            parts.append(_tool_call(tc))
    msg: Message = {"role": role, "parts": parts}
    if isinstance(m.get("name"), str):
        msg["name"] = m["name"]
    return msg


def _gemini_parts(parts: Any) -> list[Part]:
    out: list[Part] = []
    for p in parts if isinstance(parts, list) else ():
        if not isinstance(p, dict):
            continue
        if isinstance(p.get("text"), str):
            out.append({"type": "reasoning", "content": p["text"]} if p.get("thought") else _text(p["text"]))
        elif isinstance(p.get("functionCall"), dict):
            fc = p["functionCall"]
            out.append(
                {"type": "tool_call", "id": fc.get("id"), "name": fc.get("name"), "arguments": fc.get("args")}
            )
        elif isinstance(p.get("functionResponse"), dict):
            fr = p["functionResponse"]
            out.append(
                {
                    "type": "tool_call_response",
                    "id": fr.get("id") or fr.get("name"),
                    "response": fr.get("response"),
                }
            )
        else:
            out.append({"type": next(iter(p), "unknown"), **p})
    return out


def _responses_items(items: list[Any]) -> list[Message]:
    out: list[Message] = []
    for it in items:
        if isinstance(it, str):
            out.append({"role": "user", "parts": [_text(it)]})
            continue
        if not isinstance(it, dict):
            continue
        t = it.get("type")
        if t == "function_call":
            part: Part = {
                "type": "tool_call",
                "id": it.get("call_id"),
                "name": it.get("name"),
                "arguments": _json_or_text(it.get("arguments")),
            }
            out.append({"role": "assistant", "parts": [part]})
        elif t == "function_call_output":
            part = {"type": "tool_call_response", "id": it.get("call_id"), "response": it.get("output")}
            out.append({"role": "tool", "parts": [part]})
        elif "role" in it:
            out.append({"role": it["role"], "parts": _text_parts(it.get("content"))})
        else:
            out.append({"role": "user", "parts": [_generic(it)]})
    return out


def input_messages(doc: dict[str, Any]) -> list[Message]:
    """The chat history sent, from any request shape we recognise (empty if none)."""
    msgs = doc.get("messages")
    if isinstance(msgs, list):  # OpenAI chat, Anthropic messages
        return [_openai_message(m) for m in msgs if isinstance(m, dict)]
    contents = doc.get("contents")
    if isinstance(contents, list):  # Gemini
        return [
            {
                "role": "assistant" if c.get("role") == "model" else (c.get("role") or "user"),
                "parts": _gemini_parts(c.get("parts")),
            }
            for c in contents
            if isinstance(c, dict)
        ]
    for key in ("input", "prompt"):  # Responses API, embeddings, legacy completions
        v = doc.get(key)
        if isinstance(v, str):
            return [{"role": "user", "parts": [_text(v)]}]
        if isinstance(v, list):
            if key == "input":
                return _responses_items(v)
            return [{"role": "user", "parts": [_text(p)]} for p in v if isinstance(p, str)]
    return []


def system_instructions(doc: dict[str, Any]) -> list[Part]:
    """Instructions given apart from the history: Anthropic `system`, Gemini `systemInstruction`,
    Responses `instructions` (OpenAI chat system messages stay in the history, as semconv says)."""
    system = doc.get("system")
    if system is not None:
        return _text_parts(system)
    si = doc.get("systemInstruction") or doc.get("system_instruction")
    if isinstance(si, dict):
        return _gemini_parts(si.get("parts"))
    instructions = doc.get("instructions")
    if isinstance(instructions, str):
        return [_text(instructions)]
    return []


def output_messages(rec: CallRecord) -> list[Message]:
    """The answer as one assistant message: reasoning, text and tool calls as seen in the response."""
    parts: list[Part] = []
    if rec.reasoning:
        parts.append({"type": "reasoning", "content": rec.reasoning})
    if rec.answer:
        parts.append(_text(rec.answer))
    for tc in rec.tool_calls or ():
        parts.append(_tool_call(tc))
    if not parts:
        return []
    reason = rec.finish_reasons[0] if rec.finish_reasons else ""
    return [{"role": "assistant", "parts": parts, "finish_reason": reason}]
