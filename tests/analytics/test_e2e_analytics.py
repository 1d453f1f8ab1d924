"""Issue 13 end to end: real Envoy 1.40 + gateway-stats + the mock LLM + this test's own receivers.

- calls in English, German, French, Chinese and Japanese reach Athina (a local receiver) with the
  right language, computed off the request path; a 3-word ambiguous text gets none;
- a DIAL rate call after a chat call is feedback joined to it (counter, Athina update), not traffic;
- `POST /v1/feedback`: bad token 401, malformed body 400 naming the field, a good one accepted;
- secrets: a call sending a raw user id, an API key, `authorization`, `cookie` and `x-api-key` leaves
  none of them in any output: Envoy's access log (ai_log), our ai_log file, spans, Athina bodies, the
  sidecar's own DEBUG log.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import access_lines, ai_logs, metric_value, metrics_text, post, wait_for
from otlp_receiver import OtlpReceiver

from gateway_stats.core.capture import user_hash
from gateway_stats.testing.procs import Stack

pytest.importorskip("lingua", reason="the optional extra gateway-stats[language]")

USER_KEY = "e2e-user-hash-key-0123456789"
FEEDBACK_TOKEN = "e2e-feedback-token-0123456789"
ATHINA_KEY = "athina-e2e-key-0123456789"
RAW_USER = "raw.user.4711@example.com"
SECRETS = {
    "raw user id": RAW_USER,
    "api key": "sk-proj-SECRETKEY0123456789abcdef",
    "cookie": "sessionid=COOKIESECRET0123456789",
    "x-api-key": "XAPIKEYSECRET0123456789",
    "x-goog-api-key": "GOOGKEYSECRET0123456789",
}

CONFIG = """\
gateway_stats:
  tracing: {enabled: true, capture_content: false}
  analytics:
    language: {languages: [en, de, fr, es, it, zh, ja]}
    topics: {billing: [invoice, refund, rechnung, facture]}
    user: {header: x-end-user, key_env: GS_E2E_USER_KEY}
    segmentation: {prompt_slug: x-prompt-slug, environment: x-environment}
  feedback: {token_env: GS_E2E_FEEDBACK_TOKEN}
  athina: {url: "%(athina)s/api/v1/log/inference", api_key_env: GS_E2E_ATHINA_KEY}
