"""``fleetvote eval``: accuracy, confusion matrix and per-class report of an int8 ``.tflite``,
computed with the TFLite Micro reference interpreter, in the seed's report format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..command import add_data
from ..data import CLASS_NAMES, load_split


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int = 10) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return cm


def per_class(cm: np.ndarray) -> list[dict]:
    rows = []
    for c in range(cm.shape[0]):
        tp = cm[c, c]
        predicted, actual = cm[:, c].sum(), cm[c, :].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / actual if actual else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        rows.append({"class": c, "name": CLASS_NAMES[c], "precision": float(p), "recall": float(r),
                     "f1": float(f1), "support": int(actual)})
    return rows


def predict_oracle(model: Path, images: np.ndarray, progress: bool = True) -> np.ndarray:
    from .oracle import MicroInterpreter

    interp = MicroInterpreter(model)
    if not progress:
        return interp.run(images)
    from tqdm.auto import tqdm

    chunks = []
    with tqdm(total=len(images), desc=f"tflite-micro {model.parent.name or model.name}", unit="img", leave=False, disable=None) as bar:
        for s in range(0, len(images), 100):
            chunks.append(interp.run(images[s : s + 100]))
            bar.update(len(chunks[-1]))
    return np.concatenate(chunks) if chunks else np.zeros((0, 10), np.int8)


def evaluate(model: Path, split: str = "test", limit: int | None = None, data: str | None = None,
             png: str | None = None, outputs: np.ndarray | None = None) -> dict:
    ds = load_split(split, data)
    if limit:
        # splits are sorted by class: a fixed stride keeps every class in a subset
        idx = np.linspace(0, len(ds) - 1, num=min(limit, len(ds))).round().astype(int)
        ds = type(ds)(ds.x[idx], ds.y[idx])
    out = outputs if outputs is not None else predict_oracle(model, ds.x)
    pred = np.argmax(out, axis=1)
    cm = confusion(ds.y, pred)
    rep = {
        "model": str(model), "split": split, "images": int(len(ds)),
        "dataset": "CIFAR-10 (JPEG copy)", "interpreter": "tflite-micro reference kernels",
        "accuracy": float(np.mean(pred == ds.y)),
        "confusion_matrix": cm.tolist(), "per_class": per_class(cm),
    }
    if png:
        plot_confusion(cm, png, title=f"{Path(model).parent.name}: {rep['accuracy']:.4f} on {split}")
        rep["png"] = png
    return rep


def plot_confusion(cm: np.ndarray, path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(10), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(10), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(title)
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_report(rep: dict) -> str:
    """The seed's format: accuracy, confusion matrix, classification report."""
    lines = [f"{rep['model']}  ({rep['images']} {rep['split']} images, {rep['dataset']}, {rep['interpreter']})",
             f"Accuracy: {rep['accuracy']:.4f}", "", "Confusion matrix:"]
    cm = np.asarray(rep["confusion_matrix"])
    width = max(4, len(str(cm.max())) + 1)
    for i, row in enumerate(cm):
        lines.append(("[[" if i == 0 else " [") + " ".join(f"{v:>{width}d}" for v in row) + ("]]" if i == 9 else "]"))
    lines += ["", "Classification report:",
              f"{'':>12}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}", ""]
    for r in rep["per_class"]:
        lines.append(f"{r['class']:>12}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}{r['support']:>10}")
    pc = rep["per_class"]
    n = sum(r["support"] for r in pc)
    macro = [np.mean([r[k] for r in pc]) for k in ("precision", "recall", "f1")]
    weighted = [sum(r[k] * r["support"] for r in pc) / max(n, 1) for k in ("precision", "recall", "f1")]
    lines += ["", f"{'accuracy':>12}{'':>20}{rep['accuracy']:>10.4f}{n:>10}",
              f"{'macro avg':>12}" + "".join(f"{v:>10.4f}" for v in macro) + f"{n:>10}",
              f"{'weighted avg':>12}" + "".join(f"{v:>10.4f}" for v in weighted) + f"{n:>10}"]
    if rep.get("png"):
        lines.append(f"\nconfusion matrix plot: {rep['png']}")
    return "\n".join(lines)


# ---- `fleetvote eval` --------------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("eval", help="accuracy, confusion matrix and per-class report of a .tflite",
                       description="Runs the model through the TFLite Micro reference interpreter "
                                   "(what a board computes) and prints the seed's report format.",
                       epilog="example: fleetvote eval models/zoo/baseline/model.tflite --png cm.png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("model")
    v.add_argument("--split", default="test", choices=("test", "val"))
    v.add_argument("--limit", type=int, help="first N images only")
    v.add_argument("--png", help="write the confusion matrix as a PNG here")
    v.add_argument("--json", action="store_true")
    add_data(v)
    v.set_defaults(func=_cmd)


def _cmd(a: argparse.Namespace) -> int:
    rep = evaluate(Path(a.model), split=a.split, limit=a.limit, data=a.data, png=a.png)
    print(json.dumps(rep, indent=2) if a.json else format_report(rep))
    return 0
