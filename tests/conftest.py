"""End-to-end rig: real Envoy 1.40 + gateway-stats + the mock LLM on free loopback ports.

Every process is started by `gateway_stats.testing.procs.Stack` (the same code the demo uses) and stopped
by PID when the test or module ends.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_stats.testing.procs import Stack, complete_lines
from gateway_stats.testing.servers import InfluxServer, PostgresServer, chromium_binary, missing


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(**kw: Any) -> Stack:
        s = Stack(tmp_path / f"stack{len(made)}", **kw)
        made.append(s)
        try:
            s.start()
        except Exception:
            for p in s.procs.values():
                print(f"--- {p.name} ---\n{p.log_text()[-3000:]}")
            s.stop()
            raise
        return s

    yield make
    for s in made:
        s.stop()


def running(s: Stack) -> Iterator[Stack]:
    """Start `s` for a fixture, printing every process's log tail if it fails to start; stop it after."""
    try:
        s.start()
    except Exception:
        for p in s.procs.values():
            print(f"--- {p.name} ---\n{p.log_text()[-3000:]}")
        s.stop()
        raise
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One inline stack shared by a module (default config: usage and model only)."""
    s = Stack(tmp_path_factory.mktemp("stack"))
    yield from running(s)


def post(
    port: int,
    path: str,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"content-type": "application/json", **(headers or {})}
        conn.request("POST", path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def access_lines(stack: Stack) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in complete_lines(stack.access_log)]


def ai_logs(stack: Stack) -> list[dict[str, Any]]:
    out = []
    for line in access_lines(stack):
        v = line.get("ai_log")
        if isinstance(v, str) and v not in ("", "-"):
            out.append(json.loads(v))
    return out


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ai_log_for(stack: Stack, marker: str, timeout: float = 10.0) -> dict[str, Any]:
    """The ai_log whose chat_id (set by the mock from x-mock-chat-id) is `marker`."""

    def find() -> dict[str, Any] | None:
        for d in ai_logs(stack):
            if d.get("chat_id") == marker:
                return d
        return None

    return wait_for(find, timeout, f"ai_log with chat_id {marker}")  # type: ignore[no-any-return]


def metrics_text(stack: Stack) -> str:
    with urllib.request.urlopen(stack.metrics_url, timeout=5) as r:
        return r.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of samples of `name` whose labels include `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, lab = head.partition("{")
        if metric != name:
            continue
        pairs = dict(p.split("=", 1) for p in lab.rstrip("}").split(",") if "=" in p)
        pairs = {k: v.strip('"') for k, v in pairs.items()}
        if all(pairs.get(k) == v for k, v in labels.items()):
            total += float(value)
            found = True
    return total if found else 0.0


# ------------------------------------------------------------------ real servers (records tests)
# Started per module on free loopback ports in temp dirs, stopped by PID at the module's end. Missing
# locally: skipped; under CI=1 (.ci/run installs them): failed.


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    if not PostgresServer.available():
        missing("PostgreSQL server", "postgresql")
    s = PostgresServer().start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def influx() -> Iterator[InfluxServer]:
    if InfluxServer.binary() is None:
        missing("InfluxDB server", "influxdb")
    s = InfluxServer().start()
    yield s
    s.cleanup()


@pytest.fixture
def chromium() -> str:
    exe = chromium_binary()
    if exe is None:
        missing("Chromium browser", "chromium")
    assert exe is not None
    return exe
