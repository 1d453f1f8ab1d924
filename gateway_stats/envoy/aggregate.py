"""One /metrics for all workers (`serve --workers N`): snapshots in a shared directory, merged at scrape.

Each worker writes `w<index>.snap` (marshal: its own metrics registry as samples, and the traffic
families of the metrics sink as plain values) every SNAPSHOT_INTERVAL_S when something changed. The
worker that takes a scrape merges its live values with the other workers' snapshots:

* traffic families (sinks/metrics.py): series with the same labels are added, under the same cap;
* the sidecar's own metrics: summed (counters, histograms and gauges such as active streams), except
  the few in MAX_MERGED where every worker reports the same thing (config reloads, read by each
  worker from the same file) or the worst one matters (event-loop lag): there the maximum;
* a dead worker's last snapshot is kept by the supervisor as `dead-<pid>.snap` and merged without its
  gauges, so counters never go backwards when a worker is restarted;
* `gateway_stats_workers` and `gateway_stats_worker_restarts_total` from the supervisor's state.

Values are at most SNAPSHOT_INTERVAL_S old (the scraping worker's own are live).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from gateway_stats.envoy.workers import WorkerSpec, read_state
from gateway_stats.sinks.metrics import exported_value, imported_value

if TYPE_CHECKING:
    from gateway_stats.envoy.runtime import Runtime
    from gateway_stats.sinks.metrics import ExportedFamily

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_S = 0.5
HEARTBEAT_S = 10.0  # a snapshot is rewritten at least this often, changed or not
MAX_MERGED = frozenset({"gateway_stats_config_reloads", "gateway_stats_event_loop_lag_seconds"})
DEAD_COMPACT_AT = 4  # more dead snapshots than this are merged into one

# (metric name, type, help, [(sample name, ((label, value), ...), value)])
ExportedMetric = tuple[str, str, str, list[tuple[str, tuple[tuple[str, str], ...], float]]]


def export_registry(registry: CollectorRegistry) -> list[ExportedMetric]:
    out: list[ExportedMetric] = []
    for m in registry.collect():
        samples = [(s.name, tuple(sorted(s.labels.items())), float(s.value)) for s in m.samples]
        out.append((m.name, m.type, m.documentation, samples))
    return out


def merge_registries(parts: Iterable[tuple[list[ExportedMetric], bool]]) -> list[ExportedMetric]:
    """Merge exported registries; a part flagged dead contributes no gauges."""
    order: dict[str, tuple[str, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for metrics, dead in parts:
        for name, typ, doc, samples in metrics:
            if dead and typ == "gauge":
                continue
            entry = order.get(name)
            if entry is None:
                entry = order[name] = (typ, doc, {})
            acc = entry[2]
            use_max = name in MAX_MERGED
            for sname, labels, value in samples:
                key = (sname, tuple(labels))
                if key not in acc:
                    acc[key] = value
                elif use_max:
                    acc[key] = max(acc[key], value)
                else:
                    acc[key] += value
    return [
        (name, typ, doc, [(sn, lab, v) for (sn, lab), v in acc.items()])
        for name, (typ, doc, acc) in order.items()
    ]


class _Collected:
    """Enough of a registry for generate_latest: yields prebuilt metric families."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def render_registry(metrics: list[ExportedMetric]) -> bytes:
    built: list[Metric] = []
    for name, typ, doc, samples in metrics:
        m = Metric(name, doc, typ)
        for sname, labels, value in samples:
            m.add_sample(sname, dict(labels), value)
        built.append(m)
    return generate_latest(_Collected(built))


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
        state = marshal.loads(data)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return state if isinstance(state, dict) else None


