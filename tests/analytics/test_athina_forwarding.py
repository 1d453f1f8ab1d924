"""Athina forwarding: the inference-log body field by field, received by a local HTTP server of the
test's own; feedback as Athina's user-feedback update; retries with backoff; a full queue drops."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from driver import run_call, sse

from gateway_stats.analytics.enricher import Enricher
from gateway_stats.analytics.joins import RecentCalls
from gateway_stats.config import parse_config
from gateway_stats.config.analytics import AthinaSettings
from gateway_stats.core.capture import user_hash
from gateway_stats.core.feedback import Feedback
from gateway_stats.sinks.athina import AthinaSink, feedback_body, inference_body

KEY = "athina-key-0123456789"
USER_KEY = "u" * 32


class Receiver:
    """Records every request; answers `fail_first` requests with 503, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.event = threading.Event()
        outer = self

        class H(BaseHTTPRequestHandler):
            def _any(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(n)
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(body),
                    }
                )
                status = 503 if len(outer.requests) <= outer.fail_first else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                outer.event.set()

            do_POST = do_PATCH = _any

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.requests) >= n, self.requests
        return self.requests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def config(url: str, monkeypatch: pytest.MonkeyPatch, **athina: Any) -> Any:
    monkeypatch.setenv("GS_ATHINA_KEY", KEY)
    monkeypatch.setenv("GS_USER_KEY", USER_KEY)
    return parse_config(
        {
            "gateway_stats": {
                "analytics": {
                    "topics": {"weather": ["rain", "weather"]},
                    "user": {"key_env": "GS_USER_KEY"},
                    "segmentation": {
                        "prompt_slug": "x-prompt",
                        "environment": "x-env",
                        "customer_id": "x-tenant",
                    },
                },
                "athina": {"url": url + "/api/v1/log/inference", "api_key_env": "GS_ATHINA_KEY", **athina},
            }
        }
    )


REQUEST = {
    "model": "gpt-4o",
    "stream": True,
    "temperature": 0.2,
    "max_tokens": 50,
    "stop": ["\n\n"],
    "user": "alice@example.com",
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Will it rain in Paris tomorrow?"},
    ],
}
STREAM = sse(
    {"id": "chatcmpl-9", "model": "gpt-4o-2024", "choices": [{"index": 0, "delta": {"content": "Prob"}}]},
    {
        "id": "chatcmpl-9",
        "model": "gpt-4o-2024",
        "choices": [{"index": 0, "delta": {"content": "ably."}, "finish_reason": "stop"}],
    },
    {
        "id": "chatcmpl-9",
        "model": "gpt-4o-2024",
        "choices": [],
        "usage": {"prompt_tokens": 21, "completion_tokens": 2, "total_tokens": 23},
    },
    b"[DONE]",
)
HEADERS = {
    "x-prompt": "weather-v3",
    "x-env": "staging",
    "x-tenant": "acme",
    "x-session-id": "s-1",
    "x-mse-consumer": "team-a",
}


def the_call(cfg: Any) -> Any:
    call = run_call(
        cfg,
        request=REQUEST,
        response=STREAM,
        content_type="text/event-stream",
        req_headers=HEADERS,
        route="chat",
    )
    call.rec.cost, call.rec.cost_currency = Decimal("0.000123"), "USD"
    call.rec.session_id = "s-1"
    return call


