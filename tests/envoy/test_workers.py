"""`serve --workers N` through a real Envoy: one address, every worker gets streams, one /metrics for all,
a killed worker is restarted and counted, SIGTERM drains every worker."""

from __future__ import annotations

import marshal
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ai_log_for, ai_logs, metric_value, metrics_text, post, wait_for

from gateway_stats.envoy.aggregate import SNAPSHOT_INTERVAL_S
from gateway_stats.testing.procs import Stack

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What does Envoy do?"}]}
# The shared test machine can be loaded far beyond its cores; a message timeout would let a call pass
# unobserved (fail-open) and make counts flaky. Timing is not what these tests check.
SLOW_OK = {"message_timeout_ms": 5000}


def _scrape(stack: Stack) -> str:
    """/metrics; a scrape that hit a worker at the moment it died is reset: ask again."""
    for _ in range(5):
        try:
            return metrics_text(stack)
        except OSError:
            time.sleep(0.1)
    return metrics_text(stack)


def _ext_proc_stats(stack: Stack) -> str:
    import urllib.request

    url = f"http://127.0.0.1:{stack.admin_port}/stats?filter=ext_proc|gateway_stats"
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def _workers(stack: Stack) -> list[int]:
    sup = stack.procs["gateway-stats"].pid
    out = subprocess.run(["pgrep", "-P", str(sup)], capture_output=True, text=True).stdout
    return sorted(int(x) for x in out.split())


def _streams_per_worker(shared: Path, n: int) -> list[float]:
    """Completed streams in each worker's own metrics snapshot (aggregate.py writes them)."""
    out = []
    for i in range(n):
        try:
            state: dict[str, Any] = marshal.loads((shared / f"w{i}.snap").read_bytes())
        except (OSError, EOFError, ValueError):
            out.append(0.0)
            continue
        total = 0.0
        for name, _typ, _doc, samples in state["self"]:
            if name == "gateway_stats_streams":
                total += sum(v for sname, labels, v in samples if dict(labels).get("end") == "complete")
        out.append(total)
    return out


