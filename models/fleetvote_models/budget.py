"""The member budget of candidate architectures, measured before any long training (issue 16).

    python -m fleetvote_models.budget vggw:12-16-48-112 resnetw:16-16-32-80 ... \\
        [--scratch DIR] [--out models/budget.json]

For each architecture, outside the zoo (in ``--scratch``, default ``$TMPDIR/fleetvote-budget``):

1. a smoke run: ``fleetvote train --arch A --epochs 1 --limit 500`` (about a minute), and its
   int8 export (``fleetvote export``) into a scratch zoo;
2. its nucleo-f411re firmware: the release image linked for the board's real memory (a model
   that does not fit fails here) and the same objects linked unbounded for the size report
   (``firmware/tools/size_report.py``: flash and RAM of the real image);
3. its instructions per MAC under QEMU (``make -C firmware bench-firmware``, DSP kernels);
4. the planner's latency on the board (``fleetvote.offline.bom.member_budget``: transfer +
   compute from that count, the board's CPI from its flash wait states) against 160 ms.

Instruction counts depend on the shapes, not on the trained weights: measured, vgg:12 after the
1-epoch smoke run counted 6,221,292 instructions with the DSP kernels of 2026-12-01, the trained
vgg12-s1 (30 epochs, retired since) 6,221,488, 0.003 % apart (``make -C firmware bench-firmware
MODELS=vgg12-s1`` when it was in the zoo). Flash and RAM are the same bytes whatever the training.

``--fit-time`` measures nothing of the above but the time of ``model.fit`` instead: the best of 3
epochs over 4,096 training images per architecture, scaled to 45,000 (for scheduling; compare an
architecture with a known one timed in the same call, since the machine's load moves both).

``--out`` (models/budget.json) keeps, per architecture, the figures and the commands that made
them; tests/test_models.py checks every queued member of models/recipes.json against it.
Re-run it when the kernels change (its figures then move).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUDGET = ROOT / "models" / "budget.json"
SMOKE = ["--epochs", "1", "--limit", "500", "--seed", "1"]


def scratch_id(arch: str) -> str:
    """``vggw:12-16-48-112`` -> ``budget-vggw-12-16-48-112`` (a zoo id: no ':')."""
    return "budget-" + arch.replace(":", "-")


def record(arch: str, card: dict, sizes: dict, ipms: dict, board_name: str, board: dict) -> dict:
    """One architecture's budget record from its scratch card, the size report and the bench."""
    from fleetvote.offline.bom import member_budget

    mid = card["id"]
    if (board_name, mid) not in sizes:
        raise KeyError(f"{mid}: no {board_name} image in the size report")
    if mid not in ipms:
        raise KeyError(f"{mid}: no instruction count in the firmware bench's JSON")
    flash, ram = sizes[(board_name, mid)]
    ipm = ipms[mid][0]
    verdict = member_budget(card["macc"], flash, ram, ipm, board)
    return {"macc": card["macc"], "params": card["params"], "weight_bytes": card["flash_bytes"],
            "arena_bytes": card.get("arena_bytes"), "board": board_name, "flash_bytes": flash, "ram_bytes": ram,
            "instructions_per_mac": ipm, "cpi": verdict["latency"]["cpi"],
            "transfer_ms": verdict["latency"]["transfer_ms"], "compute_ms": verdict["latency"]["compute_ms"],
            "latency_ms": verdict["latency"]["total_ms"], "latency_margin_ms": verdict["latency_margin_ms"],
            "flash_share": verdict["flash_share"], "ram_share": verdict["ram_share"],
            "fits": not verdict["problems"], "problems": verdict["problems"]}


def fit_seconds(archs: list[str], data: str | None = None, images: int = 4096, repeats: int = 3) -> dict[str, float]:
    """{arch: seconds of one 45,000-image epoch of ``fit``}, scaled from the best of ``repeats``
    epochs over ``images`` training images (after one epoch that compiles the graph)."""
    import time

    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import numpy as np

    from fleetvote.data import load_split

    from .archs import build

    tr = load_split("train", data)
    x = tr.x[:images].astype(np.float32) / 255.0
    y = keras.utils.to_categorical(tr.y[:images], 10)
    out = {}
    for arch in archs:
        m = build(arch)
        m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), loss="categorical_crossentropy")
        m.fit(x, y, batch_size=128, epochs=1, verbose=0)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            m.fit(x, y, batch_size=128, epochs=1, verbose=0)
            best = min(best, time.perf_counter() - t)
        out[arch] = best * 45_000 / images
        print(f"{arch:26s} {best:6.2f} s per {images:,} images -> {out[arch]:6.1f} s per 45,000-image epoch", flush=True)
    return out


