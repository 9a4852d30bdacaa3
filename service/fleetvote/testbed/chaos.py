"""Chaos run: faults injected at random into some virtual boards while clients keep classifying.

    python -m fleetvote.testbed.chaos --boards 6 --victims 3 --requests 2000 --concurrency 16
    make chaos                      # the same, with the Makefile's CHAOS_ARGS

N virtual boards (the firmware built for the host, each on a pty with a control FIFO, see
firmware/ports/host/faults_control.c) serve the members of the zoo's ensemble file (or --members of them)
round-robin, with its weights, strategy and quorum; the service runs under uvicorn on
127.0.0.1 and a free port, in this process. M requests go to POST /classify at concurrency C over
real HTTP, each with ``deadline_ms=D`` (a share with ``fallback=false``), while an injector breaks
one of K victim boards at a time with a random fault:

    DROP, DELAY ms, GARBAGE n, BAD_CRC, RESET, HANG ms (the board's watchdog), HANG_FOREVER
    (until the service closes the link), UNPLUG (the process exits; plugged in again later)
                                            armed through the FIFO for the board's next CLASSIFY
    FREEZE s                                SIGSTOP, SIGCONT after s
    KILL                                    SIGKILL (power loss), restarted at the same link later

Checked, and counted in the report:

* every request gets a well-formed answer: 200 whose body validates against the response model
  and whose every member output equals the numpy engine's bytes for that image, whoever computed
  it; or 503 from admission control (Retry-After) or, with fallback off, for a lost quorum;
* no later than D + the engine time of all members + 50 ms, the engine time being the larger of
  what this run measured first (every member on one image, one after another) and what the answer
  reports for its fallback members (added up); none lost (a connection error, or no answer within
  that bound + 10 s). With --allow-loop-lag a request is late only past that bound plus the time
  the event loop measurably could not run while it was in flight (a 10 ms sleep's overshoot,
  summed): for a machine busy with other work, where the service's process is not always
  scheduled. Stalls over 250 ms are reported with the code the loop was running, found by a
  watchdog thread (a starved process shows none: the watchdog was not running either);
* every fault is followed by its board being seen ``ready`` in GET /boards once the fault's
  effect has ended (replugged, thawed, delay over), within --recovery-s;
* no leak: open file descriptors, asyncio tasks and child processes of this process are the same
  before and after the run (with the fleet up), and as at the start once everything has stopped.

Exit status 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..command import ListOption
from .harness import (
    BOARD_BIN,
    ZOO,
    ControlledBoard,
    Expected,
    HttpError,
    LeanHttp,
    build_board,
    check_answer,
    derive_ensemble,
    live_service,
    percentile,
    resources,
)

ALL_FAULTS = ("DROP", "DELAY", "GARBAGE", "BAD_CRC", "RESET", "HANG", "HANG_FOREVER", "UNPLUG", "FREEZE", "KILL")
API_KEY = "chaos-key"
MARGIN_MS = 50.0
STALL_S = 0.25


@dataclass
class ChaosConfig:
    boards: int = 6
    victims: int = 3
    requests: int = 2000
    concurrency: int = 16
    deadline_ms: float = 300.0
    fault_interval_s: float = 0.5
    faults: tuple[str, ...] = ALL_FAULTS
    fallback_off_share: float = 0.1
    members: int | None = None  # the first ones of the ensemble file; None: all
    ensemble: Path = ZOO / "ensemble.json"
    latency_ms: int = 0
    seed: int = 1
    recovery_s: float = 20.0
    allow_loop_lag: bool = False
    workdir: Path | None = None
    binary: Path = BOARD_BIN


@dataclass
class Fault:
    board: int
    kind: str
    arg: int
    injected: float
    fired: float | None = None
    effect_end: float | None = None
    recovered: float | None = None
    outcome: str = "active"  # active | recovered | not recovered | not fired


@dataclass
class ChaosReport:
    config: dict
    requests: int = 0
    answered: int = 0
    ok: int = 0
    with_fallback: int = 0
    admission_503: int = 0
    quorum_503: int = 0
    wrong: int = 0
    lost: int = 0
    late: int = 0
    late_beyond_loop_lag: int = 0
    faults_injected: int = 0
    faults_by_kind: dict = field(default_factory=dict)
    faults_not_fired: int = 0
    recovered: int = 0
    not_recovered: int = 0
    recovery_p50_s: float | None = None
    recovery_max_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    bound_ms: float = 0.0
    engine_ms: float = 0.0
    worst_over_bound_ms: float | None = None
    loop_lag_max_ms: float | None = None
    leaks: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # the first few, in words
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        late = self.late_beyond_loop_lag if self.config.get("allow_loop_lag") else self.late
        return (self.wrong == 0 and self.lost == 0 and late == 0 and self.not_recovered == 0
                and not self.leaks and self.answered == self.requests)

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.faults_by_kind.items())) or "none"
        return [
            f"requests {self.requests}: answered {self.answered} (200 {self.ok}, of which with fallback "
            f"{self.with_fallback}; 503 admission {self.admission_503}; 503 quorum lost {self.quorum_503}), "
            f"wrong {self.wrong}, lost {self.lost}, late {self.late} (beyond the loop lag "
            f"{self.late_beyond_loop_lag})",
            f"faults injected {self.faults_injected} ({kinds}); armed but never fired {self.faults_not_fired}",
            f"recovered {self.recovered}, not recovered {self.not_recovered}; recovery p50 "
            f"{_fmt(self.recovery_p50_s, 's')}, max {_fmt(self.recovery_max_s, 's')}",
            f"latency p50 {_fmt(self.latency_p50_ms, 'ms')}, p99 {_fmt(self.latency_p99_ms, 'ms')}, max "
            f"{_fmt(self.latency_max_ms, 'ms')}; bound {self.bound_ms:.0f} ms (deadline + engine "
            f"{self.engine_ms:.1f} ms + {MARGIN_MS:.0f} ms, more where an answer's fallbacks took longer); worst "
            f"over it {_fmt(self.worst_over_bound_ms, 'ms')}",
            f"event loop lag (the service's loop, shared with this client) max {_fmt(self.loop_lag_max_ms, 'ms')}",
            f"leaks: {'; '.join(self.leaks) if self.leaks else 'none'}",
            *[f"problem: {p}" for p in self.problems],
            f"chaos: {'PASS' if self.passed else 'FAIL'} in {self.duration_s:.1f} s",
        ]


def _fmt(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:.3f} {unit}" if unit == "s" else f"{v:.1f} {unit}"


class Chaos:
    def __init__(self, cfg: ChaosConfig) -> None:
        if not 0 <= cfg.victims <= cfg.boards:
            raise ValueError("--victims must be between 0 and --boards")
        unknown = set(cfg.faults) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(ALL_FAULTS)}")
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.report = ChaosReport(config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()})
        self.boards: list[ControlledBoard] = []
        self.faults: list[Fault] = []
        self.active: dict[int, Fault] = {}
        self.pending: dict[int, float] = {}  # board index -> when to thaw or (re)start it
        self.log_seen: dict[int, int] = {}
        self.latencies: list[float] = []
        self.overs: list[tuple[float, float, float]] = []  # (start, end, ms past its bound) of late requests
        self.lags: list[tuple[float, float]] = []  # (when, ms) of each loop wake-up over 2 ms late
        self.stalls: list[str] = []
        self.done = asyncio.Event()

    def problem(self, text: str) -> None:
        if len(self.report.problems) < 10:
            self.report.problems.append(text)

    # ---- the run ---------------------------------------------------------------------------------

    async def run(self) -> ChaosReport:
        from ..settings import Settings

        cfg = self.cfg
        t_start = time.monotonic()
        r0 = resources()
        own = cfg.workdir is None
        work = Path(tempfile.mkdtemp(prefix="fleetvote-chaos-")) if own else cfg.workdir
        members, self.quorum = derive_ensemble(work / "ensemble.json", cfg.ensemble, cfg.members, cfg.binary)
        expected = await asyncio.to_thread(Expected.make, members, 64, cfg.seed)
        self.expected = expected
        self.bound_ms = cfg.deadline_ms + expected.engine_ms + MARGIN_MS
        self.report.bound_ms, self.report.engine_ms = self.bound_ms, expected.engine_ms
        settings = Settings(ensemble=work / "ensemble.json", zoo=ZOO, urls=[], link_globs=[str(work / "boards" / "*")],
                            scan_usb=False, rescan_s=0.2, ping_interval_s=1.0, api_key=API_KEY)
        try:
            for i in range(cfg.boards):
                b = ControlledBoard(members[i % len(members)], i, work, latency_ms=cfg.latency_ms, binary=cfg.binary)
                self.boards.append(b)
                b.start()
            async with live_service(settings) as (url, app):
                self.url, self.fleet = url, app.state.fleet
                probe = LeanHttp.for_url(url, {"X-API-Key": API_KEY})
                try:
                    await self._wait_all_ready(probe, 30)
                    for i in range(4):  # warm-up: connections, thread pool, first allocations
                        await probe.request("POST", "/classify", expected.images[i].tobytes(), "application/octet-stream")
                finally:
                    await probe.close()
                await asyncio.sleep(0.3)
                r1 = resources()
                counter = iter(range(cfg.requests))
                workers = [asyncio.create_task(self._worker(url, counter, k)) for k in range(cfg.concurrency)]
                side = [asyncio.create_task(self._injector()), asyncio.create_task(self._monitor())]
                lag_task = asyncio.create_task(self._lag())
                await asyncio.gather(*workers)
                self.done.set()
                await side[0]
                await self._end_faults()
                await side[1]
                await lag_task
                probe = LeanHttp.for_url(url, {"X-API-Key": API_KEY})
                try:
                    await self._wait_all_ready(probe, cfg.recovery_s)
                finally:
                    await probe.close()
                await asyncio.sleep(0.5)  # closed connections finish closing on the server side
                r2 = resources()
                self.report.leaks += [f"with the fleet up: {x}" for x in r2.leaks_vs(r1)]
        finally:
            for b in self.boards:
                b.stop()
            self._count_faults()
            if own:
                shutil.rmtree(work, ignore_errors=True)
        await asyncio.sleep(0.2)
        r3 = resources()
        self.report.leaks += [f"after the run: {x}" for x in r3.leaks_vs(r0)]
        rep = self.report
        rep.latency_p50_ms = percentile(self.latencies, 50)
        rep.latency_p99_ms = percentile(self.latencies, 99)
        rep.latency_max_ms = max(self.latencies) if self.latencies else None
        rep.duration_s = time.monotonic() - t_start
        return rep

    async def _wait_all_ready(self, client: LeanHttp, timeout: float) -> None:
        """Through GET /boards, as a user sees it."""
        t0 = time.monotonic()
        states: dict = {}
        while time.monotonic() - t0 < timeout:
            try:
                r = await client.request("GET", "/boards")
                states = {b["url"]: b["state"] for b in r.json()["boards"]}
            except (HttpError, ValueError, KeyError) as exc:
                self.problem(f"GET /boards failed: {exc}")
            if len(states) == len(self.boards) and all(s == "ready" for s in states.values()) and \
                    all(b.running for b in self.boards):
                return
            await asyncio.sleep(0.1)
        self.report.not_recovered += sum(1 for s in states.values() if s != "ready") or 1
        self.problem(f"boards not all ready after {timeout} s: {states}")

    def _states(self) -> dict[str, str]:
        """The fleet's own view, read in-process (what GET /boards shows, without its cost)."""
        return {url: b.state.value for url, b in self.fleet.boards.items()}

    # ---- clients ---------------------------------------------------------------------------------

    async def _worker(self, url: str, counter, k: int) -> None:
        client = LeanHttp.for_url(url, {"X-API-Key": API_KEY})
        try:
            await self._requests(client, counter, k)
        finally:
            await client.close()

    async def _requests(self, client: LeanHttp, counter, k: int) -> None:
        cfg, exp, rep = self.cfg, self.expected, self.report
        rng = random.Random(cfg.seed * 1000 + k)
        for i in counter:
            idx = i % len(exp.images)
            fallback = rng.random() >= cfg.fallback_off_share
            target = f"/classify?deadline_ms={cfg.deadline_ms:g}" + ("" if fallback else "&fallback=false")
            rep.requests += 1
            t = time.perf_counter()
            try:
                async with asyncio.timeout(self.bound_ms / 1000 + 10):
                    r = await client.request("POST", target, exp.images[idx].tobytes(), "application/octet-stream")
            except (HttpError, TimeoutError) as exc:
                rep.lost += 1
                await client.close()
                self.problem(f"request {i} lost after {time.perf_counter() - t:.1f} s: {type(exc).__name__}: {exc}")
                continue
            ms = (time.perf_counter() - t) * 1000
            rep.answered += 1
            self.latencies.append(ms)
            why = None
            try:
                body = r.json()
            except ValueError:
                body = None
            bound = self.bound_ms
            if r.status == 200 and isinstance(body, dict):
                with contextlib.suppress(TypeError, KeyError, AttributeError):
                    engine = sum(float(m["latency_ms"]) for m in body["members"] if m["source"] == "fallback")
                    bound = max(bound, cfg.deadline_ms + engine + MARGIN_MS)
            if ms > bound:
                rep.late += 1
                over = ms - bound
                self.overs.append((t, time.perf_counter(), over))
                rep.worst_over_bound_ms = max(rep.worst_over_bound_ms or 0.0, over)
                inside = ""
                if r.status == 200 and isinstance(body, dict):
                    inside = f"; the service's latency_ms {body.get('latency_ms')}, members " + ", ".join(
                        f"{m.get('model_id')} {m.get('source')} {m.get('reason') or ''} {m.get('latency_ms')} ms"
                        for m in body.get("members", []))
                self.problem(f"request {i} answered {r.status} after {ms:.0f} ms, bound {bound:.0f} ms{inside}")
            if r.status in (200, 503) and not isinstance(body, dict):
                why = f"status {r.status} with a body that is not a JSON object: {r.body[:200]!r}"
            elif r.status == 200:
                why = check_answer(body, exp, idx, fallback=fallback, quorum=self.quorum)
                if why is None:
                    rep.ok += 1
                    rep.with_fallback += body["fallbacks"] > 0
            elif r.status == 503:
                detail = str(body.get("detail", ""))
                if r.headers.get("retry-after", "").isdigit():
                    rep.admission_503 += 1
                    # a polite client: back off as told (up to 1 s, jittered), or the run turns into
                    # a tight loop of instant refusals
                    await asyncio.sleep(min(int(r.headers["retry-after"]), 1) * rng.uniform(0.5, 1.0))
                elif not fallback and "quorum" in detail:
                    rep.quorum_503 += 1
                else:
                    why = f"503 not from admission control nor a lost quorum: {detail!r}"
            else:
                why = f"status {r.status}: {r.body[:300]!r}"
            if why:
                rep.wrong += 1
                self.problem(f"request {i} (image {idx}, fallback {fallback}): {why}")

    # ---- faults ----------------------------------------------------------------------------------

    async def _injector(self) -> None:
        cfg = self.cfg
        victims = self.boards[: cfg.victims]
        if not victims or not cfg.faults:
            return
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rng.expovariate(1 / cfg.fault_interval_s)):
                    await self.done.wait()
            if self.done.is_set():
                return
            idle = [b for b in victims if b.index not in self.active and b.running and not b.frozen]
            if not idle:
                continue
            b = self.rng.choice(idle)
            kind = self.rng.choice(cfg.faults)
            now = time.monotonic()
            arg = {"DELAY": self.rng.randint(50, 3000), "GARBAGE": self.rng.randint(1, 1000),
                   "HANG": self.rng.randint(200, 3000), "FREEZE": self.rng.randint(300, 3000)}.get(kind, 0)
            f = Fault(b.index, kind, arg, now)
            if kind == "FREEZE":
                b.freeze()
                f.fired = now
                self.pending[b.index] = now + arg / 1000
            elif kind == "KILL":
                await asyncio.to_thread(b.kill)  # waits for the process: not on the service's loop
                f.fired = now
                self.pending[b.index] = now + self.rng.uniform(0.3, 1.5)
            elif not b.inject("HANG" if kind == "HANG_FOREVER" else kind, arg):
                continue
            self.faults.append(f)
            self.active[b.index] = f

    async def _lag(self) -> None:
        """How late the event loop wakes a 10 ms sleep: time the service could not run. A watchdog
        thread names what the loop was running when it stays silent for over 250 ms."""
        worst = 0.0
        beat = [time.monotonic()]
        loop_thread = threading.get_ident()
        stop = threading.Event()

        def watchdog() -> None:
            last = 0.0
            while not stop.wait(0.05):
                silent = time.monotonic() - beat[0]
                if silent > STALL_S and beat[0] != last:
                    last = beat[0]
                    frame = sys._current_frames().get(loop_thread)
                    where = traceback.extract_stack(frame)[-6:] if frame else []
                    self.stalls.append(f"event loop silent over {silent * 1000:.0f} ms in " + " <- ".join(
                        f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(where)))

        dog = threading.Thread(target=watchdog, name="chaos loop watchdog", daemon=True)
        dog.start()
        try:
            while not self.done.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                beat[0] = time.monotonic()
                now = time.perf_counter()
                lag = (now - t - 0.01) * 1000
                worst = max(worst, lag)
                if lag > 2:
                    self.lags.append((now, lag))
        finally:
            stop.set()
            await asyncio.to_thread(dog.join)
        self.report.loop_lag_max_ms = worst
        self.report.late_beyond_loop_lag = sum(
            1 for t0, t1, over in self.overs if over > sum(lag for when, lag in self.lags if t0 < when <= t1 + 0.01))
        self.report.problems[:0] = self.stalls[:3]  # first: they explain the late requests

    def _new_fault_lines(self, b: ControlledBoard) -> int:
        n = len(b.fired())
        new, self.log_seen[b.index] = n - self.log_seen.get(b.index, 0), n
        return new

    async def _monitor(self) -> None:
        """Every 0.1 s: notice fired faults, replug and thaw boards when due, and see boards
        return to ready once their fault's effect has ended."""
        while True:
            polled = time.monotonic()
            states = self._states()
            now = time.monotonic()
            for idx, due in list(self.pending.items()):
                b = self.boards[idx]
                if now >= due:
                    del self.pending[idx]
                    if b.frozen:
                        b.thaw()
                    elif not b.running:
                        # off the loop: a fork and the board's first line can take a while on a
                        # busy machine, and the service shares this loop
                        await asyncio.to_thread(b.start)
                    if idx in self.active:
                        self.active[idx].effect_end = time.monotonic()
            for idx, f in list(self.active.items()):
                b = self.boards[idx]
                if f.fired is None and self._new_fault_lines(b):
                    f.fired = now
                    if f.kind == "DELAY":
                        f.effect_end = now + f.arg / 1000
                    elif f.kind != "UNPLUG":
                        f.effect_end = now
                if f.kind == "UNPLUG" and f.fired is not None and f.effect_end is None and \
                        idx not in self.pending and not b.running:
                    self.pending[idx] = now + self.rng.uniform(0.3, 1.5)  # plugged in again later
                if f.effect_end is not None and polled > f.effect_end and states.get(str(b.link)) == "ready" \
                        and b.running:
                    f.recovered, f.outcome = now, "recovered"
                    del self.active[idx]
                elif f.effect_end is not None and now - f.effect_end > self.cfg.recovery_s:
                    f.outcome = "not recovered"
                    self.problem(f"board {idx} ({b.model_id}) not ready {self.cfg.recovery_s} s after "
                                 f"{f.kind} {f.arg} ended; service says {states.get(str(b.link))}")
                    del self.active[idx]
            if self.done.is_set() and not self.active and not self.pending:
                return
            await asyncio.sleep(0.1)

    async def _end_faults(self) -> None:
        """Traffic is over: faults armed but never fired are withdrawn; frozen or dead boards
        come back at once."""
        await asyncio.sleep(0.2)
        for idx, f in list(self.active.items()):
            b = self.boards[idx]
            if f.fired is None and not self._new_fault_lines(b):
                b.inject("CLEAR")
                f.outcome = "not fired"
                del self.active[idx]
            elif idx in self.pending:
                self.pending[idx] = 0.0

    def _count_faults(self) -> None:
        rep = self.report
        fired = [f for f in self.faults if f.outcome != "not fired"]
        rep.faults_injected = len(fired)
        rep.faults_by_kind = dict(Counter(f.kind for f in fired))
        rep.faults_not_fired = sum(1 for f in self.faults if f.outcome == "not fired")
        rec = [f.recovered - f.effect_end for f in fired if f.outcome == "recovered"]
        rep.recovered = len(rec)
        rep.not_recovered += sum(1 for f in fired if f.outcome in ("not recovered", "active"))
        rep.recovery_p50_s = percentile(rec, 50)
        rep.recovery_max_s = max(rec) if rec else None


