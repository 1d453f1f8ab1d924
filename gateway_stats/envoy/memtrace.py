"""Memory: the RSS limit (`serve --max-rss-mib`) and diagnostics for soaks.

`--max-rss-mib N`: once the process's RSS passes N MiB, it drains (as on SIGTERM: readiness 503,
in-flight streams finish and are recorded) and exits 0, for its supervisor to start it afresh. grpcio
keeps ~130 bytes per stream Envoy resets (docs/reliability.md), so RSS grows ~1.3 MiB per 10,000 calls;
a planned drain loses no in-flight record, unlike an OOM kill.

Diagnostics: GATEWAY_STATS_MEMTRACE=/path/file.jsonl makes `serve` trace Python
allocations (tracemalloc, 1 frame) and append one JSON line every GATEWAY_STATS_MEMTRACE_SECONDS
(default 10): RSS, the Python heap tracemalloc sees, gc object counts, and the ten allocation sites
that grew most since the first snapshot. Costs real CPU (tracemalloc hooks every allocation): for
investigations only, never in production.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
import tracemalloc
from collections.abc import Callable

log = logging.getLogger(__name__)


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def run(path: str, every: float) -> None:
    tracemalloc.start(1)
    base = tracemalloc.take_snapshot()
    t0 = time.monotonic()
    while True:
        await asyncio.sleep(every)
        snap = tracemalloc.take_snapshot()
        top = snap.compare_to(base, "lineno")[:10]
        line = {
            "t": round(time.monotonic() - t0, 1),
            "rss_kib": _rss_kib(),
            "py_traced_kib": tracemalloc.get_traced_memory()[0] // 1024,
            "gc_objects": len(gc.get_objects()),
            "gc_counts": gc.get_count(),
            "top_growth": [
                {"where": str(s.traceback[0]), "kib": s.size_diff // 1024, "count": s.count_diff} for s in top
            ],
        }
        with open(path, "a") as fh:
            fh.write(json.dumps(line) + "\n")


async def watch_rss(limit_mib: float, on_over: Callable[[], None], every: float = 5.0) -> None:
    """Call `on_over` once, when RSS first exceeds `limit_mib`."""
    while True:
        await asyncio.sleep(every)
        rss = _rss_kib() / 1024
        if rss > limit_mib:
            log.warning(
                "RSS %.0f MiB is over --max-rss-mib %.0f: draining and exiting, to be restarted "
                "(grpcio keeps ~130 bytes per stream Envoy resets; docs/reliability.md)",
                rss,
                limit_mib,
            )
            on_over()
            return


def start_if_asked() -> asyncio.Task[None] | None:
    path = os.environ.get("GATEWAY_STATS_MEMTRACE")
    if not path:
        return None
    every = float(os.environ.get("GATEWAY_STATS_MEMTRACE_SECONDS", "10"))
    return asyncio.create_task(run(path, every))
