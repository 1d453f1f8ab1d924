"""The topic of a user's question: configured word rules, or a classifier a team plugs in.

Rules (`analytics.topics: {billing: [invoice, refund], …}`) are matched on the words of the text,
case-insensitively, in config order: the first topic with a matching word wins, `other` otherwise. An
entry of several words (`credit card`) matches those words in a row. Words in scripts written without
spaces (Chinese, Japanese, Thai…) match as substrings, since such text has no word boundaries to split on.

Why a plug-in point: DIAL classifies with a BERTopic model; a team with its own model names a
`module:function` (`topic_classifier`) taking the text and returning a topic name (or None to fall back
to the rules). It runs where the rules run, off the request path.

Sans-IO; a classifier that raises is reported to the caller, never swallowed silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway_stats.config.analytics import TopicSettings, load_callable

OTHER = "other"
_WORD = re.compile(r"\w+", re.UNICODE)


def _spaceless(word: str) -> bool:
    """Han, kana, Hangul syllables written without spaces, Thai: match as a substring."""
    return any(
        "\u3040" <= ch <= "\u30ff"  # hiragana, katakana
        or "\u3400" <= ch <= "\u9fff"  # CJK ideographs
        or "\uac00" <= ch <= "\ud7af"  # Hangul
        or "\u0e00" <= ch <= "\u0e7f"  # Thai
        for ch in word
    )


class TopicClassifier:
    def __init__(self, settings: TopicSettings) -> None:
        self.settings = settings
        self._plugin: Callable[[str], object] | None = (
            load_callable(settings.classifier) if settings.classifier else None
        )
        # per topic: single words (set lookup), phrases (token tuples), substrings (spaceless scripts)
        self._rules: list[tuple[str, frozenset[str], tuple[tuple[str, ...], ...], tuple[str, ...]]] = []
        for topic, entries in settings.rules:
            words: set[str] = set()
            phrases: list[tuple[str, ...]] = []
            subs: list[str] = []
            for e in entries:
                if _spaceless(e):
                    subs.append(e)
                    continue
                toks = tuple(_WORD.findall(e))
                if len(toks) == 1:
                    words.add(toks[0])
                elif toks:
                    phrases.append(toks)
            self._rules.append((topic, frozenset(words), tuple(phrases), tuple(subs)))

    def classify(self, text: str | None) -> str | None:
        """A topic for the text; None when there is no text (or nothing is configured)."""
        if not text or not self.settings.enabled:
            return None
        if self._plugin is not None:
            got = self._plugin(text)
            if isinstance(got, str) and got:
                return got[:128]
        return self.by_rules(text)

    def by_rules(self, text: str) -> str:
        low = text.lower()
        tokens = _WORD.findall(low)
        present = set(tokens)
        for topic, words, phrases, subs in self._rules:
            if words and not words.isdisjoint(present):
                return topic
            for ph in phrases:
                n = len(ph)
                if ph[0] in present and any(
                    tuple(tokens[i : i + n]) == ph for i in range(len(tokens) - n + 1)
                ):
                    return topic
            if any(s in low for s in subs):
                return topic
        return OTHER
