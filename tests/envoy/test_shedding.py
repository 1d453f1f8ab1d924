"""Load shedding through a real Envoy: induced event-loop lag and too many calls in flight make new calls
pass unobserved (shed, counted, warned about once), the traffic is untouched, observation resumes.

The lag is induced with a test hook (GATEWAY_STATS_TEST_HOOKS=1): a request carrying
`x-gateway-stats-test-block-ms: N` blocks the sidecar's event loop for N ms at its request headers.
Nothing here depends on timings beyond "a blocked loop is late".
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import metric_value, metrics_text, post, wait_for

from gateway_stats.testing.procs import Stack, complete_lines

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What does Envoy do?"}]}
HOOKS = {"GATEWAY_STATS_TEST_HOOKS": "1"}
SLOW_OK = {"message_timeout_ms": 5000}  # the blocked call must not time out in Envoy


def _config(tmp_path: Path, **overload: Any) -> str:
    p = tmp_path / "shed.yaml"
    p.write_text(yaml.safe_dump({"gateway_stats": {"overload": {"enabled": True, **overload}}}))
    return str(p)


def _logged(stack: Stack) -> dict[str, dict[str, Any]]:
    """chat_id -> ai_log, from Envoy's access log (inline) or our own ai_log file (observe)."""
    path = stack.ai_log_file if stack.mode == "observe" else stack.access_log
    out: dict[str, dict[str, Any]] = {}
    for line in complete_lines(path):
        v = json.loads(line).get("ai_log")
        if isinstance(v, str) and v not in ("", "-"):
            d = json.loads(v)
            if d.get("chat_id"):
                out[d["chat_id"]] = d
    return out


def _envoy(stack: Stack, name: str) -> int:
    return stack.envoy_stat(f"http.llm.ext_proc.{name}")


@pytest.mark.parametrize("mode", ["inline", "observe"])
def test_loop_lag_sheds_new_calls_and_recovers(stack_factory, tmp_path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    st = stack_factory(
        config_path=_config(tmp_path, max_loop_lag_ms=250, recover_after_ms=2000),
        mode=mode,
        sidecar_env=HOOKS,
        envoy_extra=SLOW_OK,
    )

    def observed_again() -> bool:
        """A new call is observed (a loaded machine may make even the warm-up lag and shed)."""
        cid = f"probe{time.monotonic_ns()}"
        assert post(st.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-chat-id": cid})[0] == 200
        time.sleep(0.3)
        return cid in _logged(st)

    wait_for(observed_again, timeout=30, what="a warm-up call observed")
    before = metric_value(metrics_text(st), "gateway_stats_calls_shed_total", reason="loop_lag")

    results: dict[str, tuple[int, bytes]] = {}

    def call(cid: str, extra: dict[str, str] | None = None) -> None:
        s, _, body = post(
            st.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-chat-id": cid, **(extra or {})}
        )
        results[cid] = (s, body)

    blocker = threading.Thread(target=call, args=("block", {"x-gateway-stats-test-block-ms": "1500"}))
    blocker.start()
    time.sleep(0.3)  # the loop is blocked now; these queue behind it
    ids = [f"late{i}" for i in range(8)]
    threads = [threading.Thread(target=call, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in [blocker, *threads]:
        t.join(30)

    # the traffic is untouched: every call answered in full by the upstream
    for cid in ["block", *ids]:
        status, body = results[cid]
        assert status == 200 and json.loads(body)["usage"]["prompt_tokens"] > 0, cid
    calls = ["block", *ids]

    def settled() -> tuple[float, list[str]] | None:
        """Every call is either observed or shed and counted (observe mode: once the sidecar caught up)."""
        shed = metric_value(metrics_text(st), "gateway_stats_calls_shed_total", reason="loop_lag") - before
        unobserved = [cid for cid in calls if cid not in _logged(st)]
        return (shed, unobserved) if len(unobserved) == shed else None

    shed, _ = wait_for(settled, timeout=15, what="every call observed or shed")
    assert shed >= 1
    assert metric_value(metrics_text(st), "gateway_stats_streams_total", end="shed") == shed + before
    # Envoy saw no failure: shed calls ended their streams cleanly
    assert _envoy(st, "streams_failed") == 0 and _envoy(st, "message_timeouts") == 0
    assert _envoy(st, "failure_mode_allowed") == 0

    # observation resumes once the lag has stayed low for recover_after_ms
    wait_for(observed_again, timeout=20, what="observation to resume")
    log = st.procs["gateway-stats"].log_text()
    assert log.count("overloaded (event-loop lag") == 1  # warned once; later episodes at debug level
    assert "gateway_stats_calls_shed_total" in log


def test_too_many_calls_in_flight_are_shed(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st = stack_factory(
        config_path=_config(tmp_path, max_inflight_calls=2, max_loop_lag_ms=10_000), envoy_extra=SLOW_OK
    )
    results: dict[str, int] = {}

    def slow(cid: str) -> None:
        req = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        h = {"x-mock-chat-id": cid, "x-mock-events": "15", "x-mock-interval-ms": "100"}
        results[cid] = post(st.envoy_port, "/v1/chat/completions", req, h)[0]

    holders = [threading.Thread(target=slow, args=(f"hold{i}",)) for i in range(2)]
    for t in holders:
        t.start()
    wait_for(
        lambda: metric_value(metrics_text(st), "gateway_stats_active_streams") == 2, what="2 streams open"
    )
    for i in range(3):  # a third call in flight is over the budget
        assert post(st.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-chat-id": f"over{i}"})[0] == 200
    for t in holders:
        t.join(30)
    assert results == {"hold0": 200, "hold1": 200}
    text = metrics_text(st)
    assert metric_value(text, "gateway_stats_calls_shed_total", reason="inflight") == 3
    time.sleep(0.5)
    logged = _logged(st)
    assert {"hold0", "hold1"} <= set(logged) and not {"over0", "over1", "over2"} & set(logged)
    assert _envoy(st, "streams_failed") == 0 and _envoy(st, "failure_mode_allowed") == 0
    assert _envoy(st, "message_timeouts") == 0
    # with the holders gone, new calls are observed again
    assert post(st.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-chat-id": "free"})[0] == 200
    wait_for(lambda: "free" in _logged(st), what="a call observed again")
