"""Load and bookkeeping for the fault tests through the real Envoy (not a test module).

Each call carries a unique `x-mock-chat-id`, so its ai_log line (if the sidecar observed it) can be
found in Envoy's access log. A call is "ok" when the client got a 200 and the complete answer (JSON
that parses with the expected usage, or an SSE stream through `[DONE]`).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gateway_stats.testing.procs import Stack

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello chaos"}]}
_ids = itertools.count()


@dataclass
class Call:
    marker: str
    stream: bool
    t0: float
    t1: float = 0.0
    status: int = 0
    complete: bool = False
    error: str = ""


def one_call(
    port: int, stream: bool, marker: str, extra: dict[str, str] | None = None, timeout: float = 20
) -> Call:
    c = Call(marker, stream, time.monotonic())
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}} if stream else CHAT
    headers = {"content-type": "application/json", "x-mock-chat-id": marker, "x-mock-events": "8"}
    if stream:
        headers["x-mock-interval-ms"] = "5"
    headers.update(extra or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers=headers)
        r = conn.getresponse()
        data = r.read()
        c.status = r.status
        if stream:
            c.complete = data.rstrip().endswith(b"data: [DONE]")
        else:
            c.complete = json.loads(data).get("usage", {}).get("completion_tokens") == 8
    except Exception as exc:  # a client-visible failure: recorded, asserted on by the test
        c.error = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
        c.t1 = time.monotonic()
    return c


@dataclass
class Load:
    """`threads` clients calling in a loop (JSON and SSE alternately) until stopped."""

    port: int
    threads: int = 4
    prefix: str = "chaos"
    extra: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, k: int) -> None:
        i = 0
        while not self._stop.is_set():
            marker = f"{self.prefix}-{k}-{next(_ids)}"
            c = one_call(self.port, stream=(i + k) % 2 == 0, marker=marker, extra=self.extra)
            with self._lock:
                self.calls.append(c)
            i += 1

    def start(self) -> Load:
        for k in range(self.threads):
            t = threading.Thread(target=self._run, args=(k,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def wait_count(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"load stalled at {self.count()} calls (wanted {n})")
            time.sleep(0.02)

    def stop(self) -> list[Call]:
        self._stop.set()
        for t in self._workers:
            t.join(30)
        return self.calls

    @staticmethod
    def failures(calls: list[Call]) -> list[Call]:
        return [c for c in calls if c.status != 200 or not c.complete]


def observed_markers(stack: Stack) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    try:
        text = stack.access_log.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        try:
            v = json.loads(line).get("ai_log")
            d = json.loads(v) if isinstance(v, str) and v not in ("", "-") else None
        except ValueError:
            continue
        if isinstance(d, dict) and isinstance(d.get("chat_id"), str):
            out[d["chat_id"]] = d
    return out


def settle_access_log(stack: Stack, markers: list[str], timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Wait (bounded) until the access log has stopped growing past the last call, then read it."""
    deadline = time.monotonic() + timeout
    seen = observed_markers(stack)
    while time.monotonic() < deadline and not all(m in seen for m in markers[-3:]):
        time.sleep(0.1)
        seen = observed_markers(stack)
    time.sleep(0.3)  # Envoy flushes the file every 100 ms in the rig
    return observed_markers(stack)


def metric(stack: Stack, name: str, **labels: str) -> float:
    import urllib.request

    with urllib.request.urlopen(stack.metrics_url, timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, lab = head.partition("{")
        if metric_name != name:
            continue
        pairs = dict(p.split("=", 1) for p in lab.rstrip("}").split(",") if "=" in p)
        if all(pairs.get(k, "").strip('"') == v for k, v in labels.items()):
            total += float(value)
    return total
