"""Issue 13 end to end: real Envoy 1.40 + gateway-stats + the mock LLM, the records stores (SQLite,
real PostgreSQL, real InfluxDB, JSON lines) and this test's own Athina and OTLP receivers.

- calls in English, German, French, Chinese and Japanese get the right language in every store and in
  Athina, computed off the request path; a 3-word ambiguous text gets none;
- a DIAL rate call after a chat call is a feedback row joined to it (every store), a `rate_analytics`
  point in InfluxDB, the counter and Athina's update; it is not traffic;
- `POST /v1/feedback`: bad token 401, malformed body 400 naming the field, a good one lands in the store;
- the report shows satisfaction and languages;
- secrets: a call sending a raw user id, an API key, `authorization`, `cookie` and `x-api-key` leaves
  none of them in any output: Envoy's access log (ai_log), our ai_log file, spans, the records (SQLite,
  PostgreSQL, InfluxDB, JSON lines), Athina bodies, the sidecar's own DEBUG log.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import access_lines, ai_logs, metric_value, metrics_text, post, wait_for
from otlp_receiver import OtlpReceiver

from gateway_stats.core.capture import user_hash
from gateway_stats.records import report
from gateway_stats.records.read import fetch
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
    "gemini ?key=": "GEMINIQUERYKEY0123456789",
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
  records:
    sqlite: "%(sqlite)s"
    postgres: "%(postgres)s"
    influxdb: {url: "%(influx)s", database: analytics}
    jsonl: "%(jsonl)s"
    flush_interval_ms: 50
"""


# Envoy skips the sidecar for the rest of a call whose answer takes longer than message_timeout (200 ms
# by default); on a machine this loaded (other test stacks, the worker loading its models) that can
# happen, and the call's line then has no ai_log. These tests are about what the line holds.
PATIENT: dict[str, object] = {"message_timeout_ms": 2000}


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


