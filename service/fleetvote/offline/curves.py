"""``fleetvote curves``: validation accuracy against epoch for the zoo's models, one picture.

Reads each model's ``train_log.jsonl`` (copied into the zoo at export: one line per epoch with
the float validation accuracy of the weights validated that epoch, the moving average's with
``--ema``). Models trained with the shared recipe of ``models/recipes.json`` (``"recipe": true``)
are drawn with full lines, older ones (warm restarts, short schedules) dashed, so the comparison's
models stand out; the reference and the baseline are labelled by role.

For each curve the table gives the best epoch, the last epoch and the slope of the last 10
epochs in points per 10 epochs: a curve still rising at its end says the schedule was too short.

    fleetvote curves --png runs/results/curves.png [--json runs/results/curves.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..settings import ROOT
from .cards import load_cards

ZOO = ROOT / "models" / "zoo"
RECIPES = ROOT / "models" / "recipes.json"
TAIL = 10  # epochs over which the end slope is fitted


def read_log(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the training log ({exc})") from exc


def end_slope(val: list[float], tail: int = TAIL) -> float | None:
    """Least-squares slope of the last `tail` epochs' validation accuracy, in points per 10
    epochs; None for a run shorter than that."""
    if len(val) < tail:
        return None
    y = 100 * np.asarray(val[-tail:], dtype=float)
    return float(np.polyfit(np.arange(tail), y, 1)[0] * 10)


def collect(zoo: Path = ZOO, recipes: Path = RECIPES) -> list[dict]:
    try:
        book = json.loads(recipes.read_text())
    except (OSError, ValueError):
        book = {}
    rows = []
    for card in load_cards(zoo):
        log_path = zoo / card["id"] / "train_log.jsonl"
        if not log_path.exists():
            continue
        log = read_log(log_path)
        val = [e["val_accuracy"] for e in log]
        if not val:
            continue
        best = int(np.argmax(val))
        rows.append({
            "id": card["id"], "role": card.get("role"),
            "shared_recipe": bool(book.get(card["id"], {}).get("recipe")),
            "epochs": len(val), "val": val,
            "train": [e.get("train_accuracy") for e in log],
            "best_epoch": best + 1, "best_val": val[best], "last_val": val[-1],
            "end_slope_pts_per_10": end_slope(val),
        })
    return rows


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r in sorted(rows, key=lambda r: (not r["shared_recipe"], r["id"])):
        label = r["id"] + (f" ({r['role']})" if r["role"] in ("baseline", "reference") else "")
        ax.plot(range(1, r["epochs"] + 1), [100 * v for v in r["val"]],
                linestyle="-" if r["shared_recipe"] else "--",
                linewidth=2.0 if r["role"] in ("baseline", "reference") else 1.2, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy, float (%)")
    ax.set_title("CIFAR-10 (JPEG copy), 5,000 validation images; full lines: the shared recipe")
    lo = min((min(r["val"][len(r["val"]) // 4:]) for r in rows), default=0.5)
    ax.set_ylim(max(0, 100 * lo - 2), None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    lines = ["| model | role | recipe | epochs | best val (epoch) | last val | slope of the last 10, pts / 10 epochs |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (not r["shared_recipe"], r["id"])):
        slope = r["end_slope_pts_per_10"]
        lines.append(f"| {r['id']} | {r['role']} | {'shared' if r['shared_recipe'] else 'older'} | {r['epochs']} | "
                     f"{100 * r['best_val']:.2f} % ({r['best_epoch']}) | {100 * r['last_val']:.2f} % | "
                     f"{'-' if slope is None else f'{slope:+.2f}'} |")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("curves", help="validation accuracy against epoch for every zoo model, in one plot",
                       description=__doc__.split("\n\n    fleetvote curves")[0],
                       epilog="example: fleetvote curves --png docs/curves.png --json runs/results/curves.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--zoo", default=str(ZOO))
    s.add_argument("--png", help="write the plot here (needs matplotlib, in the train extra)")
    s.add_argument("--json", help="write the curves and their end slopes here")
    s.set_defaults(func=_cmd)


def _cmd(a: argparse.Namespace) -> int:
    rows = collect(Path(a.zoo))
    if not rows:
        print(f"no training logs under {a.zoo}", file=sys.stderr)
        return 1
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    if a.png:
        plot(rows, Path(a.png))
        print(f"wrote {a.png}")
    return 0