def _run(cmd: list[str], log: Path) -> None:
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc:
        raise SystemExit(f"failed ({rc}): {' '.join(cmd)}; see {log}")


def main(argv: list[str] | None = None) -> int:
    from fleetvote.offline.bom import MEMBER_BOARD, load_bench_firmware, load_size_report

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("archs", nargs="+", help="architectures, as fleetvote train --arch takes them")
    p.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "fleetvote-budget",
                   help="runs, scratch zoo and logs (outside the work tree; default %(default)s)")
    p.add_argument("--out", type=Path, default=BUDGET, help="the budget file to update (default %(default)s)")
    p.add_argument("--data", help="CIFAR-10 archive (default: $CIFAR10_PATH)")
    p.add_argument("--fit-time", action="store_true",
                   help="only time model.fit per architecture (best of 3 epochs of 4,096 images, scaled to 45,000)")
    a = p.parse_args(argv)
    if a.fit_time:
        fit_seconds(a.archs, a.data)
        return 0
    py = sys.executable
    zoo, runs, build = a.scratch / "zoo", a.scratch / "runs", ROOT / "firmware" / "build"
    runs.mkdir(parents=True, exist_ok=True)
    data = ["--data", a.data] if a.data else []
    ids = {arch: scratch_id(arch) for arch in a.archs}
    make = ["make", "--no-print-directory", "-C", "firmware", f"ZOO={zoo}", f"PYTHON={py}"]
    for arch, mid in ids.items():
        if not (runs / mid / "best.weights.h5").exists():
            _run([py, "-m", "fleetvote.cli", "train", "--arch", arch, *SMOKE, "--out", str(runs / mid), *data],
                 runs / f"{mid}.train.log")
        if not (zoo / mid / "card.json").exists():
            _run([py, "-m", "fleetvote.cli", "export", str(runs / mid), "--id", mid, "--zoo", str(zoo), *data],
                 runs / f"{mid}.export.log")
        _run([*make, f"BOARD={MEMBER_BOARD}", f"MODEL={mid}"], runs / f"{mid}.link.log")
        _run([*make, f"BOARD={MEMBER_BOARD}", f"MODEL={mid}", "VARIANT=release", "measure"],
             runs / f"{mid}.measure.log")
    size_json, bench_json = a.scratch / "size-report.json", build / "bench-firmware.json"
    _run([py, "firmware/tools/size_report.py", "--boards", MEMBER_BOARD, "--models", *ids.values(),
          "--zoo", str(zoo), "--ensemble", str(zoo / "none.json"), "--json", str(size_json)],
         a.scratch / "size-report.log")
    _run([*make, "bench-firmware", f"MODELS={' '.join(ids.values())}"], a.scratch / "bench.log")
    sizes, _ = load_size_report(size_json)
    ipms, _, _ = load_bench_firmware(bench_json)
    catalog = json.loads((ROOT / "firmware" / "boards" / "catalog.json").read_text())["boards"]
    try:
        out = json.loads(a.out.read_text())
    except (OSError, ValueError):
        out = {}
    out["_doc"] = ("Per candidate member architecture: its figures on the members' board, measured on an untrained "
                   "(1-epoch smoke) int8 export by `python -m fleetvote_models.budget` (the command below); "
                   "latency as fleetvote plan estimates it (transfer + compute from the model's own instruction "
                   "count); the budget: fits the board, latency <= 160 ms.")
    archs = out.setdefault("archs", {})
    for arch, mid in ids.items():
        card = json.loads((zoo / mid / "card.json").read_text())
        archs[arch] = {**record(arch, card, sizes, ipms, MEMBER_BOARD, catalog[MEMBER_BOARD]),
                       "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                       "command": "python -m fleetvote_models.budget " + arch}
        r = archs[arch]
        print(f"{arch:26s} {r['macc']:>10,} MACC {r['params']:>9,} par  flash {r['flash_bytes']:>8,}  "
              f"RAM {r['ram_bytes']:>7,}  {r['instructions_per_mac']:.3f} instr/MAC  {r['latency_ms']:>7} ms  "
              + ("fits" if r["fits"] else "OVER: " + "; ".join(r["problems"])))
    out["archs"] = dict(sorted(archs.items()))
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
