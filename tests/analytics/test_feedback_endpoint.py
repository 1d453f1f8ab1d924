"""`POST /v1/feedback` on the side port: off unless a token is configured, 401 on a bad token, 400 naming
the field on a malformed body, 202 and into the hub on a good one."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from driver import run_call

from gateway_stats.analytics.feedback import FeedbackHub, handle_feedback
from gateway_stats.analytics.joins import RecentCalls
from gateway_stats.config import ConfigError
from gateway_stats.config.analytics import FeedbackSettings, parse_analytics
from gateway_stats.core.feedback import Feedback
from gateway_stats.envoy.http_side import SideHTTP

TOKEN = "s3cret-token-0123456789"
ON = FeedbackSettings(token=TOKEN)
AUTH = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


def hub() -> tuple[FeedbackHub, list[Feedback]]:
    got: list[Feedback] = []
    return FeedbackHub(RecentCalls(), lambda: [got.append]), got


def call(
    body: Any, headers: dict[str, str] | None = None, settings: FeedbackSettings = ON
) -> tuple[int, dict[str, Any]]:
    h, _ = hub()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, out = handle_feedback(settings, "POST", AUTH if headers is None else headers, raw, h)
    return status, json.loads(out)


def test_off_unless_configured() -> None:
    assert call({"request_id": "r", "user_feedback": 1}, settings=FeedbackSettings())[0] == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token-0123456789"},
        {"authorization": TOKEN},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": "Bearer "},
    ],
)
def test_bad_token_401(headers: dict[str, str]) -> None:
    status, doc = call({"request_id": "r", "user_feedback": 1}, headers)
    assert status == 401 and "token" in doc["error"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"{not json", None, "not valid JSON"),
        ([1, 2], None, "JSON object"),
        ({"user_feedback": 1}, "request_id", "one of request_id, response_id or external_reference_id"),
        (
            {"request_id": "r"},
            "user_feedback",
            "one of user_feedback, user_feedback_comment or grader_feedback",
        ),
        ({"request_id": "r", "user_feedback": 2}, "user_feedback", "1 (positive) or -1"),
        ({"request_id": "r", "user_feedback": True}, "user_feedback", "1 (positive) or -1"),
        ({"request_id": "r", "user_feedback": "1"}, "user_feedback", "1 (positive) or -1"),
        ({"request_id": "r", "grader_feedback": 0}, "grader_feedback", "1 (positive) or -1"),
        ({"request_id": 5, "user_feedback": 1}, "request_id", "non-empty string"),
        ({"response_id": "", "user_feedback": 1}, "response_id", "non-empty string"),
        ({"request_id": "r" * 300, "user_feedback": 1}, "request_id", "longer than 256"),
        ({"request_id": "r", "user_feedback_comment": ["x"]}, "user_feedback_comment", "a string"),
        ({"request_id": "r", "user_feedback": 1, "rating": 5}, "rating", "unknown field"),
    ],
)
def test_malformed_400_names_the_field(body: Any, field: str | None, words: str) -> None:
    status, doc = call(body)
    assert status == 400
    assert words in doc["error"]
    assert doc.get("field") == field
    if field:
        assert doc["error"].startswith(f"{field}: ")


def test_good_feedback_is_accepted_and_joined() -> None:
    h, got = hub()
    rated = run_call(
        request={"model": "gpt-4o", "messages": []},
        route="r1",
        response=b'{"id":"chatcmpl-7","model":"gpt-4o","choices":[]}',
    )
    h.note_call(rated.rec)
    body = {
        "response_id": "chatcmpl-7",
        "user_feedback": -1,
        "user_feedback_comment": "wrong",
        "grader_feedback": 1,
    }
    status, out = handle_feedback(ON, "POST", AUTH, json.dumps(body).encode(), h)
    assert status == 202 and json.loads(out) == {"status": "accepted", "joined": True}
    fb = got[0]
    assert (fb.source, fb.rating, fb.comment, fb.grader_feedback) == ("api", -1, "wrong", 1)
    assert (fb.model, fb.route, fb.request_id, fb.external_reference_id) == ("gpt-4o", "r1", "req-1", "req-1")
    status, out = handle_feedback(ON, "POST", AUTH, b'{"request_id":"nope","user_feedback":1}', h)
    assert status == 202 and json.loads(out)["joined"] is False and len(got) == 2


def test_method_type_and_size() -> None:
    h, _ = hub()
    assert handle_feedback(ON, "GET", AUTH, b"", h)[0] == 405
    assert handle_feedback(ON, "POST", {**AUTH, "content-type": "text/plain"}, b"{}", h)[0] == 415
    small = FeedbackSettings(token=TOKEN, max_body_bytes=1024)
    big = json.dumps({"request_id": "r", "user_feedback_comment": "x" * 2000}).encode()
    assert handle_feedback(small, "POST", AUTH, big, h)[0] == 413


def test_token_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GS_FB_TOKEN", TOKEN)
    assert parse_analytics({"feedback": {"token_env": "GS_FB_TOKEN"}}).feedback.token == TOKEN
    f = tmp_path / "tok"
    f.write_text(TOKEN + "\n")
    s = parse_analytics({"feedback": {"token_file": str(f)}})
    assert s.feedback.token == TOKEN and TOKEN not in repr(s)
    monkeypatch.setenv("GS_FB_SHORT", "short")
    with pytest.raises(ConfigError, match=r"gateway_stats.feedback.token_env: the token must be at least 16"):
        parse_analytics({"feedback": {"token_env": "GS_FB_SHORT"}})
    assert not parse_analytics({"feedback": {}}).feedback.endpoint_enabled  # dial_rate only


# ------------------------------------------------------------------------------ over a real socket


@pytest.fixture
def side() -> Iterator[tuple[int, list[Feedback]]]:
    h, got = hub()
    loop = asyncio.new_event_loop()
    server = SideHTTP(
        lambda: b"", lambda: True, {"/v1/feedback": lambda m, hd, b: handle_feedback(ON, m, hd, b, h)}
    )
    port = loop.run_until_complete(server.start("127.0.0.1", 0))
    import threading

    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield port, got
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    loop.close()


def test_over_http(side: tuple[int, list[Feedback]]) -> None:
    port, got = side
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = json.dumps({"request_id": "r-1", "user_feedback": 1}).encode()
    conn.request("POST", "/v1/feedback", body=body, headers={"content-type": "application/json"})
    r = conn.getresponse()
    assert r.status == 401 and r.getheader("www-authenticate") == "Bearer"
    r.read()
    conn.request(
        "POST",
        "/v1/feedback",
        body=b'{"request_id":"r-1","user_feedback":3}',
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    r = conn.getresponse()  # same keep-alive connection
    assert r.status == 400 and json.loads(r.read())["field"] == "user_feedback"
    conn.request("POST", "/v1/feedback", body=body, headers={"authorization": f"Bearer {TOKEN}"})
    r = conn.getresponse()
    assert r.status == 202 and json.loads(r.read())["status"] == "accepted"
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"ok\n"
    conn.close()
    assert [f.request_id for f in got] == ["r-1"]
