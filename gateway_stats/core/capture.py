"""Request-side capture for analytics: the last user text, the end-user id, segmentation headers.

Cheap on purpose: it walks the request document the observer has already parsed, from the end, and
stops at the first user text; nothing is detected or classified here. Language and topic are computed
later, off the request path, from the captured (capped) text; the user id is hashed when the record is
finalized (`user_hash`), and the raw id is dropped unless the config asks to keep it.

Shapes understood: OpenAI chat `messages` and Anthropic `messages` (content as a string or a list of
text parts), the Responses API `input` (string or items with `input_text` parts), Gemini `contents`
(`parts[].text`), and completions `prompt` (string or list of strings).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

MAX_ID_CHARS = 256  # user ids and segmentation values longer than this are cut


def _text_of(content: Any, cap: int) -> str | None:
    """Text of one message's content: a string, or the text parts of a list (others skipped)."""
    if isinstance(content, str):
        return content[:cap] if content.strip() else None
    if not isinstance(content, list):
        return None
    parts: list[str] = []
    size = 0
    for part in content:
        if isinstance(part, str):
            text = part
        elif isinstance(part, dict) and part.get("type", "text") in ("text", "input_text"):
            t = part.get("text")
            if not isinstance(t, str):
                continue
            text = t
        else:
            continue
        if not text.strip():
            continue
        parts.append(text[: cap - size])
        size += len(parts[-1]) + 1
        if size >= cap:
            break
    return "\n".join(parts)[:cap] if parts else None


def _last_user(items: Any, role_key: str, content_key: str, cap: int, roles: tuple[Any, ...]) -> str | None:
    if not isinstance(items, list):
        return None
    for item in reversed(items):
        if isinstance(item, dict) and item.get(role_key) in roles:
            text = _text_of(item.get(content_key), cap)
            if text is not None:
                return text
    return None


def last_user_text(doc: Mapping[str, Any], cap: int, api: str = "") -> str | None:
    """The last user-authored text of a request (at most `cap` characters), or None.

    `api` is the recognised API (providers.Kind.api): embedding inputs are not questions, so not taken.
    """
    if api == "embeddings":
        return None
    msgs = doc.get("messages")
    if msgs is not None:
        return _last_user(msgs, "role", "content", cap, ("user",))
    inp = doc.get("input")
    if isinstance(inp, str):  # Responses API
        return inp[:cap] if inp.strip() else None
    if isinstance(inp, list) and inp and isinstance(inp[0], dict):
        return _last_user(inp, "role", "content", cap, ("user",))
    contents = doc.get("contents")
    if contents is not None:
        if not isinstance(contents, list):
            return None
        for c in reversed(contents):
            if isinstance(c, dict) and c.get("role") in (None, "user"):
                text = _text_of(c.get("parts"), cap)
                if text is not None:
                    return text
        return None
    prompt = doc.get("prompt")
    if isinstance(prompt, str):
        return prompt[:cap] if prompt.strip() else None
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], str):
        return prompt[-1][:cap] if prompt[-1].strip() else None
    return None


def user_id_from_body(doc: Mapping[str, Any]) -> str | None:
    """OpenAI `user` (chat, completions, embeddings, Responses) or Anthropic `metadata.user_id`."""
    v = doc.get("user")
    if isinstance(v, str) and v:
        return v[:MAX_ID_CHARS]
    md = doc.get("metadata")
    if isinstance(md, dict):
        v = md.get("user_id")
        if isinstance(v, str) and v:
            return v[:MAX_ID_CHARS]
    return None


def user_hash(key: bytes, user_id: str) -> str:
    """Keyed HMAC-SHA256 of an end-user id, hex: stable per key, not reversible, not guessable without it."""
    return hmac.new(key, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def segments(headers: Mapping[str, str], wanted: tuple[tuple[str, str], ...]) -> dict[str, str] | None:
    """Athina segmentation fields from the configured request headers (absent headers are left out)."""
    out: dict[str, str] = {}
    for name, header in wanted:
        v = headers.get(header)
        if v:
            out[name] = v[:MAX_ID_CHARS]
    return out or None
