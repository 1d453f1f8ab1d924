"""The Kubernetes base pod, run for real: its Envoy bootstrap, its Envoy and gateway-stats arguments, its
ConfigMap, over a Unix socket, with a real Envoy 1.40, a real sidecar and the mock LLM; then a real
Prometheus scrapes both containers as the PodMonitor does, evaluates the alert rules' recording rules,
and answers every query of the Grafana dashboard.

What is changed for a local run, and nothing else (`local_bootstrap`, `local_envoy_args`,
`local_sidecar_args`; the bootstrap part is asserted):
- addresses: Envoy's listener 0.0.0.0:10000, its admin 127.0.0.1:9901, the stats listener 0.0.0.0:9902
  (in --config-yaml) and gateway-stats' 0.0.0.0:19090 become 127.0.0.1 on free ports;
- paths: the bootstrap and config files (/etc/envoy, /etc/gateway-stats) and the socket
  (/var/run/gateway-stats/ext_proc.sock) move into the test's directory; the config directory is laid
  out as the kubelet lays out a ConfigMap volume (`..data` symlink to a timestamped directory);
- the upstream: api.openai.com:443 over TLS becomes the mock on 127.0.0.1 in plain HTTP (its address,
  and the cluster's transport_socket dropped). The route's Host rewrite, every filter, the ext_proc
  settings, the Lua copy, the access log (/dev/stdout) and every command-line flag stay as shipped.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import DEPLOY, get, kustomize, metric, post, procs, promql, tool, wait_for

SOCKET = "/var/run/gateway-stats/ext_proc.sock"


# ------------------------------------------------------------------------------- local substitutions


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, list):
        out = {}
        for i, v in enumerate(node):
            out.update(_flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: node}


def local_bootstrap(text: str, *, listen: int, admin: int, socket: str, upstream: int) -> str:
    doc = yaml.safe_load(text)
    before = _flatten(doc)
    doc["admin"]["address"]["socket_address"]["port_value"] = admin
    (listener,) = doc["static_resources"]["listeners"]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listen}
    clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
    up = clusters["llm_upstream"]
    up["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] = {
        "address": "127.0.0.1",
        "port_value": upstream,
    }
    del up["transport_socket"]
    gs = clusters["gateway_stats"]
    gs["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"] = socket
    after = _flatten(doc)
    changed = {k for k in before.keys() | after.keys() if before.get(k, ...) != after.get(k, ...)}
    allowed = (
        "admin.address.socket_address.port_value",
        "static_resources.listeners.0.address.socket_address.",
        "static_resources.clusters.0.load_assignment.endpoints.0.lb_endpoints.0.endpoint.address.socket_address.",
        "static_resources.clusters.0.transport_socket.",
        "static_resources.clusters.1.load_assignment.endpoints.0.lb_endpoints.0.endpoint.address.pipe.path",
    )
    assert clusters["llm_upstream"] is doc["static_resources"]["clusters"][0]
    assert changed and all(k.startswith(allowed) for k in changed), sorted(changed)
    return yaml.safe_dump(doc, sort_keys=False)


def _replace_arg(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def local_envoy_args(args: list[str], *, config: Path, admin: int, stats: int) -> list[str]:
    out = _replace_arg(args, "-c", str(config))
    extra = out[out.index("--config-yaml") + 1]
    assert extra.count("port_value: 9902") == 1 and extra.count("port_value: 9901") == 1
    extra = extra.replace("port_value: 9902", f"port_value: {stats}")
    extra = extra.replace("port_value: 9901", f"port_value: {admin}").replace("0.0.0.0", "127.0.0.1")
    return _replace_arg(out, "--config-yaml", extra)


def local_sidecar_args(args: list[str], *, config: Path, socket: str, metrics: int) -> list[str]:
    out = _replace_arg(args, "--config", str(config))
    assert out[out.index("--grpc-address") + 1] == f"unix:{SOCKET}"
    out = _replace_arg(out, "--grpc-address", f"unix:{socket}")
    assert out[out.index("--metrics-address") + 1].startswith("0.0.0.0:")
    return _replace_arg(out, "--metrics-address", f"127.0.0.1:{metrics}")


class ConfigMapDir:
    """A directory laid out as the kubelet lays out a ConfigMap volume, updated the way it updates one:
    files in a timestamped directory, `..data` pointing at it, each key a symlink through `..data`; an
    update writes a new timestamped directory, points `..data_tmp` at it, renames `..data_tmp` over
    `..data` (atomic) and removes the old directory."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.n = 0
        current = self._write(files)
        os.symlink(current, root / "..data")
        for key in files:
            os.symlink(f"..data/{key}", root / key)

    def _write(self, files: dict[str, str]) -> str:
        self.n += 1
        name = f"..2026_01_01_00_00_{self.n:02d}.{self.n:09d}"
        d = self.root / name
        d.mkdir()
        for key, text in files.items():
            (d / key).write_text(text)
        return name

    def update(self, files: dict[str, str]) -> None:
        old = os.readlink(self.root / "..data")
        new = self._write(files)
        os.symlink(new, self.root / "..data_tmp")
        os.rename(self.root / "..data_tmp", self.root / "..data")
        shutil.rmtree(self.root / old)


