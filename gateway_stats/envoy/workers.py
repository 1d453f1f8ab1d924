"""`serve --workers N`: N sidecar processes behind one listening address, under a small supervisor.

One Python process uses one core, so `serve` runs N worker processes (default: the CPUs this process
may use). Each worker is a complete single-process sidecar (`serve --workers 1`, see server.py) with
its own Runtime, so its own config store, sinks, writers and metrics; nothing is shared in memory.

* gRPC: TCP workers all bind the same address with SO_REUSEPORT (the kernel spreads *connections*
  over them). Envoy multiplexes every ext_proc stream of one of its threads over a single HTTP/2
  connection per endpoint, so to spread *streams* its cluster must hold several connections:
  `envoy-config --workers N` lists the address several times with least-request balancing. A Unix
  socket cannot be shared that way: worker 0 listens on the given path, worker i on `PATH.i`, and
  `envoy-config --workers N` lists all of them (worker 0 alone still answers an Envoy that only
  knows the first path).
* Side HTTP (/metrics, /healthz, /readyz): every worker binds the metrics address with SO_REUSEPORT.
  Whichever worker takes a scrape answers for all: each worker writes a snapshot of its metrics into
  a shared directory twice a second (aggregate.py), the scraping worker merges them with its own live
  values. So one scrape shows the whole sidecar, a few hundred milliseconds late at most.
* Supervision: a worker that dies is restarted (backing off when it keeps dying at start) and
  counted in `gateway_stats_worker_restarts_total`; its last snapshot is kept, so counters do not
  go backwards. SIGTERM/SIGINT are passed to every worker, each drains its streams and flushes its
  sinks as a single process does; stragglers are killed after `--drain-seconds` + 5 s. Workers die
  with the supervisor (PR_SET_PDEATHSIG), so none is left behind if it is killed. Records writers
  (one per worker) flush their queues in that drain; the supervisor's wait includes their time.
* Config reload: every worker watches the config file itself, so a change reaches all within the
  poll interval (2 s).

The supervisor imports neither grpc nor asyncio: it only starts, watches and stops processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway_stats.envoy.addresses import split_host_port

log = logging.getLogger(__name__)

WORKER_ENV = "GATEWAY_STATS_WORKER"  # set in a worker's environment: its WorkerSpec as JSON
DIR_ENV = "GATEWAY_STATS_WORKER_DIR"  # optional: the shared directory (else a fresh temporary one)
STATE_FILE = "supervisor.json"  # in the shared directory: worker count and restarts
READY_SUFFIX = ".ready"
START_TIMEOUT_S = 60.0


def default_workers() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by this process's cgroup v2 `cpu.max` (or the v1 CFS quota); None if unlimited."""
    paths = [Path(root) / "cpu.max"]
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                paths.insert(0, Path(root) / line[3:].lstrip("/") / "cpu.max")
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            quota, period = path.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        q = int((Path(root) / "cpu" / "cpu.cfs_quota_us").read_text())
        p = int((Path(root) / "cpu" / "cpu.cfs_period_us").read_text())
        return None if q <= 0 else q / p
    return None


def worker_grpc_address(address: str, index: int) -> str:
    """Where worker `index` listens: the address itself for TCP (shared), `PATH.i` for a Unix socket."""
    if address.startswith("unix:") and index > 0:
        return f"{address}.{index}"
    return address


