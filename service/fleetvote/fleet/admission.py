"""Admission: where each member of a request can finish before the request's deadline.

A request is admitted when every member asked can finish in time somewhere:

* **on a board**: the board's backlog (its queue depth, plus the request it is computing) times its
  measured service time (``Board.service_ms``: a moving average of its round trips), plus its own
  service time for this image, fits before the deadline, with the engine's lead to spare;
* **else, fallback on, on the engine** as spillover (reason ``queue_full``): the engine's backlog
  (``EngineBatches.finish_ms``) fits before the deadline.

Only a member that can finish neither way refuses the request, before any of its work is queued:
``Overloaded`` (503) with a Retry-After from the backlog. Fallback off, a member without a board
in time is not computed at all, and fewer placed members than the quorum refuses the request.

Spillover is batched (``EngineBatches``): members waiting for the engine are computed together,
one batch per model at a time, so that a burst costs the engine's batch price, not its per-image
price (about 2.3 times less per image at batch 256 than at batch 1: 2,186 against 931 images/s on
vgg12-s1-r2, one thread, ``make bench-engine``). A batch waits at most ``BATCH_WAIT_S`` to fill.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

# a batch waits this long for more members of the same model before it starts: 2 ms is under a
# fifth of the fleet's ~10 ms answer at concurrency 1 and collects a burst's members, which arrive
# within a millisecond of each other
BATCH_WAIT_S = 0.002
# images per batch: the engine's own chunk is 128 (engine.BATCH_CHUNK); 64 keeps one batch of the
# slowest member under ~100 ms on one core, so a batch does not hold the next one's deadline hostage
MAX_BATCH = 64
# the engine's time per image before it has been measured (ms): about the slowest zoo member at
# batch 1 on one loaded core; replaced by the measured average after the first batch
INITIAL_ENGINE_MS = 5.0
# the boards' service time before their first answer (ms), when the HELLO gives no clock and baud
INITIAL_BOARD_MS = 5.0
CALIBRATION_BATCH = 8  # images per member timed at start-up: a batch, as spillover runs, yet quick
EWMA = 0.2  # weight of the newest measurement in the moving averages of service times


def retry_after_s(backlog_ms: float) -> int:
    """Retry-After in whole seconds: when the backlog ahead of a new request has drained (>= 1)."""
    return max(1, math.ceil(backlog_ms / 1000))


@dataclass
class _Lane:
    """The engine work of one model: images waiting, and whether a batch of them is computing."""

    engine: object
    waiting: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)
    computing: int = 0  # images in the batch being computed
    timer: asyncio.TimerHandle | None = None
    ms_per_image: float = INITIAL_ENGINE_MS


class EngineBatches:
    """The engine's work, batched per model on a thread pool: ``submit`` returns a future of
    (int8 output, ms); ``finish_ms`` estimates when a member submitted now would be done."""

    def __init__(self, pool: ThreadPoolExecutor, workers: int) -> None:
        self._pool = pool
        self.workers = max(1, workers)
        self._lanes: dict[tuple[str, str], _Lane] = {}

    def _lane(self, member) -> _Lane:
        key = (member.id, member.sha256)
        lane = self._lanes.get(key)
        if lane is None or lane.engine is not member.engine:
            lane = self._lanes[key] = _Lane(member.engine, ms_per_image=lane.ms_per_image if lane else INITIAL_ENGINE_MS)
        return lane

    # ---- estimates ------------------------------------------------------------------------

    async def calibrate(self, members, batch: int = CALIBRATION_BATCH) -> None:
        """Each member's engine timed once on a small batch, off the event loop: admission's first
        estimate, before any spillover has been measured (start-up; a few tens of ms a member)."""
        images = np.zeros((batch, 32, 32, 3), np.uint8)
        loop = asyncio.get_running_loop()
        for m in members:
            try:
                _, ms = await loop.run_in_executor(self._pool, _run_batch, m.engine, images)
            except Exception:  # a stand-in engine of a test, or a model the engine refuses: keep the guess
                continue
            self._lane(m).ms_per_image = ms / batch

    def backlog_ms(self) -> float:
        """Engine time queued and computing, all models, on one core."""
        return sum((len(lane.waiting) + lane.computing) * lane.ms_per_image for lane in self._lanes.values())

    def finish_ms(self, members) -> float:
        """When the last of ``members`` (one image each) submitted now would be computed: its own
        model's lane (batches of one model run one after another) or the whole backlog shared by
        the pool's workers, whichever is later, plus the wait for a batch to fill."""
        if not members:
            return 0.0
        total = self.backlog_ms() + sum(self._lane(m).ms_per_image for m in members)
        shared = total / self.workers
        own = max((len(lane.waiting) + lane.computing + 1) * lane.ms_per_image
                  for lane in (self._lane(m) for m in members))
        return max(shared, own) + BATCH_WAIT_S * 1000

    # ---- work -----------------------------------------------------------------------------

    def submit(self, member, image: np.ndarray) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        lane = self._lane(member)
        fut = loop.create_future()
        lane.waiting.append((image, fut))
        if lane.computing:
            return fut  # taken by the next batch when this one ends
        if len(lane.waiting) >= MAX_BATCH:
            self._flush(lane)
        elif lane.timer is None:
            lane.timer = loop.call_later(BATCH_WAIT_S, self._flush, lane)
        return fut

    def _flush(self, lane: _Lane) -> None:
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        lane.waiting = [(x, f) for x, f in lane.waiting if not f.done()]  # callers that gave up
        if not lane.waiting or lane.computing:
            return
        batch, lane.waiting = lane.waiting[:MAX_BATCH], lane.waiting[MAX_BATCH:]
        lane.computing = len(batch)
        images = np.stack([x for x, _ in batch])
        run = asyncio.get_running_loop().run_in_executor(self._pool, _run_batch, lane.engine, images)
        run.add_done_callback(lambda r: self._done(lane, batch, r))

    def _done(self, lane: _Lane, batch, run: asyncio.Future) -> None:
        lane.computing = 0
        if run.cancelled() or run.exception() is not None:
            exc = run.exception() if not run.cancelled() else asyncio.CancelledError()
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
        else:
            outs, ms = run.result()
            per = ms / len(batch)
            lane.ms_per_image = (1 - EWMA) * lane.ms_per_image + EWMA * per
            for (_, f), out in zip(batch, outs):
                if not f.done():
                    f.set_result((out, ms))
        if lane.waiting:  # they have waited for this batch already: no further wait to fill
            self._flush(lane)


def _run_batch(engine, images: np.ndarray) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = engine.run(images)
    return out, (time.perf_counter() - t) * 1000
