"""RSS of the metrics sink fed 100,000 distinct model names (twice): stays flat once the cap is reached.

    .venv/bin/python -m gateway_stats.bench.cardinality [--cap 2000] [--n 100000]

Records are fed straight to the sink (no Envoy, no gRPC): this measures what the metrics keep, not the
traffic path. RSS is read from /proc/self/status (Linux).
"""

from __future__ import annotations

import argparse
import gc
import time

from gateway_stats.config import parse_config
from gateway_stats.config.store import ConfigStore
from gateway_stats.core.record import CallRecord, Usage
from gateway_stats.sinks.metrics import MetricsSink

MS = 1_000_000


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def record(model: str) -> CallRecord:
    r = CallRecord(route="llm", cluster="llm_upstream", consumer="none", operation="chat", provider="openai")
    r.request_model = r.response_model = model
    r.status_code = 200
    r.response_type = "stream"
    r.request_stream = True
    r.usage = Usage(input_tokens=120, output_tokens=40, total_tokens=160)
    r.t_start = 1_000 * MS
    r.t_first_byte = r.t_start + 250 * MS
    r.t_first_content = r.t_first_byte
    r.t_end = r.t_start + 900 * MS
    r.note_chunk(r.t_first_byte)
    r.note_chunk(r.t_first_byte + 20 * MS)
    r.end_reason = "complete"
    r.finished = True
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap", type=int, default=2000)
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    store = ConfigStore(None)
    store.current = parse_config(
        {"gateway_stats": {"metrics": {"max_series_per_metric": args.cap, "gen_ai_server_aliases": True}}}
    )
    sink = MetricsSink(store)

    def feed(prefix: str) -> float:
        t0 = time.perf_counter()
        for i in range(args.n):
            sink.emit(record(f"{prefix}-{i}"), {})
        return time.perf_counter() - t0

    gc.collect()
    base = rss_kib()
    print(f"cap {args.cap} series per family, {args.n} distinct models per round; RSS at start {base} KiB")
    for rnd in ("a", "b", "c"):
        dt = feed(rnd)
        gc.collect()
        fed = rss_kib()
        series = [len(f.series) for f in sink.families.values()]
        print(
            f"round {rnd}: fed {args.n} new models in {dt:.1f} s ({dt / args.n * 1e6:.1f} us/record); "
            f"RSS {fed} KiB (+{fed - base}); max series/family {max(series)}, total {sum(series)}"
        )
    for i in (1, 2, 3):
        t0 = time.perf_counter()
        text = sink.render()
        dr = time.perf_counter() - t0
        size = len(text)
        del text
        gc.collect()
        print(f"scrape {i}: render {dr:.2f} s, {size // 1024} KiB of text; RSS after {rss_kib()} KiB")


if __name__ == "__main__":
    main()
