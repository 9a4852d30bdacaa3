"""The CIFAR-10 loader on small fixtures of both archive formats, and on broken archives."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from fleetvote import data
from fleetvote.errors import DataError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETVOTE_CACHE", str(tmp_path / "cache"))


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _jpeg_archive(path, per_class=3, rng=None):
    rng = rng or np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for cls in data.CLASS_NAMES:
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
                    _add(tar, f"{split}/{cls}/{i:04d}.jpg", buf.getvalue())
    return path


def _python_archive(path, n=20):
    rng = np.random.default_rng(1)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            y = list(rng.integers(0, 10, n))
            batches[name] = (x, y)
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps({b"data": x, b"labels": y}))
    return path, batches


def test_jpeg_archive_decodes_in_path_order_with_class_labels(tmp_path):
    arr = data.load_arrays(_jpeg_archive(tmp_path / "c.tar.gz"))
    x, y = arr["train"]
    assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8
    assert list(y) == [c for c in range(10) for _ in range(3)]
    assert arr["test"][0].shape == (30, 32, 32, 3)


def test_python_archive_is_converted_from_planar_to_hwc(tmp_path):
    path, batches = _python_archive(tmp_path / "cifar-10-python.tar.gz")
    arr = data.load_arrays(path)
    x, y = arr["train"]
    assert x.shape == (100, 32, 32, 3)
    first = batches["data_batch_1"][0][0]
    # pixel (row 0, col 1) of the first image: R at 1, G at 1024 + 1, B at 2048 + 1
    assert tuple(x[0, 0, 1]) == (first[1], first[1025], first[2049])
    assert list(arr["test"][1]) == batches["test_batch"][1]


def test_decoded_arrays_are_cached_and_reused(tmp_path):
    path = _jpeg_archive(tmp_path / "c.tar.gz")
    data.load_arrays(path)
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    again = data.load_arrays(path)
    assert cached[0].stat().st_mtime_ns == mtime and again["train"][0].shape[0] == 30


def test_truncated_archive_gives_a_clear_error(tmp_path):
    good = _jpeg_archive(tmp_path / "c.tar.gz").read_bytes()
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="not a readable tar archive"):
        data.load_arrays(bad)


def test_missing_archive_names_the_flag_and_variable(tmp_path):
    with pytest.raises(DataError, match="CIFAR10_PATH"):
        data.load_arrays(tmp_path / "nope.tar.gz")


def test_archive_with_unknown_class_folder_is_rejected(tmp_path):
    path = tmp_path / "odd.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        buf = io.BytesIO()
        Image.new("RGB", (32, 32)).save(buf, "JPEG")
        _add(tar, "train/unicorn/0000.jpg", buf.getvalue())
    with pytest.raises(DataError, match="unknown class folder"):
        data.load_arrays(path)


def test_validation_split_is_fixed_stratified_and_disjoint_from_train():
    y = np.repeat(np.arange(10), 5000)
    v1, v2 = data.val_indices(y), data.val_indices(y)
    assert np.array_equal(v1, v2)
    assert len(v1) == 5000 and np.all(np.bincount(y[v1]) == 500)


def test_real_archive_has_the_documented_splits(cifar_path):
    tr, va, te = (data.load_split(s, cifar_path) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (45000, 5000, 10000)
    assert abs(float(tr.x.mean()) - 120.7) < 0.1 and abs(float(te.x.mean()) - 121.5) < 0.1


def test_ci_refuses_to_download_when_no_archive_is_named(monkeypatch):
    """Under CI a missing CIFAR10_PATH is an error that names the variable, never Keras' download."""
    monkeypatch.delenv("CIFAR10_PATH", raising=False)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(data, "_keras_download", lambda: pytest.fail("CI downloaded the data set"))
    with pytest.raises(DataError, match="CIFAR10_PATH"):
        data.load_arrays()
