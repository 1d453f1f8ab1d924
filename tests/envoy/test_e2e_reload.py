"""The running sidecar reloads its config file; a broken new version is rejected, the last good one stays."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import ai_logs, metric_value, metrics_text, post, wait_for

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _config(value: str) -> str:
    return (
        "attributes:\n  - key: release\n    value_source: fixed_value\n"
        f"    value: {value}\n    apply_to_log: true\n"
    )


def _write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))  # a visible mtime change


def test_config_reload_and_rejection(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_config("blue"))
    st = stack_factory(config_path=str(cfg))

    def last_release(n: int) -> object:
        logs = ai_logs(st)
        return logs[-1]["release"] if len(logs) >= n else None

    post(st.envoy_port, "/v1/chat/completions", CHAT)
    assert wait_for(lambda: last_release(1), 10, "first line") == "blue"

    _write(cfg, _config("green"), 1)

    def reloads(result: str) -> float:
        return metric_value(metrics_text(st), "gateway_stats_config_reloads_total", result=result)

    wait_for(lambda: reloads("ok") >= 1, 15, "reload ok")
    post(st.envoy_port, "/v1/chat/completions", CHAT)
    assert wait_for(lambda: last_release(2), 10, "second line") == "green"

    _write(cfg, "attributes:\n  - key: release\n    value_source: fixed_valu\n", 2)
    wait_for(lambda: reloads("failed") >= 1, 15, "reload failed")
    post(st.envoy_port, "/v1/chat/completions", CHAT)
    assert wait_for(lambda: last_release(3), 10, "third line") == "green"  # the last good config
    log = st.procs["gateway-stats"].log_text()
    assert "attributes[0].value_source" in log  # the rejection names the field
