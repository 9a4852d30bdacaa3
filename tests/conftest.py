"""Shared fixtures. A test that needs a tool or the dataset skips on a newcomer's machine but
fails under CI=true, where .ci/run has installed everything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fleetvote.data import under_ci

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "zoo"
IN_CI = under_ci()


def need(condition: bool, why: str) -> None:
    """Skip when `condition` is false, except in CI, where a missing prerequisite is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed")
    return path  # type: ignore[return-value]


def need_module(name: str):
    try:
        return __import__(name)
    except ImportError:
        need(False, f"python module {name} is not installed (pip install -e '.[train,test]')")


@pytest.fixture(scope="session")
def cifar_path() -> str:
    p = os.environ.get("CIFAR10_PATH")
    need(bool(p) and Path(p).exists(), "CIFAR10_PATH does not name the CIFAR-10 archive")
    return p  # type: ignore[return-value]


@pytest.fixture(scope="session")
def test_images(cifar_path):
    from fleetvote.data import load_split

    return load_split("test", cifar_path)


def zoo_models() -> list[Path]:
    return sorted(p.parent for p in ZOO.glob("*/model.tflite"))


def zoo_model(fused: bool, prefer: str | None = None, role: str | None = None) -> str:
    """A zoo model with (``fused``) or without a (convolution, depthwise) pair that fuses, of card
    ``role`` ("member": one that fits a nucleo-f411re) when given; ``prefer`` when it is one, else
    the first by id. Skips when the zoo has none: tests name models by what they need, not by id,
    so that retiring a member (``fleetvote retire``) leaves them running."""
    import json

    from fleetvote.offline.dsp_buffers import model_limits

    ids = [m.name for m in zoo_models()
           if role is None or json.loads((m / "card.json").read_text()).get("role") == role]
    ids = ([prefer] if prefer in ids else []) + ids
    found = next((m for m in ids if (model_limits(ZOO / m / "model.tflite").fused_pairs > 0) == fused), None)
    if found is None:
        pytest.skip(f"the zoo has no {role or 'model'} {'with' if fused else 'without'} a fused depthwise pair")
    return found
