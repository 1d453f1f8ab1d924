"""Metric label values come from outside (model names, consumer and extra-label headers, attributes):
each is sanitised (no control characters), escaped and capped, and the exposition stays parseable."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from gateway_stats.config import parse_text
from gateway_stats.config.store import ConfigStore
from gateway_stats.core.observer import CallObserver
from gateway_stats.sinks.metrics import MetricsSink

MS = 1_000_000
NASTY = 'a\r\nb\x00c\x1b[31md\\e"f\u2028g' + "é" * 5000


def test_hostile_label_values_are_sanitised_capped_and_parseable() -> None:
    cfg = parse_text(
        "attributes:\n- {key: tag, value_source: request_header, value: x-tag}\n"
        "gateway_stats:\n  metrics:\n    max_label_value_length: 64\n"
        "    extra_labels: [{name: client, request_header: x-client}, {name: tag, attribute: tag}]\n"
    )
    obs = CallObserver(cfg)
    hdrs = {":method": "POST", ":path": "/v1/chat/completions", "x-client": NASTY, "x-tag": NASTY}
    hdrs["x-mse-consumer"] = NASTY
    obs.on_request_headers(hdrs, {"xds.route_name": NASTY}, False, MS)
    obs.on_request_body(json.dumps({"model": NASTY}).encode(), True, 2 * MS)
    obs.on_response_headers({":status": "200", "content-type": "application/json"}, {}, False, 3 * MS)
    body = {"model": NASTY, "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    obs.on_response_body(json.dumps(body).encode(), True, 4 * MS)
    rec = obs.finish(5 * MS)
    caps: list[str] = []
    sink = MetricsSink(ConfigStore(None), on_cap=caps.append)
    sink.store.current = cfg
    sink.emit(rec, obs.ai_log())
    text = sink.render()
    families = list(text_string_to_metric_families(text))
    values = [v for f in families for s in f.samples for v in s.labels.values()]
    assert values and all(len(v) <= 64 for v in values)
    assert all(v.replace("\n", "").isprintable() for v in values)
    assert any(v.startswith('a_\nb_c_[31md\\e"f_g') for v in values)
    assert "metric_label_value" in caps
    for line in text.splitlines():
        assert "\r" not in line and "\x00" not in line
