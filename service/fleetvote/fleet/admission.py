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
vgg12-s1-r2, one thread, ``make bench-engine``). A batch waits at most ``BATCH_WAIT_S`` to fill,
and takes whatever is waiting, up to ``MAX_BATCH``.

The engine's estimate is a cost per batch, not per image (``BatchCost``: a fixed part per batch
plus a part per image), per model, in CPU time (the worker thread's own, ``time.thread_time``:
the work, whatever else runs): measured at start-up on a batch of 1 and a batch of
``CALIBRATION_BATCH`` (the lesser of two tries each), then corrected by every batch. How much of
a core that work gets is estimated apart (``thread_share``, below). A lane's waiting
images are counted as the batches they will run in (``BatchCost.drain_ms``), so that a burst's
spillover is priced at the batch price it will really pay; counting a burst at the price of a
batch of 8, as before, overestimated it several times over and refused requests the engine
could have answered.

The pool's workers get the cores only when nothing else wants them. Two things take them:

* **the host's other work** (other processes; the service's event loop): measured by a probe,
  ``EngineBatches.probe``, run while the engine is idle (at start-up, then at the discovery scans,
  at most every 2 s): a small batch's CPU time over its wall time is the share of a core a lone
  engine thread gets now (``background``; the first measurement replaces the guess of a whole
  core; on this project's loaded machine 0.1-0.6, on a quiet one about 1); every batch computed
  while no board on the host's cores is busy moves it the same way. A probe after an idle spell
  may see more than a long burst will get (the scheduler credits a thread that slept), which is
  why it runs 20 ms, several of the scheduler's slices;
* **the boards**, where they compute on the same cores (virtual boards at host speed,
  ``Settings.boards_share_cpu``): each busy board is one more thread runnable beside the
  engine's, and the kernel's scheduler (CFS) shares the cores equally among runnable threads:
  with ``w`` workers, ``b`` busy boards and ``c`` cores the engine gets ``c * w / (w + b)``
  cores at most (on 2 cores, 2 workers beside 5 busy boards get 0.57 of a core, not 2).
  Counting them keeps admission from promising the engine's time twice: once to the boards'
  members, once to the spillover.

A worker's share of a core is the product of the two (``thread_share``); an estimate in wall time
is the CPU work over it.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine import Engine
from ..errors import Overloaded

# a batch waits this long for more members of the same model before it starts: 2 ms is under a
# fifth of the fleet's ~10 ms answer at concurrency 1 and collects a burst's members, which arrive
# within a millisecond of each other
BATCH_WAIT_S = 0.002
# images per batch at most: the engine's own chunk (engine.BATCH_CHUNK, 128); a larger batch is
# split into chunks of 128 by the engine anyway, so it would gain nothing per image and hold its
# lane longer. A batch of 128 of the slowest zoo member takes about 0.3 s on one quiet core
MAX_BATCH = 128
# the engine's time per image before it has been measured (ms): about the slowest zoo member at
# batch 1 on one loaded core; replaced by the calibration at start-up, then by measured batches
INITIAL_ENGINE_MS = 5.0
# the boards' service time before their first answer (ms), when the HELLO gives no clock and baud
INITIAL_BOARD_MS = 5.0
# images per member timed at start-up, beside a batch of 1: the two give the fixed and the per-image
# part of a batch's time. 32 is past the knee of the engine's batch curve (the per-image time at
# 32 is within ~20 % of that at 128) and costs well under 0.2 s a member
CALIBRATION_BATCH = 32
EWMA = 0.2  # weight of the newest measurement in the moving averages of service times
# the probe's CPU time (ms): several of the scheduler's slices (3-4 ms on a loaded 2-core host), so
# that one uninterrupted slice does not pass for a free core; 20 ms every scan (2 s) is 1 % of a core
PROBE_MS = 20.0
PROBE_INTERVAL_S = 2.0  # at most one probe this often, however often the fleet scans for boards
PROBE_EWMA = 0.5  # the probe (and each batch beside no busy board) moves ``background`` this much
MIN_SHARE = 0.05  # a probe that saw next to no CPU (a frozen process) does not make estimates infinite


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """The CPUs this process can compute on, at least 1: those its affinity mask allows
    (``taskset``, a container's cpuset; ``os.cpu_count()`` counts the machine's, allowed or
    not), fewer when a cgroup v2 ``cpu.max`` quota (of its cgroup or an ancestor) grants less:
    ``quota period`` is quota/period CPUs, rounded up (a quota of 1.5 CPUs still runs 2 threads
    at once, each throttled). The engine's pool and admission's core count both use it."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(n, 1)


def _cgroup_cpu_quota(root: Path, proc_cgroup: Path) -> float | None:
    """The least ``cpu.max`` quota (CPUs) on the way from this process's cgroup v2 (the ``0::``
    line of /proc/self/cgroup) up to the root; None without cgroup v2 or without a quota."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    if rel is None:
        return None
    least = None
    path = root / rel.strip("/")
    while True:
        try:
            quota, period = (path / "cpu.max").read_text().split()[:2]
            if quota != "max" and float(period) > 0:
                cpus = float(quota) / float(period)
                least = cpus if least is None else min(least, cpus)
        except (OSError, ValueError):
            pass  # no cpu controller at this level, or a file this code does not understand
        if path == root or root not in path.parents:
            return least
        path = path.parent


