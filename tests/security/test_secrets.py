"""Secrets never leave the sidecar: credential headers, key-like body fields and key-like query
parameters are redacted from every output — ai_log, spans (content included), the record, metrics
and log lines at every level — unless the config names that header or field itself."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway_stats.config import parse_text
from gateway_stats.config.store import ConfigStore
from gateway_stats.core import ai_log as ailog
from gateway_stats.core.observer import CallObserver
from gateway_stats.core.redact import REDACTED, RedactingFilter, redact, scrub_text
from gateway_stats.sinks.metrics import MetricsSink
from gateway_stats.sinks.tracing import TracingSink

MS = 1_000_000
HEADER_SECRETS = {
    "authorization": "Bearer sk-hdr-authorization-0000000001",
    "proxy-authorization": "Basic cHJveHk6c2VjcmV0LWhkci0wMDAy",
    "cookie": "session=secret-hdr-cookie-0003; theme=dark",
    "x-api-key": "secret-hdr-xapikey-0004",
    "api-key": "secret-hdr-apikey-0005",
    "x-goog-api-key": "AIzaSecretHdrGoog00000000000000000006",
}
BODY = {
    "model": "gpt-4o-mini",
    "api_key": "secret-body-apikey-0101",
    "metadata": {
        "user": "u-1",
        "password": "secret-body-password-0102",
        "client_secret": "secret-body-cs-0103",
    },
    "messages": [
        {"role": "system", "content": "be nice", "authorization": "secret-body-msgauth-0104"},
        {"role": "user", "content": "hello", "extra": {"access_token": "secret-body-token-0105"}},
    ],
    "user": "end-user-7",
}
EXPLICIT = "secret-body-password-0102"  # named by the config itself (attribute `explicit`)
CONFIG = """
use_default_attributes: true
attributes:
  - {key: meta, value_source: request_body, value: metadata, apply_to_log: true, apply_to_span: true}
  - {key: whole, value_source: request_body, value: '@this', apply_to_log: true, apply_to_span: true}
  - {key: jp, value_source: request_body, value: '$.messages', apply_to_log: true}
  - {key: explicit, value_source: request_body, value: metadata.password, apply_to_log: true}
  - {key: ua, value_source: request_header, value: user-agent, apply_to_log: true, apply_to_span: true}
gateway_stats:
  metrics: {extra_labels: [{name: client, request_header: x-client-name}, {name: meta, attribute: meta}]}
  tracing: {enabled: true, capture_content: true}
