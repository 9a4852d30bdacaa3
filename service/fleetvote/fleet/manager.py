"""The fleet: discovery loop, boards matched to ensemble members, and the fan-out of one image.

Fan-out of one request: every member gets the image at once, on the board that can answer it
soonest. Whatever has not answered by the deadline, and every member without a serving board,
is computed by the numpy engine (``source: "fallback"``, with a reason token of
``metrics.REASONS``; ``queue_full`` is the spillover of a busy fleet), unless fallback is off, in
which case fewer board answers than the quorum is an error that names the missing members.

``Fleet.classify`` runs it in steps: ``_admit`` (``admission.py``: where each member can finish
before the request's deadline, on a board or as spillover on the engine, or Overloaded: 503 with
Retry-After, nothing queued), ``_dispatch`` (the image onto a board per member), ``_gather`` (the
answers until the deadline, the engine standing by), ``_stand_in`` (the engine, batched with
other requests' members, or the quorum check, for the members still missing), then fusion. It
returns a typed ``results.Classification``; the HTTP APIs (``/classify``, the inference protocol)
make JSON of it.

Reload (``Fleet.reload``): the ensemble file is read again and, once valid, swapped in one step
on the event loop; the boards keep their links and are matched to the new members. A request
holds the ensemble it started with until it is answered (``classify(..., ensemble=)``), so a
reload never mixes two ensembles in one answer and loses no request.

Modes (``adaptive.py``): ``all`` is the above. ``early`` dispatches every member the same way but
``_gather_early`` counts the votes as they arrive (board answers, and the engine's for members
whose board failed or is missing) and stops as soon as the members still out cannot change the
label; their queued work is cancelled (the owner task drops it unsent) and the engine is never
asked for them (an engine run queued in the pool is cancelled too; one the pool has already
begun, only possible for a member still out shortly before the deadline, finishes unused).
When the vote is open and waits only for boards that straggle (a board cannot be interrupted, so
one still computing an image an early answer did not need keeps the next waiting; or it is
slow), the engine computes those members (a spillover, reason ``straggling``), the first of
board and engine counting. ``cascade`` asks the ensemble's stage-1 members as in ``all`` (of the
cascade and its alternatives, the one whose stage-1 boards have the least work waiting); when
their answer passes the cascade's stopping rule it is returned and the other members are never
asked, else stage 2 asks them and the full vote decides. With fallback off, each stage (and an
early decision) needs board answers from at least min(quorum, members it asks) members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from .. import logs
from ..adaptive import MODES, Cascade, cascade_stops, early_answer
from ..ensemble import Ensemble, Member, load_ensemble
from ..errors import (BoardError, BoardGone, BoardTimeout, ConfigError, FleetvoteError, Overloaded, QuorumLost,
                      UnknownMember)
from ..fusion import Fused, fuse, lookup
from ..link.client import Timeouts, quiet_link_errors
from ..settings import Settings
from . import discovery
from .admission import EngineBatches, retry_after_s, usable_cpus
from .owner import Board, BoardAnswer, State
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

# Mode early's spillover: when the vote waits only for boards, and they have been out STRAGGLER
# times as long as the members that answered took, the engine computes them (reason STRAGGLING),
# if it has a worker free. A board cannot be interrupted, so one still computing an image an
# early answer did not need keeps the next image waiting for up to a whole image; a slowed board
# keeps every image waiting. 1.25, a quarter more than the slowest answer so far: a choice, so
# that beside boards of about 150 ms a board slowed by 200 ms is spilled at about 190 ms
# (testbed/bench_adaptive.py measures it), and boards of one kind that merely spread a little
# are left to answer.
STRAGGLER = 1.25
STRAGGLING = "straggling"


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
        if self.quorum_of(ensemble) > len(ensemble.members):
            raise FleetvoteError(f"quorum {self.quorum} exceeds the {len(ensemble.members)} members")
        self._reloading = asyncio.Lock()
        self._scanned = asyncio.Event()
        self._restore_handler = None
        # fallback work: at most one engine per core at a time, in a pool of its own (the default
        # executor is shared with discovery and unbounded in effect); numpy releases the GIL in
        # its matrix products, so members of one request run side by side; the cores this process
        # may use (its affinity, a cgroup quota), not the machine's
        workers = usable_cpus()
        _one_blas_thread()
        self._engine_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engine")
        self.spillover = EngineBatches(self._engine_pool, workers, rivals=self._busy_host_boards)
        self.engine_votes = logs.Summary(log, "members computed by the engine", SUMMARY_INTERVAL_S)
        self._engine_workers = workers
        self._engines_running = 0  # engine runs submitted and not finished (spillover waits for a free worker)
        self._cascade_turn = -1  # which of equally loaded cascades goes first (_pick_cascade)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._restore_handler = quiet_link_errors(asyncio.get_running_loop())
        await self.spillover.calibrate(self.ensemble.members)
        await self._probe()  # the engine's share of a core before the first burst, not a guess
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
        self.spillover.close()  # its lanes' timers would start batches on the pool shut down below
        self._engine_pool.shutdown(wait=False, cancel_futures=True)
        if self._restore_handler is not None:
            self._restore_handler()
            self._restore_handler = None
        self.engine_votes.flush(force=True)

    def _on_change(self, board: Board) -> None:
        board.member = None
        if board.info is not None:
            board.member = self.ensemble.by_hash(board.info.model_id, board.info.model_sha256)

    # ---- reload ----------------------------------------------------------------------------

    async def reload(self) -> tuple[Ensemble, float]:
        """Read the ensemble file again and swap it in: (the new ensemble, milliseconds taken).
        ConfigError, and the old ensemble kept, when the file is bad (or its quorum, with the
        settings' override, exceeds its members). The boards keep their links: each is matched
        to the new members by its model's id and hash; a member that no board carries is
        computed by the engine until one does. Requests already under way finish with the
        ensemble they started with."""
        t0 = time.perf_counter()
        async with self._reloading:  # two reloads at once would race for the version number
            # parsing the models (the engines) is CPU work: off the event loop, which keeps answering
            new = await asyncio.to_thread(load_ensemble, self.settings.ensemble, self.settings.zoo, self.ensemble)
            if self.quorum_of(new) > len(new.members):
                raise ConfigError(f"{new.path}: quorum {self.quorum_of(new)} (FLEETVOTE_QUORUM) exceeds its "
                                  f"{len(new.members)} members; the ensemble in service is kept")
            new = replace(new, version=self.ensemble.version + 1)
            # one step, no await: every request sees the old ensemble or the new one, whole
            self.ensemble = new
            for board in self.boards.values():
                self._on_change(board)
        ms = (time.perf_counter() - t0) * 1000
        log.info("ensemble reloaded", extra={"version": new.version, "members": len(new.members),
                                             "strategy": new.strategy, "reload_ms": round(ms, 1)})
        return new, ms

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
            await self._probe()
            await asyncio.sleep(s.rescan_s)

    async def _probe(self) -> None:
        """How much of a core the engine gets beside the host's other work now (admission.py;
        skipped while the engine or a board on the host's cores is busy). A probe that fails (a
        member's engine that raises) is logged and admission keeps what it had, at start-up as at
        the scans: the service starts and the other members' work goes on."""
        try:
            await self.spillover.probe()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("engine probe failed; admission keeps its estimate of the engine's share of a core")

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

    @property
    def quorum(self) -> int:
        return self.quorum_of(self.ensemble)

    def quorum_of(self, ensemble: Ensemble) -> int:
        return self.settings.quorum or ensemble.quorum

    def boards_for(self, member: Member) -> list[Board]:
        """The boards serving ``member`` now. Matched by model id and hash, not identity, so that a
        request that began before a reload still finds the boards of the members that stayed."""
        return [b for b in self.boards.values() if b.serving and _same(b.member, member)]

    def on_boards(self, member: Member) -> bool:
        """Whether a ready (or busy) board serves ``member``."""
        return any(_same(b.member, member) and b.state in (State.READY, State.BUSY) for b in self.boards.values())

    def members_on_boards(self) -> int:
        return sum(1 for m in self.ensemble.members if self.on_boards(m))

    def ready(self) -> bool:
        return self.members_on_boards() >= self.quorum

    def find(self, board_id: str) -> Board | None:
        for b in self.boards.values():
            if b.board_id == board_id or b.url == board_id:
                return b
        return None

    # ---- one request ---------------------------------------------------------------------------

    async def classify(self, image: np.ndarray, strategy: str | None = None, deadline_ms: float | None = None,
                       fallback: bool | None = None, members: Sequence[str] | None = None,
                       ensemble: Ensemble | None = None, mode: str | None = None,
                       arrived: float | None = None) -> Classification:
        """One image through the fleet: admit it (``admission.py``), dispatch to the boards, gather
        their answers until the deadline (the engine standing by), fill in the missing members,
        fuse. Raises Overloaded when a member can finish in time neither on a board nor on the
        engine (nothing is queued then), QuorumLost when fallback is off and too few boards answered.

        ``deadline_ms`` (default: the setting) bounds the request's whole time from ``arrived``
        (``time.perf_counter()`` when the request reached the service; default: now) to the answer,
        both stages of a cascade included; without either, each board's own deadline
        (``Board.deadline_ms``) bounds its member.
        ``members``: the ids of the members asked (default: all), in any order; the answer keeps the
        ensemble's order and the quorum is at most their number (one member alone is the inference
        protocol's member model). UnknownMember for an id that is not a member. ``ensemble``: the
        ensemble to answer with (default: the one in service); a batch pins one, so that a reload
        between two of its images does not mix two ensembles in one response. ``mode``: all, early
        or cascade (default: the ensemble file's), over the members asked; ConfigError for a
        cascade without a cascade section."""
        t0 = time.perf_counter() if arrived is None else arrived
        ens = ensemble or self.ensemble  # held to the end: a reload swaps self.ensemble, never ens
        asked = _indices(ens, members)
        strategy = strategy or ens.strategy
        fallback = self.settings.fallback if fallback is None else fallback
        deadline_ms = deadline_ms or self.settings.deadline_ms
        until = None if deadline_ms is None else t0 + deadline_ms / 1000  # perf_counter time
        mode = mode or ens.mode
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        image = np.ascontiguousarray(image, dtype=np.uint8)
        stage, skipped, fused = 1, set(), None
        if mode == "early":
            votes, skipped, fused = await self._gather_early(ens, image, asked, strategy, until, fallback)
        elif mode == "cascade":
            cascade = self._pick_cascade(ens)
            first = [k for k in asked if ens.members[k].id in cascade.stage1] or asked
            rest = [k for k in asked if k not in first]
            votes = await self._ask(ens, image, first, until, fallback)
            order = sorted(votes)
            w = [ens.members[k].weight for k in order]
            if not rest or votes and cascade_stops(np.array([votes[k].output for k in order]), strategy, cascade, w):
                skipped = set(rest)
            else:
                try:
                    votes.update(await self._ask(ens, image, rest, until, fallback))
                    stage = 2
                except Overloaded:
                    # stage 2 cannot finish before the deadline (stage 1 used most of it, or the
                    # fleet is full): stage 1's answer, unsure as it is, rather than a 503 for a
                    # request whose work is done; the answer says so (stage 1, the rest skipped)
                    skipped = set(rest)
        else:
            votes = await self._ask(ens, image, asked, until, fallback)
        order = sorted(votes)
        if fused is None:
            weights = [ens.members[k].weight for k in order]
            if lookup(strategy).uses_weights and not any(weights):
                # only members of weight 0 voted (the others' boards failed, fallback off, or not asked):
                # a weighted vote of nothing has no answer; refused like a lost quorum, never a 500
                raise QuorumLost(f"no member with a weight above 0 voted ({', '.join(votes[k].model_id for k in order)} "
                                 f"did, at weight 0); the {strategy} vote needs one", [])
            fused = fuse([votes[k].output for k in order], strategy, weights)
        skipped_ids = tuple(ens.members[k].id for k in sorted(skipped))
        if self.metrics:
            self.metrics.answer(mode, stage, len(skipped_ids))
        return Classification(fused, tuple(votes[k] for k in order), (time.perf_counter() - t0) * 1000,
                              mode, stage, skipped_ids)

    def _pick_cascade(self, ens: Ensemble) -> Cascade:
        """Of the ensemble's cascade and its alternatives, the one whose stage 1 will answer
        first: the least work waiting on the busiest of its stage-1 members (on that member's
        least loaded board); ties in turn, so that stage 1 rotates over equal choices."""
        options = ens.cascades
        if not options:
            raise ConfigError(f"{ens.path}: no cascade section, so mode cascade is not available; "
                              "write one with fleetvote ensemble-eval --write-ensemble")
        self._cascade_turn = (self._cascade_turn + 1) % len(options)
        index = {m.id: m for m in ens.members}

        def waiting(member: Member) -> float:
            boards = self.boards_for(member)
            return min((b.queue.qsize() + (b.state == State.BUSY) for b in boards), default=float("inf"))

        return min(enumerate(options), key=lambda ic: (max(waiting(index[i]) for i in ic[1].stage1),
                                                       (ic[0] - self._cascade_turn) % len(options)))[1]

    async def _ask(self, ens: Ensemble, image: np.ndarray, ks: list[int], until: float | None,
                   fallback: bool) -> dict[int, MemberVote]:
        """The votes of members ``ks`` (indices), every one waited for: admitted and dispatched to
        boards, then the engine or the quorum check (at most their number) for those missing.
        ``until``: the request's deadline (``time.perf_counter()``), or None."""
        quorum = min(self.quorum_of(ens), len(ks))
        sent, reasons = self._dispatch(ens, ks, image.tobytes(), until, fallback, quorum)
        engines = _EngineRuns(self.spillover, ens.members, image, self) if fallback else None
        try:
            if engines is not None:
                engines.start(*reasons)  # members already known to be missing: computed while the boards work
            answers, failed = await self._gather(sent, engines)
            reasons.update(failed)
            votes = {k: self._board_vote(ens, k, sent[k].board, a) for k, a in answers.items()}
            votes.update(await self._stand_in(ens, ks, quorum, votes, reasons, engines, sent, until))
            return votes
        finally:
            # what this request no longer waits for (an engine run that lost to its board's answer
            # in the last lead, a board that lost to the engine; everything when the request is
            # cancelled or refused, e.g. another image of its batch): no board or engine computes
            # it for nobody, and admission does not count it as backlog
            _cancel_leftovers(sent, engines)

    def _admit(self, ens: Ensemble, asked: list[int], left_ms: float | None, fallback: bool, quorum: int
               ) -> tuple[dict[int, Board], dict[int, Missing]]:
        """Where each asked member finishes, decided before anything is queued: the board that
        answers it soonest among those that can before the deadline (by ``Board.finish_ms``, the
        engine's lead to spare) and have room in their queue; else why it has none (``no_board``,
        ``board_offline``, or ``queue_full``: a spillover to the engine). Overloaded when the
        engine cannot finish the members left to it in time either (fallback on), or when fewer
        than the quorum are placed on boards for lack of room (fallback off)."""
        placed: dict[int, Board] = {}
        reasons: dict[int, Missing] = {}
        board_ms: dict[int, float] = {}  # the soonest finish on a board, for Retry-After
        for k in asked:
            member = ens.members[k]
            boards = self.boards_for(member)
            if not boards:
                known = any(_same(b.member, member) for b in self.boards.values())
                reasons[k] = ("board_offline" if known else "no_board", None)
                continue
            for b in boards:
                b.prune()  # jobs given up (an early answer's skipped members) hold no place or time
            best = min(boards, key=lambda b: (b.finish_ms(), b.state != State.READY))
            board_ms[k] = best.finish_ms()
            for b in sorted(boards, key=lambda b: (b.finish_ms(), b.state != State.READY)):
                budget = left_ms if left_ms is not None else b.deadline_ms()
                lead = min(budget / 2, FALLBACK_LEAD_S * 1000) if fallback else 0.0
                if not b.queue.full() and b.finish_ms() <= budget - lead:
                    placed[k] = b
                    break
            else:
                reasons[k] = (QUEUE_FULL, None)
        spill = [k for k, (r, _) in reasons.items() if r == QUEUE_FULL]
        if not fallback:
            if spill and len(placed) < quorum:
                wait = min(board_ms[k] for k in spill)
                raise Overloaded(f"{len(placed)} of {len(asked)} members fit on their boards before the deadline, "
                                 f"quorum {quorum}, fallback off: the boards' backlog is {wait:.0f} ms",
                                 retry_after_s(wait))
            if len(placed) < quorum:  # no board for enough members at all: refused before any work
                _check_quorum(ens, quorum, len(placed), [k for k in asked if k not in placed], reasons)
            return placed, reasons
        engine_ms = self.spillover.finish_ms([ens.members[k] for k in reasons])
        if left_ms is not None and engine_ms > left_ms:
            backlog = self.spillover.drain_ms()
            wait = min([backlog, *(board_ms[k] for k in spill)])
            raise Overloaded(f"the request's {len(reasons)} member(s) left to the engine would take {engine_ms:.0f} ms, "
                             f"{max(left_ms, 0):.0f} ms are left of its deadline, and its boards are full until then",
                             retry_after_s(wait))
        return placed, reasons

    def _dispatch(self, ens: Ensemble, ks: list[int], pixels: bytes, until: float | None, fallback: bool,
                  quorum: int) -> tuple[dict[int, Sent], dict[int, Missing]]:
        """Members ``ks`` admitted (``_admit``; Overloaded, with nothing queued, when one can finish
        neither way) and each placed member's image queued on its board: what was sent (by member
        index), and why each other member was not."""
        left_ms = None if until is None else (until - time.perf_counter()) * 1000
        placed, reasons = self._admit(ens, ks, left_ms, fallback, quorum)
        if self.metrics:
            for k in ks:
                self.metrics.member_request(ens.members[k].id)
        loop = asyncio.get_running_loop()
        sent: dict[int, Sent] = {}
        for k, b in placed.items():
            budget = (left_ms if left_ms is not None else b.deadline_ms()) / 1000
            # admission saw room in the queue and nothing ran since: submit cannot be refused
            sent[k] = Sent(b, b.submit(pixels, loop.time() + budget), budget)
        return sent, reasons

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

    def _board_vote(self, ens: Ensemble, k: int, board: Board, ans: BoardAnswer) -> MemberVote:
        r = ans.result
        if self.metrics:
            self.metrics.board_answer(board.board_id or "", board.model_id or "", ans.round_trip_ms / 1000,
                                      r.inference_us / 1e6)
        return MemberVote(ens.members[k].id, tuple(int(v) for v in r.scores), "board", None,
                          board.board_id, ans.queue_ms, max(ans.round_trip_ms - r.inference_us / 1000, 0.0),
                          r.inference_us / 1000, ans.queue_ms + ans.round_trip_ms)

    async def _stand_in(self, ens: Ensemble, asked: list[int], quorum: int, votes: dict[int, MemberVote],
                        reasons: dict[int, Missing], engines: _EngineRuns | None,
                        sent: dict[int, Sent], until: float | None = None) -> dict[int, MemberVote]:
        """Votes for the asked members without a board answer: the engine's, or, with fallback off,
        none (QuorumLost when fewer than the quorum answered). ``until``: the request's deadline
        (``time.perf_counter()``): an engine vote not ready by then is left out, as with fallback
        off; fewer votes than the quorum by then is Overloaded (the engine's backlog was larger
        than admission counted on)."""
        missing = [k for k in asked if k not in votes]
        if not missing:
            return {}
        if engines is None:
            _check_quorum(ens, quorum, len(votes), missing, reasons)
            return {}
        runs = engines.futures(missing)
        if until is not None:
            await asyncio.wait(runs.values(), timeout=max(until - time.perf_counter(), 0.0))
            late = [k for k, f in runs.items() if not f.done()]
            for k in late:
                runs.pop(k).cancel()  # a batch not yet started leaves it out
            if late:  # every engine vote in time: nothing left out, nothing to refuse
                self._deadline_refusal(ens, late, len(votes) + len(runs), len(asked), quorum)
        return {k: self._fallback_vote(ens, k, out, ms, reasons[k], sent)
                for k, (out, ms) in zip(runs, await asyncio.gather(*runs.values()))}

    def _fallback_vote(self, ens: Ensemble, k: int, out: np.ndarray, ms: float, why: Missing,
                       sent: dict[int, Sent]) -> MemberVote:
        """Member k's vote computed by the engine, counted and logged with its reason."""
        member = ens.members[k]
        reason, detail = why
        board = sent[k].board if k in sent else None
        if self.metrics:
            self.metrics.engine_vote(member.id, reason, board.board_id if board else None)
        log.debug("member computed by the engine", extra={
            "model_id": member.id, "board_id": board.board_id if board else None, "reason": reason,
            "detail": detail})
        self.engine_votes.add(f"{member.id} {reason}")
        return MemberVote(member.id, tuple(int(v) for v in out), "fallback", reason, None, 0.0, 0.0, None, ms, detail)

    async def _gather_early(self, ens: Ensemble, image: np.ndarray, asked: list[int], strategy: str,
                            until: float | None, fallback: bool
                            ) -> tuple[dict[int, MemberVote], set[int], Fused | None]:
        """Mode early: every asked member dispatched, votes counted as they arrive, and the wait
        ends as soon as ``adaptive.early_answer`` settles the label. Returns (votes, members
        skipped, the early answer or None when every member was waited for).

        The deadline, the engine's stand-ins and the speculative run shortly before the deadline
        are as in ``_gather``. One more engine run, the spillover: when the vote is still open,
        waits only for boards, and those have been out ``STRAGGLER`` times as long as the members
        that answered took, the engine computes them (when it has a worker free), and whichever of
        board and engine answers first counts (the bytes are the same; ``source`` says which, the
        reason is ``STRAGGLING``); the board's job, if still queued, is then dropped. A member
        skipped is never computed."""
        loop = asyncio.get_running_loop()
        n = len(ens.members)
        quorum = min(self.quorum_of(ens), len(asked))
        sent, reasons = self._dispatch(ens, asked, image.tobytes(), until, fallback, quorum)
        engines = _EngineRuns(self.spillover, ens.members, image, self) if fallback else None
        votes: dict[int, MemberVote] = {}
        possible = set(asked)  # the members whose vote may still come
        outputs = np.zeros((n, 10), np.int64)
        board_of = {s.future: k for k, s in sent.items()}
        engine_of: dict[asyncio.Future, int] = {}  # engine runs whose result is the member's vote
        racing: dict[int, asyncio.Future] = {}  # engine runs racing a board still out (speculative, spillover)

        def vote(k: int, v: MemberVote) -> None:
            votes[k] = v
            outputs[k] = v.output

        def lost(k: int) -> None:
            """Member k's board has no answer: the engine's (the run racing it, if any), or, with
            fallback off, no vote."""
            if engines is None:
                possible.discard(k)
            else:
                engine_of[racing.pop(k, None) or engines.start(k)[0]] = k

        def settled() -> Fused | None:
            if engines is None and len(votes) < quorum:
                return None
            ks = sorted(possible)
            known = [k in votes for k in ks]
            return early_answer(outputs[ks], known, strategy, [ens.members[k].weight for k in ks])

        def race(ks, reason: str) -> None:
            for k in ks:
                if k not in racing:
                    racing[k] = engines.start(k)[0]
                    reasons.setdefault(k, (reason, None))

        for k in reasons:
            lost(k)
        budget = max((s.budget for s in sent.values()), default=0.0)
        lead = min(budget / 2, FALLBACK_LEAD_S) if engines is not None else 0.0
        speculate_at, end = loop.time() + budget - lead, loop.time() + budget
        speculated = False
        answer = None
        t0 = last = loop.time()  # dispatch, and the last vote's arrival
        # the request's deadline on the loop's clock: engine votes are not waited for past it
        hard_end = None if until is None else t0 + (until - time.perf_counter())
        late = False
        try:
            while (board_of or engine_of) and (answer := settled()) is None:
                now = loop.time()
                if hard_end is not None and now >= hard_end:
                    late = True  # what is still out is left out (cancelled below), as in _stand_in
                    break
                out = set(board_of.values())
                straggling = (engines is not None and votes and not engine_of and out and possible - set(votes) == out
                              and not out <= set(racing))
                spill_at = t0 + STRAGGLER * (last - t0) if straggling else None
                if spill_at is not None and now >= spill_at and self._engines_idle():
                    race(out, STRAGGLING)
                    spill_at = None
                if board_of and engines is not None and not speculated and now >= speculate_at:
                    race(out, "timeout")  # still open shortly before the deadline
                    speculated = True
                if board_of and now >= end:
                    for fut, k in board_of.items():
                        fut.cancel()
                        reasons[k] = ("timeout", None)
                        lost(k)
                    board_of = {}
                    continue
                run_of = {f: k for k, f in racing.items() if k in out}
                wait = set(board_of) | set(engine_of) | set(run_of)
                timeout = None if not board_of else max((speculate_at if not speculated and engines else end) - now, 0)
                if spill_at is not None and spill_at > now:
                    timeout = min(timeout, spill_at - now) if timeout is not None else spill_at - now
                elif spill_at is not None:  # due, but every engine worker is busy: look again shortly
                    timeout = min(timeout, 0.005) if timeout is not None else 0.005
                if hard_end is not None:
                    timeout = max(hard_end - now, 0.0) if timeout is None else min(timeout, max(hard_end - now, 0.0))
                done, _ = await asyncio.wait(wait, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if done:
                    last = loop.time()
                for fut in done:
                    if fut in board_of:
                        k = board_of.pop(fut)
                        if k in votes:
                            continue  # its engine run won the race
                        if fut.exception() is None:
                            vote(k, self._board_vote(ens, k, sent[k].board, fut.result()))
                        else:
                            reasons[k] = _reason(fut.exception())
                            lost(k)
                    elif fut in engine_of:
                        k = engine_of.pop(fut)
                        out_, ms = fut.result()
                        vote(k, self._fallback_vote(ens, k, out_, ms, reasons[k], sent))
                    elif fut in run_of and run_of[fut] not in votes and run_of[fut] in board_of.values():
                        k = run_of[fut]
                        out_, ms = fut.result()
                        vote(k, self._fallback_vote(ens, k, out_, ms, reasons[k], sent))
                        board = next(f for f, j in board_of.items() if j == k)
                        board.cancel()  # still queued: dropped unsent; on the wire: its answer is ignored
                        del board_of[board]
        finally:  # also when the request is cancelled or an exception leaves the loop
            for fut in list(board_of) + list(engine_of) + list(racing.values()):
                fut.cancel()  # queued board work is dropped unsent; a queued engine run never starts
        if answer is None and engines is None:
            missing = [k for k in asked if k not in votes]
            if missing:
                _check_quorum(ens, quorum, len(votes), missing, reasons)
        if late and answer is None:
            # of the members still out, those whose vote was the engine's (their board failed, or
            # they had none); the others wait for a board (an engine run racing it or not)
            self._deadline_refusal(ens, sorted(possible - set(votes)), len(votes), len(asked), quorum,
                                   engine=set(engine_of.values()))
        return votes, possible - set(votes), answer

    def _deadline_refusal(self, ens: Ensemble, late: list[int], votes: int, asked: int, quorum: int,
                          engine: set[int] | None = None) -> None:
        """At the request's deadline (``_stand_in`` and ``_gather_early`` alike), with the votes of
        members ``late`` (indices) still out, their runs already cancelled by the caller: they are
        left out, as with fallback off, and the request is answered with the ``votes`` it has;
        fewer than the quorum is Overloaded (503), with a Retry-After from the engine's backlog
        (it was larger than admission counted on). ``engine``: those of ``late`` whose vote was
        the engine's (default: all, as in ``_stand_in``); the others were waiting for a board, and
        the log names each kind apart."""
        names = ", ".join(ens.members[k].id for k in late)
        if votes < quorum:
            backlog = self.spillover.drain_ms()
            raise Overloaded(f"{votes} of {asked} votes by the request's deadline, quorum {quorum}: the fleet did not "
                             f"finish {len(late)} member(s) in time ({names}); the engine's backlog is "
                             f"{backlog:.0f} ms", retry_after_s(backlog))
        on_engine = [k for k in late if engine is None or k in engine]
        on_boards = [k for k in late if k not in on_engine]
        if on_engine:
            log.debug("engine votes past the deadline left out",
                      extra={"model_id": ",".join(ens.members[k].id for k in on_engine)})
        if on_boards:
            log.debug("board answers past the deadline left out",
                      extra={"model_id": ",".join(ens.members[k].id for k in on_boards)})

    def _busy_host_boards(self) -> int:
        """Boards computing on this host's cores now (with work queued or on the wire), when they
        do (``Settings.boards_share_cpu``: virtual boards at host speed); else 0."""
        if not self.settings.boards_share_cpu:
            return 0
        return sum(1 for b in self.boards.values() if b.serving and b.backlog())

    def _engines_idle(self) -> bool:
        return self._engines_running < self._engine_workers

def _one_blas_thread() -> None:
    """The engine's matrix products on one BLAS thread each, for the whole process: the engine
    pool's workers (a thread per core) are the parallelism. OpenBLAS's own threads on top of them
    (a thread per core for each call, waiting for work by spinning) doubled the CPU the spillover
    cost: 1,280 images of the zoo's members at batch 128, two workers, took 2.4-2.9 s of CPU with
    OpenBLAS's default against 1.5-1.6 s with one thread each (this project's 2-core machine,
    under load). The products' results do not depend on it: they are exact (engine/kernels.py)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _check_quorum(ens: Ensemble, quorum: int, answered: int, missing: list[int], reasons: dict[int, Missing]
                  ) -> None:
    if answered >= quorum:
        return
    names = [ens.members[k].id for k in missing]
    raise QuorumLost(f"{answered} of {answered + len(missing)} members answered from boards, "
                     f"quorum is {quorum}; missing: {', '.join(names)} "
                     f"({'; '.join(r if d is None else f'{r}: {d}' for r, d in (reasons[k] for k in missing))})",
                     names)


def _same(a: Member | None, b: Member) -> bool:
    """The same model: the ensemble file may be reloaded, which makes new Member objects."""
    return a is b or (a is not None and a.id == b.id and a.sha256 == b.sha256)


def _indices(ens: Ensemble, ids: Sequence[str] | None) -> list[int]:
    """The ensemble's indices of the member ids (all, in order, for None)."""
    if ids is None:
        return list(range(len(ens.members)))
    where = {m.id: k for k, m in enumerate(ens.members)}
    unknown = [i for i in ids if i not in where]
    if unknown or not ids:
        raise UnknownMember(f"{', '.join(map(repr, unknown)) or 'no member'}: not a member of the ensemble "
                            f"(version {ens.version}); GET /ensemble lists them", unknown)
    return sorted({where[i] for i in ids})


def _cancel_leftovers(sent: dict[int, Sent], engines: _EngineRuns | None) -> None:
    """Cancels the board jobs and engine runs of a request that are not done: a queued board job
    is dropped unsent (the owner skips done futures), a queued engine run leaves its batch."""
    for s in sent.values():
        if not s.future.done():
            s.future.cancel()
    if engines is not None:
        engines.cancel()


class _EngineRuns:
    """The engine runs of one request, batched with other requests' (``admission.EngineBatches``),
    at most one per member, started as soon as a member is known or feared to be missing."""

    def __init__(self, batches: EngineBatches, members: list[Member], image: np.ndarray, fleet=None) -> None:
        self._batches, self._members, self._image = batches, members, image
        self._runs: dict[int, asyncio.Future] = {}
        self._fleet = fleet  # counts the runs in flight (Fleet._engines_running), when given

    def start(self, *ks: int) -> list[asyncio.Future]:
        """Starts the members not started yet; their runs (futures of (output, ms)), in order."""
        for k in ks:
            if k not in self._runs:
                self._runs[k] = self._batches.submit(self._members[k], self._image)
                if self._fleet is not None:
                    self._fleet._engines_running += 1
                    self._runs[k].add_done_callback(self._finished)
        return [self._runs[k] for k in ks]

    def _finished(self, _fut: asyncio.Future) -> None:
        self._fleet._engines_running -= 1

    def cancel(self) -> None:
        """Every run not done yet, cancelled (its member's vote is no longer wanted)."""
        for run in self._runs.values():
            if not run.done():
                run.cancel()

    def futures(self, ks: list[int]) -> dict[int, asyncio.Future]:
        """The runs of ``ks`` (futures of (output, ms)), starting those not started yet."""
        self.start(*ks)
        return {k: self._runs[k] for k in ks}


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
