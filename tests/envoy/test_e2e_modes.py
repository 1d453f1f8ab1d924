"""Calls the config does not observe cost one message: gateway-stats turns their other phases off."""

from __future__ import annotations

from pathlib import Path

from conftest import ai_logs, metric_value, metrics_text, post, wait_for

CONFIG = "enable_path_suffixes: ['/completions']\nenable_content_types: ['application/json']\n"


def _messages(st, phase: str) -> float:  # type: ignore[no-untyped-def]
    return metric_value(metrics_text(st), "gateway_stats_messages_total", phase=phase)


def test_unobserved_calls_stop_after_headers(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    st = stack_factory(config_path=str(cfg))
    # Path not observed: only the request headers reach us; the 100 kB body and the answer do not.
    status, _, raw = post(st.envoy_port, "/echo-size", b"x" * 100_000, {"content-type": "text/plain"})
    assert status == 200 and b'"bytes":100000' in raw
    wait_for(
        lambda: metric_value(metrics_text(st), "gateway_stats_records_total", end_reason="unobserved") == 1
    )
    assert [_messages(st, p) for p in ("request_headers", "request_body", "response_headers")] == [1, 0, 0]
    assert _messages(st, "response_body") == 0

    # Observed path, content type not observed (SSE): the response body is not sent to us.
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    status, _, raw = post(st.envoy_port, "/v1/chat/completions", chat, {"x-mock-events": "30"})
    assert status == 200 and raw.count(b"data: ") >= 30
    wait_for(
        lambda: metric_value(metrics_text(st), "gateway_stats_records_total", end_reason="unobserved") == 2
    )
    assert [_messages(st, p) for p in ("request_headers", "request_body", "response_headers")] == [2, 1, 1]
    assert _messages(st, "response_body") == 0

    # An observed call still gets every phase and its ai_log.
    status, _, _ = post(
        st.envoy_port, "/v1/chat/completions", {**chat, "stream": False}, {"x-mock-chat-id": "obs"}
    )
    assert status == 200
    wait_for(lambda: any(d.get("chat_id") == "obs" for d in ai_logs(st)))
    assert _messages(st, "response_body") >= 1


def test_streams_spread_over_several_processes(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`envoy-config --processor A,B`: Envoy balances the ext_proc streams over two gateway-stats."""
    import sys
    import urllib.request

    from gateway_stats.testing import procs

    grpc2, metrics2 = procs.free_port(), procs.free_port()
    argv = [sys.executable, "-m", "gateway_stats", "serve", "--grpc-address", f"127.0.0.1:{grpc2}"]
    argv += ["--metrics-address", f"127.0.0.1:{metrics2}", "--workers", "1"]
    tmp_path.mkdir(exist_ok=True)
    second = procs._spawn("gateway-stats-2", argv, tmp_path)
    try:
        procs.wait_http(f"http://127.0.0.1:{metrics2}/readyz", proc=second.popen)
        grpc1 = procs.free_port()
        st = stack_factory(grpc_port=grpc1, envoy_extra={"processor": f"127.0.0.1:{grpc1},127.0.0.1:{grpc2}"})
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        for i in range(40):
            assert post(st.envoy_port, "/v1/chat/completions", chat, {"x-mock-chat-id": f"w{i}"})[0] == 200
        ids = wait_for(
            lambda: {d.get("chat_id") for d in ai_logs(st)} >= {f"w{i}" for i in range(40)} or None
        )
        assert ids

        def records(url: str) -> float:
            with urllib.request.urlopen(url, timeout=5) as r:
                return metric_value(r.read().decode(), "gateway_stats_records_total", end_reason="complete")

        one = records(st.metrics_url)
        two = records(f"http://127.0.0.1:{metrics2}/metrics")
        assert one + two == 40 and one > 0 and two > 0  # every call observed, by both processes
    finally:
        second.stop()
