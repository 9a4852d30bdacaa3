"""Data augmentation in numpy, so that it is the same on every Keras backend.

All functions take and return uint8 batches (N, 32, 32, 3) and draw from the generator they are
given: an epoch's augmentation is a pure function of (seed, epoch), which makes ``--resume``
reproduce the run it continues.
"""

from __future__ import annotations

import numpy as np


def random_crop(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Pad by ``pad`` pixels (reflect) and take a random 32x32 window per image."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    # gather with broadcast indices: one fancy-index pass instead of a Python loop per image
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(x.shape[0]) < 0.5
    out = x.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def cutout(x: np.ndarray, rng: np.random.Generator, size: int = 8) -> np.ndarray:
    """Zero a size x size square (centre anywhere in the image, clipped at the borders)."""
    n, h, w, _ = x.shape
    cy = rng.integers(0, h, n)
    cx = rng.integers(0, w, n)
    yy = np.arange(h)[None, :, None]
    xx = np.arange(w)[None, None, :]
    mask = (np.abs(yy - cy[:, None, None]) <= size // 2) & (np.abs(xx - cx[:, None, None]) <= size // 2)
    out = x.copy()
    out[mask] = 0
    return out


def alternating_flip(x: np.ndarray, ids: np.ndarray, epoch: int, seed: int) -> np.ndarray:
    """Flip each image on every other epoch, starting at random (airbench's alternating flip,
    KellerJordan/cifar10-airbench): over any two epochs the net sees both views of every image,
    where a coin per epoch leaves a quarter of them one-sided for two epochs in a row.
    ``ids`` are the images' indices in the training split, so the phase belongs to the image,
    not to its place in this epoch's order."""
    phase = np.random.default_rng([seed, 0x5EED]).random(int(ids.max()) + 1) < 0.5
    flip = phase[ids] ^ bool(epoch % 2)
    out = x.copy()
    out[flip] = out[flip, :, ::-1]
    return out


AUGMENTATIONS = {"crop": random_crop, "flip": random_flip, "cutout": cutout}
# augmentations that depend on the image and the epoch, not only on the generator
PER_IMAGE = {"altflip": alternating_flip}


def augment(x: np.ndarray, names: list[str], rng: np.random.Generator,
            ids: np.ndarray | None = None, epoch: int = 0, seed: int = 0) -> np.ndarray:
    """Apply ``names`` in order. ``altflip`` needs ``ids`` (indices into the training split)."""
    for name in names:
        if name in PER_IMAGE:
            if ids is None:
                raise ValueError(f"augmentation {name!r} needs the images' ids")
            x = PER_IMAGE[name](x, ids, epoch, seed)
        elif name in AUGMENTATIONS:
            x = AUGMENTATIONS[name](x, rng)
        else:
            raise ValueError(f"unknown augmentation {name!r}; choose from "
                             f"{', '.join([*AUGMENTATIONS, *PER_IMAGE])}")
    return x
