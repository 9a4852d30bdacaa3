"""``make bench-link``: images per second one virtual board sustains through the Python client,
over a pty and over a TCP socket, beside the link anchors.

    python -m fleetvote.testbed.bench_link [--model ID] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

# measured on this project's machine: pyserial-asyncio-fast over a pty, a thread echoing (make bench-link)
ANCHOR_PTY_RTT_P50_MS = 0.5  # pyserial-asyncio-fast, 3,090 bytes out, 24 back, echo thread


async def _run(url: str, images: np.ndarray, seconds: float) -> dict:
    from ..link.client import BoardClient

    client = await BoardClient.open(url)
    try:
        await client.hello()
        rtts, us = [], []
        t0 = time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            r = await client.classify(images[k % len(images)])
            rtts.append((time.perf_counter() - t) * 1000)
            us.append(r.inference_us)
            k += 1
        dt = time.perf_counter() - t0
    finally:
        await client.close()
    return {"images_per_s": k / dt, "rtt_p50_ms": float(np.percentile(rtts, 50)),
            "rtt_p99_ms": float(np.percentile(rtts, 99)), "board_p50_ms": float(np.percentile(us, 50)) / 1000}


def main(argv: list[str] | None = None) -> int:
    from ..data import load_split
    from ..offline.cards import load_cards
    from ..settings import ROOT
    from .processes import stop_process
    from .virtual import start_board

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="zoo id (default: the first member)")
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args(argv)
    model = a.model or next(c["id"] for c in load_cards(ROOT / "models" / "zoo") if c["role"] == "member")
    images = load_split("test").x[:500]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        b = start_board(model, "bench", link=Path(d) / "board")
        try:
            rows.append(("pty", asyncio.run(_run(str(Path(d) / "board"), images, a.seconds))))
        finally:
            stop_process(b.process)
    b = start_board(model, "bench", tcp_port=0)
    try:
        rows.append(("socket://", asyncio.run(_run(f"socket://{b.port}", images, a.seconds))))
    finally:
        stop_process(b.process)
    print(f"one virtual board ({model}), Python client, one request at a time, {a.seconds:.0f} s each")
    print(f"{'link':<11}{'images/s':>10}{'rtt p50 ms':>12}{'rtt p99 ms':>12}{'on-board p50 ms':>17}{'link p50 ms':>13}")
    for name, r in rows:
        print(f"{name:<11}{r['images_per_s']:>10.0f}{r['rtt_p50_ms']:>12.2f}{r['rtt_p99_ms']:>12.2f}"
              f"{r['board_p50_ms']:>17.2f}{r['rtt_p50_ms'] - r['board_p50_ms']:>13.2f}")
    print(f"anchor: pty round trip of a 3,090-byte frame with an echo thread, {ANCHOR_PTY_RTT_P50_MS} ms p50 "
          f"(measured on this project's machine, make bench-link); link p50 here = round trip minus the board's own compute")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
