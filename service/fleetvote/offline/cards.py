"""Model cards: ``models/zoo/<id>/card.json``, every figure recomputed from the ``.tflite``.

Keys: id, role, sha256, arch, seed, epochs, train_seconds, recipe, val_accuracy, test_accuracy
(both int8, through the TFLite Micro reference interpreter, on CIFAR-10 (JPEG copy)), macc,
params, flash_bytes (weights and biases), ram_bytes (peak activations of the buffer plan).
``train.json`` beside it holds what only training knows (arch, seed, recipe, time).

One key is measured, not recomputed: ``bench_firmware``, the model's firmware counted under
QEMU by ``make -C firmware bench-firmware MODELS=<id> CARDS=1`` (firmware/tools/
bench_firmware.py): whole-inference instructions per MAC with the reference and the optimised
kernels (``ref``, ``opt``), the machine that ran it, the emulator, the compiler and that
command. ``--check`` has neither QEMU nor the ARM toolchain at hand: it checks the record's
form, not its figures. A card without one is valid (a new model is counted after it is
written); ``fleetvote plan`` refuses to estimate its latency. ``write_card`` keeps the record
while the model's bytes are the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from ..command import add_data
from ..errors import ConfigError

ACCURACY_TOLERANCE_SUBSET = 0.0  # a subset check compares the subset's own recorded accuracy
BENCH_KEY = "bench_firmware"
BENCH_MACHINES = ("netduinoplus2", "mps2-an386")  # firmware/tools/bench_firmware.py's two


def _measure(model_path: Path, data: str | None, limit: int | None) -> dict:
    from .analyze import analyze
    from .evaluate import evaluate

    a = analyze(model_path)
    val = evaluate(model_path, split="val", data=data, limit=limit)["accuracy"]
    test = evaluate(model_path, split="test", data=data, limit=limit)["accuracy"]
    return {"macc": a["total"]["macc"], "params": a["total"]["params"],
            "flash_bytes": a["total"]["weight_bytes"], "ram_bytes": a["total"]["peak_activation_bytes"],
            "arena_bytes": a["total"]["arena_bytes"], "val_accuracy": val, "test_accuracy": test}


def write_card(model_dir: Path, data: str | None = None) -> Path:
    model_path = model_dir / "model.tflite"
    train = json.loads((model_dir / "train.json").read_text())
    m = _measure(model_path, data, None)
    # a fixed 500-image subset, recorded so that `make test` can check accuracy cheaply
    m500 = _measure(model_path, data, 500)
    card = {
        "id": train["id"], "role": train["role"],
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "arch": train["arch"], "seed": train["seed"], "epochs": train["epochs"],
        "best_epoch": train.get("best_epoch"), "train_seconds": train["train_seconds"],
        "recipe": train["recipe"], "dataset": "CIFAR-10 (JPEG copy)",
        "val_accuracy": round(m["val_accuracy"], 4), "test_accuracy": round(m["test_accuracy"], 4),
        "test_accuracy_500": round(m500["test_accuracy"], 4),
        "float_val_accuracy": round(train.get("float_val_accuracy", float("nan")), 4),
        "macc": m["macc"], "params": m["params"], "flash_bytes": m["flash_bytes"],
        "ram_bytes": m["ram_bytes"], "arena_bytes": m["arena_bytes"],
    }
    path = model_dir / "card.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        old = {}
    # the same bytes count the same (until the kernels or the compiler change: count again)
    if BENCH_KEY in old and old.get("sha256") == card["sha256"]:
        card[BENCH_KEY] = old[BENCH_KEY]
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def bench_problems(card: dict) -> list[str]:
    """What is wrong with the form of a card's ``bench_firmware`` record (none: absent or sound)."""
    rec = card.get(BENCH_KEY)
    if rec is None:
        return []
    if not isinstance(rec, dict):
        return [f"{card['id']}: {BENCH_KEY} is not a record"]
    ipm = rec.get("instructions_per_mac")
    problems = []
    if not (isinstance(ipm, dict) and all(isinstance(ipm.get(k), (int, float)) and ipm[k] > 0 for k in ("ref", "opt"))):
        problems.append(f"{card['id']}: {BENCH_KEY}.instructions_per_mac needs positive ref and opt figures")
    if rec.get("machine") not in BENCH_MACHINES:
        problems.append(f"{card['id']}: {BENCH_KEY}.machine is not one of {', '.join(BENCH_MACHINES)}")
    if "bench-firmware" not in str(rec.get("command", "")):
        problems.append(f"{card['id']}: {BENCH_KEY}.command does not say how it was counted")
    return problems


def load_cards(zoo: Path) -> list[dict]:
    cards = []
    for p in sorted(zoo.glob("*/card.json")):
        try:
            cards.append(json.loads(p.read_text()))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON ({exc})") from exc
    return cards


def check_cards(zoo: Path, limit: int | None = None, data: str | None = None) -> list[str]:
    """Recompute every card; return one line per mismatch (empty: all cards hold).

    With ``limit`` (500 in `make test`) the accuracy is checked on the same 500-image subset the
    card recorded; without it on the full splits.
    """
    from .analyze import analyze
    from .evaluate import evaluate

    problems = []
    cards = load_cards(zoo)
    if not cards:
        return [f"{zoo}: no */card.json found"]
    for card in cards:
        mdir = zoo / card["id"]
        blob = (mdir / "model.tflite").read_bytes()
        sha = hashlib.sha256(blob).hexdigest()
        if sha != card["sha256"]:
            problems.append(f"{card['id']}: sha256 {sha[:12]} != card {card['sha256'][:12]}")
            continue
        problems += bench_problems(card)
        a = analyze(mdir / "model.tflite")["total"]
        for key, got in (("macc", a["macc"]), ("params", a["params"]), ("flash_bytes", a["weight_bytes"]),
                         ("ram_bytes", a["peak_activation_bytes"]), ("arena_bytes", a["arena_bytes"])):
            if card.get(key) != got:
                problems.append(f"{card['id']}: {key} {got} != card {card.get(key)}")
        key = "test_accuracy_500" if limit == 500 else "test_accuracy"
        if limit not in (None, 500):
            continue  # other subsets have no recorded figure to compare with
        acc = round(evaluate(mdir / "model.tflite", split="test", data=data, limit=limit)["accuracy"], 4)
        if not np.isclose(acc, card[key], atol=1e-9):
            problems.append(f"{card['id']}: {key} {acc} != card {card[key]}")
    return problems


# ---- `fleetvote card` --------------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("card", help="write or check the zoo's model cards",
                       description="Without --check: recompute and write card.json for the given ids. "
                                   "With --check: recompute every card from its .tflite and fail on any "
                                   "mismatch (hash, counts, sizes, accuracy).",
                       epilog="example: fleetvote card --check --limit 500",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("ids", nargs="*")
    c.add_argument("--zoo", default="models/zoo")
    c.add_argument("--check", action="store_true")
    c.add_argument("--limit", type=int, help="check accuracy on the first N test images only")
    add_data(c)
    c.set_defaults(func=_cmd)


def _cmd(a: argparse.Namespace) -> int:
    if a.check:
        problems = check_cards(Path(a.zoo), limit=a.limit, data=a.data)
        for p in problems:
            print(f"MISMATCH {p}")
        print(f"cards: {len(problems)} mismatches")
        return 1 if problems else 0
    for ident in a.ids:
        print(f"wrote {write_card(Path(a.zoo) / ident, data=a.data)}")
    return 0
