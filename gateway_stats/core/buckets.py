"""Bucketed observations: the semconv bucket boundaries and one bounded histogram state.

Shared by the per-call record (inter-chunk gaps of a stream are bucketed as they arrive, so a
100,000-event stream costs the same few integers as a short one) and the metrics sink, whose
histogram series are the same object.
"""

from __future__ import annotations

from bisect import bisect_left

# OpenTelemetry GenAI semconv bucket advice (see shared/spec/genai-semconv.md).
TOKEN_BUCKETS: tuple[float, ...] = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ... 67108864
DURATION_BUCKETS: tuple[float, ...] = tuple(0.01 * 2**i for i in range(14))  # 0.01, 0.02, ... 81.92
# gen_ai.server.time_to_first_token, extended as Envoy AI Gateway does (15 ... 60 s).
SERVER_TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip
SERVER_TPOT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip


class BucketCounts:
    """Counts per bucket (not cumulative; the last slot is +Inf), their sum and their count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum: float = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        # Prometheus buckets are upper-inclusive (le), which is what bisect_left gives.
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def merge(self, other: BucketCounts) -> None:
        """Add another state with the same bounds (a record's chunk gaps into a metric series)."""
        if other.bounds != self.bounds:
            raise ValueError("bucket bounds differ")
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.sum += other.sum
        self.count += other.count

    def cumulative(self) -> list[int]:
        out = []
        acc = 0
        for c in self.counts:
            acc += c
            out.append(acc)
        return out
