"""``make bench-hostile``: slow-header clients against the HAProxy front (deploy/front/haproxy.cfg).

It starts ``fleetvote serve --virtual`` (host speed) on a free loopback port and ``haproxy`` with
the front's configuration in front of it, then:

1. **before**: an ordinary client (httpx, one keep-alive connection, one request at a time) sends
   ``POST /classify`` through the front for ``--phase`` seconds: its latency percentiles;
2. **during**: ``--slow`` connections (500) are opened to the front, each sending a request line
   and then one header line a second, never ending its head (a slowloris), while the ordinary
   client goes on as before for the same time;
3. each slow connection's end: when the front closed it (seconds from its opening) and what it
   answered (HAProxy's 408).

Targets (the issue's): the ordinary client's p99 during the attack within 50 ms of its p99 before
it, and every slow connection closed within the head timeout (``FRONT_HEAD_TIMEOUT``, 5 s by
default; HAProxy checks its timers on its own clock, so up to a few ms beyond it).

    python -m fleetvote.testbed.hostile                     # 500 slow connections, 5 s head timeout
    python -m fleetvote.testbed.hostile --slow 300 --head-timeout 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError, FleetvoteError
from ..settings import ROOT
from .bench_api import pct, synthetic_images, virtual_server
from .processes import free_port, stop_process
from .reports import run_folder, write_report

FRONT_CONFIG = ROOT / "deploy" / "front" / "haproxy.cfg"
P99_TARGET_MS = 50.0  # the ordinary client's p99 during the attack, at most this above its p99 before
CLOSE_SLACK_S = 0.25  # HAProxy's timer granularity and this client's own scheduling on a loaded host


def start_front(backend_port: int, head_timeout_s: float, run_dir: Path, config: Path = FRONT_CONFIG
                ) -> tuple[subprocess.Popen, int]:
    """haproxy in the foreground with the front's configuration, in front of 127.0.0.1:backend_port;
    (the process, the front's port) once it accepts connections."""
    exe = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if exe is None:
        raise ConfigError("haproxy is not installed: apt-get install haproxy (tests/debian-packages.sh test)")
    port = free_port()
    env = {**os.environ, "FRONT_BIND": f"127.0.0.1:{port}", "FLEETVOTE_BACKEND": f"127.0.0.1:{backend_port}",
           "FRONT_HEAD_TIMEOUT": f"{head_timeout_s:g}s"}
    log = open(run_dir / "haproxy.log", "w")
    proc = subprocess.Popen([exe, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"haproxy exited with status {proc.returncode}: "
                              f"{(run_dir / 'haproxy.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    stop_process(proc)
    raise ConfigError("haproxy did not accept connections within 10 s")


async def _ordinary(url: str, seconds: float, body: bytes) -> list[float]:
    import httpx

    times = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            r = await client.post("/classify", content=body, headers={"content-type": "application/octet-stream"})
            if r.status_code == 200:
                times.append((time.perf_counter() - t0) * 1000)
            else:
                times.append(float("nan"))
    return times


async def _slow(port: int, t_open: list, t_closed: list, answers: list, i: int, stop: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        answers[i] = f"connect failed: {exc}"
        return
    t_open[i] = time.perf_counter()  # connected: the front's head timer runs from its accept
    head = [b"POST /classify HTTP/1.1\r\n", b"Host: fleetvote\r\n"] + [b"X-Slow-%d: 1\r\n" % n for n in range(1000)]
    got = b""

    async def trickle():
        for line in head:
            writer.write(line)
            await writer.drain()
            await asyncio.sleep(1.0)

    sender = asyncio.ensure_future(trickle())
    try:
        while not stop.is_set():
            chunk = await reader.read(4096)
            if not chunk:
                break
            got += chunk
    except (ConnectionError, OSError):
        pass
    finally:
        t_closed[i] = time.perf_counter()
        sender.cancel()
        writer.close()
    answers[i] = got.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed without an answer)"


async def attack(front: str, port: int, slow: int, phase_s: float, head_timeout_s: float, body: bytes) -> dict:
    before = await _ordinary(front, phase_s, body)
    t_open, t_closed, answers = [None] * slow, [None] * slow, [None] * slow
    stop = asyncio.Event()
    slow_tasks = [asyncio.ensure_future(_slow(port, t_open, t_closed, answers, i, stop)) for i in range(slow)]
    during = await _ordinary(front, max(phase_s, head_timeout_s), body)
    # every slow connection has had its head timeout and some: the rest are counted as never closed
    await asyncio.wait(slow_tasks, timeout=head_timeout_s + 5)
    stop.set()
    for t in slow_tasks:
        t.cancel()
    held = [(c - o) for o, c in zip(t_open, t_closed) if o is not None and c is not None]
    kinds: dict[str, int] = {}
    for a in answers:
        kinds[str(a)] = kinds.get(str(a), 0) + 1
    b, d = pct(before, (50, 99)), pct(during, (50, 99))
    return {
        "ordinary": {"before": {"requests": len(before), **b}, "during": {"requests": len(during), **d},
                     "p99_increase_ms": round(d["p99"] - b["p99"], 3),
                     "target_ms": P99_TARGET_MS, "meets_target": d["p99"] - b["p99"] <= P99_TARGET_MS,
                     "failed": sum(1 for x in before + during if x != x)},
        "slow": {"connections": slow, "opened": sum(1 for o in t_open if o is not None), "closed": len(held),
                 "held_s": pct(held, (50, 99)), "head_timeout_s": head_timeout_s,
                 "closed_within_head_timeout": sum(1 for h in held if h <= head_timeout_s + CLOSE_SLACK_S),
                 "answers": kinds},
    }


def format_report(rep: dict) -> str:
    o, s = rep["ordinary"], rep["slow"]
    return "\n".join([
        f"Slow-header attack through the HAProxy front ({s['connections']} connections, a header line a second; "
        f"head timeout {s['head_timeout_s']:g} s); ordinary client: POST /classify one at a time",
        "",
        "| ordinary client | requests | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        f"| before the attack | {o['before']['requests']} | {o['before']['p50']:.1f} | {o['before']['p99']:.1f} | "
        f"{o['before']['max']:.1f} |",
        f"| during the attack | {o['during']['requests']} | {o['during']['p50']:.1f} | {o['during']['p99']:.1f} | "
        f"{o['during']['max']:.1f} |",
        "",
        f"p99 during - p99 before: {o['p99_increase_ms']:+.1f} ms (target <= {o['target_ms']:.0f} ms: "
        f"{'met' if o['meets_target'] else 'NOT met'}); failed ordinary requests: {o['failed']}",
        f"slow connections: {s['opened']} opened, {s['closed']} closed by the front, "
        f"{s['closed_within_head_timeout']} within the head timeout (+{CLOSE_SLACK_S:g} s); held p50 "
        f"{s['held_s']['p50']} s, p99 {s['held_s']['p99']} s, max {s['held_s']['max']} s",
        "answers to the slow connections: " + ", ".join(f"{k!s} x{v}" for k, v in s["answers"].items()),
        "",
        f"{rep['host']['cpus']} CPUs, load {rep['host']['load_avg_1m']}; every figure in {rep['json']}",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fleetvote.testbed.hostile",
        description="Slow-header connections through the HAProxy front (deploy/front/haproxy.cfg) in front of a "
                    "virtual fleet: an ordinary client's latency before and during, and when each slow connection "
                    "was closed. Needs haproxy (apt-get install haproxy).")
    p.add_argument("--slow", type=int, default=500, help="slow connections (default 500)")
    p.add_argument("--phase", type=float, default=10.0, help="seconds of ordinary requests before the attack, and "
                                                              "at least as long during it (default 10)")
    p.add_argument("--head-timeout", type=float, default=5.0, help="the front's FRONT_HEAD_TIMEOUT, s (default 5)")
    p.add_argument("--ensemble", help="ensemble file (default models/zoo/ensemble.json)")
    p.add_argument("--out", help="output folder (default runs/hostile/<date-time>)")
    a = p.parse_args(argv)
    try:
        out = run_folder(a.out, "hostile")
        run_dir = Path(tempfile.mkdtemp(prefix="fleetvote-hostile-"))
        images, _ = synthetic_images(1)
        with virtual_server(Path(a.ensemble) if a.ensemble else None, run_dir) as (url, info):
            front, port = start_front(info["port"], a.head_timeout, run_dir)
            try:
                rep = asyncio.run(attack(f"http://127.0.0.1:{port}", port, a.slow, a.phase, a.head_timeout,
                                         images[0].tobytes()))
            finally:
                stop_process(front)
        rep.update(serve=info["command"], front=str(FRONT_CONFIG.relative_to(ROOT)))
        write_report(rep, out, "hostile", format_report)
    except FleetvoteError as exc:
        print(f"hostile: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
