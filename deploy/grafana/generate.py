"""Writes gateway-stats.json, the Grafana dashboard: `python deploy/grafana/generate.py`.

The panels are data here (title, unit, PromQL), so adding one is one line and every query stays in one
place; tests/deploy/test_deploy_dashboard_queries.py runs each query against a real Prometheus scraping a
real sidecar and Envoy after real traffic, and checks the JSON is this script's output.

Variables: $datasource; $job (the gateway-stats scrape job); $higress_job (the job whose Higress series
the top row reads: gateway-stats, or during a side-by-side migration the Higress gateway's own job);
$envoy_job (Envoy's stats, for the ext_proc fail-open counters); $route, $model, $consumer (regex filters).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

H = "route_upstream_model_consumer_metric_"
HSEL = '{job=~"$higress_job", ai_route=~"$route", ai_model=~"$model", ai_consumer=~"$consumer"}'
CSEL = '{job=~"$job", ai_route=~"$route", ai_model=~"$model", ai_consumer=~"$consumer"}'
ESEL = CSEL[:-1] + ', outcome="error"}'
GSEL = '{job=~"$job", ai_route=~"$route", gen_ai_request_model=~"$model", ai_consumer=~"$consumer"}'
JSEL = '{job=~"$job"}'
RI = "$__rate_interval"


def q(expr: str, legend: str = "") -> dict[str, str]:
    return {"expr": expr, "legend": legend}


def quantiles(metric: str, sel: str, by: str = "") -> list[dict[str, str]]:
    extra = f", {by}" if by else ""
    lg = f"{{{{{by}}}}} " if by else ""
    return [
        q(
            f"histogram_quantile({p}, sum by (le{extra}) (rate({metric}_bucket{sel}[{RI}])))",
            f"{lg}p{int(p * 100)}",
        )
        for p in (0.5, 0.95, 0.99)
    ]


# (row title, [(panel title, kind, unit, [queries], description)])
ROWS: list[tuple[str, list[tuple[str, str, str, list[dict[str, str]], str]]]] = [
    (
        "Higress AI overview (route_upstream_model_consumer_metric_*)",
        [
            (
                "Input tokens / s by model",
                "timeseries",
                "short",
                [q(f"sum by (ai_model) (rate({H}input_token{HSEL}[{RI}]))", "{{ai_model}}")],
                "The Higress ai-statistics counters: gateway-stats exports them byte for byte.",
            ),
            (
                "Output tokens / s by model",
                "timeseries",
                "short",
                [q(f"sum by (ai_model) (rate({H}output_token{HSEL}[{RI}]))", "{{ai_model}}")],
                "",
            ),
            (
                "Calls / s by route",
                "timeseries",
                "reqps",
                [q(f"sum by (ai_route) (rate({H}llm_duration_count{HSEL}[{RI}]))", "{{ai_route}}")],
                "",
            ),
            (
                "Failures / s by model",
                "timeseries",
                "reqps",
                [q(f"sum by (ai_model) (rate({H}llm_failure_count{HSEL}[{RI}]))", "{{ai_model}}")],
                "",
            ),
            (
                "Average LLM service duration by model",
                "timeseries",
                "ms",
                [
                    q(
                        f"sum by (ai_model) (rate({H}llm_service_duration{HSEL}[{RI}]))"
                        f" / sum by (ai_model) (rate({H}llm_duration_count{HSEL}[{RI}]))",
                        "{{ai_model}}",
                    )
                ],
                "Request headers to the end of the response, as Higress computes it (sum / count).",
            ),
            (
                "Average first token duration by model",
                "timeseries",
                "ms",
                [
                    q(
                        f"sum by (ai_model) (rate({H}llm_first_token_duration{HSEL}[{RI}]))"
                        f" / sum by (ai_model) (rate({H}llm_stream_duration_count{HSEL}[{RI}]))",
                        "{{ai_model}}",
                    )
                ],
                "Streams only.",
            ),
            (
                "Total tokens by consumer (time range)",
                "bargauge",
                "short",
                [q(f"sum by (ai_consumer) (increase({H}total_token{HSEL}[$__range]))", "{{ai_consumer}}")],
                "",
            ),
            (
                "Tokens by route, cluster and model (time range)",
                "table",
                "short",
                [q(f"sum by (ai_route, ai_cluster, ai_model) (increase({H}total_token{HSEL}[$__range]))")],
                "",
            ),
        ],
    ),
    (
        "Latency and time to first token (GenAI histograms)",
        [
            (
                "Call duration p50 / p95 / p99",
                "timeseries",
                "s",
                quantiles("gen_ai_client_operation_duration_seconds", GSEL),
                "gen_ai.client.operation.duration: request headers to the end of the response, every call.",
            ),
            (
                "Time to first token p50 / p95 / p99",
                "timeseries",
                "s",
                quantiles("gen_ai_client_operation_time_to_first_chunk_seconds", GSEL),
                "Streams: request headers to the first response body byte.",
            ),
            (
                "Call duration p95 by model",
                "timeseries",
                "s",
                [
                    q(
                        "histogram_quantile(0.95, sum by (le, gen_ai_request_model) "
                        f"(rate(gen_ai_client_operation_duration_seconds_bucket{GSEL}[{RI}])))",
                        "{{gen_ai_request_model}}",
                    )
                ],
                "",
            ),
            (
                "Time to first token p95 by model",
                "timeseries",
                "s",
                [
                    q(
                        "histogram_quantile(0.95, sum by (le, gen_ai_request_model) "
                        f"(rate(gen_ai_client_operation_time_to_first_chunk_seconds_bucket{GSEL}[{RI}])))",
                        "{{gen_ai_request_model}}",
                    )
                ],
                "",
            ),
            (
                "Time per output chunk p50 / p95",
                "timeseries",
                "s",
                quantiles("gen_ai_client_operation_time_per_output_chunk_seconds", GSEL)[:2],
                "Gap between consecutive stream events after the first.",
            ),
        ],
    ),
    (
        "Errors",
        [
            (
                "Share of calls by outcome",
                "timeseries",
                "percentunit",
                [
                    q(
                        f"sum by (outcome) (rate(gateway_stats_calls_total{CSEL}[{RI}]))"
                        f" / ignoring (outcome) group_left sum(rate(gateway_stats_calls_total{CSEL}[{RI}]))",
                        "{{outcome}}",
                    )
                ],
                "ok, error (status >= 400, an error in the body, no answer), aborted (cut without failing).",
            ),
            (
                "Calls / s by status class",
                "timeseries",
                "reqps",
                [
                    q(
                        f"sum by (status_class) (rate(gateway_stats_calls_total{CSEL}[{RI}]))",
                        "{{status_class}}",
                    )
                ],
                "none = no response status (upstream reset, client left first).",
            ),
            (
                "Error ratio by model",
                "timeseries",
                "percentunit",
                [
                    q(
                        f"sum by (ai_model) (rate(gateway_stats_calls_total{ESEL}[{RI}]))"
                        f" / sum by (ai_model) (rate(gateway_stats_calls_total{CSEL}[{RI}]))",
                        "{{ai_model}}",
                    )
                ],
                "",
            ),
            (
                "Errors by model and status class (time range)",
                "table",
                "short",
                [q(f"sum by (ai_model, status_class) (increase(gateway_stats_calls_total{ESEL}[$__range]))")],
                "",
            ),
        ],
    ),
    (
        "Tokens and cost",
        [
            (
                "Tokens / s by model and type",
                "timeseries",
                "short",
                [
                    q(
                        "sum by (gen_ai_response_model, gen_ai_token_type) "
                        f"(rate(gen_ai_client_token_usage_sum{GSEL}[{RI}]))",
                        "{{gen_ai_response_model}} {{gen_ai_token_type}}",
                    )
                ],
                "",
            ),
            (
                "Tokens by consumer and type (time range)",
                "bargauge",
                "short",
                [
                    q(
                        "sum by (ai_consumer, gen_ai_token_type) "
                        f"(increase(gen_ai_client_token_usage_sum{GSEL}[$__range]))",
                        "{{ai_consumer}} {{gen_ai_token_type}}",
                    )
                ],
                "",
            ),
            (
                "Cost per hour by model",
                "timeseries",
                "currencyUSD",
                [
                    q(
                        f"sum by (ai_model, currency) (rate(gateway_stats_cost_total{CSEL}[{RI}])) * 3600",
                        "{{ai_model}} ({{currency}})",
                    )
                ],
                "gateway_stats_cost_total, extrapolated to an hour.",
            ),
            (
                "Cost by consumer (time range)",
                "bargauge",
                "currencyUSD",
                [
                    q(
                        "sum by (ai_consumer, currency) "
                        f"(increase(gateway_stats_cost_total{CSEL}[$__range]))",
                        "{{ai_consumer}} ({{currency}})",
                    )
                ],
                "",
            ),
            (
                "Cost by model and consumer (time range)",
                "table",
                "currencyUSD",
                [
                    q(
                        "sum by (ai_model, ai_consumer, currency) "
                        f"(increase(gateway_stats_cost_total{CSEL}[$__range]))"
                    )
                ],
                "",
            ),
            (
                "Unpriced calls / s by model and reason",
                "timeseries",
                "reqps",
                [
                    q(
                        f'sum by (ai_model, reason) (rate(gateway_stats_unpriced_calls_total{{job=~"$job", '
                        f'ai_model=~"$model"}}[{RI}]))',
                        "{{ai_model}}: {{reason}}",
                    )
                ],
                "Calls whose cost is unknown (model without a price, no usage): not in the cost panels.",
            ),
        ],
    ),
    (
        "Call records",
        [
            (
                "Records queue depth",
                "timeseries",
                "short",
                [q(f"sum by (sink) (gateway_stats_records_queue_depth{JSEL})", "{{sink}}")],
                "",
            ),
            (
                "Records written / s",
                "timeseries",
                "ops",
                [q(f"sum by (sink) (rate(gateway_stats_records_written_total{JSEL}[{RI}]))", "{{sink}}")],
                "",
            ),
            (
                "Records dropped / s",
                "timeseries",
                "ops",
                [
                    q(
                        f"sum by (sink, reason) (rate(gateway_stats_records_dropped_total{JSEL}[{RI}]))",
                        "{{sink}}: {{reason}}",
                    )
                ],
                "",
            ),
            (
                "Record write time p95",
                "timeseries",
                "s",
                [
                    q(
                        "histogram_quantile(0.95, sum by (le, sink) "
                        f"(rate(gateway_stats_records_write_seconds_bucket{JSEL}[{RI}])))",
                        "{{sink}}",
                    )
                ],
                "",
            ),
        ],
    ),
    (
        "Sidecar health",
        [
            ("Sidecars up", "stat", "short", [q(f"sum(up{JSEL})")], ""),
            (
                "Active ext_proc streams",
                "timeseries",
                "short",
                [q(f"sum by (instance) (gateway_stats_active_streams{JSEL})", "{{instance}}")],
                "",
            ),
            (
                "Message handling time p99 by phase",
                "timeseries",
                "s",
                [
                    q(
                        "histogram_quantile(0.99, sum by (le, phase) "
                        f"(rate(gateway_stats_message_handling_seconds_bucket{JSEL}[{RI}])))",
                        "{{phase}}",
                    )
                ],
                "Time gateway-stats spends on one ext_proc message, analysis included.",
            ),
            (
                "Messages / s by phase",
                "timeseries",
                "ops",
                [q(f"sum by (phase) (rate(gateway_stats_messages_total{JSEL}[{RI}]))", "{{phase}}")],
                "",
            ),
            (
                "Internal errors / s by phase",
                "timeseries",
                "ops",
                [q(f"sum by (phase) (rate(gateway_stats_errors_total{JSEL}[{RI}]))", "{{phase}}")],
                "Exceptions caught (traffic is never affected).",
            ),
            (
                "Streams / s by end",
                "timeseries",
                "ops",
                [q(f"sum by (end) (rate(gateway_stats_streams_total{JSEL}[{RI}]))", "{{end}}")],
                "",
            ),
            (
                "Config reloads (time range)",
                "stat",
                "short",
                [
                    q(
                        f"sum by (result) (increase(gateway_stats_config_reloads_total{JSEL}[$__range]))",
                        "{{result}}",
                    )
                ],
                "failed: a new config was rejected; the last good one stays in force.",
            ),
            (
                "Series held per family",
                "timeseries",
                "short",
                [q(f"max by (family) (gateway_stats_metric_series{JSEL})", "{{family}}")],
                "Against max_series_per_metric (default 2000): at the cap, new label sets fold into "
                "__overflow__.",
            ),
            (
                "Envoy ext_proc fail-open / s",
                "timeseries",
                "ops",
                [
                    q(
                        'sum by (instance) (rate(envoy_http_ext_proc_failure_mode_allowed{job=~"$envoy_job"}'
                        f"[{RI}]))",
                        "{{instance}}",
                    )
                ],
                "Calls Envoy passed without gateway-stats (down, overloaded, timed out): unobserved.",
            ),
        ],
    ),
]


def panel(
    pid: int, title: str, kind: str, unit: str, queries: list[dict[str, str]], desc: str, pos: dict[str, int]
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": pos,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": t["expr"],
                "legendFormat": t["legend"] or "__auto",
                **({"format": "table", "instant": True} if kind == "table" else {}),
                **({"instant": True} if kind in ("bargauge", "stat") else {}),
            }
            for i, t in enumerate(queries)
        ],
    }
    if kind == "timeseries":
        p["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        }
    return p


def variable(name: str, label: str, query: str, *, regex_all: bool) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": regex_all,
        "multi": regex_all,
        **({"allValue": ".*"} if regex_all else {}),
        "current": {"text": "All", "value": "$__all"} if regex_all else {},
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y = pid + 1, y + 1
        for i, (title, kind, unit, queries, desc) in enumerate(row_panels):
            pos = {"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 8}
            panels.append(panel(pid, title, kind, unit, queries, desc, pos))
            pid += 1
        y += ((len(row_panels) + 2) // 3) * 8
    return {
        "uid": "gateway-stats",
        "title": "gateway-stats: LLM calls through Envoy",
        "description": "Higress AI panels on route_upstream_model_consumer_metric_*, GenAI latency and "
        "time to first token, errors, tokens and cost, call records, and the sidecar's own health.",
        "tags": ["gateway-stats", "llm", "envoy", "higress"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "links": [],
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "refresh": 1,
                },
                variable(
                    "job",
                    "gateway-stats job",
                    "label_values(gateway_stats_calls_total, job)",
                    regex_all=False,
                ),
                variable(
                    "higress_job",
                    "Higress series from",
                    f"label_values({H}llm_duration_count, job)",
                    regex_all=False,
                ),
                variable(
                    "envoy_job",
                    "Envoy stats job",
                    "label_values(envoy_http_ext_proc_streams_started, job)",
                    regex_all=True,
                ),
                variable(
                    "route", "Route", "label_values(gateway_stats_calls_total, ai_route)", regex_all=True
                ),
                variable(
                    "model", "Model", "label_values(gateway_stats_calls_total, ai_model)", regex_all=True
                ),
                variable(
                    "consumer",
                    "Consumer",
                    "label_values(gateway_stats_calls_total, ai_consumer)",
                    regex_all=True,
                ),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("gateway-stats.json")
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if out.read_text() == text else 1)
    out.write_text(text)
    print(f"wrote {out}")
