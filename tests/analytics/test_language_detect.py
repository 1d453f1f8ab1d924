"""Language of the last user text: lingua among a configured set, only above the confidence bar."""

from __future__ import annotations

import pytest

pytest.importorskip("lingua", reason="the optional extra gateway-stats[language]")

from gateway_stats.analytics.language import LanguageDetector
from gateway_stats.config.analytics import LanguageSettings


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(LanguageSettings(enabled=True))


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Can you help me write an email to my landlord about the broken heater?", "en"),
        ("Please summarise the attached quarterly report for the board.", "en"),
        ("Kannst du mir bitte eine E-Mail an meinen Vermieter schreiben?", "de"),
        ("Erkläre mir die Photosynthese in einfachen Worten.", "de"),
        ("Quelle est la meilleure façon d'apprendre le français ?", "fr"),
        ("Peux-tu m'aider à écrire une lettre de motivation ?", "fr"),
        ("请告诉我今天北京的天气怎么样", "zh"),
        ("用简单的话解释光合作用", "zh"),
        ("東京の今日の天気を教えてください", "ja"),
        ("大家さんへのメールを書いてください", "ja"),
    ],
)
def test_languages(detector: LanguageDetector, text: str, lang: str) -> None:
    assert detector.detect(text) == lang


@pytest.mark.parametrize("text", ["taxi hotel restaurant", "radio video taxi", "menu hotel bar"])
def test_three_ambiguous_words_are_null(detector: LanguageDetector, text: str) -> None:
    assert detector.detect(text) is None
    assert detector.confidences(text)[0][1] < 0.5  # why: no candidate is anywhere near sure


@pytest.mark.parametrize("text", [None, "", "  ", "ok", "42 + 17 = ?", "🙂🙂"])
def test_too_little_text_is_null(detector: LanguageDetector, text: str | None) -> None:
    assert detector.detect(text) is None


def test_only_the_configured_set_and_the_threshold() -> None:
    d = LanguageDetector(LanguageSettings(enabled=True, languages=("en", "de"), min_confidence=0.99))
    fr = "Quelle est la meilleure façon d'apprendre le français ?"
    assert {lang for lang, _ in d.confidences(fr)} == {"en", "de"}  # French is not a candidate
    assert d.detect("Please summarise the attached quarterly report for the board.") is None  # 0.98 < 0.99
    lax = LanguageDetector(LanguageSettings(enabled=True, languages=("en", "de"), min_confidence=0.5))
    assert lax.detect("Please summarise the attached quarterly report for the board.") == "en"


def test_input_is_capped(detector: LanguageDetector) -> None:
    d = LanguageDetector(LanguageSettings(enabled=True, max_chars=60))
    text = "Please summarise the attached quarterly report for the board. " + "Bitte danke schön. " * 500
    assert d.detect(text) == "en"  # only the first 60 characters are examined
