"""``make bench-overload``: bursts and open-loop overload against the virtual fleet, each figure printed.

The targets (issue "Bursts, overload and hostile clients"), measured, not asserted:

1. **Bursts** on the default host-speed fleet (``fleetvote serve --virtual``, default settings,
   fallback on): 64 simultaneous ``POST /classify?deadline_ms=1000`` (``asyncio.gather`` over one
   httpx client, a connection each) and 256 at ``deadline_ms=3000``. Target: all answered 200
   within their deadline. Printed per burst: answered, refused (503), other, p50/p99/max latency
   (the client's, send to last byte), answers over the deadline, and where the members' votes came
   from (boards, spillover, fallback).
2. **Open loop** on the planned-speed fleet (``--board-speed planned``, one board per member):
   its capacity measured first (``capacity.measure_capacity``: closed loop, fallback off), then
   ``fleetvote bench --rate`` (Poisson arrivals) at 25, 50, 100 and 150 % of it against
   ``fleetvote serve --virtual --board-speed planned --deadline-ms 2000`` (the setting bounds every
   request's whole time in the service). Target: every request answered within 2 s or refused
   with 503 before any work; at 150 % the answered rate at least the boards' capacity. Printed per
   rate: offered and answered rate, 503s, p50/p99/max latency from each request's scheduled
   arrival, answers over the deadline, and the shares of members from boards, spillover and
   fallback.

    python -m fleetvote.testbed.overload                      # both parts (~3 min)
    python -m fleetvote.testbed.overload --skip-open-loop     # the bursts only

Synthetic images (the bench's seeded noise): a member's time does not depend on the pixels.
Writes ``overload.json`` (every figure) under ``runs/overload/<date-time>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..ensemble import load_ensemble
from ..errors import FleetvoteError
from ..settings import Settings
from .bench_api import member_origin, pct, run_bench, serve_flags, synthetic_images, virtual_server
from .capacity import LOAD_SHARES, measure_capacity
from .reports import run_folder, write_report
from .virtual import planned_latency_ms

BURSTS = ((64, 1000.0), (256, 3000.0))  # (simultaneous requests, deadline_ms): the targets
OPEN_DEADLINE_MS = 2000.0


async def _burst(url: str, n: int, deadline_ms: float, images: np.ndarray) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        # one request first, so that the burst does not also measure the opening of connections
        # to a cold service (the bench's warm-up does the same)
        await client.post("/classify", content=images[0].tobytes(),
                          headers={"content-type": "application/octet-stream"})

        async def one(i: int):
            t0 = time.perf_counter()
            try:
                r = await client.post(f"/classify?deadline_ms={deadline_ms:g}", content=images[i % len(images)].tobytes(),
                                      headers={"content-type": "application/octet-stream"})
            except httpx.HTTPError as exc:
                return 0, (time.perf_counter() - t0) * 1000, type(exc).__name__
            return r.status_code, (time.perf_counter() - t0) * 1000, r.json() if r.status_code == 200 else r.text

        results = await asyncio.gather(*(one(i) for i in range(n)))
    ok = [(ms, body) for status, ms, body in results if status == 200]
    origins = {"board": 0, "fallback": 0, "spillover": 0}
    for _, body in ok:
        for m in body["members"]:
            origins[member_origin(m)] += 1
    members = sum(origins.values())
    return {
        "requests": n, "deadline_ms": deadline_ms, "ok": len(ok),
        "status_503": sum(1 for s, _, _ in results if s == 503),
        "other": sum(1 for s, _, _ in results if s not in (200, 503)),
        "latency_ms": pct([ms for ms, _ in ok], (50, 99)),
        "over_deadline": sum(1 for ms, _ in ok if ms > deadline_ms),
        "member_sources": {k: round(v / members, 4) if members else None for k, v in origins.items()},
    }


def bursts(ensemble: Path | None, run_dir: Path) -> list[dict]:
    images, _ = synthetic_images()
    rows = []
    with virtual_server(ensemble, run_dir / "bursts") as (url, info):
        for n, deadline_ms in BURSTS:
            time.sleep(1.0)  # the previous burst's stragglers gone
            row = asyncio.run(_burst(url, n, deadline_ms, images))
            row["serve"] = info["command"]
            rows.append(row)
    return rows


def open_loop(ensemble: Path | None, run_dir: Path, plan: dict, capacity_duration: float, duration: float) -> dict:
    cap = measure_capacity(1, plan, ensemble, run_dir, capacity_duration)
    rates = [round(cap["measured_rps"] * s, 2) for s in LOAD_SHARES]
    flags = serve_flags("planned", 1, deadline_ms=OPEN_DEADLINE_MS)
    with virtual_server(ensemble, run_dir / "open", serve_args=flags) as (url, info):
        rep = run_bench(url, synthetic=True, strategies=(), overhead_levels=(), levels=(), plots=False,
                        progress=False, rates=rates, count=None, duration=duration, warmup=4,
                        watch_pids={"server": [info["pid"]], "boards": info.get("board_pids", [])})
    raw = rep.get("raw", [])
    rows = []
    for share, r in zip(LOAD_SHARES, rep["rates"]):
        mine = [x for x in raw if x.get("rate") == r["rate"]]
        ok = [x for x in mine if x["status"] == 200]
        refused = [x for x in mine if x["status"] == 503]
        rows.append({
            "share": share, "rate": r["rate"], "offered_rps": r["offered_rps"], "answered_rps": r["answered_rps"],
            "requests": r["requests"], "ok": r["ok"], "status_503": r["status_503"], "errors": r["errors"],
            "latency_ms": r["latency_ms"],
            "server_ms_max": max((x["server_ms"] for x in ok if x["server_ms"] is not None), default=None),
            "over_deadline": sum(1 for x in ok if x["e2e_ms"] > OPEN_DEADLINE_MS),
            "server_over_deadline": sum(1 for x in ok if (x["server_ms"] or 0) > OPEN_DEADLINE_MS),
            "refused_http_ms": pct([x["http_ms"] for x in refused], (50, 99)),
            "member_sources": r["member_sources"],
        })
    return {"capacity_rps": cap["measured_rps"], "capacity": cap, "deadline_ms": OPEN_DEADLINE_MS,
            "serve": info["command"], "rates": rows}


def _f(v, fmt="{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _share(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def format_report(rep: dict) -> str:
    L = []
    if rep.get("bursts"):
        L += ["Bursts, default host-speed fleet (fallback on): simultaneous POST /classify, latency send to last byte",
              "", "| burst | deadline_ms | 200 | 503 | other | p50 ms | p99 ms | max ms | over deadline | "
              "members from boards | spillover | fallback |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for b in rep["bursts"]:
            lat, src = b["latency_ms"], b["member_sources"]
            L.append(f"| {b['requests']} | {b['deadline_ms']:.0f} | {b['ok']} | {b['status_503']} | {b['other']} | "
                     f"{_f(lat['p50'])} | {_f(lat['p99'])} | {_f(lat['max'])} | {b['over_deadline']} | "
                     f"{_share(src['board'])} | {_share(src['spillover'])} | {_share(src['fallback'])} |")
        L.append("")
    ol = rep.get("open_loop")
    if ol:
        L += [f"Open loop, planned-speed fleet (one board per member), deadline_ms {ol['deadline_ms']:.0f} (setting); "
              f"capacity {ol['capacity_rps']:.2f} answers/s (closed loop, fallback off); latency from the scheduled "
              "arrival", "",
              "| load | offered/s | answered/s | 200 | 503 | p50 ms | p99 ms | max ms | over deadline | 503 p99 ms | "
              "members from boards | spillover | fallback |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in ol["rates"]:
            lat, src = r["latency_ms"], r["member_sources"]
            L.append(f"| {100 * r['share']:.0f} % | {_f(r['offered_rps'], '{:.2f}')} | {_f(r['answered_rps'], '{:.2f}')} | "
                     f"{r['ok']} | {r['status_503']} | {_f(lat['p50'])} | {_f(lat['p99'])} | {_f(lat['max'])} | "
                     f"{r['over_deadline']} | {_f(r['refused_http_ms']['p99'])} | {_share(src['board'])} | "
                     f"{_share(src['spillover'])} | {_share(src['fallback'])} |")
        top = ol["rates"][-1]
        L += ["", f"At {100 * top['share']:.0f} %: answered {_f(top['answered_rps'], '{:.2f}')}/s against the boards' "
                  f"capacity {ol['capacity_rps']:.2f}/s ("
                  + ("at least" if (top["answered_rps"] or 0) >= ol["capacity_rps"] else "BELOW") + ")"]
    L += ["", f"{rep['host']['cpus']} CPUs, load {rep['host']['load_avg_1m']} at the end; every figure in {rep['json']}"]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fleetvote.testbed.overload",
        description="Bursts of 64 (deadline_ms=1000) and 256 (deadline_ms=3000) on the default host-speed virtual "
                    "fleet, then open-loop arrivals at 25-150 %% of the planned-speed fleet's measured capacity "
                    "with deadline_ms=2000: answered, refused, latency, where the members' votes came from.")
    p.add_argument("--ensemble", help="ensemble file (default models/zoo/ensemble.json)")
    p.add_argument("--capacity-duration", type=float, default=10.0,
                   help="seconds per closed-loop level of the capacity measurement (default 10)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per open-loop rate (default 20)")
    p.add_argument("--skip-bursts", action="store_true")
    p.add_argument("--skip-open-loop", action="store_true")
    p.add_argument("--out", help="output folder (default runs/overload/<date-time>)")
    a = p.parse_args(argv)
    try:
        ens = Path(a.ensemble) if a.ensemble else None
        out = run_folder(a.out, "overload")
        run_dir = Path(tempfile.mkdtemp(prefix="fleetvote-overload-"))
        rep: dict = {}
        if not a.skip_bursts:
            print("bursts of 64 and 256 on the host-speed fleet ...", file=sys.stderr)
            rep["bursts"] = bursts(ens, run_dir)
        if not a.skip_open_loop:
            s = Settings(scan_usb=False)
            ids = [m.id for m in load_ensemble(ens or s.ensemble, s.zoo).members]
            print("open loop on the planned-speed fleet: capacity, then 25-150 % of it ...", file=sys.stderr)
            rep["open_loop"] = open_loop(ens, run_dir, planned_latency_ms(ids, s.zoo, s.catalog),
                                         a.capacity_duration, a.duration)
        write_report(rep, out, "overload", format_report)
    except FleetvoteError as exc:
        print(f"overload: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
