"""CIFAR-10 loading: JPEG archive, official pickled release, or Keras' download.

Three sources, tried in this order:

1. a path given by flag or ``CIFAR10_PATH``: either the JPEG archive (``train/<class>/NNNN.jpg``,
   ``test/<class>/NNNN.jpg``, as in ``cifar10-jpeg.tar.gz``) or the official
   ``cifar-10-python.tar.gz`` (pickled ``data_batch_*`` / ``test_batch``), told apart by content;
2. Keras' own download (``keras.datasets.cifar10``) when no path is given and the network allows.

Decoded images are cached as uint8 arrays in ``$FLEETVOTE_CACHE`` (default
``~/.cache/fleetvote``), keyed by the archive's sha256, so decoding (10-20 s) happens once.

Splits: ``train`` (45,000), ``val`` (5,000, 500 per class, fixed by ``VAL_SEED``) and ``test``
(10,000). Models, weights and thresholds are chosen on ``val``; ``test`` is for final reports.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
VAL_PER_CLASS = 500
VAL_SEED = 20261129  # fixed forever: changing it would leak test-time choices into old cards
CACHE_VERSION = 1


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (N, 32, 32, 3) uint8, HWC RGB
    y: np.ndarray  # (N,) uint8 class index

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.x[:n], self.y[:n])


def cache_dir() -> Path:
    return Path(os.environ.get("FLEETVOTE_CACHE", Path.home() / ".cache" / "fleetvote"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _decode_jpeg_archive(tar: tarfile.TarFile) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from PIL import Image

    members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
    out: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    for m in members:
        parts = Path(m.name).parts
        # tolerate one leading folder (archives made with `tar czf x.tgz cifar10/`)
        while parts and parts[0] not in out:
            parts = parts[1:]
        if len(parts) != 3 or not parts[2].lower().endswith((".jpg", ".jpeg", ".png")):
            continue
        split, cls, _ = parts
        if cls not in CLASS_NAMES:
            raise DataError(f"{m.name}: unknown class folder {cls!r}; expected one of {CLASS_NAMES}")
        f = tar.extractfile(m)
        assert f is not None  # isfile() above
        try:
            img = Image.open(io.BytesIO(f.read())).convert("RGB")
        except Exception as exc:  # Pillow raises several unrelated types
            raise DataError(f"{m.name}: not a decodable image ({exc})") from exc
        if img.size != (32, 32):
            raise DataError(f"{m.name}: image is {img.size[0]}x{img.size[1]}, expected 32x32")
        out[split][0].append(np.asarray(img, dtype=np.uint8))
        out[split][1].append(CLASS_NAMES.index(cls))
    result = {}
    for split, (xs, ys) in out.items():
        if not xs:
            raise DataError(f"the archive has no {split}/<class>/*.jpg images")
        result[split] = (np.stack(xs), np.asarray(ys, dtype=np.uint8))
    return result


def _decode_python_archive(tar: tarfile.TarFile) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    batches: dict[str, dict] = {}
    for m in tar.getmembers():
        name = Path(m.name).name
        if m.isfile() and (name.startswith("data_batch_") or name == "test_batch"):
            f = tar.extractfile(m)
            assert f is not None
            try:
                batches[name] = pickle.load(f, encoding="bytes")
            except Exception as exc:
                raise DataError(f"{m.name}: unreadable pickled batch ({exc})") from exc

    def stack(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [n for n in names if n not in batches]
        if missing:
            raise DataError(f"the archive lacks {', '.join(missing)}")
        # the official layout: 3072 bytes per row, channel-planar (1024 R, 1024 G, 1024 B)
        x = np.concatenate([np.asarray(batches[n][b"data"], dtype=np.uint8) for n in names])
        y = np.concatenate([np.asarray(batches[n][b"labels"], dtype=np.uint8) for n in names])
        return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y

    return {
        "train": stack([f"data_batch_{i}" for i in range(1, 6)]),
        "test": stack(["test_batch"]),
    }


def decode_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode either archive format into {"train": (x, y), "test": (x, y)}."""
    if not path.exists():
        raise DataError(
            f"{path}: no such file. Point --data or CIFAR10_PATH at cifar10-jpeg.tar.gz "
            "or cifar-10-python.tar.gz"
        )
    try:
        with tarfile.open(path, "r:*") as tar:
            names = tar.getnames()
            if any(Path(n).name == "test_batch" for n in names):
                return _decode_python_archive(tar)
            return _decode_jpeg_archive(tar)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable tar archive ({exc}); is the download complete?") from exc


def _keras_download() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        from keras.datasets import cifar10  # type: ignore[import-not-found]
    except ImportError as exc:
        raise DataError(
            "no CIFAR-10 archive given (--data or CIFAR10_PATH) and Keras is not installed "
            "to download it"
        ) from exc
    try:
        (xtr, ytr), (xte, yte) = cifar10.load_data()
    except Exception as exc:
        raise DataError(
            f"no CIFAR-10 archive given (--data or CIFAR10_PATH) and Keras' download failed ({exc})"
        ) from exc
    return {"train": (xtr, ytr.reshape(-1).astype(np.uint8)), "test": (xte, yte.reshape(-1).astype(np.uint8))}


def under_ci() -> bool:
    """CI=true (or 1, yes): a missing data set or tool is a failure there, never a skip or a
    download (the tests' conftest asks the same)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def load_arrays(path: str | os.PathLike | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw train/test arrays, through the on-disk cache."""
    path = path or os.environ.get("CIFAR10_PATH")
    if not path:
        if under_ci():
            # CI measures on the named copy; a download would hide a missing CIFAR10_PATH
            raise DataError("CI=true and no CIFAR-10 archive given: set CIFAR10_PATH "
                            "(CI never downloads the data set)")
        return _keras_download()
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{p}: no such file. Point --data or CIFAR10_PATH at cifar10-jpeg.tar.gz "
            "or cifar-10-python.tar.gz"
        )
    cache = cache_dir() / f"cifar10-v{CACHE_VERSION}-{_sha256(p)[:16]}.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                return {"train": (z["xtr"], z["ytr"]), "test": (z["xte"], z["yte"])}
        except Exception:
            cache.unlink(missing_ok=True)  # a torn cache is rebuilt, never trusted
    arrays = decode_archive(p)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, xtr=arrays["train"][0], ytr=arrays["train"][1],
             xte=arrays["test"][0], yte=arrays["test"][1])
    tmp.replace(cache)  # atomic: concurrent loaders never read half a file
    return arrays


def val_indices(y_train: np.ndarray, per_class: int = VAL_PER_CLASS) -> np.ndarray:
    """Indices of the fixed, stratified validation split (per_class images of each class)."""
    rng = np.random.default_rng(VAL_SEED)
    picks = []
    for c in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(y_train == c)
        picks.append(rng.choice(idx, size=min(per_class, idx.size), replace=False))
    return np.sort(np.concatenate(picks))


def load_split(name: str, path: str | os.PathLike | None = None) -> Split:
    """One of "train" (train minus val), "val", "trainval" or "test"."""
    arrays = load_arrays(path)
    if name == "test":
        return Split(*arrays["test"])
    x, y = arrays["train"]
    if name == "trainval":
        return Split(x, y)
    v = val_indices(y)
    if name == "val":
        return Split(x[v], y[v])
    if name == "train":
        mask = np.ones(len(y), dtype=bool)
        mask[v] = False
        return Split(x[mask], y[mask])
    raise ValueError(f"unknown split {name!r}: use train, val, trainval or test")
