"""Sinks: everything fed from a finished `CallRecord`.

`base.py` holds the sink interface and the fan-out (one failing sink never affects another or the
traffic); then one module per sink: `ai_log.py` (the Envoy dynamic-metadata document and the
observe-mode line file), `metrics.py` (Prometheus families), `tracing.py` (GenAI spans, with
`span_content.py` and `span_tags.py` beside it), and `records/` (analytics rows to SQLite, PostgreSQL,
InfluxDB and JSON lines: one bounded queue and writer thread per store). Cost and feedback land here too.

May import `gateway_stats.core`, `gateway_stats.config` and the libraries a sink is made of
(prometheus_client, opentelemetry); never the gRPC adapter in `gateway_stats.envoy`.
"""
