"""One board: an owner task that serialises its requests, its health state and its figures.

States:

    connecting  opening the port and greeting the board (HELLO)
    ready       greeted, idle
    busy        a request is on the wire
    degraded    answering, but its last request failed (timeout, error frame, bad reply)
    offline     the port is closed or gone; the owner task retries with back-off

A request waits in a bounded queue (``queue_size``); when it is full, ``submit`` raises
``QueueFull`` at once (admission control: the caller falls back or answers 503). A request whose
deadline has passed when the owner task picks it up is dropped before it is sent. A board that
times out is pinged; if it does not answer the ping either, it is closed, reopened and greeted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from ..errors import BoardError, BoardGone, BoardTimeout
from .admission import EWMA, INITIAL_BOARD_MS
from ..link.client import BoardClient, Timeouts
from ..link.codec import Info, Result

log = logging.getLogger("fleetvote.board")

WINDOW = 1000  # latencies kept per board for percentiles
# A board's measured service time is only renewed by its answers, and admission sends a board no
# image it would finish after the request's deadline: one slow answer (a load spike, a fault)
# could keep a board's estimate above every deadline, and the board idle, for good (seen as a
# test that waited 15 s for a ready board's answer). So the excess of an estimate over the
# board's HELLO figures halves every SERVICE_HALF_LIFE_S without an answer: a board left idle
# by its estimate is tried again within a few seconds, and its next answer measures it afresh.
SERVICE_HALF_LIFE_S = 1.0


class State(str, Enum):
    CONNECTING = "connecting"
    READY = "ready"
    BUSY = "busy"
    DEGRADED = "degraded"
    OFFLINE = "offline"


class QueueFull(Exception):
    pass


@dataclass
class Job:
    pixels: bytes
    deadline: float  # loop.time() by which an answer is useless
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    started: float = 0.0


@dataclass
class BoardAnswer:
    result: Result
    queue_ms: float
    round_trip_ms: float


@dataclass
class Counters:
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    reconnects: int = 0
    dropped_expired: int = 0


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


def percentiles(values) -> Percentiles:
    if not values:
        return Percentiles(0, None, None, None)
    a = np.fromiter(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return Percentiles(int(a.size), float(p50), float(p90), float(p99))


@dataclass(frozen=True)
class BoardSnapshot:
    """A board's state and figures at one moment (GET /boards)."""

    url: str
    state: State
    info: Info | None  # what the board said in its HELLO; None until greeted
    member: bool  # its model is a member of the ensemble (it votes)
    queue_depth: int
    counters: Counters  # a copy
    round_trip: Percentiles
    on_board: Percentiles
    last_error: str | None
    deadline_ms: float | None  # None until greeted

    @property
    def board_id(self) -> str | None:
        return self.info.board_id.hex() if self.info else None


