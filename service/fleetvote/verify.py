"""``fleetvote verify-exact``: every zoo model on the test images through the numpy engine and
through the tflite-micro reference interpreter; counts the outputs (10-byte rows) that differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import load_split
from .engine import Engine
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