def worker_endpoints(address: str, workers: int, connections_per_worker: int = 4) -> list[str]:
    """The endpoints Envoy's cluster should list for `workers` workers behind `address`.

    Unix: one socket per worker. TCP: the shared address several times, so Envoy opens several
    HTTP/2 connections and the kernel's SO_REUSEPORT hashing spreads them (and so the streams) over
    the workers; with least-request balancing a busy worker's connections get fewer new streams.
    """
    if workers <= 1:
        return [address]
    if address.startswith("unix:"):
        return [worker_grpc_address(address, i) for i in range(workers)]
    return [address] * (workers * connections_per_worker)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is told by its supervisor (through the WORKER_ENV variable)."""

    index: int
    count: int
    dir: str  # shared directory: metric snapshots, ready marks, supervisor state
    supervisor_pid: int
    grpc_address: str  # this worker's own listen address (port resolved, Unix path suffixed)
    metrics_address: str

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkerSpec | None:
        raw = (environ if environ is not None else os.environ).get(WORKER_ENV)
        if not raw:
            return None
        return cls(**json.loads(raw))

    @property
    def ready_path(self) -> Path:
        return Path(self.dir) / f"w{self.index}{READY_SUFFIX}"

    def mark_ready(self) -> None:
        tmp = self.ready_path.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, self.ready_path)

    def all_started(self) -> bool:
        """Whether every worker of the supervisor has started (what /readyz reports with workers)."""
        return bool(read_state(self.dir).get("started"))

    def die_with_supervisor(self) -> None:
        """Ask the kernel for SIGTERM when the supervisor dies; exit now if it already has."""
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != self.supervisor_pid:
            raise SystemExit("gateway-stats worker: supervisor gone")


def read_state(shared_dir: str) -> dict[str, int]:
    try:
        return dict(json.loads((Path(shared_dir) / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return {}


@dataclass
class _Worker:
    index: int
    spec: WorkerSpec | None = None
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None
    backoff: float = 0.0
    ready: bool = False


class Supervisor:
    """Starts `count` workers (`python -m gateway_stats <argv>` with WORKER_ENV set), restarts the ones
    that die, and stops them all on SIGTERM/SIGINT."""

    def __init__(
        self,
        argv: list[str],
        count: int,
        grpc_address: str,
        metrics_address: str,
        drain_seconds: float = 10.0,
        shared_dir: str | None = None,
    ) -> None:
        self.argv = argv
        self.count = count
        self.grpc_address = grpc_address
        self.metrics_address = metrics_address
        self.drain_seconds = drain_seconds
        shared_dir = shared_dir or os.environ.get(DIR_ENV) or None
        self._own_dir = shared_dir is None
        if shared_dir is not None:
            os.makedirs(shared_dir, exist_ok=True)
        self.dir = shared_dir or tempfile.mkdtemp(prefix="gateway-stats-workers-")
        for stale in Path(self.dir).glob("*"):  # a reused directory: nothing of an earlier run counts
            if stale.suffix in (".snap", ".ready", ".tmp") or stale.name == STATE_FILE:
                with contextlib.suppress(OSError):
                    stale.unlink()
        self.restarts = 0
        self.workers = [_Worker(i) for i in range(count)]
        self._stopping = False
        self._started = False  # every worker was ready once: /readyz answers ready from then on
        self._held: list[socket.socket] = []  # ports reserved for port-0 addresses

    # ------------------------------------------------------------------------------ addresses
    def _reserve(self, host: str, port: int) -> int:
        """Port 0: pick one port for every worker and hold it (bound with SO_REUSEPORT, not listening)."""
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        self._held.append(s)
        return int(s.getsockname()[1])

    @staticmethod
    def _check_free(host: str, port: int, what: str) -> None:
        """A TCP port someone else already listens on would be shared silently through SO_REUSEPORT
        if that process set it too; refuse it the way a single process would."""
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError as e:
                raise OSError(f"cannot listen on {what} {host}:{port}: {e.strerror or e}") from e

    def _resolve(self, address: str, what: str) -> str:
        if address.startswith("unix:"):
            return address
        host, port = split_host_port(address)
        if port == 0:
            port = self._reserve(host, 0)
        else:
            self._check_free(host, port, what)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # ---------------------------------------------------------------------------------- state
    def _write_state(self) -> None:
        path = Path(self.dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        alive = sum(1 for w in self.workers if w.popen is not None and w.popen.poll() is None)
        state = {"workers": self.count, "restarts": self.restarts, "alive": alive, "started": self._started}
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def _spawn(self, w: _Worker) -> None:
        spec = WorkerSpec(
            index=w.index,
            count=self.count,
            dir=self.dir,
            supervisor_pid=os.getpid(),
            grpc_address=worker_grpc_address(self.grpc_address, w.index),
            metrics_address=self.metrics_address,
        )
        with contextlib.suppress(OSError):
            spec.ready_path.unlink()
        w.spec = spec
        env = dict(os.environ, **{WORKER_ENV: spec.to_env()})
        w.popen = subprocess.Popen([sys.executable, "-m", "gateway_stats", *self.argv], env=env)
        w.started = time.monotonic()
        w.restart_at = None
        w.ready = False

    def _retire(self, w: _Worker) -> None:
        """Keep a dead worker's last metrics (counters only are merged from it; see aggregate.py)."""
        from gateway_stats.envoy.aggregate import retire_snapshot

        assert w.popen is not None
        with contextlib.suppress(OSError):
            retire_snapshot(self.dir, w.index, w.popen.pid)

    # ------------------------------------------------------------------------------------ run
    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._stopping:
            log.info("signal %d received: stopping %d workers", signum, self.count)
        self._stopping = True

    def run(self) -> int:
        try:
            self.grpc_address = self._resolve(self.grpc_address, "gRPC address")
            self.metrics_address = self._resolve(self.metrics_address, "metrics address")
        except (OSError, ValueError) as e:
            log.error("%s", e)
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info(
            "starting %d workers on %s (metrics %s, shared directory %s)",
            self.count,
            self.grpc_address,
            self.metrics_address,
            self.dir,
        )
        try:
            for w in self.workers:
                self._spawn(w)
            self._write_state()
            if not self._wait_started():
                return 1
            self._supervise()
            return 0
        finally:
            self._shutdown()

    def _wait_started(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._stopping:
            pending = 0
            for w in self.workers:
                assert w.popen is not None
                rc = w.popen.poll()
                if rc is not None:
                    log.error("worker %d exited with %s while starting; stopping", w.index, rc)
                    return False
                if not w.ready:
                    w.ready = w.spec is not None and w.spec.ready_path.exists()
                    pending += not w.ready
            if not pending:
                self._started = True
                self._write_state()
                self._note_endpoints()
                return True
            if time.monotonic() > deadline:
                log.error("workers not ready after %.0fs; stopping", START_TIMEOUT_S)
                return False
            time.sleep(0.05)
        return True

    def _note_endpoints(self) -> None:
        log.info(
            "%d workers ready; Envoy spreads its streams over them only if its gateway_stats cluster "
            "holds several connections: `gateway-stats envoy-config --workers %d` lists %s",
            self.count,
            self.count,
            "every worker's socket" if self.grpc_address.startswith("unix:") else "the address several times",
        )

    def _supervise(self) -> None:
        while not self._stopping:
            time.sleep(0.1)
            now = time.monotonic()
            changed = False
            for w in self.workers:
                assert w.popen is not None
                if w.restart_at is None:
                    rc = w.popen.poll()
                    if rc is None or self._stopping:
                        continue
                    lived = now - w.started
                    w.backoff = 0.0 if lived > 10 else min(30.0, max(0.5, w.backoff * 2))
                    self.restarts += 1
                    how = f"signal {-rc}" if rc < 0 else f"status {rc}"
                    log.warning(
                        "worker %d (pid %d) died (%s) after %.1fs; restarting%s (restart %d)",
                        w.index,
                        w.popen.pid,
                        how,
                        lived,
                        f" in {w.backoff:.1f}s" if w.backoff else "",
                        self.restarts,
                    )
                    self._retire(w)
                    w.restart_at = now + w.backoff
                    changed = True
                elif now >= w.restart_at:
                    self._spawn(w)
                    changed = True
            if changed:
                self._write_state()

    def _shutdown(self) -> None:
        live = [w.popen for w in self.workers if w.popen is not None and w.popen.poll() is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds + 5.0
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d still running after the drain; killing it", p.pid)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(5)
        for s in self._held:
            s.close()
        if self._own_dir:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
