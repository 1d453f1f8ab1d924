"""Language and topic for finished records, computed in a child process, never on the request path.

Why a process and not a thread: lingua's detector holds the GIL for the whole detection (measured:
a 2 kB text holds it ~2 ms, an 18 kB one ~19 ms), so in one of our threads it would stall the event
loop that answers Envoy. In a child process it only competes for CPU. The caller (the records writer
thread, the Athina sender thread) hands over a batch of records and blocks on the pipe, which releases
the GIL; the child answers with (language, topic) per record.

A child that is slow (timeout) or dead leaves `language`/`topic` null for that batch, is restarted for
the next one, and is counted; nothing upstream waits on it. `process=False` runs the same code inline
(tests, and tools that enrich rows read back from a store).

Early detection (`submit`), for the opt-in `language` key of the ai_log: the ai_log is final at the end
of the response, long before a records writer sees the call. So when that key is wanted, the record is
handed over as soon as the request body is read (a non-blocking put on a bounded queue; full = skipped);
a thread of ours sends it to the child while the upstream is still answering, and the result is on the
record when the final ai_log is built — if it is ready by then; otherwise the key is left out of that
line (the record and the stores still get it).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from gateway_stats.config.analytics import AnalyticsSettings, LanguageSettings, TopicSettings
from gateway_stats.core.record import CallRecord
from gateway_stats.warn_once import WarnOnce

log = logging.getLogger(__name__)

CHILD_NICE = 10  # the worker's scheduling priority, below the sidecar's (Linux nice)
STUCK_AFTER = 60.0  # a child that has answered nothing for this long while asked is replaced
READY_WAIT = 5.0  # how long a batch waits for a child still loading its models (~1-2 s) before going on
EARLY_QUEUE = 1000


@dataclass
class EnrichStats:
    records: int = 0  # records given a language/topic pass
    not_ready: int = 0  # records that went on without: the child was still loading its models
    timeouts: int = 0
    failures: int = 0  # worker died or raised
    classifier_errors: int = 0
    early_skipped: int = 0  # early detections not started (queue full)
    seconds: float = 0.0  # wall time spent waiting for the child


class _NotReady(Exception):
    """The child is still loading its models: these records go on without language and topic."""


class _Slow(Exception):
    """No answer within the timeout: these records go on without; the late answer will be discarded."""


class _Engine:
    """The work itself (runs in the child, or inline)."""

    def __init__(self, language: LanguageSettings, topics: TopicSettings) -> None:
        self.detector = None
        if language.enabled:
            from gateway_stats.analytics.language import LanguageDetector

            self.detector = LanguageDetector(language)
        self.topics = None
        if topics.enabled:
            from gateway_stats.analytics.topics import TopicClassifier

            self.topics = TopicClassifier(topics)

    def run(self, texts: Sequence[str | None]) -> tuple[list[tuple[str | None, str | None]], list[str]]:
        out: list[tuple[str | None, str | None]] = []
        errors: list[str] = []
        for text in texts:
            lang = self.detector.detect(text) if self.detector is not None and text else None
            topic = None
            if self.topics is not None and text:
                try:
                    topic = self.topics.classify(text)
                except Exception as exc:  # a plug-in's bug: rules decide, the error is reported
                    errors.append(f"{type(exc).__name__}: {exc}")
                    topic = self.topics.by_rules(text)
            out.append((lang, topic))
        return out, errors


def _child_main(conn: Connection, language: LanguageSettings, topics: TopicSettings) -> None:
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICE)  # Envoy and the sidecar's event loop always come first for the CPU
    try:
        engine = _Engine(language, topics)
        conn.send(("ready", None))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        seq, texts = msg
        try:
            conn.send(("ok", seq, engine.run(texts)))
        except Exception as exc:
            conn.send(("error", seq, f"{type(exc).__name__}: {exc}"))


class Enricher:
    """Fills `language` and `topic` of records. Thread-safe (one batch at a time)."""

    def __init__(self, settings: AnalyticsSettings, *, process: bool = True, timeout: float = 5.0) -> None:
        self.settings = settings
        self.process = process
        self.timeout = timeout
        self.ready_wait = READY_WAIT
        self._seq = 0
        self._waiting_since = 0.0  # when the oldest unanswered batch was sent (0 = none)
        self.stats = EnrichStats()
        self._lock = threading.Lock()
        self._engine: _Engine | None = None
        self._proc: Any = None
        self._conn: Connection | None = None
        self._ready = False
        self._trouble = WarnOnce(log)
        self._early: queue.Queue[CallRecord] | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.enrich

    @property
    def ready(self) -> bool:
        """The worker has loaded its models (or runs inline). Checked without waiting."""
        if self._engine is not None or self._ready:
            return True
        conn = self._conn
        if conn is None or not self._lock.acquire(blocking=False):
            return False
        try:
            if not self._ready and self._conn is not None and self._conn.poll(0):
                kind, payload = self._conn.recv()
                if kind == "ready":
                    self._ready = True
                else:
                    self._trouble("failure", f"language/topic worker failed to start ({payload})")
            return self._ready
        finally:
            self._lock.release()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the child now (it loads its models while the sidecar starts serving)."""
        if not self.enabled:
            return
        with self._lock:
            self._ensure()

    def _ensure(self) -> None:
        if not self.process:
            if self._engine is None:
                self._engine = _Engine(self.settings.language, self.settings.topics)
            return
        if self._proc is not None and self._proc.is_alive():
            return
        self._stop_child()
        ctx = multiprocessing.get_context("spawn")  # no fork of a process running grpc threads
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_child_main,
            args=(child, self.settings.language, self.settings.topics),
            name="gateway-stats-enricher",
            daemon=True,
        )
        proc.start()
        child.close()
        self._proc, self._conn, self._ready = proc, parent, False

    def reconfigure(self, settings: AnalyticsSettings) -> None:
        if settings.language == self.settings.language and settings.topics == self.settings.topics:
            self.settings = settings
            return
        with self._lock:
            self.settings = settings
            self._engine = None
            self._stop_child()
        self.start()

    def _stop_child(self, graceful: bool = True) -> None:
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        self._ready = False
        if proc is not None and not graceful:
            proc.kill()  # stuck or broken: its answer is no longer wanted
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
            conn.close()
        if proc is not None:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)

    def close(self) -> None:
        if self._early is not None:
            self._early.put_nowait(None)  # type: ignore[arg-type]
        with self._lock:
            self._stop_child()

    # ------------------------------------------------------------------------- early path
    def submit(self, rec: CallRecord) -> None:
        """Request path (event loop): start this record's detection now. Never blocks."""
        q = self._early
        if q is None:
            q = self._early = queue.Queue(EARLY_QUEUE)
            threading.Thread(
                target=self._early_loop, args=(q,), name="gateway-stats-early", daemon=True
            ).start()
        try:
            q.put_nowait(rec)
        except queue.Full:
            self.stats.early_skipped += 1

    def _early_loop(self, q: queue.Queue[CallRecord]) -> None:
        while True:
            batch = [q.get()]
            while len(batch) < 64:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            recs = [r for r in batch if r is not None]
            if recs:
                self.enrich(recs)
            if len(recs) < len(batch):
                return

    # ---------------------------------------------------------------------------- work
    def enrich(self, recs: Sequence[CallRecord]) -> None:
        """Set `language`/`topic` on records that have user text and were not enriched yet. Blocks."""
        if not self.enabled:
            return
        if not any(r.user_text and not r.extra.get("enriched") for r in recs):
            return
        t0 = time.perf_counter()
        with self._lock:  # also makes "enriched" exact when two threads (records, Athina) share a record
            todo = [r for r in recs if r.user_text and not r.extra.get("enriched")]
            if not todo:
                return
            texts = [r.user_text for r in todo]
            try:
                results, errors = self._run(texts)
            except _NotReady:
                results, errors = None, []
                self.stats.not_ready += len(todo)
                self._trouble("not_ready", "language/topic worker still loading its models; values left null")
            except _Slow:
                results, errors = None, []
                self.stats.timeouts += 1
                self._trouble("slow", f"language/topic worker gave no answer within {self.timeout}s; null")
            except Exception as exc:
                results, errors = None, []
                self._trouble("failure", f"language/topic worker failed ({exc}); values left null")
                self.stats.failures += 1
                self._stop_child(graceful=False)
            if results is not None:
                for rec, (lang, topic) in zip(todo, results, strict=True):
                    rec.language = lang
                    rec.topic = topic
                    rec.extra["enriched"] = True
        self.stats.seconds += time.perf_counter() - t0
        if errors:
            self.stats.classifier_errors += len(errors)
            self._trouble("classifier", f"topic_classifier raised ({errors[0]}); rules decided instead")
        if results is not None:
            self.stats.records += len(todo)

    def _run(self, texts: list[str | None]) -> tuple[list[tuple[str | None, str | None]], list[str]]:
        self._ensure()
        if self._engine is not None:
            return self._engine.run(texts)
        conn = self._conn
        assert conn is not None
        if not self._ready:
            if not conn.poll(self.ready_wait):
                raise _NotReady  # it keeps loading; the next batch asks again
            kind, payload = conn.recv()
            if kind != "ready":
                raise RuntimeError(payload)
            self._ready = True
        self._seq += 1
        seq = self._seq
        conn.send((seq, texts))
        now = time.monotonic()
        if not self._waiting_since:
            self._waiting_since = now
        deadline = now + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not conn.poll(left):
                if time.monotonic() - self._waiting_since > STUCK_AFTER:
                    raise TimeoutError(f"no answer for {STUCK_AFTER:.0f}s")  # replaced by the caller
                raise _Slow
            kind, got, payload = conn.recv()
            self._waiting_since = 0.0 if got == seq else time.monotonic()
            if got != seq:
                continue  # a late answer to a batch that already went on without it
            if kind != "ok":
                raise RuntimeError(payload)
            return payload
