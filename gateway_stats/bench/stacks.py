"""The set-ups compared in one run, all behind the same Envoy 1.40 (one worker) and one upstream.

* plain    - Envoy alone: the baseline every ratio is taken against.
* noop     - Envoy + the naive no-op processor (headers SEND, request body BUFFERED, response body
             STREAMED): the floor gateway-stats must beat inline.
* noop-stop - the same no-op answering each call's request headers with a mode override that turns
             its other phases off (one message per call): what a shed call costs at the least.
* inline   - Envoy + gateway-stats exactly as deploy/envoy.yaml (the ai_log line read from our dynamic
             metadata, no Lua), realistic config (config/gateway-stats.yaml: full preset,
             question/answer, metrics).
* observe  - Envoy in observability_mode + gateway-stats writing the ai_log lines itself.
Optional: inline-lua (`envoy-config --log-format filter-state`: the Lua copy into Higress's wasm.ai_log
filter state and the %FILTER_STATE% access log, for a Higress cutover), noop-observe, and
inline-norecords (inline with the config's `gateway_stats.records` block removed: run it beside inline
to see what the SQLite records writer costs; config/gateway-stats.yaml enables it), and
inline-analytics (inline plus language detection and topic rules, `ANALYTICS` below: run it beside
inline to see what they cost the traffic).

A gateway-stats set-up name may carry suffixes: `-wN` runs `serve --workers N` (and Envoy's cluster
from `envoy-config --workers N`), `-shed` turns load shedding on (`overload.enabled: true`, the
product's default budget), `-unix` puts the gRPC side on a Unix socket. Without `-shed` shedding is
off, so an inline set-up observes every call it can. E.g. `inline-w2-shed`, `observe-w2`.

Each bootstrap starts from envoy_bootstrap.bootstrap() and only removes or narrows, so the bench
measures the configuration users deploy.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway_stats.envoy.bootstrap import HIGRESS_LOG_FORMAT, EnvoyOptions, bootstrap
from gateway_stats.testing.procs import Proc, envoy_binary, free_port, wait_http, wait_port

# What inline-analytics adds to the sidecar config: language and topic of every call's last user text,
# computed off the request path (records writer -> the enricher's child process).
ANALYTICS = {
    "language": {"languages": ["en", "de", "fr", "es", "it", "pt", "nl", "ru", "zh", "ja", "ko"]},
    "topics": {"billing": ["invoice", "refund", "payment"], "support": ["error", "broken", "help"]},
}
BASES = (
    "plain",
    "noop",
    "noop-stop",
    "inline",
    "observe",
    "inline-lua",
    "noop-observe",
    "inline-norecords",
    "inline-analytics",
)
CONFIGS = (*BASES, "inline-w2", "inline-w2-shed", "observe-w2", "inline-unix", "...")  # for --help
DEFAULT_CONFIGS = ("plain", "noop", "inline", "inline-w2", "inline-w2-shed", "observe", "observe-w2")


GATEWAY_STATS = ("inline", "observe", "inline-lua", "inline-norecords", "inline-analytics")


@dataclass(frozen=True)
class SetUp:
    """A set-up name split into its base kind and suffixes (see the module docstring)."""

    base: str
    workers: int = 1
    shed: bool = False
    unix: bool = False

    @classmethod
    def parse(cls, name: str) -> SetUp:
        for base in sorted(BASES, key=len, reverse=True):
            if name == base or name.startswith(base + "-"):
                break
        else:
            raise ValueError(f"unknown set-up {name!r} (bases: {', '.join(BASES)})")
        workers, shed, unix = 1, False, False
        for part in name[len(base) :].split("-")[1:]:
            if part == "shed":
                shed = True
            elif part == "unix":
                unix = True
            elif part.startswith("w") and part[1:].isdigit() and int(part[1:]) >= 1:
                workers = int(part[1:])
            else:
                raise ValueError(f"set-up {name!r}: unknown suffix {part!r} (-wN, -shed, -unix)")
        if base not in GATEWAY_STATS and (workers > 1 or shed):
            raise ValueError(f"set-up {name!r}: -wN and -shed apply to gateway-stats set-ups only")
        if base == "plain" and unix:
            raise ValueError(f"set-up {name!r}: plain Envoy has no side stream")
        return cls(base, workers, shed, unix)


REPO = Path(__file__).resolve().parents[2]
DEFAULT_SIDECAR_CONFIG = REPO / "config" / "gateway-stats.yaml"


def spawn(name: str, argv: list[str], workdir: Path) -> Proc:
    log_path = workdir / f"{name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as fh:
        p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(workdir))
    return Proc(name, p, log_path)


def _filters(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["http_filters"]


def _hcm(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def envoy_config(kind: str, o: EnvoyOptions) -> dict[str, Any]:
    """The bootstrap for one set-up (see the module docstring)."""
    if kind in ("inline", "observe", "inline-norecords", "inline-analytics"):
        o.mode, o.log_format = kind.split("-")[0], "dynamic-metadata"  # envoy-config's default
        return bootstrap(o)
    if kind == "inline-lua":
        o.mode, o.log_format = "inline", "filter-state"
        return bootstrap(o)
    o.mode = "observe" if kind == "noop-observe" else "inline"
    o.log_format = "dynamic-metadata"  # no Lua filter
    cfg = bootstrap(o)
    _hcm(cfg)["access_log"][0]["typed_config"]["log_format"] = {
        "text_format_source": {"inline_string": HIGRESS_LOG_FORMAT}
    }
    filters = _filters(cfg)
    if kind == "plain":
        filters[:] = [f for f in filters if f["name"] != "envoy.filters.http.ext_proc"]
        clusters = cfg["static_resources"]["clusters"]
        clusters[:] = [c for c in clusters if c["name"] != "gateway_stats"]
        return cfg
    ext = next(f for f in filters if f["name"] == "envoy.filters.http.ext_proc")["typed_config"]
    for k in (
        "request_attributes",
        "response_attributes",
        "allow_mode_override",
        "send_body_without_waiting_for_header_response",
        "allow_content_length_header",
        "metadata_options",
    ):
        ext.pop(k, None)
    if kind in ("noop", "noop-stop"):
        # The naive reference: the whole request body in one message. (observability_mode cannot
        # send a BUFFERED body, so noop-observe keeps it STREAMED.)
        ext["processing_mode"]["request_body_mode"] = "BUFFERED"
    if kind == "noop-stop":
        ext["allow_mode_override"] = True  # its request-headers answer turns the other phases off
    return cfg


def _wait_file(path: Path, p: Proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not p.alive():
            raise RuntimeError(f"{p.name} exited before {path} appeared")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


def sidecar_config(src: Path, dst: Path, shed: bool, kind: str = "inline") -> Path:
    """The bench's sidecar config: `src` with load shedding on (its budget, else the product defaults)
    or off; for inline-norecords without its `records` block, for inline-analytics with `ANALYTICS`."""
    doc = yaml.safe_load(src.read_text()) or {}
    ext = doc.setdefault("gateway_stats", {}) if isinstance(doc, dict) else {}
    source = ext.get("overload")
    overload: dict[str, Any] = source if isinstance(source, dict) else {}
    ext["overload"] = {**overload, "enabled": shed}  # the source's budget, if it sets one
    if kind == "inline-norecords":
        ext.pop("records", None)
    elif kind == "inline-analytics":
        ext["analytics"] = ANALYTICS
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst


@dataclass
class BenchStack:
    name: str
    workdir: Path
    upstream_port: int
    sidecar_config: Path = DEFAULT_SIDECAR_CONFIG
    envoy_port: int = 0
    admin_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    processor_args: list[str] = field(default_factory=list)  # more arguments for the processor
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.setup = SetUp.parse(self.name)
        self.kind = self.setup.base

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    @property
    def ai_log_file(self) -> Path:
        return self.workdir / "ai_log.jsonl"

    @property
    def noop_count_file(self) -> Path:
        return self.workdir / "noop.count"

    @property
    def processor(self) -> Proc | None:
        return self.procs.get("processor")

    @property
    def is_gateway_stats(self) -> bool:
        return self.kind in ("inline", "observe", "inline-lua", "inline-norecords", "inline-analytics")

    @property
    def is_noop(self) -> bool:
        return self.kind.startswith("noop")

    @property
    def noop_sees_calls(self) -> bool:
        """A no-op whose count is calls it saw to their end (noop-stop counts streams it ended early)."""
        return self.is_noop and self.kind != "noop-stop"

    @property
    def ai_log_path(self) -> Path | None:
        if self.kind == "observe":
            return self.ai_log_file
        if self.kind in ("inline", "inline-lua", "inline-norecords", "inline-analytics"):
            return self.access_log
        return None

    def start(self) -> BenchStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.envoy_port = free_port()
        self.admin_port = free_port()
        if self.kind != "plain":
            self.grpc_port = free_port()
            self._start_processor()
        o = EnvoyOptions(
            listen=f"127.0.0.1:{self.envoy_port}",
            upstream=f"127.0.0.1:{self.upstream_port}",
            processor=self.grpc_address if self.kind != "plain" else "127.0.0.1:1",
            admin=f"127.0.0.1:{self.admin_port}",
            access_log=str(self.access_log),
            workers=self.setup.workers,
        )
        path = self.workdir / "envoy.yaml"
        path.write_text(yaml.safe_dump(envoy_config(self.kind, o), sort_keys=False, width=120))
        argv = [envoy_binary(), "-c", str(path), "--concurrency", "1", "--log-level", "warn"]
        # Same flush policy for every set-up; the default (10 s) would make counting lines slow.
        argv += ["--base-id", str(self.admin_port), "--file-flush-interval-msec", "500"]
        p = spawn("envoy", argv, self.workdir)
        self.procs["envoy"] = p
        wait_http(f"http://127.0.0.1:{self.admin_port}/ready", timeout=30, proc=p.popen)
        return self

    @property
    def grpc_address(self) -> str:
        if self.setup.unix:
            return f"unix:{self.workdir / 'gs.sock'}"
        return f"127.0.0.1:{self.grpc_port}"

    def _start_processor(self) -> None:
        if self.is_noop:
            argv = [
                sys.executable,
                "-m",
                "gateway_stats.bench.noop",
                "--listen",
                self.grpc_address,
            ]
            argv += ["--count-file", str(self.noop_count_file), *self.processor_args]
            if self.kind == "noop-stop":
                argv.append("--stop-after-headers")
            p = spawn("processor", argv, self.workdir)
            self.procs["processor"] = p
            if self.setup.unix:
                _wait_file(self.workdir / "gs.sock", p)
            else:
                wait_port(self.grpc_port, proc=p.popen)
            return
        self.metrics_port = free_port()
        argv = [
            sys.executable,
            "-m",
            "gateway_stats",
            "serve",
            "--log-level",
            "warning",
            "--grpc-address",
            self.grpc_address,
            "--metrics-address",
            f"127.0.0.1:{self.metrics_port}",
            "--config",
            str(
                sidecar_config(self.sidecar_config, self.workdir / "sidecar.yaml", self.setup.shed, self.kind)
            ),
            "--workers",
            str(self.setup.workers),
            *self.processor_args,
        ]
        if self.kind == "observe":
            argv += ["--ai-log-file", str(self.ai_log_file)]
        p = spawn("processor", argv, self.workdir)
        self.procs["processor"] = p
        wait_http(f"http://127.0.0.1:{self.metrics_port}/readyz", proc=p.popen)
        self._wait_analytics_worker()

    def _wait_analytics_worker(self, timeout: float = 120.0) -> None:
        """inline-analytics: the language worker loads its models (seconds of CPU) after the sidecar is
        ready; the timed loads start once it is done, so that start-up cost is not charged to them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
            if "gateway_stats_analytics_worker_ready" not in text:
                return
            if "gateway_stats_analytics_worker_ready 1.0" in text:
                return
            time.sleep(0.2)
        raise TimeoutError("the language/topic worker did not load its models in time")

    def stop(self) -> None:
        for name in ("envoy", "processor"):
            p = self.procs.get(name)
            if p is not None:
                p.stop(timeout=15)

    def cleanup_logs(self) -> None:
        """Access logs of a full run reach hundreds of MB; keep only the head for inspection."""
        for path in (self.access_log, self.ai_log_file):
            with contextlib.suppress(OSError):
                if path.stat().st_size > 1 << 20:
                    with open(path, "rb") as fh:
                        head = fh.read(1 << 16)
                    path.write_bytes(head)
