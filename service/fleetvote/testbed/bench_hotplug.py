"""``make bench-hotplug``: how fast the service notices a board unplugged and plugged back.

Starts the service in-process over N virtual boards (links in a temporary folder), then R times:
kills one board (SIGKILL: a pulled cable) and times until GET /boards shows it ``offline``; starts
it again behind the same link and times until it is ``ready``. Also measures /classify throughput
and latency at concurrency 1 and 16 on the healthy fleet.

    python -m fleetvote.testbed.bench_hotplug [--rounds 5] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
import time
from pathlib import Path

import numpy as np


async def _poll(client, url: str, state: str, timeout: float = 30.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        boards = (await client.get("/boards")).json()["boards"]
        if any(b["url"] == url and b["state"] == state for b in boards):
            return time.perf_counter() - t0
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{url} not {state} after {timeout} s")


async def _load(client, images: np.ndarray, n: int, concurrency: int) -> dict:
    lat: list[float] = []
    k = 0

    async def worker():
        nonlocal k
        while k < n:
            img = images[k % len(images)]
            k += 1
            t = time.perf_counter()
            r = await client.post("/classify", content=img.tobytes(),
                                  headers={"content-type": "application/octet-stream"})
            r.raise_for_status()
            lat.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    dt = time.perf_counter() - t0
    return {"concurrency": concurrency, "requests": len(lat), "rps": len(lat) / dt,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


async def run(rounds: int, requests: int) -> dict:
    import httpx

    from ..api.app import create_app
    from ..data import load_split
    from ..ensemble import load_ensemble
    from ..settings import Settings
    from .processes import stop_process
    from .virtual import start_board

    settings = Settings(urls=[], scan_usb=False, rescan_s=0.2)
    ids = [m.id for m in load_ensemble(settings.ensemble, settings.zoo).members]
    images = load_split("test").x[:500]
    with tempfile.TemporaryDirectory() as d:
        links = Path(d)
        boards = [start_board(m, f"hotplug-{k}", link=links / f"b{k}-{m}") for k, m in enumerate(ids)]
        settings.link_globs = [str(links / "*")]
        app = create_app(settings)
        out: dict = {"members": ids, "rescan_s": settings.rescan_s, "ping_interval_s": settings.ping_interval_s}
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://fleet", timeout=30) as c:
                    for b in boards:
                        await _poll(c, str(b.link), "ready")
                    out["load"] = [await _load(c, images, requests, 1), await _load(c, images, requests, 16)]
                    unplug, replug = [], []
                    for r in range(rounds):
                        victim = boards[r % len(boards)]
                        victim.process.send_signal(signal.SIGKILL)
                        victim.process.wait()
                        unplug.append(await _poll(c, str(victim.link), "offline"))
                        boards[r % len(boards)] = victim = start_board(victim.model_id, victim.board_id,
                                                                       link=victim.link)
                        replug.append(await _poll(c, str(victim.link), "ready"))
                    out["unplug_to_offline_s"] = unplug
                    out["replug_to_ready_s"] = replug
        finally:
            for b in boards:
                stop_process(b.process)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--json", help="write the figures here too")
    a = p.parse_args(argv)
    out = asyncio.run(run(a.rounds, a.requests))
    print(f"virtual fleet of {len(out['members'])} ({', '.join(out['members'])}), service in-process (ASGI), "
          f"client in the same process")
    for r in out["load"]:
        print(f"  /classify at concurrency {r['concurrency']:>2}: {r['rps']:.1f} requests/s, "
              f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms ({r['requests']} requests)")
    u, rp = np.array(out["unplug_to_offline_s"]) * 1000, np.array(out["replug_to_ready_s"]) * 1000
    print(f"  unplug -> offline in /boards: median {np.median(u):.0f} ms, max {u.max():.0f} ms ({len(u)} rounds)")
    print(f"  replug -> ready in /boards:   median {np.median(rp):.0f} ms, max {rp.max():.0f} ms "
          f"(rescan every {out['rescan_s']} s, reconnect back-off from 0.2 s)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
