"""Memory diagnostics for soaks: GATEWAY_STATS_MEMTRACE=/path/file.jsonl makes `serve` trace Python
allocations (tracemalloc, 1 frame) and append one JSON line every GATEWAY_STATS_MEMTRACE_SECONDS
(default 10): RSS, the Python heap tracemalloc sees, gc object counts, and the ten allocation sites
that grew most since the first snapshot. Costs real CPU (tracemalloc hooks every allocation): for
investigations only, never in production.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
import tracemalloc


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


def start_if_asked() -> asyncio.Task[None] | None:
    path = os.environ.get("GATEWAY_STATS_MEMTRACE")
    if not path:
        return None
    every = float(os.environ.get("GATEWAY_STATS_MEMTRACE_SECONDS", "10"))
    return asyncio.create_task(run(path, every))
