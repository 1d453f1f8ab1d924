"""Where the sidecar's time goes under load: py-spy samples of `gateway-stats serve`, summarised.

py-spy (not a dependency of the sidecar: `pip install -e '.[profile]'`) attaches from outside, so
the profiled process runs the code users run. grpc.aio's Cython core has no Python frames: its work
shows up as self time of the Python frame that called into it (asyncio `Handle._run` for the server's
coroutine steps, `Thread.run` for the completion-queue poller thread). The summary therefore splits
samples into gateway-stats code (anything below a gateway_stats frame other than the entry point),
the asyncio loop, and grpc.aio's own machinery, then lists the top functions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
_ENTRY = ("gateway_stats/__main__.py", "gateway_stats/cli.py")


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    if exe.exists():
        return str(exe)
    return shutil.which("py-spy")


@dataclass
class Profile:
    title: str
    samples: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    buckets: Counter[str] = field(default_factory=Counter)


def _bucket(frames: list[str]) -> str:
    if any("gateway_stats/" in f and not any(e in f for e in _ENTRY) for f in frames):
        return "gateway-stats code (servicer, observer, extraction, sinks, metrics calls)"
    leaf = frames[-1]
    if leaf.startswith("Thread.run ") or leaf.startswith("Thread._bootstrap"):
        return "grpc.aio completion-queue poller thread (Cython)"
    if leaf.startswith("Handle._run "):
        return "grpc.aio coroutine steps (Cython, seen as asyncio Handle._run)"
    if "asyncio/" in leaf or "selectors.py" in leaf:
        return "asyncio event loop (select, scheduling)"
    return "other"


def summarise(raw: str, title: str) -> Profile:
    p = Profile(title)
    for line in raw.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [_LINE.sub(")", f) for f in stack.split(";") if f]
        if not frames:
            continue
        p.samples += count
        p.self_time[frames[-1]] += count
        for f in set(frames):
            p.inclusive[f] += count
        p.buckets[_bucket(frames)] += count
    return p


def to_markdown(p: Profile, top: int = 12, extra: str = "") -> str:
    if not p.samples:
        return f"**{p.title}**: no samples\n"
    pct = 100.0 / p.samples
    out = [f"**{p.title}** ({p.samples:,} samples{extra})", "", "| where the samples fall | % |", "|---|---|"]
    for name, c in p.buckets.most_common():
        out.append(f"| {name} | {c * pct:.1f} |")
    out += ["", "| top functions, self time | % |", "|---|---|"]
    for name, c in p.self_time.most_common(top):
        out.append(f"| `{name}` | {c * pct:.1f} |")
    ours = [
        (n, c)
        for n, c in p.inclusive.most_common()
        if "gateway_stats/" in n and not any(e in n for e in _ENTRY)
    ][:top]
    out += ["", "| gateway-stats functions, inclusive time | % |", "|---|---|"]
    for name, c in ours:
        out.append(f"| `{name}` | {c * pct:.1f} |")
    return "\n".join(out) + "\n"


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen[str]:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy not found: `make bench-profile` installs it (pip install -e '.[profile]')")
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", str(rate)]
    argv += ["--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_recorded(popen: subprocess.Popen[str], out: Path, timeout: float = 60) -> str:
    text, _ = popen.communicate(timeout=timeout)
    deadline = time.monotonic() + 5
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote nothing: {text[-1500:]}")
    return out.read_text()
