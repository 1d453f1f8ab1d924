"""DIAL's rate call crossing Envoy: recognised, read, joined to the rated call; not an LLM call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from driver import run_call

from gateway_stats.analytics.feedback import FeedbackHub
from gateway_stats.analytics.joins import RecentCalls
from gateway_stats.config import ConfigError, parse_config
from gateway_stats.config.store import ConfigStore
from gateway_stats.core.feedback import Feedback, apply_rate_body, rate_deployment
from gateway_stats.envoy.runtime import Runtime

CHAT = (
    b'{"id":"chatcmpl-42","model":"gpt-4o","choices":[{"message":{"content":"hi"}}],'
    b'"usage":{"prompt_tokens":3}}'
)


@pytest.mark.parametrize(
    ("path", "dep"),
    [
        ("/v1/gpt-4o/rate", "gpt-4o"),
        ("/openai/v1/my-app/rate", "my-app"),
        ("/v1/gpt-4o/rate?api-version=1", "gpt-4o"),
        ("/v1/gpt-4o/rate/", "gpt-4o"),
        ("/v1/chat/completions", None),
        ("/v1/rate", None),
        ("/v1/a/b/rate", None),
        ("/v1/gpt-4o/ratex", None),
    ],
)
def test_rate_path(path: str, dep: str | None) -> None:
    assert rate_deployment(path) == dep


def test_rate_body() -> None:
    fb = Feedback(source="dial_rate")
    assert apply_rate_body(fb, {"responseId": "chatcmpl-1", "rate": True}) is None and fb.rating == 1
    assert apply_rate_body(fb, {"responseId": "chatcmpl-1", "rate": False}) is None and fb.rating == -1
    assert (
        apply_rate_body(Feedback("dial_rate"), {"responseId": "x", "rate": 1})
        == "rate missing or not a boolean"
    )
    assert apply_rate_body(Feedback("dial_rate"), {"rate": True}) == "responseId missing or not a string"
    assert apply_rate_body(Feedback("dial_rate"), [1]) == "body is not a JSON object"


def rate_call(body: object, status: int = 200, **kw: object):  # type: ignore[no-untyped-def]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return run_call(
        kw.pop("config", None),
        path="/v1/gpt-4o/rate",
        request=raw,
        status=status,  # type: ignore[arg-type]
        response=b"{}",
        **kw,
    )


def test_observer_reads_a_rate_call_as_feedback() -> None:
    call = rate_call({"responseId": "chatcmpl-42", "rate": True}, req_headers={"x-mse-consumer": "team-a"})
    rec = call.rec
    assert call.obs.observed and rec.feedback is not None
    fb = rec.feedback
    assert (fb.source, fb.deployment, fb.response_id, fb.rating) == ("dial_rate", "gpt-4o", "chatcmpl-42", 1)
    assert rec.status_code == 200 and rec.finished
    assert call.log == {}  # no ai_log: it is not an LLM call
    assert rec.provider == "unknown" and rec.usage.known is False


def test_rate_recognition_can_be_turned_off() -> None:
    cfg = parse_config({"gateway_stats": {"feedback": {"dial_rate": False}}})
    call = rate_call({"responseId": "chatcmpl-42", "rate": True}, config=cfg)
    assert call.rec.feedback is None and call.rec.provider == "unknown"  # an ordinary, unrecognised call


def _runtime() -> Runtime:
    store = ConfigStore(None)
    return Runtime(store)


def test_runtime_joins_and_counts_without_llm_metrics() -> None:
    rt = _runtime()
    chat = run_call(request={"model": "gpt-4o", "messages": []}, response=CHAT, route="chat-route")
    rt.emit(chat.rec, chat.log)
    got: list[Feedback] = []
    rt.feedback_hub._consumers = lambda: [got.append, rt.metrics.feedback]  # type: ignore[method-assign]
    for rate in (True, False, True):
        call = rate_call({"responseId": "chatcmpl-42", "rate": rate}, route="rate-route")
        rt.emit(call.rec, call.log)
    assert len(got) == 3 and all(f.joined for f in got)
    assert got[0].model == "gpt-4o" and got[0].route == "chat-route" and got[0].request_id == "req-1"
    text = rt.render_metrics().decode()
    assert 'gateway_stats_feedback_total{ai_model="gpt-4o",ai_route="chat-route",rating="like"} 2' in text
    assert 'gateway_stats_feedback_total{ai_model="gpt-4o",ai_route="chat-route",rating="dislike"} 1' in text
    # one LLM call in the Higress and calls metrics: the rate calls are not traffic
    assert "route_upstream_model_consumer_metric_llm_duration_count{" in text
    calls = [line for line in text.splitlines() if line.startswith("gateway_stats_calls_total{")]
    assert len(calls) == 1 and calls[0].endswith(" 1")
    assert "gateway_stats_unrecognised_calls_total 0.0" in text


def test_unjoined_bad_and_rejected_rate_calls() -> None:
    rt = _runtime()
    got: list[Feedback] = []
    rt.feedback_hub._consumers = lambda: [got.append]  # type: ignore[method-assign]
    call = rate_call({"responseId": "chatcmpl-unknown", "rate": False})
    rt.emit(call.rec, call.log)
    assert len(got) == 1 and not got[0].joined and got[0].model == "gpt-4o"  # the deployment
    rt.emit(rate_call(b"not json").rec, {})
    rt.emit(rate_call({"responseId": "chatcmpl-1", "rate": True}, status=401).rec, {})
    assert len(got) == 1 and rt.feedback_hub.dropped == {"dial_rate": 2}


def test_recent_calls_are_bounded() -> None:
    recent = RecentCalls(capacity=10)
    hub = FeedbackHub(recent, lambda: [])
    for i in range(100):
        call = run_call(
            request={"model": "m", "messages": []}, response=CHAT.replace(b"chatcmpl-42", f"c-{i}".encode())
        )
        call.rec.request_id = f"q-{i}"
        hub.note_call(call.rec)
    assert len(recent) <= 30
    assert recent.find(Feedback("api", response_id="c-99")) is not None
    assert recent.find(Feedback("api", response_id="c-0")) is None


def test_recent_calls_size_comes_from_the_config_and_follows_a_reload(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gateway_stats:\n  feedback: {recent_calls: 5}\n")
    rt = Runtime(ConfigStore(str(cfg)))
    recent = rt.feedback_hub.recent
    assert recent.capacity == 5
    for i in range(20):
        call = run_call(
            request={"model": "m", "messages": []}, response=CHAT.replace(b"chatcmpl-42", f"c-{i}".encode())
        )
        call.rec.request_id = f"q-{i}"
        rt.feedback_hub.note_call(call.rec)
    assert 0 < len(recent) <= 15 and recent.find(Feedback("api", response_id="c-19")) is not None
    rt.reconfigure(parse_config({"gateway_stats": {"feedback": {"recent_calls": 1}}}))
    assert recent.capacity == 1 and len(recent) <= 3  # shrunk at once, the newest call kept
    assert recent.find(Feedback("api", response_id="c-19")) is not None
    assert recent.find(Feedback("api", response_id="c-18")) is None
    rt.reconfigure(parse_config({"gateway_stats": {"feedback": {"recent_calls": 0}}}))
    assert len(recent) == 0
    rt.feedback_hub.note_call(call.rec)
    assert len(recent) == 0  # off: nothing is kept


def test_recent_calls_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"feedback\.recent_calls.*between 0 and 1000000"):
        parse_config({"gateway_stats": {"feedback": {"recent_calls": -1}}})
