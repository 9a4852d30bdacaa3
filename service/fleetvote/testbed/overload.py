"""``make bench-overload``: bursts and open-loop overload against the virtual fleet, each figure printed.

The targets (issue "Bursts, overload and hostile clients"), measured, not asserted:

1. **Bursts** on the default host-speed fleet (``fleetvote serve --virtual``, default settings,
   fallback on): 64 simultaneous ``POST /classify?deadline_ms=1000`` (``asyncio.gather``, a
   connection each) and 256 at ``deadline_ms=3000``. Target: all answered 200 within their
   deadline. Printed per burst: answered, refused (503: at admission, before any work, or at the
   deadline, after it), other, p50/p99/max latency (the client's, send to last byte) and the
   service's own (its ``latency_ms``), answers over the deadline, where the members' votes came
   from (boards, spillover, fallback), and where the CPU went (the client, the service's event
   loop, its other threads: the engine, the boards). The client is by default one written by hand
   on asyncio streams (``--client raw``): httpx's pool costs about 13 ms of CPU a request in a
   burst of 256 (3.3 s in all, against 0.2 s raw, measured on this project's 2-core machine),
   which the service would otherwise lose to it; ``--client httpx`` measures with it.
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
    python -m fleetvote.testbed.overload --skip-open-loop     # the bursts only (~30 s)
    python -m fleetvote.testbed.overload --skip-open-loop --client httpx

Synthetic images (the bench's seeded noise): a member's time does not depend on the pixels.
Writes ``overload.json`` (every figure) under ``runs/overload/<date-time>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def _cpu_ms(pid: int) -> dict[int, float]:
    """CPU time (user + system, ms) of each thread of process ``pid`` so far, from /proc (Linux);
    empty where it cannot be read."""
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    out = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) * tick  # utime, stime
    return out


def cpu_split(server_pid: int, board_pids: list[int], before: dict | None = None) -> dict:
    """Where the CPU went: the service's event loop (its main thread), its other threads (the
    engine's workers, decoding, the thread pool), the boards (summed), as ms since ``before``
    (a previous call's result; None: since each process started)."""
    now = {"server": _cpu_ms(server_pid), "boards": {p: sum(_cpu_ms(p).values()) for p in board_pids}}
    if before is None:
        before = {"server": {}, "boards": {}}
    srv = {t: ms - before["server"].get(t, 0.0) for t, ms in now["server"].items()}
    return {"raw": now,
            "event_loop_ms": round(srv.get(server_pid, 0.0)),
            "other_threads_ms": round(sum(ms for t, ms in srv.items() if t != server_pid)),
            "boards_ms": round(sum(ms - before["boards"].get(p, 0.0) for p, ms in now["boards"].items()))}


async def _post_raw(host: str, port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST on a connection of its own, HTTP/1.1 written by hand: (status, body), (0, error
    name) when the connection fails. A burst client that costs next to nothing, so that on a
    2-core host the client does not take the cores the service is measured on."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return 0, type(exc).__name__.encode()
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/octet-stream\r\n"
                     f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next((int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"),
                      None)
        data = await (reader.readexactly(length) if length is not None else reader.read())
        return status, data
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
        return 0, type(exc).__name__.encode()
    finally:
        writer.close()


async def _burst(url: str, n: int, deadline_ms: float, images: np.ndarray, client: str = "raw") -> dict:
    """``n`` simultaneous POST /classify, each on a connection of its own: with ``client`` raw
    (``_post_raw``) or httpx (one AsyncClient, a pool of ``n`` connections)."""
    import httpx

    path = f"/classify?deadline_ms={deadline_ms:g}"
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        # one request first, so that the burst does not also measure a cold service (the bench's
        # warm-up does the same)
        await http.post("/classify", content=images[0].tobytes(), headers={"content-type": "application/octet-stream"})

        async def one(i: int):
            body = images[i % len(images)].tobytes()
            t0 = time.perf_counter()
            if client == "raw":
                status, data = await _post_raw(host, int(port), path, body)
            else:
                try:
                    r = await http.post(path, content=body, headers={"content-type": "application/octet-stream"})
                    status, data = r.status_code, r.content
                except httpx.HTTPError as exc:
                    status, data = 0, type(exc).__name__.encode()
            ms = (time.perf_counter() - t0) * 1000
            return status, ms, json.loads(data) if status == 200 else data.decode(errors="replace")

        cpu0 = time.process_time()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        client_cpu_ms = (time.process_time() - cpu0) * 1000
    ok = [(ms, body) for status, ms, body in results if status == 200]
    origins = {"board": 0, "fallback": 0, "spillover": 0}
    for _, body in ok:
        for m in body["members"]:
            origins[member_origin(m)] += 1
    members = sum(origins.values())
    server_ms = [body["latency_ms"] for _, body in ok]
    refusals: dict[str, int] = {}
    for status, _, body in results:
        if status == 503:
            why = "at admission" if "would take" in body else "at the deadline" if "by the request's deadline" in body \
                else "other"
            refusals[why] = refusals.get(why, 0) + 1
    return {
        "requests": n, "deadline_ms": deadline_ms, "client": client, "ok": len(ok),
        "status_503": sum(1 for s, _, _ in results if s == 503), "refused": refusals,
        "other": sum(1 for s, _, _ in results if s not in (200, 503)),
        "latency_ms": pct([ms for ms, _ in ok], (50, 99)),
        # the service's own time (its latency_ms: arrival at the application to answer); the rest
        # of the client's is before (the kernel's accept queue, the head parsed) and after
        "server_latency_ms": pct(server_ms, (50, 99)),
        "over_deadline": sum(1 for ms, _ in ok if ms > deadline_ms),
        "server_over_deadline": sum(1 for ms in server_ms if ms > deadline_ms),
        "member_sources": {k: round(v / members, 4) if members else None for k, v in origins.items()},
        "client_cpu_ms": round(client_cpu_ms),
    }


def bursts(ensemble: Path | None, run_dir: Path, client: str = "raw") -> list[dict]:
    images, _ = synthetic_images()
    rows = []
    with virtual_server(ensemble, run_dir / "bursts") as (url, info):
        for n, deadline_ms in BURSTS:
            time.sleep(1.0)  # the previous burst's stragglers gone
            before = cpu_split(info["pid"], info.get("board_pids", []))["raw"]
            t0 = time.perf_counter()
            row = asyncio.run(_burst(url, n, deadline_ms, images, client))
            row["wall_ms"] = round((time.perf_counter() - t0) * 1000)
            cpu = cpu_split(info["pid"], info.get("board_pids", []), before)
            row["cpu_ms"] = {"client": row.pop("client_cpu_ms"), "event_loop": cpu["event_loop_ms"],
                             "other_threads": cpu["other_threads_ms"], "boards": cpu["boards_ms"]}
            row["serve"] = info["command"]
            row["load_avg_1m"] = round(os.getloadavg()[0], 2)
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
        client = rep["bursts"][0]["client"]
        L += [f"Bursts, default host-speed fleet (fallback on): simultaneous POST /classify ({client} client, a "
              "connection each), latency send to last byte; the service's own time (latency_ms) beside it",
              "", "| burst | deadline_ms | 200 | 503 (admission / deadline) | other | p50 ms | p99 ms | max ms | "
              "over deadline | service p99 / max ms | members from boards | spillover | fallback |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for b in rep["bursts"]:
            lat, src, srv, why = b["latency_ms"], b["member_sources"], b["server_latency_ms"], b["refused"]
            L.append(f"| {b['requests']} | {b['deadline_ms']:.0f} | {b['ok']} | {b['status_503']} "
                     f"({why.get('at admission', 0)} / {why.get('at the deadline', 0)}) | {b['other']} | "
                     f"{_f(lat['p50'])} | {_f(lat['p99'])} | {_f(lat['max'])} | {b['over_deadline']} | "
                     f"{_f(srv['p99'])} / {_f(srv['max'])} | "
                     f"{_share(src['board'])} | {_share(src['spillover'])} | {_share(src['fallback'])} |")
        L += ["", "Where the CPU went during each burst (ms of CPU time; the burst's wall time beside it):", "",
              "| burst | wall ms | client | service event loop | service other threads (engine) | boards | load |",
              "|---|---|---|---|---|---|---|"]
        for b in rep["bursts"]:
            c = b["cpu_ms"]
            L.append(f"| {b['requests']} | {b['wall_ms']} | {c['client']} | {c['event_loop']} | {c['other_threads']} | "
                     f"{c['boards']} | {b['load_avg_1m']} |")
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
    p.add_argument("--client", choices=("raw", "httpx"), default="raw",
                   help="the bursts' client: raw (HTTP/1.1 written by hand on asyncio streams, a connection per "
                        "request; cheap, so that it leaves the 2 cores to the service) or httpx (one AsyncClient "
                        "with a pool of a connection per request: about 13 ms of CPU a request at 256, against "
                        "under 1 ms raw, measured on this project's machine)")
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
            rep["bursts"] = bursts(ens, run_dir, a.client)
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
