"""Language and topic in a child process: right values, null on trouble, and never in our threads' GIL."""

from __future__ import annotations

import dataclasses
import sys
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
    assert e.wait_ready(120)
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


def test_the_work_is_done_outside_our_process() -> None:
    """The point of the child process: detection never runs (so never holds the GIL) in ours.

    Measured in CPU time, not wall time, so a busy machine does not change the verdict: one detection
    of the text below costs this process ~0.1 s of CPU when done here; handed to the child, ten of them
    cost it only the pickling and the pipe.
    """
    from gateway_stats.analytics.language import LanguageDetector

    base: Any = settings()
    an = dataclasses.replace(base, language=dataclasses.replace(base.language, max_chars=100_000))
    long_text = "Can you help me write an email to my landlord about the broken heater? " * 1300
    inproc = LanguageDetector(an.language)
    c0 = time.process_time()
    inproc.detect(long_text)
    one = time.process_time() - c0
    e = Enricher(an, timeout=120)
    e.start()
    assert e.wait_ready(120)
    n = 10
    recs = [rec(long_text) for _ in range(n)]
    try:
        c0 = time.process_time()
        for r in recs:
            e.enrich([r])
        ours = time.process_time() - c0
    finally:
        e.close()
    assert all(r.language == "en" for r in recs)
    assert one > 0.02 and ours < 0.2 * n * one, (one, ours)


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


def test_a_slow_child_leaves_nulls_and_its_late_answer_is_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gs_test_slow_plugin.py").write_text(
        "import time\ndef classify(text):\n    if 'slow' in text:\n        time.sleep(2)\n    return None\n"
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
        e.start()
        assert e.wait_ready(120)
        pid = e._proc.pid
        e.timeout = 0.5
        r = rec("a slow invoice question")
        t0 = time.perf_counter()
        e.enrich([r])  # not waited for past the timeout
        assert time.perf_counter() - t0 < 1.5
        assert r.language is None and r.topic is None and e.stats.timeouts == 1 and e.stats.failures == 0
        e.timeout = 30
        r2 = rec("Where is my invoice for March, please?")
        e.enrich([r2])  # the slow batch's answer arrives first and is discarded
        assert (r2.language, r2.topic) == ("en", "billing")
        assert e._proc.pid == pid  # slow is not dead: the same child, models still loaded
    finally:
        e.close()


def test_the_worker_runs_below_our_priority() -> None:
    import os

    e = Enricher(settings(), timeout=30)  # type: ignore[arg-type]
    try:
        e.start()
        assert e.wait_ready(120)
        stat = Path(f"/proc/{e._proc.pid}/stat").read_text()
        nice = int(stat.rsplit(")", 1)[1].split()[16])
        assert nice == os.nice(0) + 10
    finally:
        e.close()


def test_a_worker_still_loading_never_holds_records_back() -> None:
    e = Enricher(settings(), timeout=30)  # type: ignore[arg-type]
    try:
        e.ready_wait = 0.0
        e.start()
        r = rec("Where is my invoice for March, please?")
        t0 = time.perf_counter()
        e.enrich([r])  # the child is still importing and loading its models
        assert time.perf_counter() - t0 < 0.5
        assert r.language is None and e.stats.not_ready == 1 and e.stats.failures == 0
        pid = e._proc.pid
        assert e.wait_ready(120)
        e.enrich([r])  # the same child, now ready; the record was not marked done
        assert (r.language, r.topic) == ("en", "billing") and e._proc.pid == pid
    finally:
        e.close()


def test_off_by_default() -> None:
    e = Enricher(parse_config({}).extensions.analytics)
    r = rec("hello there my friend")
    e.enrich([r])
    assert e._proc is None and r.language is None