# ------------------------------------------------------------------------------------------ the pod


@dataclass
class Pod:
    workdir: Path
    sidecar_argv: list[str]
    config_dir: ConfigMapDir
    config_text: str
    envoy: procs.Proc
    sidecar: procs.Proc
    mock: procs.Proc
    listen: int
    stats: int
    metrics: int
    mock_port: int
    extra: dict[str, Any] = field(default_factory=dict)

    def access_lines(self) -> list[dict[str, Any]]:
        out = []
        for ln in self.envoy.log_text().splitlines():
            if ln.startswith('{"ai_log"'):
                out.append(json.loads(ln))
        return out

    def ai_logs(self) -> list[dict[str, Any]]:
        return [json.loads(d["ai_log"]) for d in self.access_lines() if d["ai_log"] not in ("", "-")]

    def ai_log(self, chat_id: str, timeout: float = 10.0) -> dict[str, Any]:
        return wait_for(
            lambda: next((d for d in self.ai_logs() if d.get("chat_id") == chat_id), None),
            timeout,
            f"ai_log of {chat_id}",
        )

    def metrics_text(self) -> str:
        return get(f"http://127.0.0.1:{self.metrics}/metrics")[1]

    def start_sidecar(self) -> None:
        self.sidecar = procs._spawn("gateway-stats", self.sidecar_argv, self.workdir)
        procs.wait_http(f"http://127.0.0.1:{self.metrics}/readyz", proc=self.sidecar.popen)


def _with_records(config: str, path: Path) -> str:
    """The shipped config with its records file moved from the pod's volume to the test's temp dir."""
    local = config.replace("sqlite: /var/lib/gateway-stats/records.sqlite", f"sqlite: {path}")
    assert local != config, "the shipped config no longer writes SQLite records on the records volume"
    return local


