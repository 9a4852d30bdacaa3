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
