"""The language of a user's question: lingua, offline, among a configured set, only when sure.

Why lingua (`lingua-language-detector`, the optional extra `gateway-stats[language]`): it works
offline from models shipped in the wheel and stays accurate on short text, where n-gram detectors
built for documents guess. Why a restricted set: each candidate language takes probability mass from
the right one and costs time, so a deployment lists the languages its users write in.

Why a threshold: like DIAL (which keeps a label only when its detector is very sure), a wrong label is
worse than none. lingua's confidence values are relative (they sum to 1 over the candidate set), so the
bar is lower than DIAL's langid probability: with 11 candidates a plain English question scores 0.6 to
0.99, a three-word phrase of international words ("taxi hotel restaurant") 0.2. Text with fewer than
`MIN_LETTERS` letters is not examined at all.

Sans-IO apart from loading the models (from the installed package, at construction).
"""

from __future__ import annotations

from typing import Any

from gateway_stats.config.analytics import LanguageSettings

MIN_LETTERS = 3


def available() -> bool:
    try:
        import lingua  # noqa: F401
    except ImportError:
        return False
    return True


class LanguageDetector:
    """Detects among `settings.languages`; `detect()` returns an ISO 639-1 code or None."""

    def __init__(self, settings: LanguageSettings, *, preload: bool = True) -> None:
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        self.settings = settings
        codes = [getattr(IsoCode639_1, c.upper()) for c in settings.languages]
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        if preload:  # load every model now (start-up), not on the first text of each language
            builder = builder.with_preloaded_language_models()
        self._detector: Any = builder.build()
        self._min = settings.min_confidence
        self._cap = settings.max_chars

    def confidences(self, text: str) -> list[tuple[str, float]]:
        """Every candidate with its confidence, best first (for tests and tuning)."""
        vals = self._detector.compute_language_confidence_values(text[: self._cap])
        return [(v.language.iso_code_639_1.name.lower(), float(v.value)) for v in vals]

    def detect(self, text: str | None) -> str | None:
        if not text:
            return None
        text = text[: self._cap]
        if sum(1 for ch in text if ch.isalpha()) < MIN_LETTERS:
            return None
        vals = self._detector.compute_language_confidence_values(text)
        if not vals:
            return None
        top = vals[0]
        if float(top.value) < self._min:
            return None
        return str(top.language.iso_code_639_1.name.lower())
