"""One redaction rule for secrets, applied where values enter the record (so every output — ai_log,
spans, records, metrics, the ai_log file — gets the redacted value) and to every log line.

A *secret name* is one of the credential headers (`authorization`, `proxy-authorization`, `cookie`,
`set-cookie`, `x-api-key`, `api-key`, `x-goog-api-key`) or a JSON field named like a key: ending in
`api_key` / `apikey` / `api-key`, `authorization`, `access_token`, `refresh_token`, `id_token`,
`auth_token`, `client_secret`, `secret_key`, `secret`, `password`, `passwd`, `private_key`, `cookie`.
(Not a bare `token`: `max_tokens`, `input_token` are counts.)

The value under a secret name is replaced by "[REDACTED]" wherever it sits in a value we output (an
attribute whose path selects an object, the built-in `messages`, the request captured for span
content), unless the config names that field or header itself: an attribute reading the header
`x-api-key`, or the body path `auth.api_key`, outputs what it names — the operator asked for it.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

REDACTED = "[REDACTED]"
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-goog-api-key"}
)
_SECRET_FIELD = re.compile(
    r"(?:^|[-_.])(?:api[-_]?key|apikey|authorization|access[-_]?token|refresh[-_]?token|id[-_]?token"
    r"|auth[-_]?token|client[-_]?secret|secret[-_]?key|secret|password|passwd|private[-_]?key|cookie)$",
    re.IGNORECASE,
)
_MAX_DEPTH = 64


def is_secret_name(name: object) -> bool:
    return isinstance(name, str) and _secret_str(name)


@functools.lru_cache(maxsize=8192)  # JSON keys repeat (role, content, ...): one regex test per key
def _secret_str(name: str) -> bool:
    return name.lower() in SECRET_HEADERS or _SECRET_FIELD.search(name) is not None


@functools.lru_cache(maxsize=1024)  # a config's attribute values: computed once, not per call
def named_secrets(path_or_header: str) -> frozenset[str]:
    """The secret names a config path or header names itself (so its own value is not redacted)."""
    parts = re.split(r"[^A-Za-z0-9_-]+", path_or_header)
    return frozenset(p.lower() for p in parts if p and is_secret_name(p))


def redact(value: Any, allow: frozenset[str] = frozenset(), _depth: int = 0) -> Any:
    """`value` with every secret-named field's value replaced; the same object when nothing changes."""
    if isinstance(value, dict):
        if _depth >= _MAX_DEPTH:
            return REDACTED  # deeper than any real payload: do not walk (or output) it
        out: dict[Any, Any] | None = None
        for k, v in value.items():
            if type(k) is str and _secret_str(k) and k.lower() not in allow:
                nv: Any = REDACTED
            else:
                nv = redact(v, allow, _depth + 1)
            if nv is not v and out is None:
                out = dict(value)
            if out is not None:
                out[k] = nv
        return value if out is None else out
    if isinstance(value, list):
        if _depth >= _MAX_DEPTH:
            return REDACTED
        new = [redact(v, allow, _depth + 1) for v in value]
        return value if all(a is b for a, b in zip(new, value, strict=True)) else new
    return value


_QUERY_SECRET = re.compile(r"([?&])([^=&#]*)=([^&#]*)")


def redact_path(path: str) -> str:
    """A request path with the values of key-like query parameters redacted (Gemini's `?key=AIza…`)."""
    if "?" not in path:
        return path

    def sub(m: re.Match[str]) -> str:
        name = m.group(2)
        if name.lower() in ("key", "token", "sig", "signature") or is_secret_name(name):
            return f"{m.group(1)}{name}={REDACTED}"
        return m.group(0)

    head, _, query = path.partition("?")
    return head + "?" + _QUERY_SECRET.sub(sub, "?" + query)[1:]


# ------------------------------------------------------------------------------------------- logs
_LOG_PATTERNS = (
    # a cookie header's value runs to the end of the line (or quote): "Cookie: a=1; b=2"
    re.compile(r"(?i)(?P<name>\b(?:set-)?cookie)(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\"'\n]+)"),
    # "Authorization: Bearer x", "'x-api-key': 'x'", "api_key=x", "password": "x"
    re.compile(
        r"""(?ix)
        (?P<name>(?:proxy-)?authorization|x-goog-api-key|x-api-key|api[-_]?key|apikey
                 |access[-_]?token|refresh[-_]?token|client[-_]?secret|secret|password|passwd)
        (?P<sep>["']?\s*[:=]\s*["']?)
        (?P<value>(?:(?:bearer|basic)\s+)?[^"'\s,;}&]+)
        """
    ),
    re.compile(r"(?i)\b(?P<name>bearer|basic)(?P<sep>\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})"),
    re.compile(r"(?P<name>)(?P<sep>)(?P<value>\bsk-[A-Za-z0-9_-]{16,}|\bAIza[0-9A-Za-z_-]{30,})"),
)


def scrub_text(text: str) -> str:
    for p in _LOG_PATTERNS:
        text = p.sub(lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs credentials from every log record (message, arguments and traceback), at any level."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        clean = scrub_text(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (root by default); idempotent."""
    target = logger or logging.getLogger()
    for h in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())
