"""The fan-out of one request, as a unit: real ``Board`` objects whose queues the test serves by
hand (no link), and members whose engine records when it was asked. What is checked is when the
fan-out starts the engine for a member, and whose bytes win."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from fleetvote.ensemble import Ensemble, Member
from fleetvote.errors import BoardError
from fleetvote.fusion import fuse
from fleetvote.fleet.manager import Fleet
from fleetvote.fleet.owner import Board, BoardAnswer, State
from fleetvote.link.codec import Result
from fleetvote.settings import Settings

DEADLINE_MS = 400.0
ENGINE_BYTES = np.array([100] + [-128] * 9, dtype=np.int8)  # class 0
BOARD_BYTES = (-128, 100, -128, -128, -128, -128, -128, -128, -128, -128)  # class 1


class RecordingEngine:
    """Stands in for the numpy engine: notes when it ran and returns fixed bytes."""

    def __init__(self) -> None:
        self.started: list[float] = []

    def run(self, images: np.ndarray) -> np.ndarray:
        self.started.append(time.perf_counter())
        return np.tile(ENGINE_BYTES, (len(images), 1)) if images.ndim == 4 else ENGINE_BYTES.copy()


def fleet_of(n: int) -> tuple[Fleet, list[Board], list[RecordingEngine]]:
    engines = [RecordingEngine() for _ in range(n)]
    members = [Member(f"m{k}", 1.0, "00" * 32, engines[k], {}) for k in range(n)]
    fleet = Fleet(Settings(urls=[], scan_usb=False, link_globs=[], deadline_ms=DEADLINE_MS),
                  Ensemble(members, "soft", 1, Path("ensemble.json")))
    boards = []
    for k, m in enumerate(members):
        b = Board(f"fake://{k}", deadline_ms=DEADLINE_MS)  # never started: the test is its owner
        b.state, b.member = State.READY, m
        fleet.boards[b.url] = b
        boards.append(b)
    return fleet, boards, engines


def answer(seq: int = 1) -> BoardAnswer:
    return BoardAnswer(Result(seq, BOARD_BYTES, 1000, 0), 0.0, 1.0)


async def test_a_board_error_starts_its_fallback_at_once_not_at_the_deadline():
    fleet, (failing, silent), (e_failing, e_silent) = fleet_of(2)
    t0 = time.perf_counter()
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8)))
    job = await failing.queue.get()
    job.future.set_exception(BoardError("error frame", failing.url))
    body = await task
    fleet._engine_pool.shutdown()
    (started,) = e_failing.started
    assert (started - t0) * 1000 < DEADLINE_MS / 4, "the failed member waited for the silent board"
    # the silent board's member is computed speculatively, shortly before the deadline
    (spec,) = e_silent.started
    assert DEADLINE_MS / 2 <= (spec - t0) * 1000 < DEADLINE_MS + 100
    assert [m.source for m in body.members] == ["fallback", "fallback"]
    assert body.members[0].reason == "board_error" and "error frame" in body.members[0].detail
    assert body.members[1].reason == "timeout"
    assert silent.queue.qsize() == 1  # left there, cancelled: the owner task drops it unsent


async def test_an_answer_in_time_wins_over_the_speculative_engine_run():
    fleet, (late,), (engine,) = fleet_of(1)
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8)))
    job = await late.queue.get()
    while not engine.started:  # the speculative run has begun: answer now, still in time
        await asyncio.sleep(0.005)
    job.future.set_result(answer())
    body = await task
    fleet._engine_pool.shutdown()
    (m,) = body.members
    assert (m.source, m.output) == ("board", BOARD_BYTES)
    assert body.fused.label == 1


async def test_boards_that_all_answer_never_wake_the_engine():
    fleet, boards, engines = fleet_of(3)
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8)))
    for b in boards:
        (await b.queue.get()).future.set_result(answer())
    body = await task
    fleet._engine_pool.shutdown()
    assert all(m.source == "board" for m in body.members)
    assert not any(e.started for e in engines)
    assert body.latency_ms < DEADLINE_MS / 2


# ---- modes: early and cascade (adaptive.py) ------------------------------------------------------

def sure_of(c: int) -> BoardAnswer:
    """A board answer voting class c with all its probability mass."""
    return BoardAnswer(Result(1, tuple(127 if i == c else -128 for i in range(10)), 1000, 0), 0.0, 1.0)


async def test_early_answers_once_the_vote_is_decided_and_never_computes_the_members_skipped():
    fleet, boards, engines = fleet_of(3)
    t0 = time.perf_counter()
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), strategy="majority", mode="early"))
    jobs = [await b.queue.get() for b in boards]
    jobs[0].future.set_result(sure_of(4))
    jobs[2].future.set_result(sure_of(4))  # 2 of 3 with all their mass: the third cannot change it
    body = await task
    await asyncio.sleep(DEADLINE_MS / 1000 + 0.1)  # past the deadline: no speculative run either
    fleet._engine_pool.shutdown()
    assert (time.perf_counter() - t0) * 1000 < DEADLINE_MS + 200
    assert body.latency_ms < DEADLINE_MS / 2, "early waited for the silent board"
    assert (body.mode, body.stage, body.skipped) == ("early", 1, ("m1",))
    assert [m.model_id for m in body.members] == ["m0", "m2"]
    assert body.fused.label == 4
    assert not any(e.started for e in engines), "the engine computed a member that was skipped"
    assert jobs[1].future.cancelled()  # its board's unstarted work is cancelled: the owner drops it


def engine_busy(fleet) -> None:
    """Every engine worker taken: mode early spills nothing over."""
    fleet._engines_running = fleet._engine_workers


async def test_early_waits_while_the_members_still_out_can_change_the_label():
    fleet, boards, engines = fleet_of(3)
    engine_busy(fleet)
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), strategy="majority", mode="early"))
    jobs = [await b.queue.get() for b in boards]
    jobs[0].future.set_result(sure_of(4))
    jobs[1].future.set_result(sure_of(5))  # 1 : 1, the third decides
    await asyncio.sleep(0.05)
    assert not task.done()
    jobs[2].future.set_result(sure_of(5))
    body = await task
    fleet._engine_pool.shutdown()
    assert body.fused.label == 5 and body.skipped == () and len(body.members) == 3
    assert not any(e.started for e in engines), "the engine ran although every worker was busy"


async def test_early_spills_a_straggling_board_over_to_the_engine_and_drops_its_queued_job():
    fleet, boards, engines = fleet_of(3)
    t0 = time.perf_counter()
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), strategy="majority", mode="early"))
    jobs = [await b.queue.get() for b in boards[:2]]
    await asyncio.sleep(0.02)
    jobs[0].future.set_result(sure_of(4))
    jobs[1].future.set_result(sure_of(5))  # open, only board 2 out: after 1.25 x 20 ms it straggles
    body = await task
    fleet._engine_pool.shutdown()
    took = (time.perf_counter() - t0) * 1000
    assert took < DEADLINE_MS / 4, "waited for the straggling board"
    (spilled,) = engines[2].started
    assert (spilled - t0) * 1000 >= 20 * 1.25 - 1  # not before it straggled
    assert [(m.model_id, m.source) for m in body.members] == [("m0", "board"), ("m1", "board"), ("m2", "fallback")]
    assert body.members[2].reason == "straggling"
    assert not engines[0].started and not engines[1].started
    assert body.fused.label == fuse([sure_of(4).result.scores, sure_of(5).result.scores, ENGINE_BYTES],
                                    "majority").label
    assert (await boards[2].queue.get()).future.cancelled()  # its job: dropped unsent


async def test_early_spills_nothing_over_while_every_engine_worker_is_busy():
    fleet, boards, engines = fleet_of(3)
    engine_busy(fleet)
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), strategy="majority", mode="early"))
    jobs = [await b.queue.get() for b in boards]
    jobs[0].future.set_result(sure_of(4))
    jobs[1].future.set_result(sure_of(5))
    await asyncio.sleep(0.05)
    assert not task.done() and not engines[2].started
    jobs[2].future.set_result(sure_of(4))
    body = await task
    fleet._engine_pool.shutdown()
    assert all(m.source == "board" for m in body.members) and body.fused.label == 4


async def test_early_label_equals_all_for_the_same_board_answers():
    rng = np.random.default_rng(5)
    for _ in range(20):
        outs = [tuple(int(v) for v in rng.integers(-128, 128, 10)) for _ in range(4)]
        labels = {}
        for mode in ("all", "early"):
            fleet, boards, _ = fleet_of(4)
            task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), mode=mode))
            for b, o in zip(boards, outs):
                (await b.queue.get()).future.set_result(BoardAnswer(Result(1, o, 1000, 0), 0.0, 1.0))
            labels[mode] = (await task).fused.label
            fleet._engine_pool.shutdown()
        assert labels["early"] == labels["all"]


def cascade_fleet(n: int, stage1: tuple[str, ...], threshold: float):
    from fleetvote.adaptive import Cascade

    fleet, boards, engines = fleet_of(n)
    fleet.ensemble.cascade = Cascade(stage1, threshold, agree=True)
    return fleet, boards, engines


async def test_cascade_stage1_confident_answers_alone_and_never_asks_stage2():
    fleet, boards, engines = cascade_fleet(3, ("m1",), 0.9)
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), mode="cascade"))
    (await boards[1].queue.get()).future.set_result(sure_of(6))
    body = await task
    fleet._engine_pool.shutdown()
    assert (body.mode, body.stage, body.skipped) == ("cascade", 1, ("m0", "m2"))
    assert body.fused.label == 6 and [m.model_id for m in body.members] == ["m1"]
    assert boards[0].queue.empty() and boards[2].queue.empty()  # never asked
    assert not any(e.started for e in engines)


async def test_cascade_unsure_stage1_asks_the_rest_and_the_full_vote_decides():
    fleet, boards, engines = cascade_fleet(3, ("m1",), 0.999)  # 255/256 < 0.999: never sure enough
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), mode="cascade", strategy="majority"))
    (await boards[1].queue.get()).future.set_result(sure_of(6))
    for b in (boards[0], boards[2]):
        (await b.queue.get()).future.set_result(sure_of(2))
    body = await task
    fleet._engine_pool.shutdown()
    assert (body.stage, body.skipped) == (2, ())
    assert body.fused.label == 2 and [m.model_id for m in body.members] == ["m0", "m1", "m2"]


async def test_cascade_answers_with_stage1_when_stage2_cannot_finish_in_time():
    from fleetvote.errors import Overloaded

    fleet, boards, engines = cascade_fleet(3, ("m1",), 0.999)  # never sure: stage 2 is wanted
    ask = fleet._ask

    async def stage2_refused(ens, image, ks, until, fallback):
        if len(ks) > 1:
            raise Overloaded("no member of stage 2 can finish before the deadline", 1)
        return await ask(ens, image, ks, until, fallback)

    fleet._ask = stage2_refused
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), mode="cascade"))
    (await boards[1].queue.get()).future.set_result(sure_of(6))
    body = await task
    fleet._engine_pool.shutdown()
    assert (body.stage, body.skipped) == (1, ("m0", "m2"))
    assert body.fused.label == 6 and [m.model_id for m in body.members] == ["m1"]


async def test_cascade_asks_the_stage1_whose_boards_have_the_least_work_waiting_and_rotates_on_ties():
    from fleetvote.adaptive import Cascade

    fleet, boards, engines = fleet_of(3)
    fleet.ensemble.cascade = Cascade(("m0",), 0.5)
    fleet.ensemble.cascade_alternatives = (Cascade(("m1",), 0.5), Cascade(("m2",), 0.5))

    others: set[int] = set()  # jobs the test queued itself

    async def first_asked() -> str:
        task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), mode="cascade"))
        while True:
            for k, b in enumerate(boards):
                last = b.queue._queue[-1] if not b.queue.empty() else None  # noqa: SLF001 (the test owns it)
                if last is not None and not last.future.done() and id(last) not in others:
                    job = last
                    b.queue._queue.remove(job)  # noqa: SLF001  taken by the board, as its owner task would
                    job.future.set_result(sure_of(3))
                    body = await task
                    assert body.stage == 1 and [m.model_id for m in body.members] == [f"m{k}"]
                    return f"m{k}"
            await asyncio.sleep(0.001)

    assert [await first_asked() for _ in range(3)] == ["m0", "m1", "m2"]  # equal loads: in turn
    boards[0].state = State.BUSY  # m0's only board computing, m1's with work queued: m2's is idle
    boards[1].submit(b"\0" * 3072, asyncio.get_running_loop().time() + 10)
    others.add(id(boards[1].queue._queue[-1]))  # noqa: SLF001
    assert {await first_asked() for _ in range(3)} == {"m2"}
    fleet._engine_pool.shutdown()


async def test_cascade_without_a_cascade_section_is_a_config_error():
    from fleetvote.errors import ConfigError

    fleet, _, _ = fleet_of(2)
    try:
        await fleet.classify(np.zeros((32, 32, 3), np.uint8), mode="cascade")
    except ConfigError as exc:
        assert "ensemble-eval --write-ensemble" in str(exc)
    else:
        raise AssertionError("cascade ran without a cascade")
    finally:
        fleet._engine_pool.shutdown()


async def test_early_with_a_silent_board_and_an_open_vote_falls_back_at_the_deadline():
    fleet, (talking, silent), (e_talking, e_silent) = fleet_of(2)
    engine_busy(fleet)  # no spillover: the speculative run before the deadline is what is seen
    t0 = time.perf_counter()
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), strategy="majority", mode="early"))
    (await talking.queue.get()).future.set_result(sure_of(4))
    body = await task
    fleet._engine_pool.shutdown()
    (spec,) = e_silent.started  # speculative, shortly before the deadline
    assert DEADLINE_MS / 2 <= (spec - t0) * 1000 < DEADLINE_MS + 100
    assert [(m.source, m.reason) for m in body.members] == [("board", None), ("fallback", "timeout")]
    assert body.skipped == () and not e_talking.started


async def test_early_without_fallback_leaves_a_failed_member_out_of_the_vote():
    fleet, boards, engines = fleet_of(3)
    task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), strategy="majority",
                                              mode="early", fallback=False))
    jobs = [await b.queue.get() for b in boards]
    jobs[0].future.set_exception(BoardError("error frame", boards[0].url))
    jobs[1].future.set_result(sure_of(3))
    await asyncio.sleep(0.05)
    assert not task.done()  # 1 vote for 3, m2 still out: open
    jobs[2].future.set_result(sure_of(3))
    body = await task
    fleet._engine_pool.shutdown()
    assert [m.model_id for m in body.members] == ["m1", "m2"] and body.fused.label == 3
    assert not any(e.started for e in engines)


async def test_a_cancelled_request_leaves_no_board_job_or_engine_run_to_compute_for_nobody():
    """An image of an inference-protocol batch is cancelled when another is refused: its queued
    board jobs must not be computed afterwards (the owner drops done futures unsent), in every
    mode, and admission must stop counting them as the boards' backlog."""
    for mode in ("all", "early"):
        fleet, boards, _ = fleet_of(3)
        task = asyncio.create_task(fleet.classify(np.zeros((32, 32, 3), np.uint8), mode=mode))
        while not all(b.queue.qsize() for b in boards):
            await asyncio.sleep(0.001)
        jobs = [b.queue._queue[0] for b in boards]  # noqa: SLF001  (the test is the boards' owner)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert all(j.future.cancelled() for j in jobs), mode
        for b in boards:
            b.prune()
        assert [b.queue.qsize() for b in boards] == [0, 0, 0], mode
        fleet._engine_pool.shutdown()