class Board:
    def __init__(self, url: str, *, queue_size: int = 4, timeouts: Timeouts | None = None,
                 baudrate: int | None = None, ping_interval_s: float = 5.0,
                 deadline_ms: float | None = None, deadline_margin_ms: float = 50.0,
                 on_change=None):
        self.url = url
        self.state = State.OFFLINE
        self.info: Info | None = None
        self.member = None  # set by the fleet when the board's model matches a member
        self.counters = Counters()
        self.last_error: str | None = None
        self.rtt_ms: deque[float] = deque(maxlen=WINDOW)
        self.on_board_ms: deque[float] = deque(maxlen=WINDOW)
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self.timeouts = timeouts or Timeouts()
        self.baudrate = baudrate
        self.ping_interval_s = ping_interval_s
        self.fixed_deadline_ms = deadline_ms
        self.deadline_margin_ms = deadline_margin_ms
        self._client: BoardClient | None = None
        self._task: asyncio.Task | None = None
        self._on_change = on_change
        self._stopping = False
        self.connected_at: float | None = None
        self._rtt_p99 = 0.0  # refreshed every 16 answers: a percentile per request cost ~10 % CPU
        self._answers = 0
        self._service_ms: float | None = None  # moving average of the round trips (admission)
        self._service_at: float | None = None  # time.monotonic() of the answer that last moved it

    # ---- public --------------------------------------------------------------------------

    @property
    def board_id(self) -> str | None:
        return self.info.board_id.hex() if self.info else None

    @property
    def model_id(self) -> str | None:
        return self.info.model_id if self.info else None

    @property
    def serving(self) -> bool:
        """Greeted and able to take work now."""
        return self.state in (State.READY, State.BUSY, State.DEGRADED)

    def deadline_ms(self) -> float:
        """The default time this board gets for one image: the configured deadline, else an
        estimate from its HELLO figures (wire time at its baud + compute at ~8 instructions per
        MAC), else, for boards without a clock (virtual), three times its measured p99."""
        if self.fixed_deadline_ms:
            return self.fixed_deadline_ms
        est = 0.0
        if self.info and self.info.link_baud:
            est += 3124 * 10 / self.info.link_baud * 1000
        if self.info and self.info.core_clock_hz:
            est += self.info.macc * 8 / self.info.core_clock_hz * 1000
        if est == 0.0:
            est = 3 * self._rtt_p99 if self._rtt_p99 else 250.0
        return est + self.deadline_margin_ms

    def service_ms(self) -> float:
        """The time this board takes per image, as admission counts it: the moving average of its
        round trips (weight ``admission.EWMA`` on the newest), its excess over the HELLO figures
        halving every ``SERVICE_HALF_LIFE_S`` without an answer; else the HELLO figures (wire at
        its baud + compute at ~8 instructions per MAC), else ``admission.INITIAL_BOARD_MS``."""
        prior = self._prior_ms()
        if self._service_ms is None:
            return prior
        if self._service_at is None or self._service_ms <= prior:
            return self._service_ms
        idle_s = max(time.monotonic() - self._service_at, 0.0)
        return prior + (self._service_ms - prior) * 0.5 ** (idle_s / SERVICE_HALF_LIFE_S)

    def _prior_ms(self) -> float:
        """The service time the board's HELLO implies, before any answer measured it."""
        est = 0.0
        if self.info and self.info.link_baud:
            est += 3124 * 10 / self.info.link_baud * 1000
        if self.info and self.info.core_clock_hz:
            est += self.info.macc * 8 / self.info.core_clock_hz * 1000
        return est or INITIAL_BOARD_MS

    def backlog(self) -> int:
        """Images ahead of a new one: those queued and the one on the wire."""
        return self.queue.qsize() + (1 if self.state == State.BUSY else 0)

    def finish_ms(self) -> float:
        """When an image submitted now would be answered, by the board's measured service time."""
        return (self.backlog() + 1) * self.service_ms()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"board {self.url}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()
        self._fail_queued(BoardGone("board removed", self.url))
        self._set(State.OFFLINE)

    def submit(self, pixels: bytes, deadline: float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        job = Job(pixels, deadline, loop.create_future())
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            # jobs whose caller gave up or whose deadline passed still hold places: drop them
            # and try once more before refusing
            self._purge(loop.time())
            try:
                self.queue.put_nowait(job)
            except asyncio.QueueFull:
                raise QueueFull(self.url) from None
        return job.future

    def prune(self) -> None:
        """Drops the queued jobs whose caller gave up or whose deadline passed, so that the queue's
        length and ``finish_ms`` count only work still wanted (admission reads both)."""
        self._purge(asyncio.get_running_loop().time())

    def _purge(self, now: float) -> None:
        keep = []
        while not self.queue.empty():
            j = self.queue.get_nowait()
            if j.future.done() or j.deadline <= now:
                self.counters.dropped_expired += 1
                if not j.future.done():
                    j.future.set_exception(BoardTimeout("deadline passed in the queue", self.url))
            else:
                keep.append(j)
        for j in keep:
            self.queue.put_nowait(j)

    # ---- owner task ------------------------------------------------------------------------

    def _set(self, state: State) -> None:
        if state != self.state:
            # ready <-> busy happens on every request: debug; anything else is news
            routine = {state, self.state} <= {State.READY, State.BUSY}
            log.log(logging.DEBUG if routine else logging.INFO, "board state",
                    extra={"url": self.url, "board_id": self.board_id, "from": self.state.value, "to": state.value})
            self.state = state
            if self._on_change:
                self._on_change(self)

    async def _close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await client.close()

    def _fail_queued(self, exc: BaseException) -> None:
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(exc)

    async def _connect(self) -> None:
        self._set(State.CONNECTING)
        kwargs = {"baudrate": self.baudrate} if self.baudrate else {}
        self._client = await BoardClient.open(self.url, self.timeouts, **kwargs)
        self.info = await self._client.hello()
        self.connected_at = time.time()
        self._set(State.READY)

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                await self._connect()
                backoff = 0.2
                await self._serve()
            except asyncio.CancelledError:
                raise
            except BoardError as exc:
                self.last_error = str(exc)
                self.counters.errors += 1
            except Exception as exc:  # a bug must not kill the owner task silently
                log.exception("board owner task failed", extra={"url": self.url, "board_id": self.board_id})
                self.last_error = f"{type(exc).__name__}: {exc}"
            await self._close()
            self._fail_queued(BoardGone(self.last_error or "board offline", self.url))
            self._set(State.OFFLINE)
            self.counters.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._client is not None
        lost = asyncio.ensure_future(self._client.wait_lost())
        get: asyncio.Future | None = None
        try:
            while True:
                get = asyncio.ensure_future(self.queue.get())
                done, _ = await asyncio.wait({get, lost}, timeout=self.ping_interval_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await get
                if lost in done:
                    if get.done() and not get.cancelled():  # a job that raced the unplug
                        job = get.result()
                        if not job.future.done():
                            job.future.set_exception(BoardGone("link lost", self.url))
                    raise BoardGone("link lost (unplugged or the board went away)", self.url)
                if not done:
                    await self._health_check()
                    continue
                job = get.result()
                if job.future.done():  # the caller gave up (deadline, fallback) while it waited
                    self.counters.dropped_expired += 1
                    continue
                remaining = job.deadline - loop.time()
                if remaining <= 0:
                    self.counters.dropped_expired += 1
                    job.future.set_exception(BoardTimeout("deadline passed in the queue", self.url))
                    continue
                await self._do(job, remaining)
        finally:
            lost.cancel()
            if get is not None and not get.done():
                get.cancel()

    async def _health_check(self) -> None:
        try:
            await self._client.ping()
            if self.state == State.DEGRADED:
                self._set(State.READY)
        except BoardError as exc:
            self.last_error = f"health check: {exc}"
            raise

    async def _do(self, job: Job, remaining: float) -> None:
        assert self._client is not None
        self._set(State.BUSY)
        self.counters.requests += 1
        job.started = time.perf_counter()
        queue_ms = (job.started - job.enqueued) * 1000
        try:
            result = await self._client.classify(job.pixels, timeout=remaining)
        except BoardTimeout as exc:
            self.counters.timeouts += 1
            self.last_error = str(exc)
            if not job.future.done():
                job.future.set_exception(exc)
            self._set(State.DEGRADED)
            # a late reply is dropped by the client's seq matching; is the board still there?
            await self._health_check()
            return
        except BoardGone as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            raise
        except BoardError as exc:
            self.counters.errors += 1
            self.last_error = str(exc)
            if not job.future.done():
                job.future.set_exception(exc)
            self._set(State.DEGRADED)
            return
        rtt = (time.perf_counter() - job.started) * 1000
        self.rtt_ms.append(rtt)
        # the average goes on from the estimate as it stands (decayed while the board was idle)
        self._service_ms = rtt if self._service_ms is None else (1 - EWMA) * self.service_ms() + EWMA * rtt
        self._service_at = time.monotonic()
        self._answers += 1
        if self._answers >= 20 and self._answers % 16 == 4:
            self._rtt_p99 = float(np.percentile(np.fromiter(self.rtt_ms, np.float64), 99))
        self.on_board_ms.append(result.inference_us / 1000)
        if not job.future.done():
            job.future.set_result(BoardAnswer(result, queue_ms, rtt))
        self._set(State.READY)

    # ---- view --------------------------------------------------------------------------------

    def snapshot(self) -> BoardSnapshot:
        return BoardSnapshot(
            url=self.url, state=self.state, info=self.info, member=self.member is not None,
            queue_depth=self.queue.qsize(), counters=replace(self.counters),
            round_trip=percentiles(self.rtt_ms), on_board=percentiles(self.on_board_ms),
            last_error=self.last_error, deadline_ms=self.deadline_ms() if self.info else None)
