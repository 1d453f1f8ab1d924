"""JSON load with wrk (Debian's package): closed loop, C connections, one thread, D seconds.

wrk's C event loop costs far less per request than any Python client, which matters when the load
generator shares two cores with what it measures. A Lua `done()` prints exact counts and percentiles
(µs) as one JSON line, so nothing is scraped from wrk's human-readable text.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gateway_stats.bench import canned

_LUA = """\
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["User-Agent"] = "gateway-stats-bench/1"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.headers["x-session-id"] = "bench-session"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,' ..
    '"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(b: bytes) -> str:
    return '"' + b.decode().replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_script(workdir: Path) -> Path:
    p = workdir / "bench-post.lua"
    p.write_text(_LUA % {"body": _lua_string(canned.JSON_REQUEST)})
    return p


def command(port: int, conns: int, duration: float, script: Path) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{canned.PATH}",
    ]


def parse(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("BENCH "):
            d = json.loads(line[6:])
            secs = d["duration_us"] / 1e6
            errors = d["connect"] + d["read"] + d["write"] + d["timeout"]
            return {
                # wrk counts a non-2xx/3xx answer in `requests` and in errors.status.
                "requests": d["requests"] - d["status"],
                "non2xx": d["status"],
                "errors": errors,
                "elapsed_s": secs,
                "rps": (d["requests"] - d["status"]) / secs if secs else 0.0,
                "latency_ms": {
                    "p50": d["p50_us"] / 1000,
                    "p90": d["p90_us"] / 1000,
                    "p99": d["p99_us"] / 1000,
                    "max": d["max_us"] / 1000,
                    "n": d["requests"],
                },
            }
    raise RuntimeError(f"no BENCH line in wrk output:\n{stdout[-2000:]}")


def start(port: int, conns: int, duration: float, script: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(port, conns, duration, script), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