def _calls(stack: Stack, n: int, prefix: str, conc: int = 4) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        for i in range(k, n, conc):
            s = post(stack.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-chat-id": f"{prefix}{i}"})[0]
            with lock:
                statuses.append(s)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


@pytest.mark.parametrize("unix", [False, True], ids=["tcp-reuseport", "unix-socket-per-worker"])
def test_workers_share_one_address_and_one_metrics(stack_factory, tmp_path: Path, unix: bool) -> None:  # type: ignore[no-untyped-def]
    shared = tmp_path / "shared"
    kw: dict[str, Any] = {
        "workers": 2,
        "sidecar_env": {"GATEWAY_STATS_WORKER_DIR": str(shared)},
        "envoy_extra": SLOW_OK,
    }
    if unix:
        kw["grpc_address"] = f"unix:{tmp_path / 'gs.sock'}"
    st = stack_factory(**kw)
    if unix:
        assert (tmp_path / "gs.sock").exists() and (tmp_path / "gs.sock.1").exists()
    assert len(_workers(st)) == 2
    statuses = _calls(st, 60, "w")
    assert statuses == [200] * 60
    try:
        wait_for(lambda: len([d for d in ai_logs(st) if "input_token" in d]) >= 60, what="60 ai_log lines")
    except AssertionError:
        raise AssertionError(_ext_proc_stats(st)) from None

    # one scrape shows all 60 calls, whichever worker answers it (the other workers' values are up to
    # half a second old, so wait for a scrape that has them all)
    tokens = sum(d["input_token"] for d in ai_logs(st))

    def merged() -> str | None:
        text = metrics_text(st)
        done = metric_value(text, "gateway_stats_records_total", end_reason="complete") == 60
        return (
            text
            if done and metric_value(text, "route_upstream_model_consumer_metric_input_token") == tokens
            else None
        )

    text = wait_for(merged, timeout=15, what="60 records and their tokens in the merged /metrics")
    assert metric_value(text, "gateway_stats_calls_total") == 60
    assert metric_value(text, "gateway_stats_messages_total") >= 240
    assert metric_value(text, "gateway_stats_workers") == 2
    assert metric_value(text, "gateway_stats_worker_restarts_total") == 0
    # every worker took part (the snapshots are per worker)
    per = wait_for(lambda: (p := _streams_per_worker(shared, 2)) and sum(p) == 60 and p, timeout=15)
    assert all(n > 0 for n in per), per


def test_killed_worker_is_restarted_and_counted(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st = stack_factory(workers=2, envoy_extra=SLOW_OK)
    assert _calls(st, 20, "a") == [200] * 20
    wait_for(lambda: metric_value(metrics_text(st), "gateway_stats_records_total") == 20, timeout=15)
    # A worker's counts reach the others through its snapshot (written every SNAPSHOT_INTERVAL_S when
    # something changed): SIGKILL loses what happened since its last one. Let every worker write its
    # snapshot of these 20 calls before the kill, so the check below is about the merge, not the race.
    time.sleep(10 * SNAPSHOT_INTERVAL_S)
    before = _workers(st)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: metric_value(_scrape(st), "gateway_stats_worker_restarts_total") == 1,
        timeout=20,
        what="the restart counted",
    )

    def replaced() -> list[int] | None:
        w = _workers(st)
        return w if len(w) == 2 and victim not in w else None

    after = wait_for(replaced, timeout=20, what="a new worker")
    assert victim not in after and len(after) == 2
    log = st.procs["gateway-stats"].log_text()
    assert f"pid {victim}) died (signal 9)" in log
    # traffic goes on, and the dead worker's counts are kept: nothing goes backwards
    assert _calls(st, 20, "b") == [200] * 20
    wait_for(lambda: metric_value(_scrape(st), "gateway_stats_records_total") >= 40, timeout=15)
    assert st.procs["gateway-stats"].alive()


def test_sigterm_drains_every_worker(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st = stack_factory(workers=2, sidecar_args=["--drain-seconds", "20"], envoy_extra=SLOW_OK)
    out: dict[int, Any] = {}

    def long_call(i: int) -> None:
        out[i] = post(
            st.envoy_port,
            "/v1/chat/completions",
            {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
            {"x-mock-events": "20", "x-mock-interval-ms": "60", "x-mock-chat-id": f"drain{i}"},
        )

    threads = [threading.Thread(target=long_call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    workers = _workers(st)
    sup = st.procs["gateway-stats"]
    sup.popen.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert [out[i][0] for i in range(6)] == [200] * 6
    for i in range(6):  # every stream in flight was finished by its worker before it exited
        log = ai_log_for(st, f"drain{i}")
        assert log["output_token"] == 20 and "llm_service_duration" in log
    assert sup.popen.wait(30) == 0
    text = sup.log_text()
    assert text.count("draining in-flight streams") == 2, text[-3000:]
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_worker_flags_and_envoy_config(tmp_path: Path) -> None:
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway_stats",
            "envoy-config",
            "--workers",
            "3",
            "--processor",
            "unix:/s/gs.sock",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("path: /s/gs.sock") == 3 and "/s/gs.sock.2" in r.stdout
    assert "lb_policy: LEAST_REQUEST" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "serve", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--workers: must be at least 1" in r.stderr


def test_supervisor_refuses_a_taken_port(tmp_path: Path) -> None:
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway_stats",
                "serve",
                "--workers",
                "2",
                "--grpc-address",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert f"cannot listen on gRPC address 127.0.0.1:{port}" in r.stderr


def test_config_reload_reaches_every_worker(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"

    def config(value: str) -> str:
        return (
            "attributes:\n  - key: release\n    value_source: fixed_value\n"
            f"    value: {value}\n    apply_to_log: true\n"
        )

    cfg.write_text(config("blue"))
    shared = tmp_path / "shared"
    st = stack_factory(
        config_path=str(cfg),
        workers=2,
        envoy_extra=SLOW_OK,
        sidecar_env={"GATEWAY_STATS_WORKER_DIR": str(shared)},
    )
    assert _calls(st, 20, "b") == [200] * 20
    wait_for(lambda: len(ai_logs(st)) >= 20, what="20 lines")
    assert {d["release"] for d in ai_logs(st)} == {"blue"}
    cfg.write_text(config("green"))
    st_ = cfg.stat()
    os.utime(cfg, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
    # every worker reports the reload in its own snapshot
    wait_for(
        lambda: all(
            _worker_metric(shared, i, "gateway_stats_config_reloads", result="ok") >= 1 for i in range(2)
        ),
        timeout=20,
        what="both workers reloaded",
    )
    assert _calls(st, 40, "g") == [200] * 40
    wait_for(lambda: len(ai_logs(st)) >= 60, what="60 lines")
    after = [d["release"] for d in ai_logs(st)[20:]]
    assert set(after) == {"green"}, after
    per = wait_for(lambda: (p := _streams_per_worker(shared, 2)) and sum(p) == 60 and p, timeout=15)
    assert all(n > 0 for n in per), per  # both workers served calls under the new config


def _worker_metric(shared: Path, index: int, name: str, **labels: str) -> float:
    try:
        state: dict[str, Any] = marshal.loads((shared / f"w{index}.snap").read_bytes())
    except (OSError, EOFError, ValueError):
        return 0.0
    total = 0.0
    for mname, _typ, _doc, samples in state["self"]:
        if mname == name:
            total += sum(v for _s, lab, v in samples if all(dict(lab).get(k) == w for k, w in labels.items()))
    return total


def test_sigterm_flushes_every_workers_records(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each worker has its own records writer (one SQLite file shared in WAL mode); a SIGTERM under load
    drains every worker's streams and then its queue: every row a worker accepted is written."""
    import re
    import sqlite3

    import yaml

    db = tmp_path / "records.db"
    cfg = tmp_path / "c.yaml"
    records = {"sqlite": str(db), "flush_interval_ms": 2000, "batch_size": 100_000}  # rows still queued
    cfg.write_text(yaml.safe_dump({"gateway_stats": {"records": records}}))
    st = stack_factory(config_path=str(cfg), workers=2, envoy_extra=SLOW_OK)
    assert _calls(st, 40, "r") == [200] * 40
    sup = st.procs["gateway-stats"]
    sup.popen.send_signal(signal.SIGTERM)
    assert sup.popen.wait(60) == 0
    log = sup.log_text()
    figures = [tuple(map(int, m)) for m in re.findall(r"records sqlite: (\d+) accepted, (\d+) written", log)]
    assert len(figures) == 2, log[-3000:]  # one writer per worker, each reported its drain
    assert all(a == w for a, w in figures) and sum(a for a, _ in figures) == 40
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from calls").fetchone()[0] == 40
