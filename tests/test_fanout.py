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
