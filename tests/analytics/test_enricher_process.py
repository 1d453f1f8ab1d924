"""Language and topic in a child process: right values, null on trouble, and never in our threads' GIL."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from gateway_stats.analytics.enricher import Enricher
from gateway_stats.config import parse_config
from gateway_stats.core.record import CallRecord

pytest.importorskip("lingua", reason="the optional extra gateway-stats[language]")


def rec(text: str | None) -> CallRecord:
    r = CallRecord()
    r.user_text = text
    return r


def settings(**an: object) -> object:
    return parse_config(
        {
            "gateway_stats": {
                "analytics": {"language": {}, "topics": {"billing": ["invoice", "rechnung"]}, **an}
            }
        }
    ).extensions.analytics


def test_child_process_computes_language_and_topic() -> None:
    e = Enricher(settings(), timeout=30)  # type: ignore[arg-type]
    e.start()
    try:
        recs = [
            rec("Where is my invoice for March, please?"),
            rec("Wo ist meine Rechnung für März?"),
            rec("東京の今日の天気を教えてください"),
            rec("taxi hotel restaurant"),
            rec(None),
        ]
        e.enrich(recs)
        assert [(r.language, r.topic) for r in recs] == [
            ("en", "billing"),
            ("de", "billing"),
            ("ja", "other"),
            (None, "other"),
            (None, None),
        ]
        assert e._proc is not None and e._proc.pid != __import__("os").getpid()
        assert e.stats.records == 4 and e.stats.failures == 0
        again = recs[0]
        again.language = "xx"
        e.enrich([again])  # enriched once only
        assert again.language == "xx"
    finally:
        e.close()


def test_event_loop_thread_keeps_running_while_the_child_works() -> None:
    """The point of the child process: a long detection does not hold our GIL.

    In this process one detection of the text below holds the GIL for its whole run (~20 ms): a thread
    spinning beside it sees one gap that long per detection. With the child doing it, such gaps are only
    the scheduler's (the machine is shared), far fewer than one per detection.
    """
    from gateway_stats.analytics.language import LanguageDetector

    base: Any = settings()
    an = dataclasses.replace(base, language=dataclasses.replace(base.language, max_chars=100_000))
    long_text = "Can you help me write an email to my landlord about the broken heater? " * 250
    inproc = LanguageDetector(an.language)
    t0 = time.perf_counter()
    inproc.detect(long_text)
    one = time.perf_counter() - t0
    e = Enricher(an, timeout=30)
    e.start()
    e.enrich([rec("warm up the models please")])
    gaps: list[float] = []
    done = threading.Event()

    def spin() -> None:
        last = time.perf_counter()
        while not done.is_set():
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t = threading.Thread(target=spin)
    t.start()
    n = 20
    try:
        for _ in range(n):
            e.enrich([rec(long_text)])
    finally:
        done.set()
        t.join()
        e.close()
    long_gaps = sum(1 for g in gaps if g > 0.8 * one)
    assert one > 0.005 and long_gaps < n / 2, (one, long_gaps)


def test_classifier_errors_fall_back_to_rules() -> None:
    mod = types.ModuleType("gs_test_enrich_plugin")

    def classify(text: str) -> str:
        raise ValueError("no model")

    mod.classify = classify  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    an = parse_config(
        {
            "gateway_stats": {
                "analytics": {
                    "topics": {"billing": ["invoice"]},
                    "topic_classifier": "gs_test_enrich_plugin:classify",
                }
            }
        }
    )
    e = Enricher(an.extensions.analytics, process=False)
    r = rec("my invoice")
    e.enrich([r])
    assert r.topic == "billing" and r.language is None and e.stats.classifier_errors == 1


def test_a_stuck_child_leaves_nulls_and_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gs_test_slow_plugin.py").write_text(
        "import time\ndef classify(text):\n    if 'slow' in text:\n        time.sleep(3)\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned child gets our sys.path
    an = parse_config(
        {
            "gateway_stats": {
                "analytics": {
                    "language": {},
                    "topics": {"billing": ["invoice"]},
                    "topic_classifier": "gs_test_slow_plugin:classify",
                }
            }
        }
    )
    e = Enricher(an.extensions.analytics, timeout=30)
    try:
        e.enrich([rec("first call loads the models")])
        e.timeout = 0.5
        r = rec("a slow invoice question")
        t0 = time.perf_counter()
        e.enrich([r])
        assert time.perf_counter() - t0 < 2
        assert r.language is None and r.topic is None and e.stats.timeouts == 1 and e.stats.failures == 1
        e.timeout = 30
        r2 = rec("Where is my invoice for March, please?")
        e.enrich([r2])  # a fresh child
        assert (r2.language, r2.topic) == ("en", "billing")
    finally:
        e.close()


def test_off_by_default() -> None:
    e = Enricher(parse_config({}).extensions.analytics)
    r = rec("hello there my friend")
    e.enrich([r])
    assert e._proc is None and r.language is None
