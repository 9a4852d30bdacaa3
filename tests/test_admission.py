"""Admission and deadlines (fleet/admission.py, Fleet._admit): a request's members go where they
can finish before its deadline (a board, by its backlog times its measured service time, else the
engine as batched spillover), and only what can finish neither way is refused, before any work,
with a Retry-After from the backlog. Real ``Board`` objects whose queues the test serves by hand,
and members whose engine records the batches it was given."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import numpy as np
import pytest

from fleetvote.ensemble import Ensemble, Member
from fleetvote.errors import Overloaded
from fleetvote.fleet import admission
from fleetvote.fleet.manager import QUEUE_FULL, Fleet
from fleetvote.fleet.owner import Board, BoardAnswer, State
from fleetvote.link.codec import Result
from fleetvote.settings import Settings

ENGINE_BYTES = np.array([100] + [-128] * 9, dtype=np.int8)
BOARD_BYTES = (-128, 100, -128, -128, -128, -128, -128, -128, -128, -128)
IMAGE = np.zeros((32, 32, 3), np.uint8)


class BatchEngine:
    """Stands in for the numpy engine: records the size of each batch, takes ``ms_per_image``."""

    def __init__(self, ms_per_image: float = 0.0) -> None:
        self.batches: list[int] = []
        self.ms_per_image = ms_per_image

    def run(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(len(images))
        time.sleep(self.ms_per_image * len(images) / 1000)
        return np.tile(ENGINE_BYTES, (len(images), 1))


def fleet_of(n: int, queue_size: int = 16, fallback: bool = True, quorum: int = 1, **settings
             ) -> tuple[Fleet, list[Board], list[BatchEngine]]:
    engines = [BatchEngine() for _ in range(n)]
    members = [Member(f"m{k}", 1.0, "00" * 32, engines[k], {}) for k in range(n)]
    fleet = Fleet(Settings(urls=[], scan_usb=False, link_globs=[], fallback=fallback, **settings),
                  Ensemble(members, "soft", quorum, Path("ensemble.json")))
    boards = []
    for k, m in enumerate(members):
        b = Board(f"fake://{k}", queue_size=queue_size)  # never started: the test is its owner
        b.state, b.member = State.READY, m
        fleet.boards[b.url] = b
        boards.append(b)
    return fleet, boards, engines


def measured(board: Board, service_ms: float) -> Board:
    board._service_ms = service_ms  # as if its round trips had averaged that
    return board


def overlap_counting_engine(monkeypatch, ms: float) -> tuple[type, list[int]]:
    """An engine class that passes for the real one (so the probe runs it) and whose batches each
    take ``ms``; and ``most``, the largest number of batches seen running at once."""
    import threading

    from fleetvote.engine import Engine

    class Real(Engine):
        def __init__(self):
            pass

    lock, running, most = threading.Lock(), [0], [0]

    def run_batch(engine, images):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(ms / 1000)
        with lock:
            running[0] -= 1
        return np.tile(ENGINE_BYTES, (len(images), 1)), float(ms), float(ms)

    monkeypatch.setattr(admission, "_run_batch", run_batch)
    return Real, most


async def serve(board: Board, n: int) -> None:
    """Answer the first ``n`` jobs of the board's queue."""
    for _ in range(n):
        job = await board.queue.get()
        if not job.future.done():
            job.future.set_result(BoardAnswer(Result(1, BOARD_BYTES, 1000, 0), 0.0, 1.0))


async def test_a_member_goes_to_its_board_when_the_board_backlog_fits_the_deadline():
    fleet, (b,), (engine,) = fleet_of(1)
    measured(b, 50.0)
    for _ in range(5):  # 5 ahead + this one, 50 ms each: 300 ms, within 1000 - the engine's lead
        b.submit(b"x", asyncio.get_running_loop().time() + 10)
    task = asyncio.create_task(fleet.classify(IMAGE, deadline_ms=1000))
    await serve(b, 6)
    body = await task
    assert body.members[0].source == "board" and not engine.batches


async def test_a_member_whose_boards_cannot_finish_in_time_spills_over_to_the_engine_unqueued():
    fleet, (b,), (engine,) = fleet_of(1)
    measured(b, 100.0)
    loop = asyncio.get_running_loop()
    for _ in range(9):  # 10 x 100 ms = 1 s: past a 400 ms deadline although the queue has room
        b.submit(b"x", loop.time() + 10)
    body = await fleet.classify(IMAGE, deadline_ms=400)
    (m,) = body.members
    assert (m.source, m.reason, m.output) == ("fallback", QUEUE_FULL, tuple(ENGINE_BYTES))
    assert b.queue.qsize() == 9, "the spilled member was queued on the board as well"
    assert engine.batches == [1]


