"""One bounded queue and one writer thread per store; batching, retry with backoff, counted drops."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway_stats.core.record import CallRecord
from gateway_stats.records.config import RecordsConfig
from gateway_stats.records.row import call_row

log = logging.getLogger(__name__)

DROP_REASONS = ("queue_full", "write_failed", "rejected", "shutdown", "invalid")
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0
MAINTAIN_EVERY = 3600.0
# Rows prepared between two GIL hand-overs: the event loop (serving Envoy) waits at most for this many
# rows' Python work (about 5 us each) instead of the interpreter's 5 ms switch interval.
YIELD_EVERY = 16

Enricher = Callable[[CallRecord], None]
BatchEnricher = Callable[[list[CallRecord]], None]


class Rejected(Exception):
    """A store refused a batch for good (e.g. HTTP 400): retrying cannot help, the batch is dropped."""


class Store(Protocol):
    name: str  # the `sink` label: sqlite, postgres, influxdb, jsonl

    def open(self) -> None:
        """Connect, create/migrate the schema. Raises on failure (the writer retries)."""

    def write(self, kind: str, rows: list[dict[str, Any]]) -> None:
        """Write one batch of rows of one kind, atomically where the store allows. Raises on failure."""

    def maintain(self) -> None:
        """Periodic housekeeping (retention). Called after open and then hourly."""

    def close(self) -> None:
        """Release connections/files. Also called after a failure, before the next open()."""


class RecordsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dropped = Counter(
            "gateway_stats_records_dropped",
            "records not written, by store and reason "
            "(queue_full, write_failed, rejected, shutdown, invalid)",
            ["sink", "reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "gateway_stats_records_queue_depth",
            "records waiting in a store's queue",
            ["sink"],
            registry=registry,
        )
        self.written = Counter(
            "gateway_stats_records_written", "records written, by store", ["sink"], registry=registry
        )
        self.write_seconds = Histogram(
            "gateway_stats_records_write_seconds",
            "time to write one batch to a store (successful attempts)",
            ["sink"],
            buckets=WRITE_BUCKETS,
            registry=registry,
        )


class Pending:
    """One queued row: a call record (row built later, in a writer thread) or an already-built row."""

    __slots__ = ("kind", "rec", "row")

    def __init__(self, kind: str, rec: CallRecord | None = None, row: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.rec = rec
        self.row = row


class StoreWriter:
    def __init__(
        self,
        store: Store,
        cfg: RecordsConfig,
        metrics: RecordsMetrics,
        prepare: Callable[[Pending], dict[str, Any]],
        before: Callable[[list[Pending]], None] | None = None,
    ) -> None:
        self.store = store
        self.name = store.name
        self.max = cfg.queue_size
        self.batch_size = cfg.batch_size
        self.interval = cfg.flush_interval_ms / 1000.0
        self.max_retries = cfg.max_retries
        self._prepare = prepare
        self._before = before  # once per batch, before its rows are prepared (batch enrichers)
        self.queue: deque[Pending] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._deadline = float("inf")
        self._opened = False
        self._failing = 0  # consecutive failed attempts
        self.accepted = 0
        self.written = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._m_dropped = {r: metrics.dropped.labels(self.name, r) for r in DROP_REASONS}
        self._m_written = metrics.written.labels(self.name)
        self._m_seconds = metrics.write_seconds.labels(self.name)
        metrics.queue_depth.labels(self.name).set_function(lambda: len(self.queue))
        self.thread = threading.Thread(target=self._run, name=f"records-{self.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    # ---------------------------------------------------------------- request path (event loop)
    def offer(self, item: Pending) -> bool:
        """Non-blocking: queue the item, or drop and count it when the queue is full or closed."""
        q = self.queue
        if len(q) >= self.max or self._stopping:
            self._drop("queue_full" if not self._stopping else "shutdown", 1)
            return False
        q.append(item)
        self.accepted += 1
        if len(q) >= self.batch_size:
            self._wake.set()
        return True

    def _drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] += n
            self._m_dropped[reason].inc(n)

    # ------------------------------------------------------------------------- writer thread
    def _run(self) -> None:
        next_maintenance = 0.0
        try:
            while True:
                if not self._stopping and len(self.queue) < self.batch_size:
                    self._wake.wait(self.interval)
                    self._wake.clear()
                if not self.queue:
                    if self._stopping:
                        break
                    if self._opened and time.monotonic() >= next_maintenance:
                        next_maintenance = time.monotonic() + MAINTAIN_EVERY
                        self._maintain()
                    continue
                if self._stopping and time.monotonic() >= self._deadline:
                    n = len(self.queue)
                    self.queue.clear()
                    self._drop("shutdown", n)
                    break
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), self.batch_size))]
                self._write(batch)
        except Exception:  # never let the thread die silently
            log.exception("records %s: writer thread crashed; further rows are dropped", self.name)
        finally:
            self._close_store()

    def _maintain(self) -> None:
        try:
            self.store.maintain()
        except Exception as exc:
            log.warning("records %s: maintenance (retention) failed: %s", self.name, exc)

    def _rows(self, batch: list[Pending]) -> dict[str, list[dict[str, Any]]]:
        if self._before is not None:
            self._before(batch)
        groups: dict[str, list[dict[str, Any]]] = {}
        bad = 0
        for i, item in enumerate(batch):
            if i and not i % YIELD_EVERY:
                time.sleep(0)  # let the event loop thread take the GIL: it never waits long on us
            try:
                row = self._prepare(item)
            except Exception:
                bad += 1
                if not self.dropped["invalid"]:
                    log.exception("records %s: could not build a row (counted, reason=invalid)", self.name)
                continue
            groups.setdefault(item.kind, []).append(row)
        self._drop("invalid", bad)
        return groups

    def _write(self, batch: list[Pending]) -> None:
        for kind, rows in self._rows(batch).items():
            self._write_rows(kind, rows)

    def _write_rows(self, kind: str, rows: list[dict[str, Any]]) -> None:
        backoff = BACKOFF_START
        attempts = 0
        while True:
            try:
                if not self._opened:
                    self.store.open()
                    self._opened = True
                t0 = time.perf_counter()
                self.store.write(kind, rows)
                self._m_seconds.observe(time.perf_counter() - t0)
            except Rejected as exc:
                log.error("records %s: %d %s rows rejected, dropped: %s", self.name, len(rows), kind, exc)
                self._drop("rejected", len(rows))
                return
            except Exception as exc:
                attempts += 1
                self._failing += 1
                if self._failing == 1:
                    log.warning(
                        "records %s: write failed (%s: %s); retrying with backoff, queue holds up to %d rows "
                        "(beyond: dropped, gateway_stats_records_dropped_total)",
                        self.name,
                        type(exc).__name__,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                        self.max,
                    )
                self._close_store()
                now = time.monotonic()
                if self._stopping and now >= self._deadline:
                    self._drop("shutdown", len(rows))
                    return
                if attempts > self.max_retries:
                    self._drop("write_failed", len(rows))
                    log.debug("records %s: %d rows dropped after %d attempts", self.name, len(rows), attempts)
                    return
                time.sleep(max(0.0, min(backoff, self._deadline - now)))
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if self._failing:
                log.warning("records %s: writing again after %d failed attempts", self.name, self._failing)
                self._failing = 0
            self.written += len(rows)
            self._m_written.inc(len(rows))
            return

    def _close_store(self) -> None:
        if self._opened:
            self._opened = False
            try:
                self.store.close()
            except Exception:
                log.debug("records %s: close failed", self.name, exc_info=True)

    # ------------------------------------------------------------------------------- shutdown
    def stop(self, seconds: float) -> None:
        """Stop taking rows and let the thread flush what is queued for up to `seconds`."""
        self._deadline = time.monotonic() + seconds
        self._stopping = True
        self._wake.set()

    def join(self, seconds: float) -> None:
        self.thread.join(seconds)
        if self.thread.is_alive():
            log.error(
                "records %s: writer still busy after the drain deadline; %d rows left",
                self.name,
                len(self.queue),
            )
        dropped = ", ".join(f"{r} {n}" for r, n in self.dropped.items() if n) or "0"
        log.info(
            "records %s: %d accepted, %d written, dropped: %s",
            self.name,
            self.accepted,
            self.written,
            dropped,
        )


def build_stores(cfg: RecordsConfig) -> list[Store]:
    """The configured stores (each module imported only when used: psycopg only for PostgreSQL)."""
    stores: list[Store] = []
    if cfg.sqlite is not None:
        from gateway_stats.sinks.records.sqlite import SqliteWriterStore

        stores.append(SqliteWriterStore(cfg.sqlite))
    if cfg.postgres is not None:
        from gateway_stats.sinks.records.postgres import PostgresWriterStore

        stores.append(PostgresWriterStore(cfg.postgres))
    if cfg.influxdb is not None:
        from gateway_stats.sinks.records.influxdb import InfluxWriterStore

        stores.append(InfluxWriterStore(cfg.influxdb))
    if cfg.jsonl is not None:
        from gateway_stats.sinks.records.jsonl import JsonlWriterStore

        stores.append(JsonlWriterStore(cfg.jsonl))
    return stores


class RecordsSink:
    """The Sink: queues each finished, observed call record for every configured store."""

    def __init__(
        self, cfg: RecordsConfig, metrics: RecordsMetrics, stores: list[Store] | None = None
    ) -> None:
        self.config = cfg
        self.enrichers: list[Enricher] = []
        self.batch_enrichers: list[BatchEnricher] = []
        self._lock = threading.Lock()
        self._enrich_warned: set[str] = set()
        self.writers = [
            StoreWriter(s, cfg, metrics, self._prepare, self._enrich_batch)
            for s in (build_stores(cfg) if stores is None else stores)
        ]
        for w in self.writers:
            w.start()

    def add_enricher(self, fn: Enricher) -> None:
        self.enrichers.append(fn)

    def add_batch_enricher(self, fn: BatchEnricher) -> None:
        """Like an enricher, but given every call record of a batch at once, before their rows are built
        (for work that is cheaper in bulk, e.g. one round trip to a worker process per batch). It may
        see a record again (another store's thread) and must then leave it as it is."""
        self.batch_enrichers.append(fn)

    def _enrich_batch(self, batch: list[Pending]) -> None:
        if not self.batch_enrichers:
            return
        recs = [item.rec for item in batch if item.row is None and item.rec is not None]
        if not recs:
            return
        for fn in self.batch_enrichers:
            try:
                fn(recs)
            except Exception:
                name = getattr(fn, "__qualname__", repr(fn))
                if name not in self._enrich_warned:
                    self._enrich_warned.add(name)
                    log.exception("records: batch enricher %s failed (rows written without it)", name)

    def emit(self, rec: CallRecord, ai_log: dict[str, Any]) -> None:
        if not rec.observed:
            return
        item = Pending("call", rec)
        for w in self.writers:
            w.offer(item)

    def submit(self, kind: str, row: dict[str, Any]) -> bool:
        """Queue an already-built row of another kind (e.g. feedback). Non-blocking; True if every
        store accepted it."""
        item = Pending(kind, row=row)
        ok = True
        for w in self.writers:
            ok = w.offer(item) and ok
        return ok

    def _prepare(self, item: Pending) -> dict[str, Any]:
        """The item's row, built once for all stores: enrichers, then the row (writer threads only)."""
        if item.row is not None:
            return item.row
        with self._lock:
            if item.row is None:
                rec = item.rec
                assert rec is not None
                for fn in self.enrichers:
                    try:
                        fn(rec)
                    except Exception:
                        name = getattr(fn, "__qualname__", repr(fn))
                        if name not in self._enrich_warned:
                            self._enrich_warned.add(name)
                            log.exception("records: enricher %s failed (row written without it)", name)
                item.row = call_row(rec)
                item.rec = None  # the row is all we need now
        return item.row

    def close(self) -> None:
        """Flush every queue (SIGTERM drain), within `drain_seconds` overall."""
        seconds = self.config.drain_seconds
        for w in self.writers:
            w.stop(seconds)
        deadline = time.monotonic() + seconds + 2.0
        for w in self.writers:
            w.join(max(0.1, deadline - time.monotonic()))
