"""Load shedding: when the sidecar falls behind, new calls pass unobserved instead of waiting for it.

Inline, Envoy waits for each answer, so a sidecar that is behind delays the traffic it watches: each
message of a call queues behind every other message on the event loop. The shedder keeps that wait
bounded. A monitor task sleeps a few milliseconds at a time and measures how late it wakes (the
event-loop lag: how long any ready callback, such as a gRPC message, waits for its turn). When the
lag exceeds `overload.max_loop_lag_ms`, or the calls in flight reach `overload.max_inflight_calls`,
the servicer sheds each *new* call at its request headers: it answers with a mode override that
turns the call's other phases off and ends the stream, so the call passes untouched and costs one
message instead of four or more. Calls already observed go on. Observation resumes once the lag
has stayed under the budget for `overload.recover_after_ms`.

Every shed call is counted in `gateway_stats_calls_shed_total{reason}`; the first overload is
logged as a warning, later ones at debug level. `gateway_stats_event_loop_lag_seconds` shows the last
measured lag. In observability mode answers are ignored, so shedding only ends the stream early: the
work for the call's later messages is saved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway_stats.config import OverloadConfig

log = logging.getLogger(__name__)

TICK_S = 0.005  # how often the monitor wakes (its lateness is the lag)
IDLE_TICK_S = 0.5  # while shedding is disabled in the config

LAG = "loop_lag"
INFLIGHT = "inflight"
REASONS = (LAG, INFLIGHT)


class Shedder:
    def __init__(self, config: Callable[[], OverloadConfig]) -> None:
        self._config = config  # read live: a config reload applies at once
        self.lag = 0.0  # seconds, last measured
        self.due = time.monotonic() + TICK_S  # when the monitor should wake next
        self.shedding_until = 0.0  # monotonic time before which new calls are shed (hysteresis)
        self.trigger_lag = 0.0  # the lag that started the current overload
        self.shed_total = 0
        self._episode_shed = 0
        self._warned = False
        self._in_episode = False

    async def monitor(self) -> None:
        """Measure the event-loop lag forever (a task of the serving loop)."""
        while True:
            cfg = self._config()
            tick = TICK_S if cfg.enabled else IDLE_TICK_S
            start = time.monotonic()
            self.due = start + tick
            await asyncio.sleep(tick)
            now = time.monotonic()
            self.lag = max(0.0, now - self.due)
            if not cfg.enabled:
                self.lag = 0.0
                self.shedding_until = 0.0
                continue
            if self.lag * 1000 > cfg.max_loop_lag_ms:
                if now >= self.shedding_until:
                    self.trigger_lag = self.lag
                self.shedding_until = now + cfg.recover_after_ms / 1000
            elif self._in_episode and now >= self.shedding_until:
                self._in_episode = False
                log.log(
                    logging.INFO if not self._warned else logging.DEBUG,
                    "load back under budget: observing new calls again (%d shed in this episode)",
                    self._episode_shed,
                )
                self._episode_shed = 0

    def check(self, inflight: int) -> str | None:
        """At a new call's request headers: the reason to shed it, or None to observe it."""
        cfg = self._config()
        if not cfg.enabled:
            return None
        now = time.monotonic()
        # The monitor may itself be waiting behind the backlog: lateness counts from its due time.
        lag = max(self.lag, now - self.due)
        reason: str | None = None
        if lag * 1000 > cfg.max_loop_lag_ms:
            if now >= self.shedding_until:
                self.trigger_lag = lag
            self.shedding_until = max(self.shedding_until, now + cfg.recover_after_ms / 1000)
            reason = LAG
        elif now < self.shedding_until:
            reason = LAG
        elif cfg.max_inflight_calls and inflight > cfg.max_inflight_calls:
            reason = INFLIGHT
        if reason is not None:
            self._shed(reason, max(lag, self.trigger_lag), inflight, cfg)
        return reason

    def _shed(self, reason: str, lag: float, inflight: int, cfg: OverloadConfig) -> None:
        self.shed_total += 1
        self._episode_shed += 1
        if self._in_episode:
            return
        self._in_episode = True
        what = (
            f"event-loop lag {lag * 1000:.1f} ms > max_loop_lag_ms {cfg.max_loop_lag_ms:g}"
            if reason == LAG
            else f"{inflight} calls in flight > max_inflight_calls {cfg.max_inflight_calls}"
        )
        if not self._warned:
            self._warned = True
            log.warning(
                "overloaded (%s): new calls pass unobserved until it recovers; counted in "
                "gateway_stats_calls_shed_total (further overloads logged at debug level)",
                what,
            )
        else:
            log.debug("overloaded (%s): shedding new calls", what)