@dataclass
class BatchCost:
    """An engine batch's time as admission counts it: ``fixed_ms`` per batch (the layers' Python
    overhead, paid once for a whole batch) plus ``per_image_ms`` for each image in it."""

    fixed_ms: float = 0.0
    per_image_ms: float = INITIAL_ENGINE_MS

    def batch_ms(self, n: int) -> float:
        return self.fixed_ms + self.per_image_ms * n if n > 0 else 0.0

    def drain_ms(self, n: int, max_batch: int = MAX_BATCH) -> float:
        """The time to compute ``n`` images waiting in one lane, as the batches of at most
        ``max_batch`` they will run in, one after another."""
        full, rest = divmod(max(n, 0), max_batch)
        return full * self.batch_ms(max_batch) + self.batch_ms(rest)

    def measured(self, n: int, ms: float) -> None:
        """A batch of ``n`` took ``ms`` (CPU time): the per-image part moves towards what it
        showed, weight ``EWMA`` (the fixed part is the calibration's)."""
        per = max(ms - self.fixed_ms, 0.0) / n
        self.per_image_ms = (1 - EWMA) * self.per_image_ms + EWMA * per

    @classmethod
    def fit(cls, one_ms: float, batch: int, batch_ms: float) -> "BatchCost":
        """From the time of a batch of 1 and of a batch of ``batch``: the line through both
        (a per-image part of at least 1 % of the single image's time, so that noise cannot make
        a batch look free)."""
        per = max((batch_ms - one_ms) / (batch - 1), one_ms / 100)
        return cls(max(one_ms - per, 0.0), per)


def retry_after_s(backlog_ms: float) -> int:
    """Retry-After in whole seconds: when the backlog ahead of a new request has drained (>= 1)."""
    return max(1, math.ceil(backlog_ms / 1000))


@dataclass
class _Lane:
    """The engine work of one model: images waiting, and whether a batch of them is computing."""

    engine: object
    waiting: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)
    computing: int = 0  # images in the batch being computed
    started: float = 0.0  # when that batch started (loop time)
    timer: asyncio.TimerHandle | None = None
    cost: BatchCost = field(default_factory=BatchCost)

    def ahead_ms(self, now: float, extra: int = 0, share: float = 1.0) -> float:
        """The lane's work (CPU ms) before ``extra`` more images would be done: what is left of the
        batch computing (its estimate less what ``share`` of a core did since it started, at least
        nothing), then the waiting ones and ``extra`` in batches."""
        done = (now - self.started) * 1000 * share
        left = max(self.cost.batch_ms(self.computing) - done, 0.0) if self.computing else 0.0
        return left + self.cost.drain_ms(len(self.waiting) + extra)