class Env:
    def __init__(self, st: Stack, athina: Athina, rx: OtlpReceiver, pg: Any, influx: Any, wd: Path) -> None:
        self.st, self.athina, self.rx, self.pg_server, self.influx = st, athina, rx, pg, influx
        self.db, self.jsonl = wd / "records.db", wd / "records.jsonl"
        self.pg = pg.dsn.rsplit("/", 1)[0] + "/analytics"

    def stores(self) -> dict[str, str]:
        return {"sqlite": str(self.db), "postgres": self.pg, "jsonl": str(self.jsonl)}

    def rows(self, table: str = "calls") -> dict[str, list[dict[str, Any]]]:
        out = {}
        for k, src in self.stores().items():
            try:
                out[k] = fetch(src, table=table)
            except Exception:
                out[k] = []
        return out

    def points(self, measurement: str) -> list[dict[str, Any]]:
        return self.influx.points(measurement, "analytics")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, postgres: Any, influx: Any) -> Iterator[Env]:
    wd = tmp_path_factory.mktemp("analytics")
    postgres.query("CREATE DATABASE analytics")
    influx.query("CREATE DATABASE analytics")
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
    cfg.write_text(
        CONFIG
        % {
            "athina": athina.url,
            "sqlite": wd / "records.db",
            "postgres": postgres.dsn.rsplit("/", 1)[0] + "/analytics",
            "influx": influx.url,
            "jsonl": wd / "records.jsonl",
        }
    )
    st = Stack(
        wd / "stack",
        config_path=str(cfg),
        envoy_extra=PATIENT,
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
    wait_ready(st)
    yield Env(st, athina, rx, postgres, influx, wd)
    mp.undo()
    st.stop()
    rx.stop()
    athina.server.shutdown()


def wait_ready(st: Stack) -> None:
    """Calls made while the worker still loads its models (~1-2 s) go without language: wait for it."""
    wait_for(
        lambda: metric_value(metrics_text(st), "gateway_stats_analytics_worker_ready") == 1, 180, "worker"
    )


def chat(st: Stack, text: str, chat_id: str, **headers: str) -> int:
    status, _, _ = post(
        st.envoy_port,
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        {"x-mock-chat-id": chat_id, **headers},
    )
    return status


def row_for(env: Env, store: str, response_id: str, table: str = "calls") -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((r for r in env.rows(table)[store] if r.get("response_id") == response_id), None)

    return wait_for(find, 20, f"{table} row {response_id} in {store}")  # type: ignore[no-any-return]


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
def test_language_and_topic_end_to_end(env: Env, lang: str | None, text: str, topic: str) -> None:
    cid = f"chatcmpl-lang-{lang}"
    assert chat(env.st, text, cid) == 200
    for store in ("sqlite", "postgres", "jsonl"):
        r = row_for(env, store, cid)
        assert (r["language"], r["topic"]) == (lang, topic), store
    point = wait_for(
        lambda: next((p for p in env.points("analytics") if p.get("response_id") == cid), None),
        20,
        "the analytics point",
    )
    assert (point.get("language"), point.get("topic")) == (lang, topic)  # InfluxDB tags
    attrs = env.athina.log_for(cid)["custom_attributes"]
    assert attrs.get("language") == lang and attrs.get("topic") == topic


def test_dial_rate_call_is_feedback_joined_to_the_chat(env: Env) -> None:
    st, athina = env.st, env.athina
    assert (
        chat(
            st,
            "Where is my refund?",
            "chatcmpl-rated-1",
            **{"x-request-id": "rated-req-1", "x-end-user": "rater-1"},
        )
        == 200
    )
    row_for(env, "sqlite", "chatcmpl-rated-1")
    status, _, _ = post(
        st.envoy_port,
        "/openai/v1/gpt-4o-mini/rate",
        {"responseId": "chatcmpl-rated-1", "rate": False},
        {"x-end-user": "rater-1", "x-mse-consumer": "team-r"},
    )
    assert status == 200  # the rate call itself passes through untouched
    uh = user_hash(USER_KEY.encode(), "rater-1")
    for store in ("sqlite", "postgres", "jsonl"):
        fb = row_for(env, store, "chatcmpl-rated-1", "feedback")
        assert (fb["source"], fb["like_count"], fb["dislike_count"], fb["rating"]) == ("dial_rate", 0, 1, -1)
        assert fb["joined"] is True and fb["request_id"] == "rated-req-1" and fb["model"] == "gpt-4o-mini"
        assert fb["deployment"] == "gpt-4o-mini" and fb["user_hash"] == uh, store
    pt = wait_for(
        lambda: next(
            (p for p in env.points("rate_analytics") if p.get("response_id") == "chatcmpl-rated-1"), None
        ),
        20,
        "the rate_analytics point",
    )
    assert (pt["deployment"], pt["user_hash"], pt["project_id"]) == ("gpt-4o-mini", uh, "team-r")
    assert (pt["like_count"], pt["dislike_count"], pt["source"]) == (0, 1, "dial_rate")
    text = metrics_text(st)
    assert metric_value(text, "gateway_stats_feedback_total", ai_model="gpt-4o-mini", rating="dislike") == 1
    upd = wait_for(
        lambda: [
            r
            for r in athina.requests
            if r["method"] == "PATCH" and r["body"].get("external_reference_id") == "rated-req-1"
        ],
        10,
        "Athina update",
    )
    assert upd[0]["path"] == "/api/v1/prompt_run/user-feedback"
    assert upd[0]["body"] == {"external_reference_id": "rated-req-1", "user_feedback": -1}
    # not traffic: no calls row, no ai_log for the rate call
    time.sleep(0.3)
    assert not [
        r for r in env.rows()["sqlite"] if r.get("request_model") is None and r.get("response_id") is None
    ]
    assert "/rate" not in "".join(json.dumps(d) for d in ai_logs(st))


def test_feedback_endpoint(env: Env) -> None:
    st = env.st
    assert chat(st, "Is there an invoice for April?", "chatcmpl-fb-1", **{"x-request-id": "fb-req-1"}) == 200
    row_for(env, "sqlite", "chatcmpl-fb-1")

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
    assert status == 400 and doc["field"] == "user_feedback" and doc["error"].startswith("user_feedback: ")
    status, doc = send({"user_feedback": 1}, FEEDBACK_TOKEN)
    assert status == 400 and doc["field"] == "request_id"
    status, doc = send(good, FEEDBACK_TOKEN)
    assert status == 202 and doc == {"status": "accepted", "joined": True}
    for store in ("sqlite", "postgres", "jsonl"):
        fb = row_for(env, store, "chatcmpl-fb-1", "feedback")
        assert (fb["source"], fb["rating"], fb["comment"], fb["request_id"]) == (
            "api",
            1,
            "spot on",
            "fb-req-1",
        )
    text = metrics_text(st)
    assert metric_value(text, "gateway_stats_feedback_total", ai_model="gpt-4o-mini", rating="like") == 1
    assert metric_value(text, "gateway_stats_athina_forwarded_total", kind="log", result="sent") >= 1
    wait_for(
        lambda: any(
            r["body"].get("external_reference_id") == "fb-req-1" and r["method"] == "PATCH"
            for r in env.athina.requests
        ),
        10,
        "the update",
    )
    # the report: satisfaction and languages
    rep = report.build(str(env.db), by="model")
    g = next(x.figures() for x in rep.groups if x.key == "gpt-4o-mini")
    assert g["likes"] >= 1 and g["rated_pct"] > 0 and g["languages"] and "en" in g["languages"]


def test_no_secret_in_any_output(env: Env) -> None:
    st, athina, rx = env.st, env.athina, env.rx
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
    # Gemini with its key in the query string, and a body that is not JSON (a warning naming the path)
    gem = f"/v1beta/models/gemini-x:generateContent?key={SECRETS['gemini ?key=']}"
    post(st.envoy_port, gem, b"{not json", headers)
    post(st.envoy_port, gem, {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, headers)
    log = athina.log_for("chatcmpl-secrets")
    athina.log_for("msg_secrets")
    uh = user_hash(USER_KEY.encode(), RAW_USER)
    assert log["customer_user_id"] == uh and log["custom_attributes"]["user_hash"] == uh
    assert log["prompt_slug"] == "secrets-v1"
    wait_for(lambda: len(rx.snapshot()) >= 2, 10, "spans")
    time.sleep(0.5)  # let the access log and the span exporter flush
    row_for(env, "sqlite", "msg_secrets")
    row_for(env, "postgres", "msg_secrets")
    row_for(env, "jsonl", "msg_secrets")
    wait_for(lambda: any(p.get("response_id") == "msg_secrets" for p in env.points("analytics")), 20, "point")
    outputs = {
        "records (SQLite file)": env.db.read_bytes().decode("latin-1")
        + "".join(p.read_bytes().decode("latin-1") for p in env.db.parent.glob("records.db-*")),
        "records (PostgreSQL)": repr(env.rows()["postgres"]) + repr(env.rows("feedback")["postgres"]),
        "records (JSON lines)": env.jsonl.read_text(),
        "records (InfluxDB)": repr(env.points("analytics")) + repr(env.points("rate_analytics")),
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


def test_language_in_the_ai_log_when_opted_in(stack_factory: Any, tmp_path: Path) -> None:
    """`language.ai_log: true`: detection starts when the request body is read, in the child process,
    while the upstream answers; the final ai_log (Envoy's access log line) carries it."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gateway_stats:\n  analytics:\n    language: {ai_log: true}\n")
    st = stack_factory(config_path=str(cfg), envoy_extra=PATIENT)
    wait_ready(st)
    text = "Kannst du mir bitte sagen, wo meine Rechnung für März ist?"
    got: list[dict[str, Any]] = []
    for i in range(10):  # a line Envoy could not get from us in time (fail-open, a busy machine) is skipped
        cid = f"chatcmpl-ailog-{i}"
        chat(st, text, cid, **{"x-mock-first-byte-ms": "300"})
        try:
            got.append(
                wait_for(lambda c=cid: next((x for x in ai_logs(st) if x.get("chat_id") == c), None), 5, cid)
            )
        except AssertionError:
            continue
        if got[-1].get("language"):
            break
    assert got[-1]["language"] == "de", got
    assert all(d.get("language") in (None, "de") for d in got)
    cfg.write_text("gateway_stats:\n  analytics:\n    language: {}\n")  # not opted in: never in the ai_log
    st2 = stack_factory(config_path=str(cfg), envoy_extra=PATIENT)
    wait_ready(st2)
    chat(st2, text, "chatcmpl-ailog-off", **{"x-mock-first-byte-ms": "300"})
    d = wait_for(
        lambda: next((x for x in ai_logs(st2) if x.get("chat_id") == "chatcmpl-ailog-off"), None),
        10,
        "the line",
    )
    assert "language" not in d