async def test_the_board_that_finishes_soonest_takes_the_member_not_the_shortest_queue():
    fleet, (b0,), _ = fleet_of(1)
    b1 = Board("fake://fast", queue_size=16)
    b1.state, b1.member = State.READY, b0.member
    fleet.boards[b1.url] = b1
    measured(b0, 200.0)  # empty queue, but slow: 200 ms
    measured(b1, 10.0)  # 3 waiting at 10 ms: 40 ms
    for _ in range(3):
        b1.submit(b"x", asyncio.get_running_loop().time() + 10)
    task = asyncio.create_task(fleet.classify(IMAGE, deadline_ms=1000))
    await serve(b1, 4)
    assert (await task).members[0].source == "board" and b0.queue.qsize() == 0


async def test_the_spillover_of_a_burst_is_computed_in_batches_not_image_by_image():
    fleet, (b,), (engine,) = fleet_of(1, queue_size=2)
    measured(b, 5.0)
    answers = await asyncio.gather(*(fleet.classify(IMAGE, deadline_ms=2000) for _ in range(40)),
                                   asyncio.sleep(0), serve(b, 2))
    bodies = answers[:40]
    spilled = [a for a in bodies if a.members[0].reason == QUEUE_FULL]
    assert len(spilled) == 38 and sum(a.members[0].source == "board" for a in bodies) == 2
    assert sum(engine.batches) == 38
    assert len(engine.batches) <= 3, f"38 members in {len(engine.batches)} engine runs: {engine.batches}"
    assert max(engine.batches) <= admission.MAX_BATCH


async def test_a_request_that_can_finish_neither_way_is_refused_before_any_work_with_retry_after():
    fleet, (b,), (engine,) = fleet_of(1, queue_size=4)
    measured(b, 300.0)
    loop = asyncio.get_running_loop()
    for _ in range(4):  # the queue is full: 1.5 s of board work ahead
        b.submit(b"x", loop.time() + 10)
    lane = fleet.spillover._lane(fleet.ensemble.members[0])
    lane.cost = admission.BatchCost(0.0, 40.0)  # as measured: 40 ms an image on the engine, at any batch
    fleet.spillover.workers = 1
    for _ in range(70):  # 70 images waiting for the engine: 2.8 s
        lane.waiting.append((IMAGE, loop.create_future()))
    lane.timer = loop.call_later(60, lambda: None)  # keep them waiting while the test looks
    with pytest.raises(Overloaded) as refused:
        await fleet.classify(IMAGE, deadline_ms=1000)
    # the sooner of the two backlogs: the board's 5 x 300 ms -> 2 s
    assert refused.value.retry_after_s == 2
    assert b.queue.qsize() == 4 and len(lane.waiting) == 70 and not engine.batches, "work was queued"
    # the same request with time enough for the engine is answered by it
    lane.waiting.clear()
    lane.timer.cancel()
    lane.timer = None
    body = await fleet.classify(IMAGE, deadline_ms=1000)
    assert body.members[0].reason == QUEUE_FULL


async def test_the_deadline_counts_from_the_requests_arrival_not_from_the_fleet():
    fleet, (b,), (engine,) = fleet_of(1)
    arrived = time.perf_counter() - 0.5  # reading and decoding its body took 500 ms
    with pytest.raises(Overloaded):
        await fleet.classify(IMAGE, deadline_ms=400, arrived=arrived)
    assert b.queue.qsize() == 0 and not engine.batches
    task = asyncio.create_task(fleet.classify(IMAGE, deadline_ms=1000, arrived=arrived))
    await serve(b, 1)
    assert (await task).members[0].source == "board"


async def test_the_deadline_setting_bounds_a_request_without_a_query():
    fleet, (b,), _ = fleet_of(1, deadline_ms=200.0)
    measured(b, 500.0)  # one image takes longer than the whole request may
    body = await fleet.classify(IMAGE)
    assert body.members[0].reason == QUEUE_FULL and b.queue.qsize() == 0


async def test_without_fallback_too_few_members_in_time_is_refused_with_the_boards_backlog():
    fleet, boards, engines = fleet_of(2, fallback=False, quorum=2)
    measured(boards[0], 10.0)
    measured(boards[1], 700.0)
    boards[1].submit(b"x", asyncio.get_running_loop().time() + 10)  # 1.4 s > 1 s
    with pytest.raises(Overloaded) as refused:
        await fleet.classify(IMAGE, deadline_ms=1000)
    assert refused.value.retry_after_s == 2  # 1,400 ms of backlog, rounded up
    assert boards[0].queue.qsize() == 0, "a member was queued for a refused request"
    assert not any(e.batches for e in engines)