def test_inference_body_field_by_field(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(receiver.url, monkeypatch)
    an = cfg.extensions.analytics
    call = the_call(cfg)
    sink = AthinaSink(an.athina, Enricher(an, process=False), RecentCalls())
    sink.emit(call.rec, call.log)
    req = receiver.wait(1)[0]
    sink.close()
    assert req["method"] == "POST" and req["path"] == "/api/v1/log/inference"
    assert req["headers"]["athina-api-key"] == KEY
    assert req["headers"]["content-type"] == "application/json"
    b = req["body"]
    assert b.pop("language_model_id") == "gpt-4o-2024"
    assert b.pop("prompt") == REQUEST["messages"]
    assert b.pop("response") == "Probably."
    assert b.pop("user_query") == "Will it rain in Paris tomorrow?"
    assert b.pop("response_time") == call.rec.service_duration_ms == 20
    assert b.pop("status_code") == 200
    assert (b.pop("prompt_tokens"), b.pop("completion_tokens"), b.pop("total_tokens")) == (21, 2, 23)
    assert b.pop("cost") == 0.000123
    assert b.pop("prompt_slug") == "weather-v3"
    assert b.pop("environment") == "staging"
    assert b.pop("customer_id") == "acme"
    uh = user_hash(USER_KEY.encode(), "alice@example.com")
    assert b.pop("customer_user_id") == uh  # hashed: no raw user id leaves
    assert b.pop("session_id") == "s-1"
    assert b.pop("external_reference_id") == "req-1"  # Envoy's request id: feedback names the call by it
    assert b.pop("model_options") == {"temperature": 0.2, "max_tokens": 50, "stop": ["\n\n"]}
    assert b.pop("tools") == REQUEST["tools"]
    assert b.pop("custom_attributes") == {
        "request_id": "req-1",
        "route": "chat",
        "cluster": "cluster-1",
        "provider": "openai",
        "operation": "chat",
        "consumer": "team-a",
        "stream": True,
        "response_id": "chatcmpl-9",
        "user_hash": uh,
        "topic": "weather",  # computed off the request path, before sending
        "outcome": "ok",
        "currency": "USD",
    }
    assert b == {}  # nothing else (no error on success, no tool_calls without tool calls)
    assert "alice" not in json.dumps(req)


def test_without_content_and_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config("http://127.0.0.1:9", monkeypatch, include_content=False)
    call = the_call(cfg)
    b = inference_body(call.rec, cfg.extensions.analytics.athina)
    assert not {"prompt", "response", "user_query", "tools", "tool_calls"} & set(b)
    err = run_call(
        cfg,
        request={"model": "gpt-4o", "messages": []},
        status=429,
        response=b'{"error":{"message":"slow down","type":"rate_limit"}}',
    )
    b = inference_body(err.rec, cfg.extensions.analytics.athina)
    assert (
        b["status_code"] == 429 and b["error"] == "slow down" and b["custom_attributes"]["outcome"] == "error"
    )


def test_feedback_update(receiver: Receiver) -> None:
    s = AthinaSettings(
        url=receiver.url + "/log", feedback_url=receiver.url + "/api/v1/prompt_run/user-feedback", api_key=KEY
    )
    sink = AthinaSink(s)
    sink.feedback(
        Feedback("api", external_reference_id="ref-1", rating=-1, comment="wrong city", grader_feedback=1)
    )
    sink.feedback(Feedback("api", response_id="unknown"))  # no reference: Athina cannot be told
    req = receiver.wait(1)[0]
    sink.close()
    assert req["method"] == "PATCH" and req["path"] == "/api/v1/prompt_run/user-feedback"
    assert req["headers"]["athina-api-key"] == KEY
    assert req["body"] == {
        "external_reference_id": "ref-1",
        "user_feedback": -1,
        "user_feedback_comment": "wrong city",
        "grader_feedback": 1,
    }
    assert sink.counts == {("feedback", "sent"): 1, ("feedback", "unjoined"): 1}
    assert feedback_body(Feedback("api", external_reference_id="r", rating=1)) == {
        "external_reference_id": "r",
        "user_feedback": 1,
    }


def test_retries_with_backoff() -> None:
    r = Receiver(fail_first=2)
    sleeps: list[float] = []
    sink = AthinaSink(AthinaSettings(url=r.url + "/log", api_key=KEY, max_attempts=4), sleep=sleeps.append)
    call = run_call(
        request={"model": "m", "messages": []}, response=b'{"model":"m","usage":{"prompt_tokens":1}}'
    )
    sink.emit(call.rec, call.log)
    r.wait(3)
    sink.close()
    assert sleeps == [0.25, 0.5] and sink.counts == {("log", "sent"): 1}
    r2 = Receiver(fail_first=100)
    sink = AthinaSink(AthinaSettings(url=r2.url + "/log", api_key=KEY, max_attempts=3), sleep=lambda s: None)
    sink.emit(call.rec, call.log)
    r2.wait(3)
    sink.close()
    assert sink.counts == {("log", "failed"): 1}
    r.server.shutdown()
    r2.server.shutdown()


def test_never_blocks_a_full_queue_drops() -> None:
    gate = threading.Event()
    sink = AthinaSink(
        AthinaSettings(url="http://127.0.0.1:9/log", api_key=KEY, queue_size=3, max_attempts=1),
        sleep=lambda s: None,
    )
    sink._send_batch = lambda items: gate.wait(5)  # type: ignore[method-assign]  # a stuck receiver
    call = run_call(
        request={"model": "m", "messages": []}, response=b'{"model":"m","usage":{"prompt_tokens":1}}'
    )
    t0 = time.perf_counter()
    for _ in range(50):
        sink.emit(call.rec, call.log)
    assert time.perf_counter() - t0 < 0.5  # emit only queues (50 emits; a send would take seconds)
    assert sink.counts[("log", "dropped")] >= 40  # the thread holds at most one batch, the queue 3
    gate.set()
    sink.close()


def test_settings_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway_stats.config import ConfigError

    monkeypatch.delenv("ATHINA_API_KEY", raising=False)
    with pytest.raises(
        ConfigError, match=r"gateway_stats\.athina\.api_key_env: environment variable ATHINA_API_KEY"
    ):
        parse_config({"gateway_stats": {"athina": {}}})
    monkeypatch.setenv("ATHINA_API_KEY", KEY)
    a = parse_config({"gateway_stats": {"athina": {}}}).extensions.analytics.athina
    assert a.url == "https://log.athina.ai/api/v1/log/inference"
    assert a.feedback_url == "https://log.athina.ai/api/v1/prompt_run/user-feedback"
    assert KEY not in repr(a)
    with pytest.raises(ConfigError, match=r"gateway_stats\.athina\.url: expected an http"):
        parse_config({"gateway_stats": {"athina": {"url": "ftp://x"}}})
