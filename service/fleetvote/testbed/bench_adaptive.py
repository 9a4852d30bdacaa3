"""The modes all, early and cascade on a virtual fleet: answered rate and latency at saturation,
with 1, 2 or 3 boards per member, and the p99 of all against early with one member's board slowed.

    python -m fleetvote.testbed.bench_adaptive --board-ms 0 --replicas 1,2,3
    python -m fleetvote.testbed.bench_adaptive --board-ms 150 --slow-ms 200   # boards at about an F411's pace
    make bench-adaptive

Virtual boards (the firmware built for the host, one process per board on a pty), ``replicas``
of them per member of the ensemble file, and ``fleetvote serve`` in a child process on
127.0.0.1. ``--board-ms`` is the board speed: every classification takes at least that long
(the board's ``--latency-ms``, padded after its real compute); 0 is host speed, where the CPU of
this machine, not the boards, limits the rate. A test-split image per request, closed loop:
``--concurrency`` clients per board (default 3: every board's queue stays busy, the fleet is
saturated), each sending its next request when the last is answered; a 503 (every queue full)
is not an answer and is counted apart. Every answer's label is checked against the label of
``all`` computed offline with the numpy engine (bit-exact with the boards): early must give it
always; the cascade's agreement is reported.

The slowed run: one board per member, the first member's board (``--slow-member``) slower by
``--slow-ms`` (its ``--latency-ms`` raised, as the fault DELAY would do to one reply), one client
at a time (the latency of one request, no queueing), all then early.

The per-board deadline is ``--deadline-ms`` (default 10 s), far above any wait here, so that no
member is replaced by the engine because of a slow board: the runs compare the modes, not the
fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..command import add_data
from .harness import ZOO, ControlledBoard, HttpError, LeanHttp, ServiceProcess, build_board, percentile
from .virtual import planned_latency_ms

MODES = ("all", "early", "cascade")


@dataclass
class Level:
    mode: str
    replicas: int
    concurrency: int
    requests: int
    answered: int
    refused: int  # 503: every queue full
    errors: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    members_per_answer: float  # the votes fused per answer
    engine_share: float  # of those votes, the share the engine computed (spillover, fallback)
    same_label_as_all: float  # share of the answers whose label is all's
    stages: dict[str, int]

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


def expected_labels(ensemble: dict, images: np.ndarray) -> np.ndarray:
    """all's label for each image, from the numpy engine (bit-exact with the boards)."""
    from ..engine import Engine
    from ..fusion import fuse_batch

    ids = [m["id"] for m in ensemble["members"]]
    outs = np.stack([Engine.from_file(ZOO / i / "model.tflite").run(images) for i in ids])
    weights = [m.get("weight", 1.0) for m in ensemble["members"]]
    return fuse_batch(outs, ensemble.get("strategy", "soft"), weights)


async def _wait_ready(url: str, n_boards: int) -> None:
    probe = LeanHttp.for_url(url)
    try:
        t0 = time.monotonic()
        states: list[str] = []
        while time.monotonic() - t0 < 60:
            states = [b["state"] for b in (await probe.request("GET", "/boards")).json()["boards"]]
            if len(states) == n_boards and all(s == "ready" for s in states):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"boards not ready: {states}")
    finally:
        await probe.close()