async def test_a_late_spillover_is_answered_by_its_batch_and_the_engine_state_is_released():
    fleet, (b,), (engine,) = fleet_of(1, queue_size=1)
    engine.ms_per_image = 5.0
    measured(b, 5000.0)  # no board in time: all five spill over
    bodies = await asyncio.gather(*(fleet.classify(IMAGE, deadline_ms=3000) for _ in range(5)))
    assert all(a.members[0].reason == QUEUE_FULL for a in bodies)
    lane = fleet.spillover._lane(fleet.ensemble.members[0])
    assert lane.computing == 0 and not lane.waiting and lane.timer is None
    assert fleet.spillover.backlog_ms() == 0.0
    # the measured time per image replaced the initial guess, moving towards 5 ms
    assert lane.cost.per_image_ms != admission.INITIAL_ENGINE_MS


async def test_an_engine_vote_not_ready_by_the_deadline_is_left_out_and_the_answer_is_on_time():
    fleet, boards, (quick, slow) = fleet_of(2, quorum=1)
    fleet.boards.clear()  # no boards: both members on the engine, which admission expects at 5 ms
    slow.ms_per_image = 1000.0  # but one takes a second
    t0 = time.perf_counter()
    body = await fleet.classify(IMAGE, deadline_ms=300)
    assert (time.perf_counter() - t0) * 1000 < 300 + 100
    assert [m.model_id for m in body.members] == ["m0"]  # m1 left out, as with fallback off
    fleet2, _, engines = fleet_of(2, quorum=2)
    fleet2.boards.clear()
    engines[1].ms_per_image = 1000.0
    with pytest.raises(Overloaded, match=r"did not finish 1 member\(s\) in time \(m1\)") as refused:
        await fleet2.classify(IMAGE, deadline_ms=300)  # fewer than the quorum by the deadline
    assert refused.value.retry_after_s >= 1


async def test_classify_counts_the_deadline_from_the_requests_arrival_at_the_application(tmp_path):
    """A deadline_ms shorter than the request's own reading is refused (503) without reaching a
    board: the route passes the arrival time the outermost middleware noted."""
    from test_typed_path import RAW, app_without_boards

    from fleetvote.api.deps import get_fleet

    seen = {}

    class Recording:
        ensemble = None  # the route pins the fleet's ensemble before it reads the body

        async def classify(self, image, **kwargs):
            seen.update(kwargs)
            raise Overloaded("late", retry_after_s=3)

    async with app_without_boards(tmp_path) as client:
        client.app.dependency_overrides[get_fleet] = lambda: Recording()
        t0 = time.perf_counter()
        r = await client.post("/classify?deadline_ms=50", **RAW)
    assert (r.status_code, r.headers["retry-after"]) == (503, "3")
    assert seen["deadline_ms"] == 50 and t0 <= seen["arrived"] <= time.perf_counter()


async def test_mode_early_is_admitted_by_the_same_rule_and_refused_before_any_work():
    fleet, boards, engines = fleet_of(3, fallback=False, quorum=2)
    for b in boards:
        measured(b, 2000.0)  # no board answers within 1 s
    with pytest.raises(Overloaded):
        await fleet.classify(IMAGE, deadline_ms=1000, mode="early")
    assert all(b.queue.qsize() == 0 for b in boards) and not any(e.batches for e in engines)
    fleet2, boards2, _ = fleet_of(3, quorum=2)
    for b in boards2:
        measured(b, 2000.0)
    body = await fleet2.classify(IMAGE, deadline_ms=1000, mode="early")  # fallback on: spillover answers it
    assert all(m.reason == QUEUE_FULL for m in body.members) and all(b.queue.qsize() == 0 for b in boards2)


# ---- the engine's estimate: a cost per batch (admission.BatchCost) ---------------------------------

def test_waiting_images_are_priced_as_the_batches_they_will_run_in():
    cost = admission.BatchCost(fixed_ms=10.0, per_image_ms=0.5)
    assert cost.batch_ms(0) == 0.0 and cost.batch_ms(1) == 10.5
    # 300 images: two full batches of 128 and one of 44, each paying the fixed part once
    assert cost.drain_ms(300, max_batch=128) == 2 * (10 + 64) + (10 + 22)
    assert cost.drain_ms(128, max_batch=128) == 10 + 64


def test_the_batch_cost_is_the_line_through_a_batch_of_one_and_a_larger_batch():
    cost = admission.BatchCost.fit(one_ms=12.0, batch=32, batch_ms=43.0)
    assert (cost.fixed_ms, cost.per_image_ms) == (11.0, 1.0)
    # noise that makes the larger batch look no dearer still leaves each image a price
    noisy = admission.BatchCost.fit(one_ms=12.0, batch=32, batch_ms=11.0)
    assert noisy.per_image_ms == 0.12 and noisy.fixed_ms == 11.88
    # a measured batch moves the per-image part (weight EWMA), the fixed part stays
    cost.measured(100, 11.0 + 300.0)  # 3 ms an image, e.g. with the CPU shared with the boards
    assert cost.fixed_ms == 11.0 and cost.per_image_ms == pytest.approx(0.8 * 1.0 + 0.2 * 3.0)