"""
ALL_SECRETS = [
    *(v.split(" ", 1)[-1].split(";")[0].split("=", 1)[-1] for v in HEADER_SECRETS.values()),
    "secret-body-apikey-0101",
    "secret-body-cs-0103",
    "secret-body-msgauth-0104",
    "secret-body-token-0105",
    "AIzaSecretQueryKey000000000000000000007",
    "sk-upstream-echoed-key-000000000008",
]


def _call(cfg: Any, stream: bool) -> CallObserver:
    obs = CallObserver(cfg)
    path = "/v1beta/models/gemini-x:streamGenerateContent?alt=sse&key=AIzaSecretQueryKey000000000000000000007"
    if not stream:
        path = "/v1/chat/completions?api_key=AIzaSecretQueryKey000000000000000000007"
    hdrs = {":method": "POST", ":path": path, ":authority": "h", "user-agent": "ua/1", "x-client-name": "c1"}
    obs.on_request_headers({**hdrs, **HEADER_SECRETS}, {"request.id": "r1"}, False, MS)
    obs.on_request_body(json.dumps(BODY).encode(), True, 2 * MS)
    rh = {":status": "401", "content-type": "application/json", "set-cookie": "sid=secret-hdr-setcookie-0009"}
    obs.on_response_headers(rh, {}, False, 3 * MS)
    err = {
        "error": {
            "type": "invalid_api_key",
            "message": "Incorrect API key: sk-upstream-echoed-key-000000000008",
        }
    }
    obs.on_response_body(orjson.dumps(err), True, 4 * MS)
    obs.finish(5 * MS)
    return obs


@pytest.mark.parametrize("stream", [False, True])
def test_no_secret_reaches_any_output(stream: bool, caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_text(CONFIG)
    caplog.set_level(logging.DEBUG)
    for h in logging.getLogger().handlers:
        h.addFilter(RedactingFilter())
    obs = _call(cfg, stream)
    rec = obs.record
    logging.getLogger("gateway_stats.test").debug("headers seen: %s", HEADER_SECRETS)
    logging.getLogger("gateway_stats.test").debug("body: %s", json.dumps(BODY))

    outputs: dict[str, str] = {}
    doc = obs.ai_log()
    outputs["ai_log"] = ailog.escaped(doc)
    d = dataclasses.asdict(rec)
    d.pop("chunk_gaps", None)
    outputs["record"] = orjson.dumps(d, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    exporter = InMemorySpanExporter()
    tracing = TracingSink(cfg.extensions.tracing, exporters=[exporter])
    tracing.emit(rec, doc)
    tracing.provider.force_flush()
    outputs["span"] = json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()])
    tracing.close()
    metrics = MetricsSink(ConfigStore(None))
    metrics.store.current = cfg
    metrics.emit(rec, doc)
    outputs["metrics"] = metrics.render()
    outputs["logs"] = "\n".join(r.getMessage() for r in caplog.records)

    for where, text in outputs.items():
        for secret in ALL_SECRETS:
            assert secret not in text, f"{secret!r} leaked into {where}"
        if where != "ai_log" and where != "record":
            assert EXPLICIT not in text or where == "span", where
    # What the config names itself is output, and only there.
    assert rec.attributes["explicit"] == EXPLICIT
    assert rec.attributes["meta"] == {"user": "u-1", "password": REDACTED, "client_secret": REDACTED}
    assert rec.attributes["whole"]["api_key"] == REDACTED
    assert REDACTED in outputs["span"] and "be nice" in outputs["span"]  # content kept, secrets not
    assert "key=[REDACTED]" in rec.path or "api_key=[REDACTED]" in rec.path
    assert "Incorrect API key: [REDACTED]" in (rec.error_message or "")


def test_explicit_header_attribute_is_output() -> None:
    cfg = parse_text(
        "attributes:\n- {key: k, value_source: request_header, value: x-api-key, apply_to_log: true}\n"
    )
    obs = _call(cfg, False)
    assert obs.record.attributes["k"] == HEADER_SECRETS["x-api-key"]


def test_counts_are_not_secrets() -> None:
    doc = {"max_tokens": 1, "input_token": 2, "usage": {"total_tokens": 3}, "tokenizer": "x", "keyword": "k"}
    assert redact(doc) is doc


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Authorization: Bearer abcdefgh12345678", "Authorization: "),
        ("{'x-api-key': 'k-123'}", "'x-api-key': '"),
        ("Cookie: a=1; b=2", "Cookie: "),
        ("url ?api_key=xyz&b=1", "api_key="),
        ("password=hunter2", "password="),
        ("key sk-proj-0123456789abcdefghij", "key "),
    ],
)
def test_log_scrubbing(text: str, kept: str) -> None:
    out = scrub_text(text)
    assert REDACTED in out and kept in out
    for secret in ("abcdefgh12345678", "k-123", "a=1", "b=2", "xyz", "hunter2", "0123456789abcdefghij"):
        assert secret not in out


def test_log_filter_scrubs_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("gateway_stats.test.tb")
    f = RedactingFilter()
    try:
        raise ValueError("bad header authorization: Bearer sk-traceback-000000000000000001")
    except ValueError:
        rec = log.makeRecord(log.name, logging.ERROR, __file__, 1, "failed: %s", ("x-api-key=abc123",), None)
        import sys

        rec.exc_info = sys.exc_info()
    f.filter(rec)
    text = logging.Formatter().format(rec)
    assert "sk-traceback" not in text and "abc123" not in text and REDACTED in text
