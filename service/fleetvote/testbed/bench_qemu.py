"""``make qemu-startup``: how long an emulated board takes to answer after QEMU starts, and
whether any start fails, for each image kind, while a CPU hog occupies one core.

    python -m fleetvote.testbed.bench_qemu [--starts 10] [--model ID] [--no-hog]

Why: QEMU prints its pty line before the firmware enables its USART, and its STM32 USART model
drops bytes received while the USART is off, so a client that writes at once loses its request
about half the time (``testbed/qemu.py``). ``start_qemu`` hands a board out only once it has
answered a PING; this counts the starts that still fail and the time to the first answer.

The three kinds are the images the tests and ``fleetvote sim`` start: the netduinoplus2 test
image (fault injection on), its release image, and the nucleo-f411re release image (served on
USART2; its clock bring-up gives up on QEMU's empty RCC and falls back to the HSI first).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

# (board, variant, usart): the images QEMU runs in this project
KINDS: tuple[tuple[str, str, int], ...] = (
    ("netduinoplus2", "test", 1),
    ("netduinoplus2", "release", 1),
    ("nucleo-f411re", "release", 2),
)


@dataclass
class KindResult:
    board: str
    variant: str
    starts: int = 0
    failures: list[str] = field(default_factory=list)
    answer_s: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.board} {self.variant}"

    def row(self) -> str:
        if self.answer_s:
            p50, top = float(np.percentile(self.answer_s, 50)), max(self.answer_s)
            times = f"{p50:18.2f} | {top:5.2f}"
        else:
            times = f"{'-':>18} | {'-':>5}"
        return f"| {self.name:<24} | {self.starts:>6} | {len(self.failures):>8} | {times} |"


def cpu_hog() -> subprocess.Popen:
    """One busy process: the other core stays for QEMU and this script."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)


def measure(model_id: str, starts: int, hog: bool = True, progress=None) -> list[KindResult]:
    """Start each kind `starts` times (one QEMU at a time) and record time to first answer."""
    from .processes import stop_process
    from .qemu import build_image, start_qemu

    results = []
    hog_proc = cpu_hog() if hog else None
    try:
        for board, variant, usart in KINDS:
            image = build_image(model_id, variant, board)
            res = KindResult(board, variant)
            for _ in range(starts):
                res.starts += 1
                try:
                    started = start_qemu(image, usart=usart)
                except ConfigError as exc:
                    res.failures.append(str(exc))
                else:
                    res.answer_s.append(started.answer_s)
                    stop_process(started.process)
                if progress:
                    progress(res)
            results.append(res)
    finally:
        if hog_proc is not None:
            hog_proc.kill()
            hog_proc.wait()
    return results


def table(results: list[KindResult]) -> str:
    lines = ["| image                    | starts | failures | first answer p50 s | max s |",
             "|---|---|---|---|---|"]
    return "\n".join(lines + [r.row() for r in results])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--starts", type=int, default=10, help="starts per image kind (default %(default)s)")
    p.add_argument("--model", help="zoo id whose images are started (default: the ensemble's first member)")
    p.add_argument("--no-hog", action="store_true", help="leave both cores free")
    a = p.parse_args(argv)
    from .qemu import ensemble_members

    model = a.model or ensemble_members()[0]
    t0 = time.monotonic()

    def progress(res: KindResult) -> None:
        print(f"\r{res.name}: {res.starts}/{a.starts} started, {len(res.failures)} failed",
              end="", file=sys.stderr, flush=True)

    try:
        results = measure(model, a.starts, hog=not a.no_hog, progress=progress)
    except ConfigError as exc:
        print(f"\nqemu-startup: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(f"QEMU starts of {model}'s images, {'with a CPU hog on one core' if not a.no_hog else 'no hog'}, "
          f"{time.monotonic() - t0:.0f} s in all; a start fails when the board has not answered "
          f"a PING within the answer timeout:")
    print(table(results))
    for r in results:
        for f in r.failures[:3]:
            print(f"  {r.name}: {f}")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
