"""Load run: many requests at a fixed concurrency against ``fleetvote serve`` over a virtual fleet.

    python -m fleetvote.testbed.loadtest --requests 10000 --concurrency 64
    make load

Virtual boards (one per member of the zoo's ensemble file by default, as ``make run`` starts) and
``fleetvote serve`` in a child process on 127.0.0.1 and a free port, so that its resident memory is its own. Closed loop: C clients, each sending the
next request when the last is answered; a client that gets 503 with Retry-After waits as told
(up to 1 s, jittered), as a polite client does. Every 200 is checked against the response model
and the numpy engine's bytes for its image.

Printed: throughput (answers and 200s per second), latency p50/p90/p99/max of the 200s, the share
of answers with at least one fallback member and of member answers computed by the fallback, the
503s from admission control, and the server's resident memory after the first and the last
thousand requests. Passes (exit 0) with no error other than admission-control 503s and memory
growth under --max-rss-growth (10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .harness import (
    BOARD_BIN,
    ZOO,
    ControlledBoard,
    Expected,
    HttpError,
    LeanHttp,
    ServiceProcess,
    build_board,
    check_answer,
    derive_ensemble,
    percentile,
)


@dataclass
class LoadConfig:
    requests: int = 10_000
    concurrency: int = 64
    boards: int | None = None  # None: one per member
    members: int | None = None  # the first ones of the ensemble file; None: all
    ensemble: Path = ZOO / "ensemble.json"
    latency_ms: int = 0
    deadline_ms: float | None = None  # None: the service's per-board default
    queue_size: int | None = None  # None: the service's default
    warmup: int = 200
    max_rss_growth: float = 0.10
    rss_every: int = 1000  # requests between RSS samples: growth is first sample to last
    seed: int = 1
    workdir: Path | None = None
    binary: Path = BOARD_BIN


@dataclass
class LoadReport:
    config: dict
    requests: int = 0
    ok: int = 0
    admission_503: int = 0
    errors: int = 0
    with_fallback: int = 0
    member_answers: int = 0
    member_fallbacks: int = 0
    fallback_reasons: dict = field(default_factory=dict)
    duration_s: float = 0.0
    throughput_rps: float = 0.0
    ok_rps: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    rss_samples_mb: list = field(default_factory=list)  # after every rss_every requests
    rss_first_mb: float | None = None
    rss_last_mb: float | None = None
    rss_growth: float | None = None
    problems: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.errors == 0 and self.rss_growth is not None and \
            self.rss_growth < self.config["max_rss_growth"] and self.ok + self.admission_503 == self.requests

    def lines(self) -> list[str]:
        share = self.with_fallback / self.ok if self.ok else 0.0
        mshare = self.member_fallbacks / self.member_answers if self.member_answers else 0.0
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.fallback_reasons.items())) or "none"
        return [
            f"requests {self.requests} at concurrency {self.config['concurrency']} in {self.duration_s:.1f} s: "
            f"200 {self.ok}, 503 admission {self.admission_503}, errors {self.errors}",
            f"throughput {self.throughput_rps:.1f} answers/s ({self.ok_rps:.1f} 200/s)",
            f"latency of the 200s: p50 {_ms(self.p50_ms)}, p90 {_ms(self.p90_ms)}, p99 {_ms(self.p99_ms)}, "
            f"max {_ms(self.max_ms)}",
            f"fallback: {share:.1%} of the answers had at least one fallback member; {mshare:.1%} of member "
            f"answers came from the engine ({reasons})",
            f"server RSS after the first {self.config['rss_every']} requests {self.rss_first_mb:.1f} MB, after the "
            f"last {self.rss_last_mb:.1f} MB: growth {self.rss_growth:+.1%} (limit {self.config['max_rss_growth']:.0%}); "
            f"every {self.config['rss_every']}: "
            + " ".join(f"{x:.0f}" for x in self.rss_samples_mb) if self.rss_growth is not None else "server RSS: not measured",
            *[f"problem: {p}" for p in self.problems],
            f"load: {'PASS' if self.passed else 'FAIL'}",
        ]


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


async def _run(cfg: LoadConfig) -> LoadReport:
    rep = LoadReport(config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()})
    own = cfg.workdir is None
    work = Path(tempfile.mkdtemp(prefix="fleetvote-load-")) if own else cfg.workdir
    members, quorum = derive_ensemble(work / "ensemble.json", cfg.ensemble, cfg.members, cfg.binary)
    ensemble = work / "ensemble.json"
    n_boards = cfg.boards or len(members)
    expected = await asyncio.to_thread(Expected.make, members, 64, cfg.seed)
    env = {"FLEETVOTE_ENSEMBLE": str(ensemble), "FLEETVOTE_ZOO": str(ZOO), "FLEETVOTE_SCAN_USB": "false",
           "FLEETVOTE_LINK_GLOBS": json.dumps([str(work / "boards" / "*")]), "FLEETVOTE_URLS": "[]",
           "FLEETVOTE_RESCAN_S": "0.5"}
    if cfg.queue_size:
        env["FLEETVOTE_QUEUE_SIZE"] = str(cfg.queue_size)
    boards = [ControlledBoard(members[i % len(members)], i, work, latency_ms=cfg.latency_ms, binary=cfg.binary)
              for i in range(n_boards)]
    service = ServiceProcess(work, env)
    try:
        for b in boards:
            b.start()
        await asyncio.to_thread(service.start)
        probe = LeanHttp.for_url(service.url)
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30:
                states = [b["state"] for b in (await probe.request("GET", "/boards")).json()["boards"]]
                if len(states) == n_boards and all(s == "ready" for s in states):
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"boards not ready: {states}")
        finally:
            await probe.close()
        query = "" if cfg.deadline_ms is None else f"?deadline_ms={cfg.deadline_ms:g}"
        latencies: list[float] = []
        done = 0
        measuring = False
        lock = asyncio.Lock()

        async def client(k: int, counter) -> None:
            nonlocal done
            rng = random.Random(cfg.seed * 7919 + k)
            http = LeanHttp.for_url(service.url)
            try:
                for i in counter:
                    idx = i % len(expected.images)
                    t = time.perf_counter()
                    try:
                        async with asyncio.timeout(60):
                            r = await http.request("POST", "/classify" + query, expected.images[idx].tobytes(),
                                                   "application/octet-stream")
                    except (HttpError, TimeoutError) as exc:
                        await http.close()
                        if measuring:
                            rep.errors += 1
                            _problem(rep, f"request {i}: {type(exc).__name__}: {exc}")
                        continue
                    ms = (time.perf_counter() - t) * 1000
                    if not measuring:
                        continue
                    async with lock:
                        done += 1
                        if done % cfg.rss_every == 0:
                            rep.rss_samples_mb.append(service.rss_bytes() / 2**20)
                    _account(rep, r, ms, expected, idx, latencies, len(members))
                    if r.status == 503 and r.headers.get("retry-after", "").isdigit():
                        await asyncio.sleep(min(int(r.headers["retry-after"]), 1) * rng.uniform(0.5, 1.0))
            finally:
                await http.close()

        # warm-up: connections, thread pool, the allocator's arenas; not counted
        warm = iter(range(cfg.warmup))
        await asyncio.gather(*(client(k, warm) for k in range(min(cfg.concurrency, cfg.warmup) or 1)))
        measuring = True
        counter = iter(range(cfg.requests))
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k, counter) for k in range(cfg.concurrency)))
        rep.duration_s = time.perf_counter() - t0
        rep.requests = cfg.requests
        if not rep.rss_samples_mb or cfg.requests % cfg.rss_every:
            rep.rss_samples_mb.append(service.rss_bytes() / 2**20)
        rep.throughput_rps = (rep.ok + rep.admission_503 + rep.errors) / rep.duration_s
        rep.ok_rps = rep.ok / rep.duration_s
        rep.p50_ms, rep.p90_ms, rep.p99_ms = (percentile(latencies, q) for q in (50, 90, 99))
        rep.max_ms = max(latencies) if latencies else None
        if rep.rss_samples_mb:
            rep.rss_first_mb, rep.rss_last_mb = rep.rss_samples_mb[0], rep.rss_samples_mb[-1]
            rep.rss_growth = rep.rss_last_mb / rep.rss_first_mb - 1
        rc = await asyncio.to_thread(service.stop)
        if rc not in (0, -signal.SIGTERM):  # uvicorn re-raises SIGTERM after its graceful shutdown
            _problem(rep, f"fleetvote serve ended with {rc} on SIGTERM (killed: {rc == -signal.SIGKILL})")
            rep.errors += 1
    finally:
        await asyncio.to_thread(service.stop)
        for b in boards:
            b.stop()
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return rep


def _problem(rep: LoadReport, text: str) -> None:
    if len(rep.problems) < 10:
        rep.problems.append(text)


def _account(rep: LoadReport, r, ms: float, expected: Expected, idx: int, latencies: list, n_members: int) -> None:
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status == 200 and isinstance(body, dict):
        why = check_answer(body, expected, idx, fallback=True, quorum=n_members)
        if why is None:
            rep.ok += 1
            latencies.append(ms)
            rep.with_fallback += body["fallbacks"] > 0
            rep.member_answers += len(body["members"])
            for m in body["members"]:
                if m["source"] == "fallback":
                    rep.member_fallbacks += 1
                    key = m["reason"].split(":")[0]
                    rep.fallback_reasons[key] = rep.fallback_reasons.get(key, 0) + 1
            return
    elif r.status == 503 and r.headers.get("retry-after", "").isdigit():
        rep.admission_503 += 1
        return
    else:
        why = f"status {r.status}: {r.body[:200]!r}"
    rep.errors += 1
    _problem(rep, f"image {idx}: {why}")


def run_load(cfg: LoadConfig) -> LoadReport:
    return asyncio.run(_run(cfg))


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m fleetvote.testbed.loadtest")
    p.description = ("Closed-loop load against `fleetvote serve` over virtual boards on 127.0.0.1: throughput, "
                     "latency percentiles, fallback share, server memory growth.")
    p.epilog = "example: python -m fleetvote.testbed.loadtest --requests 2000 --concurrency 16 --boards 2"
    d = LoadConfig()
    p.add_argument("--requests", type=int, default=d.requests, help="measured requests (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="clients (default %(default)s)")
    p.add_argument("--boards", type=int, help="virtual boards, members round-robin (default: one per member)")
    p.add_argument("--ensemble", type=Path, default=d.ensemble, help="members, weights, strategy, quorum (default: the zoo's)")
    p.add_argument("--members", type=int, help="only the first N members of the ensemble (default: all)")
    p.add_argument("--latency-ms", type=int, default=d.latency_ms, help="each board's compute time floor")
    p.add_argument("--deadline-ms", type=float, help="deadline_ms of each request (default: the service's)")
    p.add_argument("--queue-size", type=int, help="FLEETVOTE_QUEUE_SIZE of the service (default: its own)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="requests before measuring (default %(default)s)")
    p.add_argument("--max-rss-growth", type=float, default=d.max_rss_growth,
                   help="largest RSS growth between the first and last thousand, a fraction (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workdir", type=Path, help="keep links, board and service logs here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if not BOARD_BIN.exists():
        build_board()
    cfg = LoadConfig(requests=a.requests, concurrency=a.concurrency, boards=a.boards, members=a.members,
                     ensemble=a.ensemble, latency_ms=a.latency_ms,
                     deadline_ms=a.deadline_ms, queue_size=a.queue_size, warmup=a.warmup,
                     max_rss_growth=a.max_rss_growth, seed=a.seed, workdir=a.workdir)
    rep = run_load(cfg)
    if a.json:
        print(json.dumps({**asdict(rep), "passed": rep.passed}, indent=2))
    else:
        print("\n".join(rep.lines()))
    return 0 if rep.passed else 1


if __name__ == "__main__":
    sys.exit(main())
