"""``make bench-capacity`` and ``make bench-realspeed``: the virtual fleet at the speed of real boards.

Capacity (``--replicas 1,2,3``): for each replica count R, ``fleetvote serve --virtual
--board-speed planned --replicas R --no-fallback`` serves the ensemble, each virtual board taking
its member's planned latency on its catalogue board (``testbed/virtual.py``, from ``fleetvote
plan``). A closed loop at concurrency 2R and 4R (two and four requests per board of a member:
one computing, the rest waiting, so that no board idles between answers) measures the answered
rate; the larger of the two is the capacity at saturation. Fallback is off, so every answer was
computed by the boards, and the deadline (the deadline_ms setting) is set long (``CAPACITY_DEADLINE_MS``) so that
no request expires in a queue: saturation, not the deadline, is what limits the rate.

The planner's prediction: a request is answered when its slowest member has, so R boards per
member answer at most R / (the slowest member's planned latency) requests per second. The report
prints measured / predicted. Below 1: what the virtual boards add to the planned latency (the pty
wire, the board's owner task, HTTP and fusion in the service) plus this shared machine's load.

Real speed (``--realspeed``, what the README's real-speed table is made of): one board per member
at planned speed, the service's default settings (fallback on), closed loop at concurrency 1, 4
and 16 and open loop (Poisson arrivals) at 25, 50, 100 and 150 % of the one-replica capacity
measured first. ``--readme README.md`` writes the tables between ``<!-- realspeed:start -->``
and ``<!-- realspeed:end -->``.

    python -m fleetvote.testbed.capacity --replicas 1,2,3 --duration 20
    python -m fleetvote.testbed.capacity --replicas 1 --realspeed --readme README.md

Images are the bench's synthetic ones (seeded noise): a board's time does not depend on the
pixels, and no data set is needed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from ..ensemble import load_ensemble
from ..errors import ConfigError, FleetvoteError
from ..settings import Settings
from .bench_api import run_bench, serve_flags, virtual_server
from .reports import run_folder, write_report
from .virtual import planned_latency_ms

CAPACITY_DEADLINE_MS = 30_000.0  # far beyond 4 queued requests x ~200 ms: nothing expires while saturated
LOAD_SHARES = (0.25, 0.5, 1.0, 1.5)  # open-loop rates, as shares of the measured one-replica capacity
CLOSED_LEVELS = (1, 4, 16)
START = "<!-- realspeed:start -->"
END = "<!-- realspeed:end -->"


def predicted_rps(plan: dict[str, dict], replicas: int) -> float:
    """The planner's capacity: R boards per member, each request waiting for its slowest member."""
    return replicas * 1000.0 / max(p["total_ms"] for p in plan.values())


def _bench(ensemble: Path | None, run_dir: Path, flags: list[str], **kw) -> dict:
    with virtual_server(ensemble, run_dir, serve_args=flags) as (url, info):
        watch = {"server": [info["pid"]], "boards": info.get("board_pids", [])}
        rep = run_bench(url, synthetic=True, strategies=(), overhead_levels=(), plots=False, progress=False,
                        watch_pids=watch, **kw)
    rep["served_by"] = info
    return rep


def measure_capacity(replicas: int, plan: dict[str, dict], ensemble: Path | None, run_dir: Path,
                     duration: float, warmup: int = 4) -> dict:
    """The answered rate at saturation of R planned-speed boards per member, fallback off."""
    levels = (2 * replicas, 4 * replicas)
    flags = serve_flags("planned", replicas, fallback=False, deadline_ms=CAPACITY_DEADLINE_MS)
    rep = _bench(ensemble, run_dir / f"capacity-r{replicas}", flags, levels=levels, count=None,
                 duration=duration, warmup=warmup)
    best = max(rep["levels"], key=lambda lv: lv["throughput_rps"] or 0.0)
    pred = predicted_rps(plan, replicas)
    return {
        "replicas": replicas, "boards": len(rep["served_by"].get("board_pids", [])),
        "levels": [{k: lv[k] for k in ("concurrency", "requests", "ok", "errors", "status_503", "throughput_rps",
                                       "latency_ms", "member_sources", "cpu_ms_per_request", "load_avg_1m")}
                   for lv in rep["levels"]],
        "measured_rps": best["throughput_rps"], "at_concurrency": best["concurrency"],
        "predicted_rps": round(pred, 3), "ratio": round(best["throughput_rps"] / pred, 3),
        "serve": rep["served_by"]["command"],
    }


