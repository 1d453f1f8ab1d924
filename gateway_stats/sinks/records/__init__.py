"""The records sinks: one row per finished call, written off the request path to SQLite, PostgreSQL,
InfluxDB or JSON lines. The row contract itself (columns, types, schema version, migrations, reading
back, the report) lives in `gateway_stats.records`; this package only writes.

How it works (`writer.py`)
--------------------------
`RecordsSink` is the `Sink` the runtime fans records out to. Its `emit()` does no I/O and builds
nothing: it appends a `Pending` item to each configured store's bounded queue (a deque; full queue ->
the item is dropped and counted in `gateway_stats_records_dropped_total{sink,reason="queue_full"}`).
Each store has one `StoreWriter` thread that waits up to `flush_interval_ms` (or until `batch_size`
items are queued), prepares the rows and writes them in one batch/transaction. A failed write is
retried with exponential backoff (0.2 s doubling to 5 s) up to `max_retries` times, then the batch is
dropped (`reason="write_failed"`; a store answering "this will never work", like InfluxDB's 400, gives
`reason="rejected"`). So a store that is down or slow only ever costs its own queue, never traffic or
another store. `close()` (SIGTERM drain) flushes every queue within `drain_seconds`; what cannot be
written by then is counted as `reason="shutdown"`, and one log line per store states accepted,
written and dropped counts. Self-metrics: `gateway_stats_records_written_total{sink}`,
`gateway_stats_records_dropped_total{sink,reason}`, `gateway_stats_records_queue_depth{sink}`,
`gateway_stats_records_write_seconds{sink}`.

Extension points (for feedback, language and topic)
---------------------------------------------------
* **Enrichers** — `RecordsSink.add_enricher(fn)`, `fn(rec: CallRecord) -> None`. Enrichers run in a
  writer thread, once per call record (whichever store's thread gets to it first; the others reuse the
  row), in the order added, before the row is built: that is where language and topic detection set
  `rec.language` / `rec.topic` (and may read what the observer kept for them, e.g. a capped user text
  in `rec.extra`). An enricher that raises is logged once and skipped; the row is still written.
  Enrichers must be thread-safe if they keep state (several store threads may run them, one record
  each at a time). `add_batch_enricher(fn)`, `fn(recs: list[CallRecord])`, gets a whole batch's call
  records at once, before their rows are built (language/topic: one round trip to its worker process
  per batch instead of per record).
* **Row kinds** — rows are queued under a kind. `call` rows are built from a `CallRecord`
  (`records.row.call_row`). Another kind (e.g. `feedback`) is added by (1) a `schema.Table` with
  `kind="feedback"` registered in `records.schema.TABLES` plus a migration in `schema.MIGRATIONS` that
  creates it (SQLite/PostgreSQL then write it with no other change), (2) an InfluxDB mapping registered
  with `influxdb.register_point("feedback", "rate_analytics", fn)` where `fn(row) -> (tags, fields)`,
  and (3) producing rows with `RecordsSink.submit("feedback", row_dict)` — non-blocking, same queues,
  same drop accounting, same retries and drain. JSON lines write any kind as `{"kind": …, **row}`.
* **Stores** — a store is an object with `name`, `open()`, `write(kind, rows)`, `maintain()`,
  `close()` (see `writer.Store`); all its methods run in its own writer thread only.
"""
