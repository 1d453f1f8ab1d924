"""What the bench reads from outside the processes: /proc CPU and RSS, Envoy's ext_proc stats, the
sidecar's /metrics, and the ai_log lines that carry the exact token counts the upstream sent."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

from gateway_stats.bench import canned

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    """Live child processes (e.g. the sidecar's language/topic worker), from /proc/<pid>/task/*/children."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of the process and its live children: the sidecar's CPU includes its worker's."""
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in children(pid))


def tree_rss_mb(pid: int) -> float:
    return rss_mb(pid) + sum(rss_mb(c) for c in children(pid))


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def envoy_ext_proc_stats(admin_port: int) -> dict[str, int]:
    """Envoy's ext_proc counters (streams_started, failure_mode_allowed, message_timeouts, ...)."""
    out: dict[str, int] = {}
    try:
        text = _get(f"http://127.0.0.1:{admin_port}/stats?filter=ext_proc")
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(": ")
        if ".ext_proc." in k and v.strip().isdigit():
            out[k.rsplit(".ext_proc.", 1)[1]] = out.get(k.rsplit(".ext_proc.", 1)[1], 0) + int(v)
    return out


_SAMPLE = re.compile(r'^gateway_stats_records_total\{end_reason="([^"]*)"\} ([0-9.e+]+)$', re.M)


def sidecar_records(metrics_port: int) -> dict[str, int]:
    """gateway_stats_records_total by end_reason."""
    try:
        text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    except OSError:
        return {}
    return {m.group(1): int(float(m.group(2))) for m in _SAMPLE.finditer(text)}


def noop_count(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def file_size(path: Path | None) -> int:
    if path is None:
        return 0
    try:
        return path.stat().st_size
    except OSError:
        return 0


def count_exact_ai_logs(path: Path, start: int, input_tokens: int, output_tokens: int) -> tuple[int, int]:
    """(ai_log lines after byte `start` that carry both exact token counts, all lines after `start`).

    Both the access log and our own ai_log file hold the ai_log JSON escaped inside a JSON string,
    so the keys appear as \\"input_token\\":N.
    """
    want_in = b'\\"input_token\\":%d,' % input_tokens
    want_out = b'\\"output_token\\":%d,' % output_tokens
    good = lines = 0
    rest = b""
    with open(path, "rb") as fh:
        fh.seek(start)
        while True:
            block = fh.read(1 << 22)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            for line in block[:cut].splitlines():
                lines += 1
                if want_in in line and want_out in line:
                    good += 1
    return good, lines


def logged_chat_ids(path: Path, start: int) -> set[int]:
    """The x-bench-id of every ai_log line after byte `start` (its chat_id, see canned.ID_HEADER)."""
    key = canned.CHAT_ID_KEY
    n = canned.ID_DIGITS
    out: set[int] = set()
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    i = data.find(key)
    while i >= 0:
        j = i + len(key)
        digits = data[j : j + n]
        if digits.isdigit():
            out.add(int(digits))
        i = data.find(key, j)
    return out


def sidecar_counter(metrics_port: int, name: str) -> float:
    """Sum of every sample of a counter in the sidecar's /metrics (e.g. gateway_stats_calls_shed_total)."""
    try:
        text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def upstream_counts(port: int) -> dict[str, int]:
    import json

    try:
        return dict(json.loads(_get(f"http://127.0.0.1:{port}/_bench/stats")))
    except (OSError, ValueError):
        return {}
