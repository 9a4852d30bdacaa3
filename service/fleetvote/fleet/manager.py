"""The fleet: discovery loop, boards matched to ensemble members, and the fan-out of one image.

Fan-out of one request: every member gets the image at once, on the least loaded of the boards
that serve it. Whatever has not answered by the deadline, and every member without a serving
board, is computed by the numpy engine (``source: "fallback"``, with the reason), unless fallback
is off, in which case fewer board answers than the quorum is an error that names the missing
members. When the queues of every board are full the request is refused (503, Retry-After).
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

from ..data import CLASS_NAMES
from ..ensemble import Ensemble, Member
from ..errors import BoardError, BoardTimeout, FleetvoteError
from ..fusion import fuse, probabilities
from ..link.client import Timeouts, quiet_link_errors
from ..settings import Settings
from . import discovery
from .board import Board, BoardAnswer, QueueFull, State

log = logging.getLogger("fleetvote.fleet")


# how long before a request's deadline the engine starts on members whose board is still out
FALLBACK_LEAD_S = 0.05


class Overloaded(FleetvoteError):
    """Every board queue is full: admission control refuses the request (503)."""


class QuorumLost(FleetvoteError):
    """Fallback is off and fewer boards than the quorum answered (503)."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


@dataclass
class MemberResult:
    member: Member
    output: np.ndarray
    source: str
    reason: str | None
    board: Board | None
    queue_ms: float
    wire_ms: float
    board_us: int | None
    latency_ms: float


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
                       fallback: bool | None = None) -> dict:
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        strategy = strategy or self.ensemble.strategy
        fallback = self.settings.fallback if fallback is None else fallback
        pixels = np.ascontiguousarray(image, dtype=np.uint8).tobytes()

        pending: dict[int, tuple[Board, asyncio.Future, float]] = {}
        reasons: dict[int, str] = {}
        any_board, all_full = False, True
        for k, m in enumerate(self.ensemble.members):
            boards = sorted(self.boards_for(m), key=lambda b: (b.queue.qsize(), b.state != State.READY))
            if not boards:
                reasons[k] = "no board serving this member" if not any(
                    b.member is m for b in self.boards.values()) else "board offline"
                continue
            any_board = True
            for b in boards:
                budget = (deadline_ms or b.deadline_ms()) / 1000
                try:
                    fut = b.submit(pixels, loop.time() + budget)
                    pending[k] = (b, fut, budget)
                    all_full = False
                    break
                except QueueFull:
                    continue
            else:
                reasons[k] = "queue full"
        if any_board and all_full and not pending:
            raise Overloaded("every board queue is full")

        # members already known to be missing are computed now, while the boards work
        early = {k: loop.run_in_executor(self._engine_pool, self._engine_run, self.ensemble.members[k], image)
                 for k in reasons} if fallback else {}

        results: dict[int, MemberResult] = {}
        if pending:
            budget = max(p[2] for p in pending.values())
            # a member still out shortly before the deadline is computed by the engine meanwhile,
            # so that a board that never answers costs the deadline, not the deadline plus the
            # engine; an answer that still arrives in time wins over the speculative one
            lead = min(budget / 2, FALLBACK_LEAD_S) if fallback else 0.0
            member_of = {p[1]: k for k, p in pending.items()}
            done, not_done = set(), set(member_of)
            until = loop.time() + budget - lead
            while not_done and (left := until - loop.time()) > 0:
                now_done, not_done = await asyncio.wait(not_done, timeout=left,
                                                        return_when=asyncio.FIRST_COMPLETED)
                done |= now_done
                # a board that failed (error frame, link lost, queue expiry) is replaced at once,
                # not when the slowest board of the request has answered
                for fut in now_done if fallback else ():
                    k = member_of[fut]
                    if fut.exception() is not None and k not in early:
                        early[k] = loop.run_in_executor(self._engine_pool, self._engine_run,
                                                        self.ensemble.members[k], image)
            if not_done and lead:
                for k, (_b, fut, _budget) in pending.items():
                    if fut in not_done and k not in early:
                        early[k] = loop.run_in_executor(self._engine_pool, self._engine_run,
                                                        self.ensemble.members[k], image)
                more, _ = await asyncio.wait(not_done, timeout=lead)
                done |= more
            for k, (b, fut, _b) in pending.items():
                m = self.ensemble.members[k]
                if fut in done and fut.exception() is None:
                    ans: BoardAnswer = fut.result()
                    r = ans.result
                    out = np.asarray(r.scores, dtype=np.int8)
                    if self.metrics:
                        self.metrics.observe(b.url, "round_trip", ans.round_trip_ms / 1000)
                        self.metrics.observe(b.url, "on_board", r.inference_us / 1e6)
                    results[k] = MemberResult(m, out, "board", None, b, ans.queue_ms,
                                              max(ans.round_trip_ms - r.inference_us / 1000, 0.0),
                                              r.inference_us, ans.queue_ms + ans.round_trip_ms)
                    continue
                if fut in done:
                    exc = fut.exception()
                    reasons[k] = ("timeout" if isinstance(exc, BoardTimeout) else
                                  f"board error: {exc}" if isinstance(exc, BoardError) else f"error: {exc}")
                else:
                    fut.cancel()  # the owner task drops it unsent, or ignores a late answer
                    reasons[k] = "timeout"

        missing = [k for k in range(len(self.ensemble.members)) if k not in results]
        if missing and not fallback:
            if len(results) < self.quorum:
                names = [self.ensemble.members[k].id for k in missing]
                raise QuorumLost(f"{len(results)} of {len(self.ensemble.members)} members answered from boards, "
                                 f"quorum is {self.quorum}; missing: {', '.join(names)} "
                                 f"({'; '.join(reasons[k] for k in missing)})", names)
        elif missing:
            futs = [early.get(k) or loop.run_in_executor(self._engine_pool, self._engine_run,
                                                         self.ensemble.members[k], image) for k in missing]
            outs = await asyncio.gather(*futs)
            for k, (out, ms) in zip(missing, outs):
                results[k] = MemberResult(self.ensemble.members[k], out, "fallback", reasons[k], None, 0.0, 0.0,
                                          None, ms)
                if self.metrics:
                    self.metrics.fallback(reasons[k])
                b = pending.get(k, (None,))[0]
                log.info("member computed by the engine", extra={
                    "model": self.ensemble.members[k].id, "board": b.url if b else None, "reason": reasons[k]})

        order = sorted(results)
        outputs = np.stack([results[k].output for k in order])
        weights = [self.ensemble.members[k].weight for k in order]
        fused = fuse(outputs, strategy, weights)
        members = []
        for k in order:
            r = results[k]
            probs = probabilities(r.output)
            lab = int(np.argmax(probs))
            members.append({
                "model_id": r.member.id, "board_id": r.board.board_id if r.board else None,
                "source": r.source, "reason": r.reason, "label": lab, "class_name": CLASS_NAMES[lab],
                "output": [int(v) for v in r.output], "probabilities": [round(float(p), 6) for p in probs],
                "queue_ms": round(r.queue_ms, 3), "wire_ms": round(r.wire_ms, 3), "board_us": r.board_us,
                "latency_ms": round(r.latency_ms, 3),
            })
        fallbacks = sum(1 for r in results.values() if r.source == "fallback")
        return {
            "label": fused.label, "class_name": CLASS_NAMES[fused.label],
            "confidence": round(fused.confidence, 6), "strategy": strategy,
            "scores": [round(s, 6) for s in fused.scores], "degraded": fallbacks > 0,
            "fallbacks": fallbacks, "members": members,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
        }

    @staticmethod
    def _engine_run(member: Member, image: np.ndarray) -> tuple[np.ndarray, float]:
        t = time.perf_counter()
        out = member.engine.run(image)
        return out, (time.perf_counter() - t) * 1000