class EngineBatches:
    """The engine's work, batched per model on a thread pool: ``submit`` returns a future of
    (int8 output, ms); ``finish_ms`` estimates when a member submitted now would be done."""

    def __init__(self, pool: ThreadPoolExecutor, workers: int, cores: int | None = None,
                 rivals: Callable[[], int] | None = None) -> None:
        self._pool = pool
        self.workers = max(1, workers)
        self.cores = max(1, cores or usable_cpus())
        self.rivals = rivals  # how many other threads compute on these cores now (busy host boards)
        self.background = 1.0  # the share of a core a lone engine thread got at the last probes
        self.observed = 0  # how many runs measured it: the first replaces the guess of a whole core
        self._probed_at: float | None = None  # loop time of the last probe
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._closed = False  # close(): no batch starts any more

    def thread_share(self) -> float:
        """The share of a core one busy worker can count on now: what the host's other work leaves
        it (``background``), and of that its equal share among the runnable threads beside busy
        boards on the same cores (module docstring)."""
        rivals = max(self.rivals() if self.rivals is not None else 0, 0)
        return max(self.background * min(1.0, self.cores / (self.workers + rivals)), MIN_SHARE)

    def parallel(self) -> float:
        """The cores the engine's workers together can count on now."""
        return self.workers * self.thread_share()

    def _lane(self, member) -> _Lane:
        key = (member.id, member.sha256)
        lane = self._lanes.get(key)
        if lane is None or lane.engine is not member.engine:
            lane = self._lanes[key] = _Lane(member.engine, cost=lane.cost if lane else BatchCost())
        return lane

    # ---- estimates ------------------------------------------------------------------------

    async def calibrate(self, members, batch: int = CALIBRATION_BATCH, tries: int = 2) -> None:
        """Each member's engine timed (CPU time) on a batch of 1 and a batch of ``batch``, off the
        event loop, the lesser of ``tries`` each: admission's first ``BatchCost``, before any
        spillover has been measured (start-up; about 0.1-0.3 s a member on 2 shared cores)."""
        loop = asyncio.get_running_loop()
        for m in members:
            times = {}
            try:
                for n in (1, batch):
                    images = np.zeros((n, 32, 32, 3), np.uint8)
                    times[n] = min([(await loop.run_in_executor(self._pool, _run_batch, m.engine, images))[2]
                                    for _ in range(tries)])
            except Exception:  # a stand-in engine of a test, or a model the engine refuses: keep the guess
                continue
            self._lane(m).cost = BatchCost.fit(times[1], batch, times[batch])

    async def probe(self) -> float | None:
        """While the engine is idle and no board computes beside it, at most every
        ``PROBE_INTERVAL_S``: a small batch of the cheapest model, its CPU time over its wall
        time, folded into ``background`` (weight ``PROBE_EWMA``). Returns the share it saw, None
        when it did not run (busy, or no real engine: a test's stand-in measures nothing)."""
        now = asyncio.get_running_loop().time()
        if self._probed_at is not None and now - self._probed_at < PROBE_INTERVAL_S:
            return None
        busy = any(lane.computing or lane.waiting for lane in self._lanes.values())
        real = [lane for lane in self._lanes.values() if isinstance(lane.engine, Engine)]
        if busy or not real or (self.rivals is not None and self.rivals() > 0):
            return None
        lane = min(real, key=lambda la: la.cost.per_image_ms)
        n = int(min(max(PROBE_MS / max(lane.cost.per_image_ms, 1e-3), 1), MAX_BATCH))
        images = np.zeros((n, 32, 32, 3), np.uint8)
        self._probed_at = now
        # the probe is the lane's batch while it runs, as a spillover batch would be: members
        # submitted meanwhile wait for it (one batch per lane at a time, so that one engine never
        # runs two batches at once) and ``ahead_ms`` counts it; they go as soon as it ends
        lane.computing, lane.started = n, now
        run = asyncio.get_running_loop().run_in_executor(self._pool, _run_batch, lane.engine, images)
        # the lane is released when the engine's run ends, not when this coroutine does: cancelled
        # (Fleet.stop cancels the scan that probes), it returns at once while its worker thread
        # still runs the engine, and a batch flushed then would run beside it on the same engine.
        # The callback runs on the event loop (the asyncio future is set from there), like _done
        run.add_done_callback(lambda _: self._probe_done(lane))
        _, wall, cpu = await asyncio.shield(run)
        return self._observe(wall, cpu)

    def _probe_done(self, lane: _Lane) -> None:
        """The probe's engine run has ended (or failed): its lane takes the members waiting."""
        lane.computing = 0
        if lane.waiting and not self._closed:
            self._flush(lane)

    def _observe(self, wall_ms: float, cpu_ms: float) -> float | None:
        """An engine run took ``cpu_ms`` of CPU in ``wall_ms``: the share of a core it got, folded
        into ``background``; None for a run too short to tell: one that fits in a scheduler slice
        or two (a batch of a few images at concurrency 1, 1-5 ms) reads as a whole core however
        loaded the host is, and a few of them would undo a probe's measurement (found in review)."""
        if wall_ms < PROBE_MS / 2:
            return None
        seen = min(cpu_ms / wall_ms, 1.0)
        weight = PROBE_EWMA if self.observed else 1.0
        self.background = max((1 - weight) * self.background + weight * seen, MIN_SHARE)
        self.observed += 1
        return seen

    def cost(self, member) -> BatchCost:
        """The estimate of ``member``'s engine batches (admission's, and a test's to set)."""
        return self._lane(member).cost

    def backlog_ms(self) -> float:
        """Engine work queued and computing, all models, in CPU ms (of one core)."""
        now, share = asyncio.get_running_loop().time(), self.thread_share()
        return sum(lane.ahead_ms(now, 0, share) for lane in self._lanes.values())

    def drain_ms(self) -> float:
        """When the engine's backlog will have drained, on the cores it can count on (Retry-After)."""
        return self.backlog_ms() / self.parallel()

    def finish_ms(self, members) -> float:
        """When the last of ``members`` (one image each) submitted now would be computed: its own
        model's lane (batches of one model run one after another, on at most one core, less when
        the cores are shared) or the whole backlog on the cores the workers can count on
        (``parallel``), whichever is later, plus the wait for a batch to fill. Waiting images
        are priced as the batches they will run in (``BatchCost.drain_ms``)."""
        if not members:
            return 0.0
        now, share = asyncio.get_running_loop().time(), self.thread_share()
        extra: dict[int, int] = {}
        lanes: dict[int, _Lane] = {}
        for m in members:
            lane = self._lane(m)
            lanes[id(lane)] = lane
            extra[id(lane)] = extra.get(id(lane), 0) + 1
        own = max(lane.ahead_ms(now, extra[i], share) for i, lane in lanes.items())
        total = sum(lane.ahead_ms(now, extra.get(id(lane), 0), share) for lane in self._lanes.values())
        return max(total / (self.workers * share), own / share) + BATCH_WAIT_S * 1000

    # ---- work -----------------------------------------------------------------------------

    def close(self) -> None:
        """No batch starts any more (the fleet stops, and its pool with it): every lane's timer
        cancelled; a batch already computing ends in its pool. The images still waiting, and
        ``submit`` afterwards, are Overloaded (503: the service is stopping; another instance,
        or this one restarted, may answer)."""
        self._closed = True
        for lane in self._lanes.values():
            if lane.timer is not None:
                lane.timer.cancel()
                lane.timer = None
            waiting, lane.waiting = lane.waiting, []
            for _, f in waiting:
                if not f.done():
                    f.set_exception(_stopped())

    def submit(self, member, image: np.ndarray) -> asyncio.Future:
        if self._closed:
            raise _stopped()
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
        lane.started = asyncio.get_running_loop().time()
        images = np.stack([x for x, _ in batch])
        run = asyncio.get_running_loop().run_in_executor(self._pool, _run_batch, lane.engine, images)
        run.add_done_callback(lambda r: self._done(lane, batch, r))

    def _done(self, lane: _Lane, batch, run: asyncio.Future) -> None:
        lane.computing = 0
        # cancelled: the batch was still queued in the pool when the fleet stopped (Fleet.stop
        # shuts it down cancelling what has not started): Overloaded, as close() promises its
        # members, not a CancelledError, which would tear their requests down instead of a 503
        exc = _stopped() if run.cancelled() else run.exception()
        if exc is not None:
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
        else:
            outs, ms, cpu_ms = run.result()
            lane.cost.measured(len(batch), cpu_ms)
            if not (self.rivals and self.rivals()) and isinstance(lane.engine, Engine):
                self._observe(ms, cpu_ms)  # beside no busy board: what the host's other work left it
            for (_, f), out in zip(batch, outs):
                if not f.done():
                    f.set_result((out, ms))
        if lane.waiting and not self._closed:  # they have waited for this batch already: no further wait to fill
            self._flush(lane)


def _stopped() -> Overloaded:
    return Overloaded("the fleet has stopped (the service is shutting down): the engine takes no more work",
                      retry_after_s(0))


def _run_batch(engine, images: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The engine on ``images`` in this (worker) thread: (outputs, wall ms, this thread's CPU ms)."""
    t, c = time.perf_counter(), time.thread_time()
    out = engine.run(images)
    return out, (time.perf_counter() - t) * 1000, (time.thread_time() - c) * 1000