def _start_pod(objs: list[dict[str, Any]], work: Path, sock_dir: Path) -> tuple[Pod, list[procs.Proc]]:
    """Start mock, sidecar and Envoy as the manifest says (with the local substitutions above). On a
    failure everything started is stopped, its logs printed, and the error raised."""
    (dep,) = [d for d in objs if d["kind"] == "Deployment"]
    cms = {c["metadata"]["name"]: c["data"] for c in objs if c["kind"] == "ConfigMap"}
    (bootstrap_text,) = [d["envoy.yaml"] for n, d in cms.items() if n.startswith("envoy-bootstrap")]
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    envoy_c, gs_c = containers["envoy"], containers["gateway-stats"]
    socket_path = str(sock_dir / Path(SOCKET).name)
    config_text = _with_records(cms["gateway-stats-config"]["config.yaml"], work / "records.sqlite")
    cm_dir = ConfigMapDir(work / "etc-gateway-stats", {"config.yaml": config_text})
    listen, admin, stats, metrics_port, mock_port = (procs.free_port() for _ in range(5))
    started: list[procs.Proc] = []
    try:
        mock = procs._spawn(
            "mockllm",
            [sys.executable, "-m", "gateway_stats.testing.mockllm", "--listen", f"127.0.0.1:{mock_port}"],
            work,
        )
        started.append(mock)
        procs.wait_http(f"http://127.0.0.1:{mock_port}/healthz", proc=mock.popen)

        # the gateway-stats container: the image's ENTRYPOINT (gateway-stats serve) + the manifest's args
        sidecar_argv = [
            sys.executable,
            "-m",
            "gateway_stats",
            "serve",
            *local_sidecar_args(
                gs_c["args"], config=cm_dir.root / "config.yaml", socket=socket_path, metrics=metrics_port
            ),
        ]
        sidecar = procs._spawn("gateway-stats", sidecar_argv, work)
        started.append(sidecar)
        procs.wait_http(f"http://127.0.0.1:{metrics_port}/readyz", proc=sidecar.popen)

        boot = work / "envoy.yaml"
        boot.write_text(
            local_bootstrap(
                bootstrap_text, listen=listen, admin=admin, socket=socket_path, upstream=mock_port
            )
        )
        assert envoy_c["command"] == ["envoy"]
        envoy_argv = [
            procs.envoy_binary(),
            *local_envoy_args(envoy_c["args"], config=boot, admin=admin, stats=stats),
        ]
        envoy = procs._spawn("envoy", envoy_argv, work)
        started.append(envoy)
        # the readiness probe's path, through the stats listener as the kubelet reaches it
        procs.wait_http(f"http://127.0.0.1:{stats}/ready", timeout=30, proc=envoy.popen)
    except Exception:
        for proc in reversed(started):
            proc.stop()
            print(f"--- {proc.name} ---\n{proc.log_text()[-3000:]}")
        raise
    pod = Pod(
        work,
        sidecar_argv,
        cm_dir,
        config_text,
        envoy,
        sidecar,
        mock,
        listen,
        stats,
        metrics_port,
        mock_port,
    )
    return pod, started


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    objs = kustomize("base")
    sock_dir = Path(f"/tmp/gs-{os.getpid()}-{time.monotonic_ns() % 10**8}")  # short: sun_path is 108 bytes
    sock_dir.mkdir()
    try:
        # A port from free_port() can be taken by another process before ours binds it: start again on
        # fresh ports (as gateway_stats' own test rig does).
        for attempt in range(1, 4):
            try:
                p, started = _start_pod(objs, tmp_path_factory.mktemp("pod"), sock_dir)
                break
            except Exception as exc:
                if attempt == 3:
                    raise
                print(f"pod start failed (attempt {attempt}: {exc}); retrying on fresh ports")
        try:
            yield p
        finally:
            for proc in reversed([*started, p.sidecar]):  # the sidecar may have been restarted by a test
                proc.stop()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------- the tests


def test_manifest_pod_observes_calls_over_the_unix_socket(pod: Pod) -> None:
    status, headers, body = post(
        pod.listen,
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        {"x-mock-chat-id": "pod-json", "x-mse-consumer": "alice"},
    )
    assert status == 200
    sent = json.loads(body)
    assert headers.get("content-length") == str(len(body))  # allow_content_length_header kept it
    log = pod.ai_log("pod-json")
    assert (log["model"], log["input_token"], log["output_token"]) == (
        sent["model"],
        sent["usage"]["prompt_tokens"],
        sent["usage"]["completion_tokens"],
    )
    sse = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "s"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert post(pod.listen, sse, {"x-mock-chat-id": "pod-sse", "x-mock-events": "5"})[0] == 200
    assert pod.ai_log("pod-sse")["response_type"] == "stream"
    # the access log line is Higress' exact shape: one key, ai_log, a JSON string
    assert all(list(d) == ["ai_log"] for d in pod.access_lines())

    # gateway-stats' metrics carry the route and cluster names of the shipped bootstrap
    wait_for(
        lambda: metric(pod.metrics_text(), "gateway_stats_calls_total") >= 2, 10, "2 calls in the metrics"
    )
    text = pod.metrics_text()
    h = "route_upstream_model_consumer_metric_llm_duration_count"
    assert (
        metric(
            text, h, ai_route="llm", ai_cluster="llm_upstream", ai_model="gpt-4o-mini", ai_consumer="alice"
        )
        == 1
    )
    assert metric(text, "gateway_stats_active_streams") == 0

    # Envoy's stats, as the PodMonitor scrapes them through the stats listener
    status, stats = get(f"http://127.0.0.1:{pod.stats}/stats/prometheus")
    assert status == 200
    assert metric(stats, "envoy_http_ext_proc_streams_started", envoy_http_conn_manager_prefix="llm") >= 2
    assert "envoy_http_ext_proc_failure_mode_allowed{" in stats  # the alert's counter, at 0
    assert (
        metric(stats, "envoy_http_ext_proc_failure_mode_allowed", envoy_http_conn_manager_prefix="llm") == 0
    )
    # ... and only those: the rest of the admin interface is not on the pod network
    for path in ("/quitquitquit", "/config_dump", "/stats", "/logging"):
        assert get(f"http://127.0.0.1:{pod.stats}{path}")[0] == 404, path