async def test_calibration_fits_each_members_batch_cost_from_the_lesser_of_its_tries(monkeypatch):
    fleet, _, _ = fleet_of(1)
    member = fleet.ensemble.members[0]
    calls = []

    def timed(engine, images):
        calls.append(len(images))
        first = calls.count(len(images)) == 1  # the first try of each size is slowed (start-up)
        cpu = (10.0 + 2.0 * len(images)) * (3 if first else 1)
        return None, 5 * cpu, cpu  # the wall time, whatever it was, is not the work

    monkeypatch.setattr(admission, "_run_batch", timed)
    await fleet.spillover.calibrate([member])
    assert calls == [1, 1, admission.CALIBRATION_BATCH, admission.CALIBRATION_BATCH]
    cost = fleet.spillover.cost(member)
    assert cost.per_image_ms == pytest.approx(2.0) and cost.fixed_ms == pytest.approx(10.0)


async def test_a_burst_of_spillover_is_admitted_at_the_batch_price_not_the_single_image_price():
    """200 requests whose boards are full: at 21 ms an image (a batch of one) the engine would
    need 2.1 s on two workers and most would be refused at 1.5 s; in batches of 128 at 20 ms a
    batch plus 1 ms an image it needs about 0.25 s, so every one is admitted and answered."""
    fleet, (b,), (engine,) = fleet_of(1, queue_size=1)
    measured(b, 10_000.0)  # no board in time: everything spills over

    class Batched(BatchEngine):
        def run(self, images):
            time.sleep((20 + len(images)) / 1000)  # what the cost below says
            return super().run(images)

    fast = Batched()
    fleet.ensemble.members[0].engine = fast
    fleet.spillover._lane(fleet.ensemble.members[0]).cost = admission.BatchCost(20.0, 1.0)
    bodies = await asyncio.gather(*(fleet.classify(IMAGE, deadline_ms=1500) for _ in range(200)),
                                  return_exceptions=True)
    refused = [x for x in bodies if isinstance(x, Exception)]
    assert not refused, f"{len(refused)} refused: {refused[0]}"
    assert all(x.members[0].reason == QUEUE_FULL for x in bodies)
    assert sum(fast.batches) == 200 and max(fast.batches) <= admission.MAX_BATCH and len(fast.batches) <= 4


async def test_the_engine_estimate_counts_only_what_is_left_of_the_batch_computing():
    fleet, _, _ = fleet_of(1)
    member = fleet.ensemble.members[0]
    lane = fleet.spillover._lane(member)
    lane.cost = admission.BatchCost(10.0, 1.0)
    now = asyncio.get_running_loop().time()
    lane.computing, lane.started = 100, now - 0.060  # a batch of 100 (110 ms), started 60 ms ago
    assert lane.ahead_ms(now) == pytest.approx(50.0)
    assert lane.ahead_ms(now, extra=1) == pytest.approx(50.0 + 11.0)
    lane.started = now - 1.0  # overran its estimate: nothing counted for it, not a negative time
    assert lane.ahead_ms(now) == 0.0
    lane.computing = 0


async def test_busy_boards_on_the_same_cores_slow_the_engines_estimate_by_their_share():
    """Two workers on two cores: alone they count on both; beside five busy boards that compute
    on the same cores (virtual boards at host speed), each worker gets 2/7 of a core."""
    loop = asyncio.get_running_loop()
    busy = [0]
    batches = admission.EngineBatches(None, workers=2, cores=2, rivals=lambda: busy[0])
    members = [Member(f"m{k}", 1.0, "00" * 32, BatchEngine(), {}) for k in range(2)]
    for m in members:
        batches._lane(m).cost = admission.BatchCost(0.0, 10.0)
        batches._lane(m).timer = loop.call_later(60, lambda: None)  # nothing flushed while the test looks
        for _ in range(10):
            batches._lane(m).waiting.append((IMAGE, loop.create_future()))
    wait = admission.BATCH_WAIT_S * 1000
    # 11 images of 10 ms in each lane: 110 ms each, the two lanes side by side
    assert batches.finish_ms(members) == pytest.approx(110.0 + wait)
    busy[0] = 5
    assert batches.thread_share() == pytest.approx(2 / 7) and batches.parallel() == pytest.approx(4 / 7)
    assert batches.finish_ms(members) == pytest.approx(110.0 * 7 / 2 + wait)
    assert batches.drain_ms() == pytest.approx(200.0 * 7 / 4)
    for m in members:
        batches._lane(m).timer.cancel()