"""


class Athina:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.raw.append(body)
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": json.loads(body),
                        "key": self.headers.get("athina-api-key"),
                    }
                )
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_PATCH = _any

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def logs(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["method"] == "POST"]

    def log_for(self, chat_id: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for b in self.logs():
                if b.get("custom_attributes", {}).get("response_id") == chat_id:
                    return b
            return None

        return wait_for(find, 20, f"Athina log of {chat_id}")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Athina, OtlpReceiver]]:
    wd = tmp_path_factory.mktemp("analytics")
    secrets_env = {
        "GS_E2E_USER_KEY": USER_KEY,
        "GS_E2E_FEEDBACK_TOKEN": FEEDBACK_TOKEN,
        "GS_E2E_ATHINA_KEY": ATHINA_KEY,
    }
    mp = pytest.MonkeyPatch()
    for k, v in secrets_env.items():  # the rig reads the config too (separate log fields)
        mp.setenv(k, v)
    athina = Athina()
    rx = OtlpReceiver()
    rx.start()
    cfg = wd / "config.yaml"
    cfg.write_text(CONFIG % {"athina": athina.url})
    st = Stack(
        wd / "stack",
        config_path=str(cfg),
        sidecar_args=["--log-level", "debug", "--ai-log-file", str(wd / "stack" / "ai_log.jsonl")],
        sidecar_env={
            **secrets_env,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    try:
        st.start()
    except Exception:
        for p in st.procs.values():
            print(f"--- {p.name} ---\n{p.log_text()[-3000:]}")
        st.stop()
        mp.undo()
        raise
    yield st, athina, rx
    mp.undo()
    st.stop()
    rx.stop()
    athina.server.shutdown()


def chat(st: Stack, text: str, chat_id: str, **headers: str) -> int:
    status, _, _ = post(
        st.envoy_port,
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        {"x-mock-chat-id": chat_id, **headers},
    )
    return status


@pytest.mark.parametrize(
    ("lang", "text", "topic"),
    [
        ("en", "Can you help me write an email to my landlord about the broken heater?", "other"),
        ("de", "Kannst du mir bitte sagen, wo meine Rechnung für März ist?", "billing"),
        ("fr", "Pourquoi ma facture de mars est-elle si élevée cette fois ?", "billing"),
        ("zh", "请告诉我今天北京的天气怎么样", "other"),
        ("ja", "東京の今日の天気を教えてください", "other"),
        (None, "taxi hotel restaurant", "other"),
    ],
)
def test_language_and_topic_end_to_end(
    env: tuple[Stack, Athina, OtlpReceiver], lang: str | None, text: str, topic: str
) -> None:
    st, athina, _ = env
    cid = f"chatcmpl-lang-{lang}"
    assert chat(st, text, cid) == 200
    attrs = athina.log_for(cid)["custom_attributes"]
    assert attrs.get("language") == lang and attrs.get("topic") == topic


def test_dial_rate_call_is_feedback_joined_to_the_chat(env: tuple[Stack, Athina, OtlpReceiver]) -> None:
    st, athina, _ = env
    assert chat(st, "Where is my refund?", "chatcmpl-rated-1", **{"x-request-id": "rated-req-1"}) == 200
    athina.log_for("chatcmpl-rated-1")
    status, _, _ = post(
        st.envoy_port, "/openai/v1/gpt-4o-mini/rate", {"responseId": "chatcmpl-rated-1", "rate": False}
    )
    assert status == 200  # the rate call itself passes through untouched

    def counted() -> str | None:
        t = metrics_text(st)
        return t if "gateway_stats_feedback_total{" in t else None

    text = wait_for(counted, 10, "the feedback counter")
    assert metric_value(text, "gateway_stats_feedback_total", ai_model="gpt-4o-mini", rating="dislike") == 1
    upd = wait_for(
        lambda: [r for r in athina.requests if r["method"] == "PATCH"], 10, "Athina feedback update"
    )
    assert upd[0]["path"] == "/api/v1/prompt_run/user-feedback"
    assert upd[0]["body"] == {"external_reference_id": "rated-req-1", "user_feedback": -1}
    # not traffic: no ai_log line, no LLM call counted for it
    time.sleep(0.3)
    assert not [d for d in ai_logs(st) if d.get("chat_id") is None and d.get("model") == "gpt-4o-mini"]
    assert "/rate" not in "".join(json.dumps(d) for d in ai_logs(st))


def test_feedback_endpoint(env: tuple[Stack, Athina, OtlpReceiver]) -> None:
    st, athina, _ = env
    assert chat(st, "Is there an invoice for April?", "chatcmpl-fb-1", **{"x-request-id": "fb-req-1"}) == 200
    athina.log_for("chatcmpl-fb-1")

    def send(body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", st.metrics_port, timeout=5)
        h = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
        conn.request("POST", "/v1/feedback", body=json.dumps(body).encode(), headers=h)
        r = conn.getresponse()
        out = r.status, json.loads(r.read())
        conn.close()
        return out

    good = {"request_id": "fb-req-1", "user_feedback": 1, "user_feedback_comment": "spot on"}
    assert send(good, None)[0] == 401
    assert send(good, "wrong-token-0123456789abc")[0] == 401
    status, doc = send({"request_id": "fb-req-1", "user_feedback": 5}, FEEDBACK_TOKEN)
    assert status == 400 and doc["field"] == "user_feedback"
    status, doc = send(good, FEEDBACK_TOKEN)
    assert status == 202 and doc == {"status": "accepted", "joined": True}
    text = metrics_text(st)
    assert metric_value(text, "gateway_stats_feedback_total", ai_model="gpt-4o-mini", rating="like") == 1
    wait_for(
        lambda: any(
            r["body"].get("external_reference_id") == "fb-req-1" and r["method"] == "PATCH"
            for r in athina.requests
        ),
        10,
        "the update",
    )


def test_no_secret_in_any_output(env: tuple[Stack, Athina, OtlpReceiver]) -> None:
    st, athina, rx = env
    headers = {
        "authorization": f"Bearer {SECRETS['api key']}",
        "cookie": SECRETS["cookie"],
        "x-api-key": SECRETS["x-api-key"],
        "x-goog-api-key": SECRETS["x-goog-api-key"],
        "x-end-user": RAW_USER,
        "x-prompt-slug": "secrets-v1",
        "x-mock-chat-id": "chatcmpl-secrets",
    }
    body = {
        "model": "gpt-4o-mini",
        "user": RAW_USER,
        "messages": [{"role": "user", "content": "What is a refund?"}],
    }
    assert post(st.envoy_port, "/v1/chat/completions", body, headers)[0] == 200
    body = {
        "model": "claude-x",
        "max_tokens": 10,
        "metadata": {"user_id": RAW_USER},
        "messages": [{"role": "user", "content": "hello there"}],
    }
    h2 = {**headers, "x-mock-chat-id": "msg_secrets"}
    assert post(st.envoy_port, "/v1/messages", body, h2)[0] == 200
    log = athina.log_for("chatcmpl-secrets")
    athina.log_for("msg_secrets")
    uh = user_hash(USER_KEY.encode(), RAW_USER)
    assert log["customer_user_id"] == uh and log["custom_attributes"]["user_hash"] == uh
    assert log["prompt_slug"] == "secrets-v1"
    wait_for(lambda: len(rx.snapshot()) >= 2, 10, "spans")
    time.sleep(0.5)  # let the access log and the span exporter flush
    outputs = {
        "Envoy access log": st.access_log.read_text(),
        "ai_log file": (st.workdir / "ai_log.jsonl").read_text(),
        "spans": repr([s.__dict__ for s in rx.snapshot()]),
        "Athina bodies": b"".join(athina.raw).decode(),
        "sidecar DEBUG log": st.procs["gateway-stats"].log_text(),
        "metrics": metrics_text(st),
    }
    assert "DEBUG" in outputs["sidecar DEBUG log"]
    assert access_lines(st) and outputs["ai_log file"]
    for where, text in outputs.items():
        for what, secret in SECRETS.items():
            assert secret not in text, f"{what} found in {where}"