def test_configmap_symlink_swap_is_reloaded(pod: Pod) -> None:
    before = metric(pod.metrics_text(), "gateway_stats_config_reloads_total", result="ok")
    new = pod.config_text.replace(
        "use_default_attributes: true\n",
        "use_default_attributes: true\nattributes:\n"
        "  - {key: release, value_source: fixed_value, value: green, apply_to_log: true}\n",
        1,
    )
    assert new != pod.config_text
    pod.config_dir.update({"config.yaml": new})
    wait_for(
        lambda: metric(pod.metrics_text(), "gateway_stats_config_reloads_total", result="ok") > before,
        15,
        "a reload after the ..data swap",
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "after"}]}
    assert post(pod.listen, body, {"x-mock-chat-id": "pod-reloaded"})[0] == 200
    assert pod.ai_log("pod-reloaded")["release"] == "green"
    assert metric(pod.metrics_text(), "gateway_stats_config_reloads_total", result="failed") == 0


def _wave(pod: Pod, tag: str) -> int:
    """A mix of calls: two models, two consumers, JSON and streams, an upstream error, an unknown model."""
    msgs = [{"role": "user", "content": "one two three"}]
    calls: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({"model": "gpt-4o-mini", "messages": msgs}, {"x-mse-consumer": "alice"}),
        ({"model": "qwen-max", "messages": msgs}, {"x-mse-consumer": "bob", "x-mock-cached-tokens": "2"}),
        (
            {
                "model": "gpt-4o-mini",
                "messages": msgs,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            {
                "x-mse-consumer": "alice",
                "x-mock-events": "4",
                "x-mock-first-byte-ms": "30",
                "x-mock-interval-ms": "5",
            },
        ),
        (
            {
                "model": "qwen-max",
                "messages": msgs,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            {"x-mse-consumer": "bob", "x-mock-events": "3", "x-mock-first-byte-ms": "60"},
        ),
        ({"model": "gpt-4o-mini", "messages": msgs}, {"x-mse-consumer": "alice", "x-mock-status": "503"}),
        ({"model": "no-such-model-x", "messages": msgs}, {"x-mse-consumer": "carol"}),
    ]
    for i, (body, headers) in enumerate(calls):
        status = post(pod.listen, body, {**headers, "x-mock-chat-id": f"{tag}-{i}"})[0]
        assert status == int(headers.get("x-mock-status", "200"))
    return len(calls)


def _dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "gateway-stats.json").read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def _variables() -> list[tuple[str, str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "gateway-stats.json").read_text())
    out = []
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"]["query"])
            assert m, v["query"]
            out.append((v["name"], m.group(1), m.group(2)))
    return out