async def test_admission_counts_busy_host_boards_only_where_the_boards_share_the_cpu():
    """The same fleet and backlog: with boards elsewhere the engine takes the member in time; with
    boards on the host's cores (boards_share_cpu), their work leaves the engine too little of them."""
    for shared, refused in ((False, False), (True, True)):
        fleet, boards, _ = fleet_of(3, queue_size=1, boards_share_cpu=shared)
        fleet.spillover.cores = fleet.spillover.workers = 2
        loop = asyncio.get_running_loop()
        for b in boards:
            measured(b, 10_000.0)  # no board in time: the members go to the engine
            b.submit(b"x", loop.time() + 60)  # and each board is busy
        lane = fleet.spillover._lane(fleet.ensemble.members[0])
        lane.cost = admission.BatchCost(0.0, 10.0)
        lane.timer = loop.call_later(60, lambda: None)
        for _ in range(60):  # 600 ms of engine work ahead of its lane: 0.61 s on a free core, 1.5 s at 2/5 of one
            lane.waiting.append((IMAGE, loop.create_future()))
        try:
            fleet._admit(fleet.ensemble, [0], 1000.0, True, 1)
        except Overloaded as exc:
            assert refused, f"refused without rivals: {exc}"
            assert exc.retry_after_s == 1  # 600 ms of backlog on 0.8 of a core (2 workers and 3 boards on 2 cores)
        else:
            assert not refused, "admitted although three busy boards share the two cores"
        lane.timer.cancel()
        for b in boards:
            while not b.queue.empty():
                b.queue.get_nowait().future.cancel()


def test_serve_virtual_at_host_speed_tells_admission_that_the_boards_share_the_cpu(monkeypatch):
    from fleetvote.cli import build_parser, serve_settings

    def settings(*args):
        return serve_settings(build_parser().parse_args(["serve", *args]))

    assert settings("--virtual").boards_share_cpu
    assert not settings("--virtual", "--board-speed", "planned").boards_share_cpu
    assert not settings().boards_share_cpu  # real boards compute on their own chips
    assert not settings("--virtual", "--no-boards-share-cpu").boards_share_cpu
    monkeypatch.setenv("FLEETVOTE_BOARDS_SHARE_CPU", "false")  # the operator's word wins
    assert not settings("--virtual").boards_share_cpu


def test_the_service_runs_the_engines_matrix_products_on_one_blas_thread_per_worker():
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):  # whatever was set before
        fleet_of(1)
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas), blas


async def test_the_probe_measures_the_share_of_a_core_the_engine_gets_and_estimates_follow_it(monkeypatch):
    """A probe that saw a quarter of a core (CPU time over wall time) makes the engine's
    estimates four times longer; it does not run while the engine is busy."""
    from fleetvote.engine import Engine

    class Probed(Engine):  # a real engine's type, without a model: _run_batch is replaced below
        def __init__(self):
            pass

    loop = asyncio.get_running_loop()
    batches = admission.EngineBatches(None, workers=1, cores=1)
    member = Member("m0", 1.0, "00" * 32, Probed(), {})
    batches._lane(member).cost = admission.BatchCost(0.0, 10.0)
    monkeypatch.setattr(admission, "_run_batch", lambda engine, images: (None, 40.0, 10.0))

    def in_place(pool, fn, *args):  # as run_in_executor: a future, set on the loop once the run ends
        fut = loop.create_future()
        loop.call_soon(fut.set_result, fn(*args))
        return fut

    monkeypatch.setattr(loop, "run_in_executor", in_place)
    assert await batches.probe() is not None and await batches.probe() is None  # at most every 2 s
    monkeypatch.setattr(admission, "PROBE_INTERVAL_S", 0.0)
    batches.background, batches.observed = 1.0, 0
    base = batches.finish_ms([member]) - admission.BATCH_WAIT_S * 1000
    assert base == pytest.approx(10.0)
    assert await batches.probe() == 0.25
    assert batches.background == 0.25  # the first measurement replaces the guess of a whole core
    assert batches.finish_ms([member]) - admission.BATCH_WAIT_S * 1000 == pytest.approx(40.0)
    monkeypatch.setattr(admission, "_run_batch", lambda engine, images: (None, 10.0, 10.0))  # the load is gone
    assert await batches.probe() == 1.0
    assert batches.background == pytest.approx(0.25 + admission.PROBE_EWMA * 0.75)  # later ones move it
    batches._lane(member).waiting.append((IMAGE, loop.create_future()))  # the engine has work: no probe
    assert await batches.probe() is None
    # a test's stand-in engine is never probed
    other = admission.EngineBatches(None, workers=1, cores=1)
    other._lane(Member("m1", 1.0, "00" * 32, BatchEngine(), {}))
    assert await other.probe() is None and other.background == 1.0


