"""Character counts for DIAL's `char_without_whitespace` unit.

DIAL counts every character of the request content and of the response content that is not a space
(`" "`; newlines and tabs count). The request content is the message contents joined by a newline
(chat), or the inputs joined by a newline (embeddings); the response content is the answer text
(an embedding's is empty). We apply the same rule to every shape we parse.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from gateway_stats.pricing.model import CharCounts


def chars_without_spaces(text: str) -> int:
    return len(text) - text.count(" ")


def joined_chars(pieces: Iterable[str]) -> int:
    """Non-space characters of `"\\n".join(pieces)`, without building the joined string."""
    n = 0
    total = 0
    for p in pieces:
        total += chars_without_spaces(p)
        n += 1
    return total + max(0, n - 1)


def _content_texts(content: Any) -> Iterator[str]:
    """Text of one message `content`: a string, or a list of parts whose `text` is taken."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                yield part
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def request_texts(doc: Any) -> list[str]:
    """The request content pieces DIAL would join, from a parsed request body of any shape we parse."""
    if not isinstance(doc, dict):
        return []
    out: list[str] = []
    system = doc.get("system")  # Anthropic
    if system is not None:
        out.extend(_content_texts(system))
    instructions = doc.get("instructions")  # Responses
    if isinstance(instructions, str):
        out.append(instructions)
    for key in ("messages", "contents"):  # OpenAI/Anthropic messages, Gemini contents
        msgs = doc.get(key)
        if isinstance(msgs, list):
            for m in msgs:
                if isinstance(m, dict):
                    out.extend(_content_texts(m.get("content")))
                    out.extend(_content_texts(m.get("parts")))  # Gemini
    sys_inst = doc.get("systemInstruction") or doc.get("system_instruction")  # Gemini
    if isinstance(sys_inst, dict):
        out.extend(_content_texts(sys_inst.get("parts")))
    inp = doc.get("input")  # embeddings, Responses
    if isinstance(inp, str):
        out.append(inp)
    elif isinstance(inp, list):
        for item in inp:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                out.extend(_content_texts(item.get("content")))
    prompt = doc.get("prompt")  # legacy completions
    if isinstance(prompt, str):
        out.append(prompt)
    elif isinstance(prompt, list):
        out.extend(p for p in prompt if isinstance(p, str))
    return out


def char_counts(request_doc: Any, answer: str | None) -> CharCounts:
    """Both counts for one call: the parsed request body and the response's answer text."""
    return CharCounts(joined_chars(request_texts(request_doc)), chars_without_spaces(answer or ""))