async def _load(url: str, mode: str, images: np.ndarray, want: np.ndarray, requests: int, concurrency: int,
                replicas: int, warmup: int = 10) -> Level:
    """``requests`` images at ``concurrency`` in mode ``mode``, after ``warmup`` not counted."""
    latencies: list[float] = []
    counts = {"answered": 0, "refused": 0, "errors": 0, "members": 0, "same": 0, "engine": 0}
    stages: dict[str, int] = {}
    measuring = False

    async def client(counter) -> None:
        http = LeanHttp.for_url(url)
        try:
            for i in counter:
                idx = i % len(images)
                t = time.perf_counter()
                try:
                    async with asyncio.timeout(60):
                        r = await http.request("POST", f"/classify?mode={mode}", images[idx].tobytes(),
                                               "application/octet-stream")
                except (HttpError, TimeoutError):
                    await http.close()
                    counts["errors"] += measuring
                    continue
                ms = (time.perf_counter() - t) * 1000
                if not measuring:
                    continue
                if r.status == 200:
                    body = r.json()
                    counts["answered"] += 1
                    counts["members"] += len(body["members"])
                    counts["engine"] += sum(m["source"] == "fallback" for m in body["members"])
                    counts["same"] += body["label"] == int(want[idx])
                    stages[str(body["stage"])] = stages.get(str(body["stage"]), 0) + 1
                    latencies.append(ms)
                elif r.status == 503:
                    counts["refused"] += 1
                    await asyncio.sleep(0.05)  # a polite client, briefly
                else:
                    counts["errors"] += 1
        finally:
            await http.close()

    warm = iter(range(warmup))
    await asyncio.gather(*(client(warm) for _ in range(min(concurrency, warmup))))
    measuring = True
    counter = iter(range(requests))
    t0 = time.perf_counter()
    await asyncio.gather(*(client(counter) for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    n = counts["answered"]
    return Level(mode, replicas, concurrency, requests, n, counts["refused"], counts["errors"], seconds,
                 percentile(latencies, 50), percentile(latencies, 99), counts["members"] / n if n else 0.0,
                 counts["engine"] / counts["members"] if counts["members"] else 0.0,
                 counts["same"] / n if n else 0.0, stages)


async def _fleet(work: Path, ensemble_path: Path, members: list[str], replicas: int, board_ms: BoardMs,
                 deadline_ms: float, binary: Path, slow: dict[str, int] | None = None):
    """Boards and a service for one run; returns (service, boards)."""
    env = {"FLEETVOTE_ENSEMBLE": str(ensemble_path), "FLEETVOTE_ZOO": str(ZOO), "FLEETVOTE_SCAN_USB": "false",
           "FLEETVOTE_LINK_GLOBS": json.dumps([str(work / "boards" / "*")]), "FLEETVOTE_URLS": "[]",
           "FLEETVOTE_RESCAN_S": "0.5", "FLEETVOTE_DEADLINE_MS": str(deadline_ms)}
    boards = []
    for r in range(replicas):
        for k, m in enumerate(members):
            extra = (slow or {}).get(m, 0) if r == 0 else 0
            base = board_ms[m] if isinstance(board_ms, dict) else board_ms
            boards.append(ControlledBoard(m, r * len(members) + k, work, latency_ms=int(round(base + extra)),
                                          binary=binary))
    service = ServiceProcess(work, env)
    for b in boards:
        b.start()
    await asyncio.to_thread(service.start)
    await _wait_ready(service.url, len(boards))
    return service, boards


async def _stop(service, boards) -> None:
    await asyncio.to_thread(service.stop)
    for b in boards:
        b.stop()


async def run(ensemble_path: Path, replicas: list[int], modes: list[str], board_ms: BoardMs, requests: int,
              per_board: int, slow_ms: int, slow_requests: int, slow_member: str | None, deadline_ms: float,
              images: np.ndarray, binary: Path) -> dict:
    spec = json.loads(ensemble_path.read_text())
    members = [m["id"] for m in spec["members"]]
    if "cascade" in modes and not spec.get("cascade"):
        print(f"{ensemble_path} has no cascade: mode cascade left out", file=sys.stderr)
        modes = [m for m in modes if m != "cascade"]
    want = await asyncio.to_thread(expected_labels, spec, images)
    out: dict = {"members": members, "strategy": spec.get("strategy"), "cascade": spec.get("cascade"),
                 "board_ms": board_ms, "deadline_ms": deadline_ms, "images": int(len(images)), "saturation": [],
                 "slowed": None}
    work = Path(tempfile.mkdtemp(prefix="fleetvote-adaptive-"))
    try:
        for r in replicas:
            service, boards = await _fleet(work / f"r{r}", ensemble_path, members, r, board_ms, deadline_ms, binary)
            try:
                for mode in modes:
                    level = await _load(service.url, mode, images, want, requests, per_board * r * len(members), r)
                    out["saturation"].append(vars(level) | {"rate": level.rate})
                    print(_row(level), flush=True)
            finally:
                await _stop(service, boards)
        if slow_ms:
            victim = slow_member or members[0]
            service, boards = await _fleet(work / "slow", ensemble_path, members, 1, board_ms, deadline_ms, binary,
                                           {victim: slow_ms})
            try:
                slowed = {}
                for mode in ("all", "early"):
                    level = await _load(service.url, mode, images, want, slow_requests, 1, 1)
                    slowed[mode] = vars(level) | {"rate": level.rate}
                    print("slowed " + _row(level), flush=True)
                out["slowed"] = {"member": victim, "slow_ms": slow_ms, **slowed}
            finally:
                await _stop(service, boards)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _row(x: Level) -> str:
    def ms(v):
        return "-" if v is None else f"{v:.1f}"

    return (f"{x.mode:<8} replicas {x.replicas} c={x.concurrency:<3} answered {x.answered}/{x.requests} "
            f"({x.rate:.1f}/s) 503 {x.refused} err {x.errors} p50 {ms(x.p50_ms)} p99 {ms(x.p99_ms)} ms; "
            f"members/answer {x.members_per_answer:.2f} (engine {x.engine_share * 100:.1f} %); label = all's {x.same_label_as_all * 100:.1f} %; stages {x.stages}")


def format_report(rep: dict) -> str:
    b = rep["board_ms"]
    speed = ("planned speed (each board padded to its member's planned latency on its catalogue board, "
             "fleetvote plan: " + ", ".join(f"{m} {v:.0f} ms" for m, v in b.items()) + ")" if isinstance(b, dict)
             else "host speed" if not b else f"each classification padded to >= {b} ms")
    L = [f"members {', '.join(rep['members'])}; {rep['strategy']} vote; boards: {speed}; "
         f"{rep['images']} test images", "",
         "| replicas | mode | clients | answered/s | p50 ms | p99 ms | 503 | members per answer | of which engine | "
         "label = all's | stage 1 / 2 |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in rep["saturation"]:
        st = x["stages"]
        L.append(f"| {x['replicas']} | {x['mode']} | {x['concurrency']} | {x['rate']:.1f} | {x['p50_ms'] or 0:.1f} | "
                 f"{x['p99_ms'] or 0:.1f} | {x['refused']} | {x['members_per_answer']:.2f} | "
                 f"{x['engine_share'] * 100:.1f} % | "
                 f"{x['same_label_as_all'] * 100:.1f} % | {st.get('1', 0)} / {st.get('2', 0)} |")
    s = rep.get("slowed")
    if s:
        a, e = s["all"], s["early"]
        L += ["", f"one board slowed by {s['slow_ms']} ms ({s['member']}), one request at a time: p99 all "
                  f"{a['p99_ms']:.1f} ms, early {e['p99_ms']:.1f} ms (early {a['p99_ms'] - e['p99_ms']:.1f} ms "
                  f"lower); p50 {a['p50_ms']:.1f} / {e['p50_ms']:.1f} ms; early's labels = all's "
                  f"{e['same_label_as_all'] * 100:.1f} %; engine votes (spillover) all {a['engine_share'] * 100:.1f} %, "
                  f"early {e['engine_share'] * 100:.1f} %"]
    return "\n".join(L)


BoardMs = int | dict[str, float]  # one padding for every board, or each member's (planned speed)


def _board_ms(text: str) -> int | str:
    if text == "planned":
        return text
    try:
        ms = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of milliseconds or 'planned'") from None
    if ms < 0:
        raise argparse.ArgumentTypeError("a board cannot answer in less than 0 ms")
    return ms


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fleetvote.testbed.bench_adaptive", description=__doc__.split("\n\n")[0],
        epilog="example: python -m fleetvote.testbed.bench_adaptive --board-ms 150 --replicas 1,2,3 --out "
               "runs/adaptive.json", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ensemble", default=str(ZOO / "ensemble.json"), help="the ensemble file (with a cascade)")
    p.add_argument("--board-ms", type=_board_ms, default=0, metavar="MS|planned",
                   help="board speed: every classification takes at least this long (0: host speed), or "
                        "'planned': each member's planned latency on its catalogue board (transfer + compute, "
                        "as `fleetvote plan` and `serve --board-speed planned`)")
    p.add_argument("--replicas", default="1,2,3", help="boards per member, a comma list (default 1,2,3)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--requests", type=int, default=200, help="requests per mode and replica count")
    p.add_argument("--clients-per-board", type=int, default=3, help="closed-loop clients per board (saturation)")
    p.add_argument("--slow-ms", type=int, default=200, help="the slowed board's extra time (0: no slowed run)")
    p.add_argument("--slow-requests", type=int, default=100)
    p.add_argument("--slow-member", help="the member whose board is slowed (default: the first)")
    p.add_argument("--deadline-ms", type=float, default=10_000)
    p.add_argument("--images", type=int, default=500, help="test images cycled through")
    p.add_argument("--out", help="write the report (JSON) here")
    add_data(p)
    a = p.parse_args(argv)
    from ..data import load_split
    from ..errors import DataError

    try:
        ds = load_split("test", a.data)
    except DataError as exc:  # no archive named and no network: say what to pass, no traceback
        print(f"bench_adaptive: error: {exc}", file=sys.stderr)
        return 2
    idx = np.linspace(0, len(ds) - 1, num=min(a.images, len(ds))).round().astype(int)  # every class
    board_ms = a.board_ms
    if board_ms == "planned":
        ids = [m["id"] for m in json.loads(Path(a.ensemble).read_text())["members"]]
        board_ms = {m: p["total_ms"] for m, p in planned_latency_ms(ids).items()}
    binary = build_board()
    rep = asyncio.run(run(Path(a.ensemble), _ints(a.replicas), [m for m in a.modes.split(",") if m], board_ms,
                          a.requests, a.clients_per_board, a.slow_ms, a.slow_requests, a.slow_member,
                          a.deadline_ms, ds.x[idx], binary))
    rep["command"] = "python -m fleetvote.testbed.bench_adaptive " + shlex.join(sys.argv[1:] if argv is None else argv)
    rep["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print()
    print(format_report(rep))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(rep, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
