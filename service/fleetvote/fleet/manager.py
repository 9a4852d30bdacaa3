"""The fleet: discovery loop, boards matched to ensemble members, and the fan-out of one image.

Fan-out of one request: every member gets the image at once, on the least loaded of the boards
that serve it. Whatever has not answered by the deadline, and every member without a serving
board, is computed by the numpy engine (``source: "fallback"``, with a reason token of
``metrics.REASONS``; ``queue_full`` is the spillover of a full fleet), unless fallback
is off, in which case fewer board answers than the quorum is an error that names the missing
members. When the queues of every board are full the request is refused (503, Retry-After).

``Fleet.classify`` runs it in steps: ``_dispatch`` (the image onto a board per member),
``_gather`` (the answers until the deadline, the engine standing by), ``_stand_in`` (the engine,
or the quorum check, for the members still missing), then fusion. It returns a typed
``results.Classification``; the HTTP API makes JSON of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .. import logs
from ..ensemble import Ensemble, Member
from ..errors import BoardError, BoardGone, BoardTimeout, FleetvoteError, Overloaded, QuorumLost
from ..fusion import fuse
from ..link.client import Timeouts, quiet_link_errors
from ..settings import Settings
from . import discovery
from .owner import Board, BoardAnswer, QueueFull, State
from .results import Classification, MemberVote

log = logging.getLogger("fleetvote.fleet")


# how long before a request's deadline the engine starts on members whose board is still out
FALLBACK_LEAD_S = 0.05


# why a member was not sent when every queue of its boards was full (a spillover)
QUEUE_FULL = "queue_full"
# the engine's votes are logged one by one at debug, and summed up at info at most this often:
# a dead board otherwise logs a line per request
SUMMARY_INTERVAL_S = 10.0

# why a member has no board answer: a reason token (metrics.REASONS) and, for a failure, its text
Missing = tuple[str, str | None]


@dataclass(frozen=True)
class Sent:
    """One member's image, queued on a board."""

    board: Board
    future: asyncio.Future  # resolves to a BoardAnswer, or fails with a BoardError
    budget: float  # seconds the board has for it


