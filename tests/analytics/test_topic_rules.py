"""Topic rules (first match wins, `other` otherwise) and the classifier plug-in."""

from __future__ import annotations

import sys
import types

import pytest

from gateway_stats.analytics.topics import TopicClassifier
from gateway_stats.config import ConfigError
from gateway_stats.config.analytics import TopicSettings, parse_analytics

RULES = TopicSettings(
    rules=(
        ("billing", ("invoice", "refund", "credit card", "请款")),
        ("support", ("error", "broken", "refund")),
    )
)


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("Where is my INVOICE for March?", "billing"),
        ("I want a refund, the app is broken", "billing"),  # both match: the first rule wins
        ("The app is broken again", "support"),
        ("Can I pay by credit card?", "billing"),  # a phrase: these words in a row
        ("My card has no credit left", "other"),  # same words, not in a row
        ("Invoices are late", "other"),  # words, not prefixes
        ("我想请款一下", "billing"),  # spaceless scripts match as substrings
        ("Tell me a joke", "other"),
    ],
)
def test_rules(text: str, topic: str) -> None:
    assert TopicClassifier(RULES).classify(text) == topic


def test_no_text_or_no_rules_is_null() -> None:
    assert TopicClassifier(RULES).classify(None) is None
    assert TopicClassifier(RULES).classify("") is None
    assert TopicClassifier(TopicSettings()).classify("invoice") is None


def _plugin_module() -> str:
    mod = types.ModuleType("gs_test_topic_plugin")

    def classify(text: str) -> str | None:
        if "boom" in text:
            raise RuntimeError("model exploded")
        return "weather" if "rain" in text else None

    mod.classify = classify  # type: ignore[attr-defined]
    mod.not_callable = 3  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    return mod.__name__


def test_classifier_plugin_then_rules() -> None:
    name = _plugin_module()
    c = TopicClassifier(TopicSettings(rules=RULES.rules, classifier=f"{name}:classify"))
    assert c.classify("Will it rain tomorrow?") == "weather"
    assert c.classify("Where is my invoice?") == "billing"  # the plug-in said None: rules decide
    with pytest.raises(RuntimeError):
        c.classify("boom")  # the enricher reports it and falls back to the rules (test_enricher_process)


def test_config_of_topics() -> None:
    name = _plugin_module()
    s = parse_analytics(
        {
            "analytics": {
                "topics": {"billing": ["Invoice", " Credit   Card "]},
                "topic_classifier": f"{name}:classify",
            }
        }
    )
    assert s.topics.rules == (("billing", ("invoice", "credit card")),)
    assert s.topics.classifier == f"{name}:classify"
    with pytest.raises(ConfigError) as e:
        parse_analytics(
            {
                "analytics": {
                    "topics": {"other": ["x"], "billing": [], "support": ["ok", 3]},
                    "topic_classifier": f"{name}:not_callable",
                }
            }
        )
    msg = str(e.value)
    assert "gateway_stats.analytics.topics.other: 'other' is the topic of text no rule matches" in msg
    assert "gateway_stats.analytics.topics.billing: expected a non-empty list of words" in msg
    assert "gateway_stats.analytics.topics.support[1]: expected a non-empty string" in msg
    assert "gateway_stats.analytics.topic_classifier: cannot load" in msg
    with pytest.raises(
        ConfigError, match=r"topic_classifier: cannot load no_such_mod_x:f: ModuleNotFoundError"
    ):
        parse_analytics({"analytics": {"topic_classifier": "no_such_mod_x:f"}})