def run_chaos(cfg: ChaosConfig) -> ChaosReport:
    return asyncio.run(Chaos(cfg).run())


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m fleetvote.testbed.chaos")
    p.description = ("Faults injected at random into K of N virtual boards while M requests at concurrency C "
                     "go to the service over HTTP on 127.0.0.1; checks answers, deadlines, recovery and leaks.")
    p.epilog = ("faults: " + ", ".join(ALL_FAULTS) + ". See the module's docstring for what is checked.\n"
                "example: python -m fleetvote.testbed.chaos --boards 4 --victims 2 --requests 300 --concurrency 8")
    d = ChaosConfig()
    p.add_argument("--boards", type=int, default=d.boards, help="virtual boards, members round-robin (default %(default)s)")
    p.add_argument("--victims", type=int, default=d.victims, help="boards that get faults (default %(default)s)")
    p.add_argument("--requests", type=int, default=d.requests, help="requests in all (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="requests in flight (default %(default)s)")
    p.add_argument("--deadline-ms", type=float, default=d.deadline_ms, help="deadline_ms of each request (default %(default)s)")
    p.add_argument("--fault-interval", type=float, default=d.fault_interval_s,
                   help="mean seconds between faults (default %(default)s)")
    p.add_argument("--faults", default=",".join(d.faults), action=ListOption,
                   help="some of %(default)s, repeated or comma separated")
    p.add_argument("--fallback-off-share", type=float, default=d.fallback_off_share,
                   help="share of requests sent with fallback=false (default %(default)s)")
    p.add_argument("--latency-ms", type=int, default=d.latency_ms, help="each board's compute time floor (default %(default)s)")
    p.add_argument("--ensemble", type=Path, default=d.ensemble, help="members, weights, strategy, quorum (default: the zoo's)")
    p.add_argument("--members", type=int, help="only the first N members of the ensemble (default: all)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--recovery-s", type=float, default=d.recovery_s, help="how long a board may take to be ready again")
    p.add_argument("--allow-loop-lag", action="store_true",
                   help="late only past the bound plus the event-loop stalls measured while the request was in flight")
    p.add_argument("--workdir", type=Path, help="keep links, FIFOs and board logs here (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if not BOARD_BIN.exists():
        build_board()
    cfg = ChaosConfig(boards=a.boards, victims=a.victims, requests=a.requests, concurrency=a.concurrency,
                      deadline_ms=a.deadline_ms, fault_interval_s=a.fault_interval,
                      faults=tuple(x.strip().upper() for x in a.faults.split(",") if x.strip()),
                      fallback_off_share=a.fallback_off_share, latency_ms=a.latency_ms, seed=a.seed,
                      ensemble=a.ensemble, members=a.members,
                      recovery_s=a.recovery_s, allow_loop_lag=a.allow_loop_lag, workdir=a.workdir)
    rep = run_chaos(cfg)
    if a.json:
        print(json.dumps({**asdict(rep), "passed": rep.passed}, indent=2))
    else:
        print("\n".join(rep.lines()))
    return 0 if rep.passed else 1


if __name__ == "__main__":
    sys.exit(main())