class Fleet:
    def __init__(self, settings: Settings, ensemble: Ensemble, metrics=None, os_ports=discovery.list_os_ports):
        self.settings = settings
        self.ensemble = ensemble
        self.boards: dict[str, Board] = {}
        self.metrics = metrics
        self._os_ports = os_ports
        self._scan_task: asyncio.Task | None = None
        self.quorum = settings.quorum or ensemble.quorum
        if self.quorum > len(ensemble.members):
            raise FleetvoteError(f"quorum {self.quorum} exceeds the {len(ensemble.members)} members")
        self._scanned = asyncio.Event()
        self._restore_handler = None
        # fallback work: at most one engine per core at a time, in a pool of its own (the default
        # executor is shared with discovery and unbounded in effect); numpy releases the GIL in
        # its matrix products, so members of one request run side by side
        self._engine_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="engine")
        self.engine_votes = logs.Summary(log, "members computed by the engine", SUMMARY_INTERVAL_S)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._restore_handler = quiet_link_errors(asyncio.get_running_loop())
        self._scan_task = asyncio.create_task(self._scan_loop(), name="fleet discovery")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._scanned.wait()

    async def stop(self) -> None:
        if self._scan_task:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scan_task
        await asyncio.gather(*(b.stop() for b in self.boards.values()), return_exceptions=True)
        self.boards.clear()
        self._engine_pool.shutdown(wait=False, cancel_futures=True)
        if self._restore_handler is not None:
            self._restore_handler()
            self._restore_handler = None
        self.engine_votes.flush(force=True)

    def _on_change(self, board: Board) -> None:
        board.member = None
        if board.info is not None:
            board.member = self.ensemble.by_hash(board.info.model_id, board.info.model_sha256)

    async def _scan_loop(self) -> None:
        s = self.settings
        while True:
            try:
                urls = await asyncio.to_thread(discovery.scan, s.urls, s.link_globs, s.usb_ids, s.scan_usb,
                                               self._os_ports)
                present = set(urls)
                for url in urls:
                    if url not in self.boards:
                        self._add(url)
                for url in list(self.boards):
                    # explicit URLs stay (their board may come back); scanned ports that vanished
                    # and whose board is offline are forgotten
                    if url not in present and url not in s.urls and self.boards[url].state == State.OFFLINE:
                        await self.boards.pop(url).stop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("discovery scan failed")
            self._scanned.set()
            self.engine_votes.flush()  # the summary of a quiet spell is not held back until the next
            await asyncio.sleep(s.rescan_s)

    def _add(self, url: str) -> Board:
        s = self.settings
        board = Board(url, queue_size=s.queue_size,
                      timeouts=Timeouts(open=s.open_timeout_s, hello=s.hello_timeout_s),
                      ping_interval_s=s.ping_interval_s, deadline_ms=s.deadline_ms,
                      deadline_margin_ms=s.deadline_margin_ms, on_change=self._on_change)
        self.boards[url] = board
        board.start()
        return board

    # ---- queries -------------------------------------------------------------------------------

    def boards_for(self, member: Member) -> list[Board]:
        return [b for b in self.boards.values() if b.member is member and b.serving]

    def members_on_boards(self) -> int:
        return sum(1 for m in self.ensemble.members
                   if any(b.member is m and b.state == State.READY or b.member is m and b.state == State.BUSY
                          for b in self.boards.values()))

    def ready(self) -> bool:
        return self.members_on_boards() >= self.quorum

    def find(self, board_id: str) -> Board | None:
        for b in self.boards.values():
            if b.board_id == board_id or b.url == board_id:
                return b
        return None

    # ---- one request ---------------------------------------------------------------------------

    async def classify(self, image: np.ndarray, strategy: str | None = None, deadline_ms: float | None = None,
                       fallback: bool | None = None) -> Classification:
        """One image through the fleet: dispatch to the boards, gather their answers until the
        deadline (the engine standing by), fill in the missing members, fuse. Raises Overloaded
        when every board queue is full, QuorumLost when fallback is off and too few boards answered."""
        t0 = time.perf_counter()
        strategy = strategy or self.ensemble.strategy
        fallback = self.settings.fallback if fallback is None else fallback
        if self.metrics:
            for m in self.ensemble.members:
                self.metrics.member_request(m.id)
        sent, reasons = self._dispatch(np.ascontiguousarray(image, dtype=np.uint8).tobytes(), deadline_ms)
        engines = _EngineRuns(self._engine_pool, self.ensemble.members, image) if fallback else None
        if engines is not None:
            engines.start(*reasons)  # members already known to be missing: computed while the boards work
        answers, failed = await self._gather(sent, engines)
        reasons.update(failed)
        votes = {k: self._board_vote(k, sent[k].board, a) for k, a in answers.items()}
        votes.update(await self._stand_in(votes, reasons, engines, sent))
        order = sorted(votes)
        fused = fuse([votes[k].output for k in order], strategy, [self.ensemble.members[k].weight for k in order])
        return Classification(fused, tuple(votes[k] for k in order), (time.perf_counter() - t0) * 1000)

    def _dispatch(self, pixels: bytes, deadline_ms: float | None) -> tuple[dict[int, Sent], dict[int, Missing]]:
        """Every member's image queued on the least loaded of its boards: what was sent (by member
        index), and why each other member was not. Overloaded when nothing could be sent because
        every queue of the boards serving a member was full."""
        sent: dict[int, Sent] = {}
        reasons: dict[int, Missing] = {}
        for k, member in enumerate(self.ensemble.members):
            outcome = self._submit(member, pixels, deadline_ms)
            if isinstance(outcome, Sent):
                sent[k] = outcome
            else:
                reasons[k] = (outcome, None)
        if not sent and any(r == QUEUE_FULL for r, _ in reasons.values()):
            raise Overloaded("every board queue is full")
        return sent, reasons

    def _submit(self, member: Member, pixels: bytes, deadline_ms: float | None) -> Sent | str:
        """The image on the first board of the member's that takes it, or why none did."""
        boards = sorted(self.boards_for(member), key=lambda b: (b.queue.qsize(), b.state != State.READY))
        if not boards:
            known = any(b.member is member for b in self.boards.values())
            return "board_offline" if known else "no_board"
        loop = asyncio.get_running_loop()
        for b in boards:
            budget = (deadline_ms or b.deadline_ms()) / 1000
            try:
                return Sent(b, b.submit(pixels, loop.time() + budget), budget)
            except QueueFull:
                continue
        return QUEUE_FULL

    async def _gather(self, sent: dict[int, Sent], engines: _EngineRuns | None
                      ) -> tuple[dict[int, BoardAnswer], dict[int, Missing]]:
        """The boards' answers, waited for until the deadline (the longest budget of the request),
        and why each other member sent has none. With the engine standing by, a member whose
        board failed (error frame, link lost, queue expiry) is computed at once, not when the
        slowest board of the request has answered; and one still out shortly before the deadline
        is computed meanwhile, so that a board that never answers costs the deadline, not the
        deadline plus the engine. An answer that still arrives in time wins over the engine's."""
        if not sent:
            return {}, {}
        loop = asyncio.get_running_loop()
        budget = max(s.budget for s in sent.values())
        lead = min(budget / 2, FALLBACK_LEAD_S) if engines is not None else 0.0
        member_of = {s.future: k for k, s in sent.items()}
        on_failure = None if engines is None else (lambda fut: engines.start(member_of[fut]))
        done, not_done = await _wait_until(set(member_of), loop.time() + budget - lead, on_failure)
        if not_done and lead and engines is not None:
            engines.start(*(k for k, s in sent.items() if s.future in not_done))
            more, _ = await asyncio.wait(not_done, timeout=lead)
            done |= more
        return _sort_out(sent, done)

    def _board_vote(self, k: int, board: Board, ans: BoardAnswer) -> MemberVote:
        r = ans.result
        if self.metrics:
            self.metrics.board_answer(board.board_id or "", board.model_id or "", ans.round_trip_ms / 1000,
                                      r.inference_us / 1e6)
        return MemberVote(self.ensemble.members[k].id, tuple(int(v) for v in r.scores), "board", None,
                          board.board_id, ans.queue_ms, max(ans.round_trip_ms - r.inference_us / 1000, 0.0),
                          r.inference_us / 1000, ans.queue_ms + ans.round_trip_ms)

    async def _stand_in(self, votes: dict[int, MemberVote], reasons: dict[int, Missing], engines: _EngineRuns | None,
                        sent: dict[int, Sent]) -> dict[int, MemberVote]:
        """Votes for the members without a board answer: the engine's, or, with fallback off, none
        (QuorumLost when fewer than the quorum answered)."""
        missing = [k for k in range(len(self.ensemble.members)) if k not in votes]
        if not missing:
            return {}
        if engines is None:
            self._check_quorum(len(votes), missing, reasons)
            return {}
        fills: dict[int, MemberVote] = {}
        for k, (out, ms) in zip(missing, await engines.results(missing)):
            member = self.ensemble.members[k]
            reason, detail = reasons[k]
            fills[k] = MemberVote(member.id, tuple(int(v) for v in out), "fallback", reason, None,
                                  0.0, 0.0, None, ms, detail)
            board = sent[k].board if k in sent else None
            if self.metrics:
                self.metrics.engine_vote(member.id, reason, board.board_id if board else None)
            log.debug("member computed by the engine", extra={
                "model_id": member.id, "board_id": board.board_id if board else None, "reason": reason,
                "detail": detail})
            self.engine_votes.add(f"{member.id} {reason}")
        return fills

    def _check_quorum(self, answered: int, missing: list[int], reasons: dict[int, Missing]) -> None:
        if answered >= self.quorum:
            return
        names = [self.ensemble.members[k].id for k in missing]
        raise QuorumLost(f"{answered} of {len(self.ensemble.members)} members answered from boards, "
                         f"quorum is {self.quorum}; missing: {', '.join(names)} "
                         f"({'; '.join(r if d is None else f'{r}: {d}' for r, d in (reasons[k] for k in missing))})",
                         names)

    @staticmethod
    def _engine_run(member: Member, image: np.ndarray) -> tuple[np.ndarray, float]:
        t = time.perf_counter()
        out = member.engine.run(image)
        return out, (time.perf_counter() - t) * 1000


