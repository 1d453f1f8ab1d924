"""Helpers shared by the deploy tests: external tools, kustomize builds, the process rig, PromQL.

The process rig (gateway_stats/testing/procs.py) is imported here only: if it moves, one line changes.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_stats.testing import procs

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
# Every kustomization we ship, built and validated as a whole.
KUSTOMIZATIONS = ("base", "processor", "envoy-gateway", "istio", "higress", "higress-cutover")

__all__ = [
    "DEPLOY",
    "K8S",
    "KUSTOMIZATIONS",
    "REPO",
    "get",
    "kustomize",
    "metric",
    "post",
    "procs",
    "promql",
    "tool",
    "wait_for",
]
CHAT = "/v1/chat/completions"


def tool(name: str, how: str, extra: tuple[str, ...] = ()) -> str:
    """Path of an external binary. Missing: fails under CI=1 (.ci/run installs it), skips otherwise."""
    venv_bin = str(Path(sys.executable).parent)
    exe = shutil.which(name, path=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    for candidate in extra:
        if not exe and os.access(candidate, os.X_OK):
            exe = candidate
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail(f"no `{name}` binary ({how}); in CI this test must run")
    pytest.skip(f"`{name}` is not installed ({how}); CI installs it and runs this test")


def kustomize(name: str) -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/kubernetes/NAME`: the objects `kubectl apply -k` would send."""
    kubectl = tool("kubectl", "kubectl ships kustomize; it is part of the machine image")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / name)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def promql(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(query)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        doc = json.load(r)
    assert doc["status"] == "success", (query, doc)
    return doc["data"]["result"]  # type: ignore[no-any-return]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post(port: int, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST", CHAT, body=json.dumps(body), headers={"content-type": "application/json", **headers}
        )
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for ln in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)$", ln)
        if not m or m.group(1) != name:
            continue
        pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(pairs.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total
