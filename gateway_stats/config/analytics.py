"""Settings for the analytics of issue 13: language, topic, user hashing, segmentation, feedback, Athina.

Three blocks of the `gateway_stats:` document are read here, so `extensions.py` only has to hand them over:

    gateway_stats:
      analytics:
        language: {languages: [en, de, fr, zh, ja], min_confidence: 0.5, max_chars: 2000, ai_log: false}
        topics: {billing: [invoice, refund], support: [error, broken]}   # first match wins, else "other"
        topic_classifier: mypkg.topics:classify                           # optional plug-in, text -> str
        user: {header: x-user-id, body: true, key_env: GATEWAY_STATS_USER_KEY, store_raw: false}
        segmentation: {prompt_slug: x-prompt-slug, environment: x-environment, customer_id: x-tenant}
      feedback: {token_env: GATEWAY_STATS_FEEDBACK_TOKEN, dial_rate: true}
      athina: {url: https://log.athina.ai/api/v1/log/inference, api_key_env: ATHINA_API_KEY}

Why here and not in the analytics package: the sans-IO core reads these settings on the request path
(which headers to look at, what to capture) and may import `gateway_stats.config` but nothing that does
I/O. Secrets (the HMAC key, the feedback token, the Athina key) are read once, when the config is
loaded, so a missing variable stops `serve` at start-up naming the field; they are kept out of `repr()`.

`parse_analytics(m, path)` takes the `gateway_stats:` mapping and raises `ConfigError` whose lines are
`<field path>: <problem>` (the caller prefixes the file name).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_stats.config.schema import ConfigError

KEYS = ("analytics", "feedback", "athina")  # the blocks of `gateway_stats:` read here

ANALYTICS_FIELDS = ("language", "topics", "topic_classifier", "user", "segmentation")
LANGUAGE_FIELDS = ("enabled", "languages", "min_confidence", "max_chars", "ai_log")
USER_FIELDS = ("header", "body", "key_env", "key_file", "store_raw")
SEGMENT_FIELDS = ("prompt_slug", "environment", "customer_id", "customer_user_id", "external_reference_id")
FEEDBACK_FIELDS = ("token_env", "token_file", "dial_rate", "max_body_bytes", "recent_calls")
ATHINA_FIELDS = (
    "url",
    "feedback_url",
    "api_key_env",
    "include_content",
    "queue_size",
    "timeout_seconds",
    "max_attempts",
)

# A default language set: the languages most LLM traffic is in. A short list keeps detection fast and
# its confidence sharp (every extra candidate takes probability mass from the right one).
DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "ru", "zh", "ja", "ko")
DEFAULT_ATHINA_URL = "https://log.athina.ai/api/v1/log/inference"
ATHINA_FEEDBACK_PATH = "/api/v1/prompt_run/user-feedback"
MIN_KEY_BYTES = 16

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ISO_639_1 = re.compile(r"^[a-z]{2}$")
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True, slots=True)
class LanguageSettings:
    enabled: bool = False
    languages: tuple[str, ...] = DEFAULT_LANGUAGES  # ISO 639-1, lower case
    min_confidence: float = 0.5  # the detector's top confidence must reach this, else null
    max_chars: int = 2000  # only this much of the last user text is captured and examined
    ai_log: bool = False  # opt-in `language` key in the ai_log


@dataclass(frozen=True, slots=True)
class TopicSettings:
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (topic, words) in config order
    classifier: str = ""  # "module:function", called with the user text; returns a topic or None

    @property
    def enabled(self) -> bool:
        return bool(self.rules or self.classifier)


@dataclass(frozen=True, slots=True)
class UserSettings:
    header: str = ""  # lower-cased; checked before the body
    body: bool = True  # OpenAI `user`, Anthropic `metadata.user_id`
    key: bytes = field(default=b"", repr=False)  # the HMAC key; b"" = user hashing off
    store_raw: bool = False  # also keep the raw id (record `user_id`, Athina customer_user_id)

    @property
    def enabled(self) -> bool:
        return bool(self.key)


@dataclass(frozen=True, slots=True)
class FeedbackSettings:
    token: str = field(default="", repr=False)  # bearer token of POST /v1/feedback; "" = endpoint off
    dial_rate: bool = True  # recognise DIAL's `POST .../v1/<deployment>/rate` crossing Envoy
    max_body_bytes: int = 65536
    # Calls remembered in memory for joining feedback to them (analytics/joins.py); ~0.6-0.8 KB each.
    # 0 = none: feedback then carries only what it names itself, the stores still join by id.
    recent_calls: int = 50_000

    @property
    def endpoint_enabled(self) -> bool:
        return bool(self.token)


@dataclass(frozen=True, slots=True)
class AthinaSettings:
    url: str = ""  # "" = forwarding off
    feedback_url: str = ""
    api_key: str = field(default="", repr=False)
    include_content: bool = True  # prompt, response, user query, tools (Athina evaluates them)
    queue_size: int = 1000
    timeout_seconds: float = 5.0
    max_attempts: int = 4

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    language: LanguageSettings = field(default_factory=LanguageSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    user: UserSettings = field(default_factory=UserSettings)
    segmentation: tuple[tuple[str, str], ...] = ()  # (Athina field, lower-cased header name)
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    athina: AthinaSettings = field(default_factory=AthinaSettings)

    @property
    def wants_text(self) -> bool:
        """Capture the last user text (language, topic, Athina's user_query)."""
        return (
            self.language.enabled
            or self.topics.enabled
            or (self.athina.enabled and self.athina.include_content)
        )

    @property
    def enrich(self) -> bool:
        """Language or topic to compute off the request path."""
        return self.language.enabled or self.topics.enabled

    @property
    def text_cap(self) -> int:
        return self.language.max_chars


# ------------------------------------------------------------------------------------------- parsing


def _describe(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {v!r}"
    if isinstance(v, dict):
        return "mapping"
    if isinstance(v, list):
        return "list"
    return f"{type(v).__name__} {v!r}"[:60]


class _Fields:
    """Typed getters over one mapping; every problem is collected as '<path>: <message>'."""

    def __init__(self, errors: list[str], m: Mapping[str, Any], path: str, known: Sequence[str]) -> None:
        self.errors = errors
        self.m = m
        self.path = path
        for k in m:
            if k not in known:
                self.error(str(k), f"unknown field (known fields: {', '.join(known)})")

    def p(self, key: str) -> str:
        return f"{self.path}.{key}"

    def error(self, key: str, msg: str) -> None:
        self.errors.append(f"{self.p(key) if key else self.path}: {msg}")

    def string(self, key: str) -> str | None:
        v = self.m.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            self.error(key, f"expected a non-empty string, got {_describe(v)}")
            return None
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.m.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.error(key, f"expected a boolean (true or false), got {_describe(v)}")
            return default
        return v

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        v = self.m.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.error(key, f"expected a number, got {_describe(v)}")
            return default
        if not lo <= v <= hi:
            self.error(key, f"must be between {lo:g} and {hi:g}, got {v}")
            return default
        return float(v)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        v = self.m.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(key, f"expected an integer, got {_describe(v)}")
            return default
        if not lo <= v <= hi:
            self.error(key, f"must be between {lo} and {hi}, got {v}")
            return default
        return v

    def header(self, key: str) -> str:
        h = self.string(key)
        if h is None:
            return ""
        if not _HEADER_NAME.match(h):
            self.error(key, f"not a valid header name: {h!r}")
            return ""
        return h.lower()

    def secret(self, env_key: str, file_key: str, what: str) -> str | None:
        """A secret from an environment variable or a file (one of the two). None when neither is set."""
        env_name = self.string(env_key)
        file_name = self.string(file_key) if file_key else None
        if env_name and file_name:
            self.error("", f"set one of {env_key} or {file_key}, not both")
            return None
        if env_name:
            if not _ENV_NAME.match(env_name):
                self.error(env_key, f"not a valid environment variable name: {env_name!r}")
                return None
            value = os.environ.get(env_name, "")
            if not value.strip():
                self.error(env_key, f"environment variable {env_name} ({what}) is not set or empty")
                return None
            return value.strip()
        if file_name:
            try:
                with open(file_name, encoding="utf-8") as fh:
                    value = fh.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                self.error(file_key, f"cannot read {what} from {file_name}: {getattr(exc, 'strerror', exc)}")
                return None
            if not value:
                self.error(file_key, f"{file_name} ({what}) is empty")
                return None
            return value
        return None


def _sub(errors: list[str], parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    v = parent.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        errors.append(f"{path}.{key}: expected a mapping, got {_describe(v)}")
        return None
    return v


def _language(errors: list[str], raw: Mapping[str, Any], path: str) -> LanguageSettings:
    f = _Fields(errors, raw, path, LANGUAGE_FIELDS)
    enabled = f.boolean("enabled", True)
    langs: tuple[str, ...] = DEFAULT_LANGUAGES
    v = raw.get("languages")
    if v is not None:
        if not isinstance(v, list) or not v:
            f.error("languages", f"expected a non-empty list of ISO 639-1 codes, got {_describe(v)}")
        else:
            out: list[str] = []
            for i, code in enumerate(v):
                if not isinstance(code, str) or not _ISO_639_1.match(code.lower()):
                    f.error(f"languages[{i}]", f"expected a two-letter ISO 639-1 code, got {_describe(code)}")
                elif code.lower() in out:
                    f.error(f"languages[{i}]", f"'{code}' is listed twice")
                else:
                    out.append(code.lower())
            langs = tuple(out)
    settings = LanguageSettings(
        enabled=enabled,
        languages=langs,
        min_confidence=f.number("min_confidence", 0.5, 0.0, 1.0),
        max_chars=f.integer("max_chars", 2000, 16, 100_000),
        ai_log=f.boolean("ai_log", False),
    )
    if enabled:
        problem = _check_languages(settings.languages)
        if problem:
            f.error("languages" if "languages" in raw else "", problem)
    return settings


def _check_languages(codes: Sequence[str]) -> str | None:
    """The detector is an optional extra: say how to install it, and which codes it does not know."""
    try:
        from lingua import IsoCode639_1
    except ImportError:
        return "language detection needs the optional extra: pip install 'gateway-stats[language]'"
    unknown = [c for c in codes if not hasattr(IsoCode639_1, c.upper())]
    if unknown:
        return f"languages the detector does not know: {', '.join(unknown)}"
    if len(codes) < 2:
        return "list at least two languages (the detector chooses among them)"
    return None


def _topics(errors: list[str], v: object, path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(v, dict) or not v:
        errors.append(f"{path}: expected a mapping of topic name to a list of words, got {_describe(v)}")
        return ()
    rules: list[tuple[str, tuple[str, ...]]] = []
    for name, words in v.items():
        p = f"{path}.{name}"
        if not isinstance(name, str) or not name:
            errors.append(f"{path}: topic names must be non-empty strings, got {_describe(name)}")
            continue
        if name == "other":
            errors.append(f"{p}: 'other' is the topic of text no rule matches; it cannot have rules")
            continue
        if not isinstance(words, list) or not words:
            errors.append(f"{p}: expected a non-empty list of words, got {_describe(words)}")
            continue
        clean: list[str] = []
        for i, w in enumerate(words):
            if not isinstance(w, str) or not w.strip():
                errors.append(f"{p}[{i}]: expected a non-empty string, got {_describe(w)}")
            else:
                clean.append(" ".join(w.lower().split()))
        rules.append((name, tuple(clean)))
    return tuple(rules)


def load_callable(spec: str) -> Callable[[str], object]:
    """`module:function` -> the function (imported now, so a typo fails at config load)."""
    mod_name, _, attr = spec.partition(":")
    mod = importlib.import_module(mod_name)
    fn = getattr(mod, attr)
    if not callable(fn):
        raise TypeError(f"{spec} is not callable")
    return fn


def _classifier(errors: list[str], v: object, path: str) -> str:
    if not isinstance(v, str) or not _CALLABLE.match(v):
        errors.append(f"{path}: expected 'module:function', got {_describe(v)}")
        return ""
    try:
        load_callable(v)
    except Exception as exc:
        errors.append(f"{path}: cannot load {v}: {type(exc).__name__}: {exc}")
        return ""
    return v


def _user(errors: list[str], raw: Mapping[str, Any], path: str) -> UserSettings:
    f = _Fields(errors, raw, path, USER_FIELDS)
    header = f.header("header")
    body = f.boolean("body", True)
    store_raw = f.boolean("store_raw", False)
    key = f.secret("key_env", "key_file", "the user-hash key")
    if key is None:
        if "key_env" not in raw and "key_file" not in raw:
            f.error("", "one of key_env or key_file is required (the HMAC key that hashes user ids)")
        return UserSettings()
    kb = key.encode()
    if len(kb) < MIN_KEY_BYTES:
        f.error(
            "key_env" if "key_env" in raw else "key_file", f"the key must be at least {MIN_KEY_BYTES} bytes"
        )
        return UserSettings()
    if not header and not body:
        f.error("", "no source of user ids: set header, or leave body true")
    return UserSettings(header=header, body=body, key=kb, store_raw=store_raw)


def _segmentation(errors: list[str], raw: Mapping[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    f = _Fields(errors, raw, path, SEGMENT_FIELDS)
    out = []
    for name in SEGMENT_FIELDS:
        h = f.header(name)
        if h:
            out.append((name, h))
    return tuple(out)


def _feedback(errors: list[str], raw: Mapping[str, Any], path: str) -> FeedbackSettings:
    f = _Fields(errors, raw, path, FEEDBACK_FIELDS)
    token = f.secret("token_env", "token_file", "the feedback bearer token") or ""
    if token and len(token) < 16:
        f.error(
            "token_env" if "token_env" in raw else "token_file", "the token must be at least 16 characters"
        )
        token = ""
    return FeedbackSettings(
        token=token,
        dial_rate=f.boolean("dial_rate", True),
        max_body_bytes=f.integer("max_body_bytes", 65536, 1024, 16 << 20),
        recent_calls=f.integer("recent_calls", 50_000, 0, 1_000_000),
    )


def _url(f: _Fields, key: str) -> str | None:
    u = f.string(key)
    if u is not None and not re.match(r"^https?://[^/\s]+", u):
        f.error(key, f"expected an http:// or https:// URL, got {u!r}")
        return None
    return u


def _athina(errors: list[str], raw: Mapping[str, Any], path: str) -> AthinaSettings:
    f = _Fields(errors, raw, path, ATHINA_FIELDS)
    url = _url(f, "url") or DEFAULT_ATHINA_URL
    feedback_url = _url(f, "feedback_url")
    if feedback_url is None:
        m = re.match(r"^(https?://[^/]+)", url)
        feedback_url = (m.group(1) if m else url) + ATHINA_FEEDBACK_PATH
    env = f.string("api_key_env") or "ATHINA_API_KEY"
    key = ""
    if not _ENV_NAME.match(env):
        f.error("api_key_env", f"not a valid environment variable name: {env!r}")
    else:
        key = os.environ.get(env, "").strip()
        if not key:
            f.error("api_key_env", f"environment variable {env} (the Athina API key) is not set or empty")
    return AthinaSettings(
        url=url,
        feedback_url=feedback_url,
        api_key=key,
        include_content=f.boolean("include_content", True),
        queue_size=f.integer("queue_size", 1000, 1, 1_000_000),
        timeout_seconds=f.number("timeout_seconds", 5.0, 0.1, 120.0),
        max_attempts=f.integer("max_attempts", 4, 1, 20),
    )


def parse_analytics(ext: Mapping[str, Any], path: str = "gateway_stats") -> AnalyticsSettings:
    """Read `analytics`, `feedback` and `athina` from the `gateway_stats:` mapping `ext`.

    Absent blocks mean off (the defaults). Raises ConfigError with one '<path>: <problem>' per line.
    """
    errors: list[str] = []
    language = LanguageSettings()
    topics = TopicSettings()
    user = UserSettings()
    segmentation: tuple[tuple[str, str], ...] = ()
    an = _sub(errors, ext, "analytics", path)
    if an is not None:
        ap = f"{path}.analytics"
        _Fields(errors, an, ap, ANALYTICS_FIELDS)
        raw = _sub(errors, an, "language", ap)
        if raw is not None:
            language = _language(errors, raw, f"{ap}.language")
        rules = _topics(errors, an["topics"], f"{ap}.topics") if an.get("topics") is not None else ()
        clf = (
            _classifier(errors, an["topic_classifier"], f"{ap}.topic_classifier")
            if an.get("topic_classifier") is not None
            else ""
        )
        topics = TopicSettings(rules=rules, classifier=clf)
        raw = _sub(errors, an, "user", ap)
        if raw is not None:
            user = _user(errors, raw, f"{ap}.user")
        raw = _sub(errors, an, "segmentation", ap)
        if raw is not None:
            segmentation = _segmentation(errors, raw, f"{ap}.segmentation")
            if "customer_user_id" in dict(segmentation) and not user.enabled and "user" not in an:
                errors.append(
                    f"{ap}.segmentation.customer_user_id: an end-user id is hashed before it is stored: "
                    "configure analytics.user (its key), with store_raw: true to keep it raw"
                )
    raw = _sub(errors, ext, "feedback", path)
    feedback = _feedback(errors, raw, f"{path}.feedback") if raw is not None else FeedbackSettings()
    raw = _sub(errors, ext, "athina", path)
    athina = _athina(errors, raw, f"{path}.athina") if raw is not None else AthinaSettings()
    if errors:
        raise ConfigError(errors)
    return AnalyticsSettings(
        language=language,
        topics=topics,
        user=user,
        segmentation=segmentation,
        feedback=feedback,
        athina=athina,
    )