class _EngineRuns:
    """The engine runs of one request on the fleet's pool, at most one per member, started as
    soon as a member is known or feared to be missing."""

    def __init__(self, pool: ThreadPoolExecutor, members: list[Member], image: np.ndarray) -> None:
        self._pool, self._members, self._image = pool, members, image
        self._runs: dict[int, asyncio.Future] = {}

    def start(self, *ks: int) -> None:
        loop = asyncio.get_running_loop()
        for k in ks:
            if k not in self._runs:
                self._runs[k] = loop.run_in_executor(self._pool, Fleet._engine_run, self._members[k], self._image)

    async def results(self, ks: list[int]) -> list[tuple[np.ndarray, float]]:
        """(output, ms) per member of ``ks``, starting those not started yet."""
        self.start(*ks)
        return await asyncio.gather(*(self._runs[k] for k in ks))


async def _wait_until(futures: set[asyncio.Future], until: float, on_failure=None
                      ) -> tuple[set[asyncio.Future], set[asyncio.Future]]:
    """(done, not done) at loop time ``until`` or once all are done; ``on_failure(fut)`` is called
    as soon as one of them ends with an exception."""
    loop = asyncio.get_running_loop()
    done: set[asyncio.Future] = set()
    not_done = futures
    while not_done and (left := until - loop.time()) > 0:
        now_done, not_done = await asyncio.wait(not_done, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        done |= now_done
        for fut in now_done if on_failure else ():
            if fut.exception() is not None:
                on_failure(fut)
    return done, not_done


def _sort_out(sent: dict[int, Sent], done: set[asyncio.Future]) -> tuple[dict[int, BoardAnswer], dict[int, Missing]]:
    """The answers of the members sent whose board answered in time, and why the others have none;
    a request still out is cancelled."""
    answers: dict[int, BoardAnswer] = {}
    reasons: dict[int, Missing] = {}
    for k, s in sent.items():
        if s.future not in done:
            s.future.cancel()  # the owner task drops it unsent, or ignores a late answer
            reasons[k] = ("timeout", None)
        elif (exc := s.future.exception()) is not None:
            reasons[k] = _reason(exc)
        else:
            answers[k] = s.future.result()
    return answers, reasons


def _reason(exc: BaseException) -> Missing:
    """Why a board's answer is missing: the token the response and the metrics name it by, and the
    error's text."""
    if isinstance(exc, BoardTimeout):
        token = "timeout"
    elif isinstance(exc, BoardGone):
        token = "link_lost"
    elif isinstance(exc, BoardError):
        token = "board_error"
    else:
        token = "error"
    return token, str(exc)