def realspeed(capacity_rps: float, ensemble: Path | None, run_dir: Path, count: int, duration: float) -> dict:
    """Closed loop at 1, 4, 16 and open loop at 25-150 % of ``capacity_rps``: one planned-speed
    board per member, the service's default settings (fallback on)."""
    flags = serve_flags("planned", 1)
    closed = _bench(ensemble, run_dir / "closed", flags, levels=CLOSED_LEVELS, count=count, duration=None, warmup=4)
    rates = [round(capacity_rps * s, 2) for s in LOAD_SHARES]
    opened = _bench(ensemble, run_dir / "open", flags, levels=(), rates=rates, count=None, duration=duration,
                    warmup=4)
    return {"capacity_rps": capacity_rps, "shares": list(LOAD_SHARES), "closed": closed, "open": opened}


# ---- report --------------------------------------------------------------------------------

def format_capacity(rows: list[dict], plan: dict[str, dict]) -> str:
    lines = ["planned latency per member (fleetvote plan: transfer + compute on its catalogue board): "
             + ", ".join(f"{m} {p['total_ms']:.1f} ms ({p['board']})" for m, p in plan.items()), "",
             f"{'replicas':>9}{'boards':>8}{'measured /s':>13}{'at conc.':>10}{'predicted /s':>14}{'ratio':>8}"]
    for r in rows:
        lines.append(f"{r['replicas']:>9}{r['boards']:>8}{r['measured_rps']:>13.2f}{r['at_concurrency']:>10}"
                     f"{r['predicted_rps']:>14.2f}{r['ratio']:>8.3f}")
    return "\n".join(lines)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _share(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _cpu(lv: dict) -> str:
    c = lv.get("cpu_ms_per_request") or {}
    return "-" if c.get("client") is None else f"{c['client']:.1f}"


def render_readme(rep: dict) -> str:
    """The README's real-speed section (between the markers)."""
    cap = rep["capacity"]
    one = next(r for r in cap if r["replicas"] == 1)
    plan = rep["plan"]
    L = [f"Generated by `make bench-realspeed` on {rep['date']}. **Virtual boards at planned latency**: the "
         "firmware built for the host, each board padding its compute to its member's latency on its catalogue "
         "board as `fleetvote plan` estimates it ("
         + ", ".join(f"{m} {p['total_ms']:.0f} ms" for m, p in plan.items())
         + f", all on {', '.join(sorted({p['board'] for p in plan.values()}))}), one board per member unless "
         f"said. {rep['host']['cpus']} CPUs shared with the client and other work (load {rep['host']['load_avg_1m']} "
         "at the end). Synthetic images (the boards' time does not depend on the pixels).", "",
         "Capacity at saturation, fallback off and a per-board deadline of "
         f"{rep.get('deadline_ms', CAPACITY_DEADLINE_MS) / 1000:g} s so that nothing expires in a queue (closed loop at "
         "2 and 4 requests per board, the larger rate), against the planner's R / slowest member latency:", "",
         "| boards per member | measured answers/s | predicted answers/s | measured / predicted |",
         "|---|---|---|---|"]
    for r in cap:
        L.append(f"| {r['replicas']} | {r['measured_rps']:.2f} | {r['predicted_rps']:.2f} | {r['ratio']:.2f} |")
    rs = rep.get("realspeed")
    if rs:
        L += ["", "Closed loop, the service's default settings (fallback on):", "",
              "| concurrency | requests | answers/s | p50 ms | p90 ms | p99 ms | 503 | members from boards | "
              "fallback | spillover | bench CPU ms/request |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for lv in rs["closed"]["levels"]:
            lat, src = lv["latency_ms"], lv["member_sources"]
            L.append(f"| {lv['concurrency']} | {lv['requests']} | {lv['throughput_rps']:.2f} | {_ms(lat['p50'])} | "
                     f"{_ms(lat['p90'])} | {_ms(lat['p99'])} | {lv['status_503']} | {_share(src['board'])} | "
                     f"{_share(src['fallback'])} | {_share(src['spillover'])} | {_cpu(lv)} |")
        L += ["", f"Open loop (Poisson arrivals, {rs['open']['settings']['duration_s']:g} s per rate; latency from "
                  f"each request's scheduled arrival), as shares of the measured capacity ({one['measured_rps']:.2f} "
                  "answers/s):", "",
              "| load | offered/s | answered/s | p50 ms | p90 ms | p99 ms | 503 | members from boards | fallback | "
              "spillover | bench CPU ms/request |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for share, r in zip(rs["shares"], rs["open"]["rates"]):
            lat, src = r["latency_ms"], r["member_sources"]
            L.append(f"| {100 * share:.0f} % | {r['offered_rps']:.2f} | {r['answered_rps']:.2f} | {_ms(lat['p50'])} | "
                     f"{_ms(lat['p90'])} | {_ms(lat['p99'])} | {r['status_503']} | {_share(src['board'])} | "
                     f"{_share(src['fallback'])} | {_share(src['spillover'])} | {_cpu(r)} |")
    L += ["", f"Reproduce: `{rep['command']}` (runs `{rep['argv']}`; every figure is in the `capacity.json` it writes "
              "under `runs/capacity/`)."]
    return "\n".join(L)


def write_capacity_report(rep: dict, out: Path, readme: Path | None = None) -> Path:
    """``capacity.json`` in ``out``, by the test bed's report writer (``reports.py``: stamped with
    the date, its own path and the host's CPUs and load), and the real-speed section printed when
    the report has one (``realspeed``), and spliced into ``readme`` when given; the JSON's path."""
    path = write_report(rep, out, "capacity",
                        lambda r: "\n" + render_readme(r) if "realspeed" in r else f"every figure in {r['json']}")
    if readme is not None and "realspeed" in rep:
        readme.write_text(splice(readme.read_text(), render_readme(rep)))
        print(f"wrote the real-speed section of {readme}", file=sys.stderr)
    return path


def splice(readme: str, body: str) -> str:
    """``body`` between the markers; a ``### Real speed`` section with them appended when missing."""
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        _old, tail = rest.split(END, 1)
        return f"{head}{START}\n{body}\n{END}{tail}"
    return readme.rstrip("\n") + f"\n\n### At real-board speed\n\n{START}\n{body}\n{END}\n"


# ---- command line --------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    vals = [int(x) for x in text.split(",") if x.strip()]
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError("a comma list of replica counts >= 1, like 1,2,3")
    return vals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fleetvote.testbed.capacity",
        description="Capacity of the virtual fleet at planned (real-board) speed with fallback off, for each "
                    "replica count, beside the planner's prediction (R / slowest member latency); with "
                    "--realspeed, the closed- and open-loop tables of the README's real-speed section.")
    p.add_argument("--replicas", type=_ints, default=[1, 2, 3], help="boards per member to measure (default 1,2,3)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per closed-loop level of the capacity runs")
    p.add_argument("--realspeed", action="store_true", help="also the README's tables (needs 1 in --replicas)")
    p.add_argument("--closed-count", type=int, default=128, help="requests per closed-loop level (--realspeed)")
    p.add_argument("--open-duration", type=float, default=30.0, help="seconds per open-loop rate (--realspeed)")
    p.add_argument("--ensemble", help="ensemble file (default models/zoo/ensemble.json)")
    p.add_argument("--out", help="output folder (default runs/capacity/<date-time>)")
    p.add_argument("--readme", help="write the real-speed section into this README (with --realspeed)")
    p.add_argument("--render", metavar="JSON", help="measure nothing: write the real-speed section of --readme from "
                                                     "a capacity.json of an earlier --realspeed run")
    a = p.parse_args(argv)
    if a.render:
        body = render_readme(json.loads(Path(a.render).read_text()))
        if a.readme:
            Path(a.readme).write_text(splice(Path(a.readme).read_text(), body))
        print(body)
        return 0
    try:
        if a.realspeed and 1 not in a.replicas:
            raise ConfigError("--realspeed runs at 25-150 % of the one-replica capacity: keep 1 in --replicas")
        s = Settings(scan_usb=False)
        ens_path = Path(a.ensemble) if a.ensemble else s.ensemble
        ids = [m.id for m in load_ensemble(ens_path, s.zoo).members]
        plan = planned_latency_ms(ids, s.zoo, s.catalog)
        out = run_folder(a.out, "capacity")
        run_dir = Path(tempfile.mkdtemp(prefix="fleetvote-capacity-"))
        rows = []
        for r in a.replicas:
            print(f"capacity: {r} planned-speed board(s) per member, fallback off ...", file=sys.stderr)
            rows.append(measure_capacity(r, plan, Path(a.ensemble) if a.ensemble else None, run_dir, a.duration))
        print(format_capacity(rows, plan))
        rep = {"plan": plan, "capacity": rows,
               "command": "make bench-realspeed" if a.realspeed else "make bench-capacity",
               "argv": shlex.join(["python", "-m", "fleetvote.testbed.capacity", *(argv or sys.argv[1:])]),
               "deadline_ms": CAPACITY_DEADLINE_MS}
        if a.realspeed:
            one = next(x for x in rows if x["replicas"] == 1)
            print("real speed: closed loop 1, 4, 16; open loop at 25-150 % of the measured capacity ...",
                  file=sys.stderr)
            rep["realspeed"] = realspeed(one["measured_rps"], Path(a.ensemble) if a.ensemble else None, run_dir,
                                         a.closed_count, a.open_duration)
        write_capacity_report(rep, out, Path(a.readme) if a.readme else None)
    except FleetvoteError as exc:
        print(f"capacity: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
