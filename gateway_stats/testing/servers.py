"""Real database servers for tests, started on free loopback ports in temp dirs and stopped by PID.

* `PostgresServer` — Debian's PostgreSQL 15 (`apt-get install postgresql`). PostgreSQL refuses to run
  as root, so as root `initdb` and `pg_ctl` run as the `postgres` user (runuser) in a temp dir that
  user owns. Trust authentication, fsync off: a throwaway server.
* `InfluxServer` — Debian's InfluxDB 1.x (`apt-get install influxdb`), `influxd -config FILE` with its
  own meta/data/wal dirs; `/write?db=` answers 204.
* `chromium_check()` — loads a local page in Debian's headless Chromium and returns its DOM after
  scripts ran and every console message it printed.

`missing(what, install)` skips a test locally and fails it under CI=1, where `.ci/run` installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_stats.testing.procs import free_port

PG_BIN = Path(os.environ.get("GATEWAY_STATS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def missing(what: str, install: str) -> None:
    """Skip (locally) or fail (CI=1) a test whose server is not installed."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"no {what}: .ci/run installs Debian's `{install}` package; in CI this test must run")
    pytest.skip(f"{what} is not installed (apt-get install {install}); CI installs it and runs this test")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def _kill_wait(pid: int, sig: int, timeout: float) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresServer:
    user: str = "gateway"
    port: int = 0
    dir: Path | None = None
    pid: int = 0

    @staticmethod
    def available() -> bool:
        return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> PostgresServer:
        if self.dir is None:
            # not under pytest's tmp (mode 700, root's): the postgres user must reach it
            self.dir = Path(tempfile.mkdtemp(prefix="gs-pg-"))
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres", "postgres")
            r = self._run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    self.user,
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
            if r.returncode:
                raise RuntimeError(f"initdb failed: {r.stdout}{r.stderr}")
        self.port = self.port or free_port()
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        )
        r = self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(self.dir / "server.log"),
                "-w",
                "start",
            ]
        )
        if r.returncode:
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{self.log_text()[-2000:]}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def log_text(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace") if self.dir else ""
        except OSError:
            return ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, by PID); the data directory is kept for a restart."""
        if self.pid and not _kill_wait(self.pid, signal.SIGINT, 20):
            _kill_wait(self.pid, signal.SIGKILL, 5)
        self.pid = 0

    def cleanup(self) -> None:
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=5, autocommit=True) as con:
            cur = con.execute(sql, args or None)
            return list(cur.fetchall()) if cur.description is not None else []


# ------------------------------------------------------------------------------------------ InfluxDB

INFLUX_CONFIG = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""


@dataclass
class InfluxServer:
    port: int = 0
    dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def binary() -> str | None:
        return shutil.which("influxd") or ("/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InfluxServer:
        exe = self.binary()
        if exe is None:
            raise RuntimeError("no influxd")
        self.dir = Path(tempfile.mkdtemp(prefix="gs-influx-"))
        self.port = self.port or free_port()
        cfg = self.dir / "influxdb.conf"
        cfg.write_text(INFLUX_CONFIG.format(dir=self.dir, port=self.port, rpc=free_port()))
        log = open(self.dir / "influxd.log", "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([exe, "-config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited: {self.log_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.status == 204:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"influxd not ready: {self.log_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def log_text(self) -> str:
        try:
            return (self.dir / "influxd.log").read_text(errors="replace") if self.dir else ""
        except OSError:
            return ""

    def query(self, q: str, db: str | None = None) -> dict[str, Any]:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc

    def points(self, measurement: str, db: str) -> list[dict[str, Any]]:
        """Every point of a measurement as {column: value} dicts (tags and fields)."""
        out = self.query(f'SELECT * FROM "{measurement}"', db)
        series = (out.get("results") or [{}])[0].get("series") or []
        rows: list[dict[str, Any]] = []
        for s in series:
            for values in s.get("values", []):
                rows.append(dict(zip(s["columns"], values, strict=True)))
        return rows

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# ------------------------------------------------------------------------------------------ Chromium

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


@dataclass
class PageCheck:
    dom: str
    console: list[str]  # every console message (console.log/error, uncaught exceptions), verbatim


def chromium_check(page: Path, timeout: float = 60) -> PageCheck:
    """Open `page` (a local file) in headless Chromium: the DOM after its scripts ran, and its console."""
    exe = chromium_binary()
    if exe is None:
        raise RuntimeError("no chromium")
    with tempfile.TemporaryDirectory(prefix="gs-chromium-") as profile:
        r = subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    if r.returncode != 0 and not r.stdout:
        raise RuntimeError(f"chromium failed ({r.returncode}): {r.stderr[-2000:]}")
    return PageCheck(r.stdout, console)
