"""Huge bodies pass through Envoy unchanged; gateway-stats memory stays bounded (Higress #3814, #3819)."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

from conftest import ai_log_for, post

from gateway_stats.testing.mockllm import expected
from gateway_stats.testing.procs import Stack

MB = 1 << 20


def _vm(pid: int, key: str) -> int:
    """VmRSS / VmHWM of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{key} not found")


def test_huge_request_and_huge_sse_event_pass_with_bounded_memory(stack_factory) -> None:  # type: ignore[no-untyped-def]
    st: Stack = stack_factory()
    pid = st.procs["gateway-stats"].popen.pid
    # Warm up (imports, first stream) before taking the baseline.
    post(
        st.envoy_port, "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    base = _vm(pid, "VmRSS")

    # 1. A 100 MB request body: never a 413, delivered byte for byte, only a prefix analysed.
    filler = "y" * (100 * MB)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": filler}]}).encode()
    del filler
    digest = hashlib.sha256(body).hexdigest()
    status, _, raw = post(
        st.envoy_port,
        "/v1/chat/completions",
        body,
        {"x-request-id": "huge-req", "x-mock-chat-id": "huge-req", "x-mock-input-tokens": "25000000"},
        timeout=120,
    )
    size = len(body)
    del body
    assert status == 200, raw[:200]
    with urllib.request.urlopen(f"http://127.0.0.1:{st.mock_port}/_mock/records/huge-req", timeout=10) as r:
        got = json.loads(r.read())
    assert got["request_bytes"] == size and got["request_sha256"] == digest
    log = ai_log_for(st, "huge-req", timeout=60)
    assert log["input_token"] == 25_000_000
    assert "request_body" in log["gateway_stats_caps_hit"]

    # 2. A 20 MB SSE event in a stream: passed through unchanged; the framer drops it and resyncs,
    # the usage event after it is still read.
    req = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "big"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    h = {
        "x-mock-chat-id": "huge-event",
        "x-mock-event-bytes": str(20 * MB),
        "x-mock-created": "1700000000",  # both answers identical, even across a second boundary
        "accept-encoding": "identity",
    }
    status, _, via_envoy = post(st.envoy_port, "/v1/chat/completions", req, h, timeout=120)
    assert status == 200
    assert len(via_envoy) > 20 * MB
    _, _, direct = post(st.mock_port, "/v1/chat/completions", req, h, timeout=120)
    assert hashlib.sha256(via_envoy).digest() == hashlib.sha256(direct).digest()
    t = expected("/v1/chat/completions", h, req)
    log = ai_log_for(st, "huge-event", timeout=60)
    assert (log["input_token"], log["output_token"]) == (t.input_tokens, t.output_tokens)
    assert "sse_event" in log["gateway_stats_caps_hit"]

    # Memory: the sidecar's peak RSS grew by far less than either body (the analysed prefix is 4 MiB,
    # the SSE tail cap 1 MiB, gRPC messages are Envoy's chunks). A buffering observer would add >100 MB.
    peak = _vm(pid, "VmHWM")
    grew = peak - base
    print(f"sidecar RSS: baseline {base / MB:.1f} MiB, peak {peak / MB:.1f} MiB, growth {grew / MB:.1f} MiB")
    assert grew < 48 * MB, f"sidecar peak RSS grew by {grew / MB:.1f} MiB"
