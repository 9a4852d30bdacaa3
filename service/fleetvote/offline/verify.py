"""``fleetvote verify-exact``: every zoo model on the test images through the numpy engine and
through the tflite-micro reference interpreter; counts the outputs (10-byte rows) that differ."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..command import add_data
from ..data import load_split
from ..engine import Engine
from .evaluate import predict_oracle


def verify_exact(zoo: Path, limit: int | None = None, data: str | None = None) -> tuple[int, int, list[str]]:
    ds = load_split("test", data)
    x = ds.x
    if limit:
        x = x[np.linspace(0, len(x) - 1, num=min(limit, len(x))).round().astype(int)]
    differing, total, lines = 0, 0, []
    for model in sorted(zoo.glob("*/model.tflite")):
        engine = Engine.from_file(model)
        got = engine.run(x)
        want = predict_oracle(model, x)
        d = int((got != want).any(axis=1).sum())
        differing += d
        total += len(x)
        lines.append(f"{model.parent.name:<20} {d} differing of {len(x)} outputs")
    return differing, total, lines


# ---- `fleetvote verify-exact` ------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("verify-exact", help="numpy engine vs tflite-micro on every zoo model",
                       description="Runs every zoo model on the test images through the numpy engine and "
                                   "the tflite-micro reference interpreter and counts differing outputs. "
                                   "Ends with 'bit-exact: D differing of N outputs'; exit status 1 if D > 0.",
                       epilog="example: fleetvote verify-exact --limit 500",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("--zoo", default="models/zoo")
    x.add_argument("--limit", type=int, help="an evenly spread subset of N test images")
    add_data(x)
    x.set_defaults(func=_cmd)


def _cmd(a: argparse.Namespace) -> int:
    d, n, lines = verify_exact(Path(a.zoo), limit=a.limit, data=a.data)
    for line in lines:
        print(line)
    print(f"bit-exact: {d} differing of {n} outputs")
    return 1 if d or not n else 0