def _concrete(expr: str) -> str:
    """The query as Grafana sends it with these variable values (what the test's Prometheus has)."""
    for var, value in (
        ("$higress_job", "gateway-stats"),
        ("$envoy_job", "gateway-stats-envoy"),
        ("$job", "gateway-stats"),
        ("$route", ".*"),
        ("$model", ".*"),
        ("$consumer", ".*"),
        ("$__rate_interval", "1m"),
        ("$__range", "5m"),
    ):
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def test_dashboard_queries_and_recording_rules_return_data(pod: Pod, tmp_path: Path) -> None:
    exe = tool("prometheus", "Debian package `prometheus`; .ci/run installs it", ("/usr/bin/prometheus",))
    rules = DEPLOY / "prometheus" / "gateway-stats.rules.yaml"
    port = procs.free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    # the two jobs the PodMonitor sets up (its relabelings name them)
                    {
                        "job_name": "gateway-stats",
                        "static_configs": [{"targets": [f"127.0.0.1:{pod.metrics}"]}],
                    },
                    {
                        "job_name": "gateway-stats-envoy",
                        "metrics_path": "/stats/prometheus",
                        "static_configs": [{"targets": [f"127.0.0.1:{pod.stats}"]}],
                    },
                ],
            }
        )
    )
    prom = procs._spawn(
        "prometheus",
        [
            exe,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        tmp_path,
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=30, proc=prom.popen)

        def calls() -> float:
            res = promql(port, 'sum(gateway_stats_calls_total{job="gateway-stats"})')
            return float(res[0]["value"][1]) if res else -1.0

        base = wait_for(lambda: (c := calls()) >= 0 and (c,), 20, "a first scrape")[0]
        n = _wave(pod, "wave1")
        wait_for(lambda: calls() == base + n, 20, "wave 1 scraped")
        n += _wave(pod, "wave2")  # counters created by wave 1 now move: rates are > 0
        wait_for(lambda: calls() == base + n, 20, "wave 2 scraped")
        time.sleep(2.5)  # a couple of rule evaluations after the last scrape

        up = promql(port, "up")
        assert {r["metric"]["job"]: r["value"][1] for r in up} == {
            "gateway-stats": "1",
            "gateway-stats-envoy": "1",
        }

        # (what, the query sent, the PromQL it stands for)
        queries = [(f"panel {t!r}", _concrete(e), e) for t, e in _dashboard_queries()]
        groups = yaml.safe_load(rules.read_text())["groups"]
        rec = [r for g in groups for r in g["rules"] if "record" in r]
        # the recorded series (Prometheus loaded the file and evaluated them) and each expr itself
        queries += [(f"recording rule {r['record']}", r["record"], r["expr"]) for r in rec]
        queries += [(f"recording rule expr {r['record']}", r["expr"], r["expr"]) for r in rec]
        queries += [(f"variable ${v}", f"count by ({label}) ({m})", m) for v, m, label in _variables()]

        empty = []
        for what, q, _source in queries:
            res = promql(port, q)
            if not [r for r in res if not math.isnan(float(r["value"][1]))]:
                empty.append(f"{what}: {' '.join(q.split())} -> {res}")
        print(f"{len(queries)} queries, {len(queries) - len(empty)} with data")
        assert not empty, "queries without data:\n" + "\n".join(empty)
    finally:
        prom.stop()


def test_sidecar_restart_over_a_stale_socket_and_fail_open(pod: Pod) -> None:
    """The container is killed (liveness, OOM): the socket file stays in the emptyDir. Meanwhile Envoy
    passes calls unobserved and counts them; the restarted container binds the same path again."""
    pod.sidecar.kill()
    sock = Path(pod.sidecar_argv[pod.sidecar_argv.index("--grpc-address") + 1].removeprefix("unix:"))
    assert sock.is_socket()  # stale
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "down"}]}
    assert post(pod.listen, body, {"x-mock-chat-id": "pod-down"})[0] == 200  # fail-open
    stats = get(f"http://127.0.0.1:{pod.stats}/stats/prometheus")[1]
    assert (
        metric(stats, "envoy_http_ext_proc_failure_mode_allowed", envoy_http_conn_manager_prefix="llm") >= 1
    )
    pod.start_sidecar()

    def observed() -> bool:
        post(pod.listen, body, {"x-mock-chat-id": "pod-back"})
        return any(d.get("chat_id") == "pod-back" for d in pod.ai_logs())

    wait_for(observed, 15, "a call observed by the restarted sidecar")


def test_sigterm_drains_an_in_flight_stream(pod: Pod) -> None:
    """What the kubelet does after the preStop sleep: SIGTERM; the stream in flight finishes observed."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "long"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    result: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: result.update(
            r=post(
                pod.listen,
                body,
                {"x-mock-chat-id": "pod-drain", "x-mock-events": "15", "x-mock-interval-ms": "80"},
            )
        )
    )
    t.start()
    wait_for(lambda: metric(pod.metrics_text(), "gateway_stats_active_streams") >= 1, 10, "the stream open")
    pod.sidecar.popen.send_signal(signal.SIGTERM)
    ready = wait_for(
        lambda: (s := get(f"http://127.0.0.1:{pod.metrics}/readyz")[0]) != 200 and (s,), 5, "not ready"
    )
    assert ready == (503,)
    t.join(30)
    assert result["r"][0] == 200
    log = pod.ai_log("pod-drain")
    assert log["output_token"] == 15
    assert pod.sidecar.popen.wait(25) == 0