async def test_without_fallback_too_few_members_with_a_board_is_refused_before_any_work():
    from fleetvote.errors import QuorumLost

    fleet, boards, _ = fleet_of(2)
    fleet.ensemble.quorum = 2
    boards[1].state = State.OFFLINE  # m1 has no board to go to
    try:
        await asyncio.wait_for(fleet.classify(np.zeros((32, 32, 3), np.uint8), fallback=False), 1.0)
    except QuorumLost as exc:
        assert "m1" in str(exc)
    else:
        raise AssertionError("answered without the quorum")
    finally:
        fleet._engine_pool.shutdown()
    assert boards[0].queue.empty()  # m0's board was never asked for an answer nobody could use


async def test_early_does_not_wait_for_the_engine_past_the_requests_deadline():
    """A silent board's member goes to the engine at the deadline; an engine slower than what is
    left is not waited for: Overloaded (503 with Retry-After) at the deadline, not when it ends."""
    from fleetvote.errors import Overloaded

    fleet, boards, engines = fleet_of(1)

    class SlowEngine(RecordingEngine):
        def run(self, images):
            time.sleep(1.0)
            return super().run(images)

    fleet.ensemble.members[0].engine = SlowEngine()
    t0 = time.perf_counter()
    try:
        await fleet.classify(np.zeros((32, 32, 3), np.uint8), mode="early", deadline_ms=300)
    except Overloaded as exc:
        refusal = exc
    else:
        raise AssertionError("answered by an engine run that ended past the deadline")
    finally:
        fleet._engine_pool.shutdown(wait=False)
    assert (time.perf_counter() - t0) * 1000 < 900  # the engine alone takes 1,000 ms
    # the same refusal as mode all's (Fleet._deadline_refusal): the member named, a Retry-After
    assert "did not finish 1 member(s) in time (m0)" in str(refusal) and refusal.retry_after_s >= 1