def _write(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(marshal.dumps(state))
    os.replace(tmp, path)


def snapshot_path(shared_dir: str, index: int) -> Path:
    return Path(shared_dir) / f"w{index}.snap"


def retire_snapshot(shared_dir: str, index: int, pid: int) -> None:
    """Called by the supervisor when worker `index` (pid) died: keep its last values as dead ones."""
    src = snapshot_path(shared_dir, index)
    state = _load(src)
    if state is None or state.get("pid") != pid:
        return
    os.replace(src, Path(shared_dir) / f"dead-{pid}.snap")
    dead = sorted(Path(shared_dir).glob("dead-*.snap"))
    if len(dead) > DEAD_COMPACT_AT:
        _compact(dead, Path(shared_dir) / f"dead-merged-{pid}.snap")


def _compact(paths: list[Path], target: Path) -> None:
    states = [s for p in paths if (s := _load(p)) is not None]
    traffic: dict[str, tuple[tuple[str, ...], int, dict[tuple[str, ...], Any]]] = {}
    for st in states:
        for name, label_names, folded, rows in st.get("traffic", ()):
            prev = traffic.get(name)
            if prev is None or prev[0] != tuple(label_names):
                prev = traffic[name] = (tuple(label_names), 0, {})
            acc = prev[2]
            for key, v in rows:
                if isinstance(v, tuple | list):
                    old = acc.get(key)
                    if old is None:
                        acc[key] = (list(v[0]), v[1], v[2])
                    elif len(old[0]) == len(v[0]):
                        acc[key] = (
                            [a + b for a, b in zip(old[0], v[0], strict=True)],
                            old[1] + v[1],
                            old[2] + v[2],
                        )
                else:
                    acc[key] = acc.get(key, 0) + imported_value(v)
            traffic[name] = (prev[0], prev[1] + folded, acc)
    merged = {
        "pid": 0,
        "self": merge_registries((st.get("self", []), True) for st in states),
        "traffic": [
            (n, ln, f, [(k, exported_value(v)) for k, v in acc.items()])
            for n, (ln, f, acc) in traffic.items()
        ],
    }
    _write(target, merged)
    for p in paths:
        if p != target:
            with contextlib.suppress(OSError):
                p.unlink()


class WorkerMetrics:
    """A worker's side of the shared /metrics: writes its snapshots, renders the merged exposition."""

    def __init__(self, runtime: Runtime, spec: WorkerSpec, interval: float = SNAPSHOT_INTERVAL_S) -> None:
        self.rt = runtime
        self.spec = spec
        self.interval = interval
        self.path = snapshot_path(spec.dir, spec.index)
        self._last_mark: tuple[int, ...] | None = None

    def state(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "index": self.spec.index,
            "self": export_registry(self.rt.registry),
            "traffic": self.rt.metrics.export(),
        }

    def write(self) -> None:
        _write(self.path, self.state())

    def _mark(self) -> tuple[int, ...]:
        st = self.rt.store
        return (self.rt.activity, st.reloads_ok, st.reloads_failed)

    async def run(self) -> None:
        """Write a snapshot whenever something changed (checked every interval), and on a heartbeat."""
        loop = asyncio.get_running_loop()
        last_write = 0.0
        while True:
            mark = self._mark()
            now = loop.time()
            if mark != self._last_mark or now - last_write > HEARTBEAT_S:
                self._last_mark = mark
                last_write = now
                try:
                    await asyncio.to_thread(self.write)
                except Exception:
                    log.exception("writing the metrics snapshot failed")
            await asyncio.sleep(self.interval)

    def _others(self) -> Iterator[tuple[dict[str, Any], bool]]:
        d = Path(self.spec.dir)
        for p in sorted(d.glob("*.snap")):
            if p == self.path:
                continue
            st = _load(p)
            if st is not None:
                yield st, p.name.startswith("dead-")

    def render(self) -> bytes:
        """The /metrics body for the whole sidecar (called in a thread by the side HTTP server)."""
        others = list(self._others())
        own_self = export_registry(self.rt.registry)
        merged = merge_registries([(own_self, False), *((st.get("self", []), dead) for st, dead in others)])
        traffic: list[list[ExportedFamily]] = [st.get("traffic", []) for st, _ in others]
        state = read_state(self.spec.dir)
        tail = (
            "# HELP gateway_stats_workers worker processes of this sidecar (serve --workers)\n"
            "# TYPE gateway_stats_workers gauge\n"
            f"gateway_stats_workers {state.get('workers', self.spec.count)}\n"
            "# HELP gateway_stats_worker_restarts_total worker processes restarted after they died\n"
            "# TYPE gateway_stats_worker_restarts_total counter\n"
            f"gateway_stats_worker_restarts_total {state.get('restarts', 0)}\n"
        )
        return render_registry(merged) + self.rt.metrics.render_merged(traffic).encode() + tail.encode()
