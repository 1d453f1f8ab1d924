"""The frame, through a real Envoy 1.40: ai_log in the access log, pass-through, fail-open, aborts, drain."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import ai_log_for, ai_logs, metric_value, metrics_text, post, wait_for

from gateway_stats.testing.procs import Stack, complete_lines, envoy_binary

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What does Envoy do?"}]}


def test_json_chat_ai_log_carries_model_and_tokens(stack: Stack) -> None:
    status, headers, body = post(
        stack.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-chat-id": "e2e-json"}
    )
    assert status == 200
    sent = json.loads(body)
    log = ai_log_for(stack, "e2e-json")
    assert log["model"] == sent["model"]
    assert log["input_token"] == sent["usage"]["prompt_tokens"]
    assert log["output_token"] == sent["usage"]["completion_tokens"]
    assert log["total_token"] == sent["usage"]["total_tokens"]
    assert log["response_type"] == "normal"
    assert isinstance(log["llm_service_duration"], int)
    # Envoy kept the upstream's Content-Length: an observer must not change the response.
    assert headers.get("content-length") == str(len(body))


def test_sse_chat_ai_log_and_bytes_unchanged(stack: Stack) -> None:
    req = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    h = {"x-mock-chat-id": "e2e-sse", "x-mock-events": "8", "x-mock-created": "1700000000"}
    status, _, via_envoy = post(stack.envoy_port, "/v1/chat/completions", req, h)
    assert status == 200
    _, _, direct = post(stack.mock_port, "/v1/chat/completions", req, h)
    assert via_envoy == direct  # byte for byte
    usage = None
    for block in via_envoy.split(b"\n\n"):
        if block.startswith(b"data: {"):
            doc = json.loads(block[6:])
            usage = doc.get("usage") or usage
    assert usage is not None
    log = ai_log_for(stack, "e2e-sse")
    assert log["response_type"] == "stream"
    assert (log["input_token"], log["output_token"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert log["llm_first_token_duration"] <= log["llm_service_duration"]


def test_upstream_error_still_logged_with_request_model(stack: Stack) -> None:
    status, _, _ = post(
        stack.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-status": "503", "x-mock-chat-id": "unused"}
    )
    assert status == 503

    def found() -> bool:
        return any(d.get("model") == "gpt-4o-mini" and "input_token" not in d for d in ai_logs(stack))

    wait_for(found, what="ai_log of the failed call")
    text = metrics_text(stack)
    assert metric_value(text, "gateway_stats_records_total", end_reason="complete") >= 1


def test_side_endpoints(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.metrics_port}"
    for path, want in (("/healthz", b"ok"), ("/readyz", b"ready")):
        with urllib.request.urlopen(base + path, timeout=5) as r:
            assert r.status == 200 and want in r.read()
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "gateway_stats_active_streams" in text and "gateway_stats_messages_total" in text
    try:
        urllib.request.urlopen(base + "/nope", timeout=5)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404


def test_client_disconnect_mid_stream_still_finalizes(stack: Stack) -> None:
    before = metric_value(metrics_text(stack), "gateway_stats_records_total", end_reason="aborted")
    req = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    body = json.dumps(req).encode()
    s = socket.create_connection(("127.0.0.1", stack.envoy_port), timeout=10)
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"x-mock-events: 40\r\nx-mock-interval-ms: 50\r\nx-mock-chat-id: e2e-abort\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(65536)
    s.close()  # hang up mid-stream

    def aborted() -> bool:
        return metric_value(metrics_text(stack), "gateway_stats_records_total", end_reason="aborted") > before

    wait_for(aborted, timeout=15, what="an aborted record")
    # Envoy still wrote the access-log line for the cut request, with the model we attached early.
    log = ai_log_for(stack, "e2e-abort")
    assert log["model"] == "gpt-4o-mini"


def test_sidecar_killed_while_traffic_flows(stack_factory) -> None:  # type: ignore[no-untyped-def]
    st = stack_factory()
    results: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, _, _ = post(
                    st.envoy_port,
                    "/v1/chat/completions",
                    {**CHAT, "stream": True},
                    {"x-mock-events": "5", "x-mock-interval-ms": "5"},
                )
                results.append(status)
            except Exception:
                results.append(-1)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(results) >= 20, what="traffic flowing")
    st.procs["gateway-stats"].kill()  # SIGKILL: no drain, streams cut
    n_at_kill = len(results)
    wait_for(lambda: len(results) >= n_at_kill + 40, timeout=30, what="traffic after the kill")
    stop.set()
    for t in threads:
        t.join(30)
    assert results and all(r == 200 for r in results), sorted(set(results))
    assert (
        st.envoy_stat("http.llm.ext_proc.failure_mode_allowed")
        + st.envoy_stat("http.llm.ext_proc.streams_failed")
        > 0
        or st.envoy_stat("cluster.gateway_stats.upstream_cx_connect_fail") > 0
    )


def test_sigterm_drains_in_flight_stream(stack_factory) -> None:  # type: ignore[no-untyped-def]
    st = stack_factory()
    out: dict[str, object] = {}

    def long_call() -> None:
        out["resp"] = post(
            st.envoy_port,
            "/v1/chat/completions",
            {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
            {"x-mock-events": "20", "x-mock-interval-ms": "60", "x-mock-chat-id": "e2e-drain"},
        )

    t = threading.Thread(target=long_call)
    t.start()
    time.sleep(0.4)
    sidecar = st.procs["gateway-stats"]
    sidecar.popen.send_signal(signal.SIGTERM)
    t.join(30)
    status = out["resp"][0]  # type: ignore[index]
    assert status == 200
    log = ai_log_for(st, "e2e-drain")
    assert log["output_token"] == 20 and "llm_service_duration" in log
    assert sidecar.popen.wait(15) == 0


def test_unix_socket_processor(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sock = tmp_path / "gs.sock"
    st = Stack(tmp_path / "unix", sidecar_args=[])
    st.workdir.mkdir(parents=True)
    st.start_mock()
    # serve on a unix socket and point Envoy's side cluster at it
    import gateway_stats.testing.procs as procs

    st.metrics_port = procs.free_port()
    argv = [
        sys.executable,
        "-m",
        "gateway_stats",
        "serve",
        "--grpc-address",
        f"unix:{sock}",
        "--metrics-address",
        f"127.0.0.1:{st.metrics_port}",
        "--workers",
        "1",
    ]
    p = procs._spawn("gateway-stats", argv, st.workdir)
    st.procs["gateway-stats"] = p
    try:
        procs.wait_http(f"http://127.0.0.1:{st.metrics_port}/readyz", proc=p.popen)
        from gateway_stats.envoy.bootstrap import EnvoyOptions, render

        st.envoy_port, st.admin_port = procs.free_port(), procs.free_port()
        cfg = st.workdir / "envoy.yaml"
        cfg.write_text(
            render(
                EnvoyOptions(
                    listen=f"127.0.0.1:{st.envoy_port}",
                    upstream=f"127.0.0.1:{st.mock_port}",
                    processor=f"unix:{sock}",
                    admin=f"127.0.0.1:{st.admin_port}",
                    access_log=str(st.access_log),
                )
            )
        )
        e = procs._spawn(
            "envoy",
            [envoy_binary(), "-c", str(cfg), "--concurrency", "1", "--base-id", str(st.admin_port)],
            st.workdir,
        )
        st.procs["envoy"] = e
        procs.wait_http(f"http://127.0.0.1:{st.admin_port}/ready", proc=e.popen)
        status, _, _ = post(st.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-chat-id": "e2e-unix"})
        assert status == 200
        assert ai_log_for(st, "e2e-unix")["input_token"] > 0
    finally:
        st.stop()


def test_observability_mode_writes_ai_log_itself(stack_factory) -> None:  # type: ignore[no-untyped-def]
    st = stack_factory(mode="observe")
    status, _, _ = post(
        st.envoy_port,
        "/v1/chat/completions",
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        {"x-mock-chat-id": "e2e-observe"},
    )
    assert status == 200

    def line() -> dict[str, object] | None:
        for ln in complete_lines(st.ai_log_file):
            d = json.loads(ln)
            if json.loads(d["ai_log"]).get("chat_id") == "e2e-observe":
                return d
        return None

    d = wait_for(line, what="observe-mode ai_log line")
    ai = json.loads(d["ai_log"])
    assert ai["input_token"] > 0 and ai["model"] == "gpt-4o-mini"
    # Joinable with Envoy's access log by request id.
    envoy_ids = {json.loads(x)["request_id"] for x in complete_lines(st.access_log)}
    assert d["request_id"] in envoy_ids


def test_envoy_config_outputs_validate(tmp_path: Path) -> None:
    variants = [
        [],
        ["--mode", "observe"],
        ["--log-format", "dynamic-metadata", "--processor", "unix:/tmp/x.sock"],
        ["--upstream", "api.openai.com:443", "--upstream-tls"],
    ]
    for i, extra in enumerate(variants):
        out = subprocess.run(
            [sys.executable, "-m", "gateway_stats", "envoy-config", *extra],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        f = tmp_path / f"e{i}.yaml"
        f.write_text(out)
        r = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", str(f)], capture_output=True, text=True
        )
        assert r.returncode == 0, (extra, r.stdout[-2000:], r.stderr[-2000:])
    assert "failure_mode_allow: true" in out


def test_deploy_envoy_yaml_is_default_output() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "envoy-config"], capture_output=True, text=True, check=True
    ).stdout
    deployed = (Path(__file__).resolve().parents[2] / "deploy" / "envoy.yaml").read_text()
    assert deployed == out


def test_check_config_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("attributes:\n  - key: question\n    value_source: request_bdy\n    value: messages\n")
    r = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "check-config", str(bad)], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert "attributes[0].value_source" in r.stderr and "request_bdy" in r.stderr and str(bad) in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text("use_default_attributes: true\n")
    r = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "check-config", str(good)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_stack_start_retries_when_a_chosen_port_is_taken(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """free_port() can lose a race with another socket; the rig then retries on fresh ports."""
    from gateway_stats.testing import procs

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real = procs.free_port
    handed: list[int] = []

    def flaky_free_port() -> int:
        port = taken if not handed else real()
        handed.append(port)
        return port

    monkeypatch.setattr(procs, "free_port", flaky_free_port)
    st = Stack(tmp_path / "s")
    try:
        st.start()
        assert handed[0] == taken and st.mock_port != taken  # the first mock port was taken; retried
        status, _, _ = post(st.envoy_port, "/v1/chat/completions", CHAT)
        assert status == 200
    finally:
        st.stop()
        squatter.close()