async def test_a_batch_beside_no_busy_board_tells_how_much_of_a_core_the_engine_got(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from fleetvote.engine import Engine

    class Real(Engine):
        def __init__(self):
            pass

    monkeypatch.setattr(admission, "_run_batch", lambda engine, images: (np.zeros((len(images), 10)), 40.0, 10.0))
    busy = [0]
    with ThreadPoolExecutor(1) as pool:
        batches = admission.EngineBatches(pool, workers=1, cores=1, rivals=lambda: busy[0])
        member = Member("m0", 1.0, "00" * 32, Real(), {})
        busy[0] = 3  # boards on the same cores are busy: their share is counted apart, not here
        await batches.submit(member, IMAGE)
        assert batches.background == 1.0
        busy[0] = 0
        await batches.submit(member, IMAGE)
        assert batches.background == pytest.approx(0.25)
        # a batch too short to tell (3 ms: within a scheduler slice, it reads as a whole core)
        # leaves the measurement alone
        monkeypatch.setattr(admission, "_run_batch", lambda engine, images: (np.zeros((len(images), 10)), 3.0, 3.0))
        await batches.submit(member, IMAGE)
        assert batches.background == pytest.approx(0.25)


# ---- the cores the engine counts on ------------------------------------------------------------

def _cgroup(tmp_path: Path, own: str, quotas: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup v2 tree under tmp_path: the process in cgroup ``own``, ``cpu.max`` per cgroup."""
    root = tmp_path / "cgroup"
    for rel, text in quotas.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "cpu.max").write_text(text + "\n")
    (root / own).mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"1:cpu:/\n0::/{own}\n")
    return root, proc


def test_usable_cpus_follows_the_affinity_mask_not_the_machines_cpu_count(monkeypatch, tmp_path):
    monkeypatch.setattr(admission.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(admission.os, "sched_getaffinity", lambda pid: {2, 3, 5})
    root, proc = _cgroup(tmp_path, "svc", {"": "max 100000"})
    assert admission.usable_cpus(root, proc) == 3


def test_usable_cpus_respects_the_tightest_cgroup_v2_quota_rounded_up(monkeypatch, tmp_path):
    monkeypatch.setattr(admission.os, "sched_getaffinity", lambda pid: set(range(16)))
    # the parent grants 2.5 CPUs, the service's own cgroup none: 3 threads can run at once
    root, proc = _cgroup(tmp_path, "system.slice/svc",
                         {"system.slice": "250000 100000", "system.slice/svc": "max 100000"})
    assert admission.usable_cpus(root, proc) == 3
    root, proc = _cgroup(tmp_path / "b", "svc", {"svc": "50000 100000"})  # half a CPU: still one
    assert admission.usable_cpus(root, proc) == 1
    assert admission.usable_cpus(tmp_path / "none", tmp_path / "missing") == 16  # no cgroup v2: the mask


def test_the_engine_pool_and_admission_count_the_same_usable_cpus(monkeypatch):
    monkeypatch.setattr(admission.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(admission.os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(admission, "_cgroup_cpu_quota", lambda root, proc: None)
    fleet, _, _ = fleet_of(1)
    assert fleet._engine_workers == fleet.spillover.workers == fleet.spillover.cores == 1
    assert fleet._engine_pool._max_workers == 1


async def test_an_engine_stand_in_in_time_is_never_taken_for_a_deadline_refusal(caplog):
    """Both members on the engine (no board), each run 20 ms, well within a 5 s deadline, and a
    quorum of both: the request is answered with both engine votes, none left out or refused
    (a stand-in taken for late would be an Overloaded at this quorum), and no line says that a
    vote came past the deadline."""
    import logging

    fleet, _, engines = fleet_of(2, quorum=2)
    fleet.boards.clear()
    for e in engines:
        e.ms_per_image = 20.0
    with caplog.at_level(logging.DEBUG, logger="fleetvote"):
        body = await fleet.classify(IMAGE, deadline_ms=5000)
    engine_vote = tuple(int(v) for v in ENGINE_BYTES)
    assert [(m.model_id, m.source, m.reason, m.output) for m in body.members] == [
        ("m0", "fallback", "no_board", engine_vote), ("m1", "fallback", "no_board", engine_vote)]
    assert body.fused.label == int(np.argmax(ENGINE_BYTES)) and body.skipped == ()
    assert [e.batches for e in engines] == [[1], [1]]  # each engine ran once, for this image
    assert not [r.getMessage() for r in caplog.records if "deadline" in r.getMessage()]


async def test_the_probe_holds_its_lane_so_a_member_submitted_meanwhile_waits_for_it(monkeypatch):
    """The probe is its lane's batch while it runs: admission counts it, and a member of that
    model submitted meanwhile runs after it, never beside it on the same engine."""
    from concurrent.futures import ThreadPoolExecutor

    Real, most = overlap_counting_engine(monkeypatch, 50)
    with ThreadPoolExecutor(2) as pool:  # two workers: room to run both at once, if the lane let them
        batches = admission.EngineBatches(pool, workers=2, cores=2)
        member = Member("m0", 1.0, "00" * 32, Real(), {})
        lane = batches._lane(member)
        lane.cost = admission.BatchCost(0.0, 1000.0)  # a probe of one image, estimated at a second
        probe = asyncio.create_task(batches.probe())
        await asyncio.sleep(0)  # the probe has started computing
        assert lane.computing > 0 and batches.backlog_ms() > 0  # admission sees the probe's work
        out, _ = await batches.submit(member, IMAGE)
        assert probe.done() and await probe == 1.0  # the member's batch ran after the probe
        assert list(out) == list(ENGINE_BYTES)
    assert most[0] == 1, "the probe and a batch ran on one engine at once"
    assert lane.computing == 0 and not lane.waiting


async def test_a_probe_cancelled_mid_run_holds_its_lane_until_its_engine_run_ends(monkeypatch):
    """Fleet.stop cancels the scan while it probes: the probe's coroutine ends at once, but its
    worker thread still runs the engine. The lane stays taken until that run ends, so a member
    submitted meanwhile never runs beside the probe on the same engine (found in review)."""
    from concurrent.futures import ThreadPoolExecutor

    Real, most = overlap_counting_engine(monkeypatch, 100)
    with ThreadPoolExecutor(2) as pool:  # two workers: room to run both at once, if the lane let them
        batches = admission.EngineBatches(pool, workers=2, cores=2)
        member = Member("m0", 1.0, "00" * 32, Real(), {})
        lane = batches._lane(member)
        lane.cost = admission.BatchCost(0.0, 1000.0)  # a probe of one image
        probe = asyncio.create_task(batches.probe())
        await asyncio.sleep(0.01)  # the probe's engine run has started in its worker
        waiting = batches.submit(member, IMAGE)
        probe.cancel()  # as Fleet.stop cancels the scan task
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert lane.computing > 0  # the engine still runs the probe: the lane is not free
        out, _ = await waiting  # taken when the probe's run ended
        assert list(out) == list(ENGINE_BYTES)
    assert most[0] == 1, "the cancelled probe and a batch ran on one engine at once"
    assert lane.computing == 0 and not lane.waiting


class _FailsAfterStartUp:
    """A model whose engine answers calibration (2 tries each of a batch of 1 and of 32) and
    raises from then on, the start-up probe included."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, images: np.ndarray) -> np.ndarray:
        self.runs += 1
        if self.runs > 4:
            raise ValueError("the model's buffers are garbled")
        return np.tile(ENGINE_BYTES, (len(images), 1))


async def test_an_engine_that_fails_the_start_up_probe_does_not_stop_the_fleet_from_starting(caplog):
    from fleetvote.engine import Engine

    class Broken(_FailsAfterStartUp, Engine):  # a real engine's type: the probe measures only those
        def __init__(self):
            _FailsAfterStartUp.__init__(self)

    engine = Broken()
    member = Member("m0", 1.0, "00" * 32, engine, {})
    fleet = Fleet(Settings(urls=[], scan_usb=False, link_globs=[]),
                  Ensemble([member], "soft", 1, Path("ensemble.json")))
    try:
        await fleet.start()
        assert engine.runs == 5  # calibration's four, then the probe's, which raised
        assert fleet._scan_task is not None and not fleet._scan_task.done()  # the fleet runs
        assert fleet.spillover.background == 1.0 and fleet.spillover.observed == 0  # the guess is kept
        assert "engine probe failed" in caplog.text
        assert fleet.spillover._lane(member).computing == 0  # the lane is free again
    finally:
        await fleet.stop()


async def test_stopping_the_fleet_leaves_no_lane_timer_or_task_behind():
    fleet, _, (engine,) = fleet_of(1)
    fleet.boards.clear()
    await fleet.start()
    member = fleet.ensemble.members[0]
    waiting = fleet.spillover.submit(member, IMAGE)  # waits BATCH_WAIT_S for more of its model
    lane = fleet.spillover._lane(member)
    timer, runs = lane.timer, len(engine.batches)
    assert timer is not None
    await fleet.stop()
    assert lane.timer is None and timer.cancelled()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    with pytest.raises(Overloaded, match="stopped"):
        await waiting  # its caller is told, not left waiting
    await asyncio.sleep(admission.BATCH_WAIT_S * 5)
    assert len(engine.batches) == runs  # no batch started after the stop
    with pytest.raises(Overloaded, match="stopped"):
        fleet.spillover.submit(member, IMAGE)


async def test_a_request_whose_batch_was_queued_in_the_pool_at_stop_is_answered_overloaded(monkeypatch):
    """Fleet.stop shuts the engine's pool down cancelling the batches not yet started: their
    members are Overloaded (503, the service is stopping), as close() promises, not a
    CancelledError that tears the request down (found in review)."""
    import threading

    from fleetvote.fleet import manager

    monkeypatch.setattr(manager, "usable_cpus", lambda: 1)  # one worker: m1's batch queues behind m0's
    started, release = threading.Event(), threading.Event()

    class Held(BatchEngine):
        def run(self, images):
            started.set()
            release.wait(10)
            return super().run(images)

    fleet, _, engines = fleet_of(2, quorum=2)
    fleet.boards.clear()  # both members on the engine
    held = fleet.ensemble.members[0].engine = Held()
    request = asyncio.create_task(fleet.classify(IMAGE, deadline_ms=30_000))
    try:
        assert await asyncio.to_thread(started.wait, 5)  # m0's batch computes on the one worker
        await asyncio.sleep(admission.BATCH_WAIT_S * 5)  # m1's batch has been flushed to the pool
        await fleet.stop()
    finally:
        release.set()
    with pytest.raises(Overloaded, match="stopped"):
        await request
    assert engines[1].batches == []  # m1's batch never ran
    assert held.batches == [1]  # the batch already computing ended in its pool


async def test_mode_early_logs_as_engine_votes_only_the_members_the_engine_replaced(caplog):
    """At the deadline in mode early, m1 still waits for its board (with a slow engine run racing
    it) and m2, which has no board, for the engine: the engine's line names m2 alone."""
    import logging

    fleet, boards, engines = fleet_of(3, quorum=1)
    del fleet.boards[boards[2].url]  # m2: no board, the engine computes it
    engines[1].ms_per_image = engines[2].ms_per_image = 1000.0  # neither engine run is in time
    server = asyncio.create_task(serve(boards[0], 1))  # m0's board answers; m1's never does
    with caplog.at_level(logging.DEBUG, logger="fleetvote.fleet"):
        body = await fleet.classify(IMAGE, deadline_ms=300, mode="early")
    await server
    assert [m.model_id for m in body.members] == ["m0"]
    said = {r.getMessage(): r.model_id for r in caplog.records if "past the deadline" in r.getMessage()}
    assert said == {"engine votes past the deadline left out": "m2",
                    "board answers past the deadline left out": "m1"}


async def test_a_board_that_garbles_its_greeting_leaves_start_up_running_and_its_member_on_the_engine():
    """A hostile board (bytes that are no frame, whatever it is sent) fails its greeting: the
    fleet starts all the same, the board is not serving, and its member is the engine's."""

    async def garble(reader, writer):
        with contextlib.suppress(ConnectionError):
            while await reader.read(64):
                writer.write(b"\xff\x13 not a frame \x00" * 4)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(garble, "127.0.0.1", 0)
    url = f"socket://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    member = Member("m0", 1.0, "00" * 32, BatchEngine(), {})
    fleet = Fleet(Settings(urls=[url], scan_usb=False, link_globs=[], hello_timeout_s=0.3, open_timeout_s=1.0),
                  Ensemble([member], "soft", 1, Path("ensemble.json")))
    try:
        await fleet.start()
        board = fleet.boards[url]
        for _ in range(100):  # its first greeting fails within the hello timeout
            if board.last_error:
                break
            await asyncio.sleep(0.05)
        assert board.last_error and not board.serving and board.info is None
        body = await fleet.classify(IMAGE, deadline_ms=3000)
        assert [(m.source, m.reason) for m in body.members] == [("fallback", "no_board")]
    finally:
        await fleet.stop()
        server.close()
        await server.wait_closed()


def test_the_admission_module_keeps_its_lines_within_120_columns():
    """The project's line length (found over it in review: two docstring lines)."""
    source = Path(admission.__file__).read_text().splitlines()
    long = [(n, len(line)) for n, line in enumerate(source, 1) if len(line) > 120]
    assert long == [], f"admission.py lines over 120 columns (line, length): {long}"


async def test_a_board_left_idle_by_one_slow_answer_is_tried_again_within_seconds(monkeypatch):
    """One answer slower than every deadline (a load spike) must not keep a ready board out of
    admission for good: its measured service time is renewed only by answers, which it would
    then never get. The estimate's excess over the HELLO figures halves every
    SERVICE_HALF_LIFE_S without an answer, so the board is placed again, and the next answer
    measures it afresh."""
    from fleetvote.fleet import owner

    now = [1000.0]
    monkeypatch.setattr(owner.time, "monotonic", lambda: now[0])
    fleet, (board,), _ = fleet_of(1)
    board._service_ms, board._service_at = 2_000.0, now[0]  # its one answer took 2 s
    placed, reasons = fleet._admit(fleet.ensemble, [0], 400.0, True, 1)
    assert not placed and reasons[0][0] == QUEUE_FULL  # right after it: the engine stands in
    now[0] += 4 * owner.SERVICE_HALF_LIFE_S  # 2 s of excess over 5 ms of HELLO-less prior: 125 ms
    assert board.service_ms() == pytest.approx(admission.INITIAL_BOARD_MS + 1_995.0 / 16)
    placed, reasons = fleet._admit(fleet.ensemble, [0], 400.0, True, 1)
    assert placed == {0: board} and not reasons  # tried again
    # a board measured by its answers alone (no time of the last one) keeps its estimate
    measured(board, 2_000.0)._service_at = None
    now[0] += 100.0
    assert board.service_ms() == 2_000.0
