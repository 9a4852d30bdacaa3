"""Vote fusion: many members' int8 softmax outputs -> one label.

Every member's output is the 10 int8 bytes of its softmax; its probabilities are
``(byte + 128) / 256``. For N members, with ``p_i`` the probabilities and ``v_i = argmax p_i`` the
vote of member i (ties inside one member go to the lowest class index, as numpy's argmax):

* **majority**: ``scores[c]`` = share of members voting c (votes / N). The label is the class with
  most votes; a tie between classes goes to the one with the larger summed probability, then the
  lowest index. ``confidence`` = share of members that voted for the label (Clipper's measure).
* **weighted**: as majority, but member i's vote counts ``w_i`` (the ensemble file's weights):
  ``scores[c]`` = sum of the weights of members voting c / sum of all weights. Ties as majority.
  ``confidence`` = ``scores[label]``.
* **soft**: ``scores[c]`` = mean over members of ``p_i[c]``; the label is its argmax (lowest index
  on a tie); ``confidence`` = ``scores[label]``.

All three are pure functions of the members' bytes: the same bytes give the same answer whether
they came from boards or from the numpy engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

STRATEGIES = ("majority", "weighted", "soft")


@dataclass(frozen=True)
class Fused:
    label: int
    confidence: float
    scores: list[float]
    strategy: str


def probabilities(outputs: np.ndarray) -> np.ndarray:
    """int8 softmax bytes (..., 10) -> probabilities (scale 1/256, zero point -128)."""
    return (np.asarray(outputs, dtype=np.float64) + 128.0) / 256.0


def _vote(outputs: np.ndarray, weights: np.ndarray) -> tuple[int, np.ndarray]:
    probs = probabilities(outputs)
    votes = np.argmax(probs, axis=1)
    tally = np.zeros(probs.shape[1])
    np.add.at(tally, votes, weights)
    best = tally.max()
    tied = np.flatnonzero(np.isclose(tally, best, rtol=0, atol=1e-12))
    summed = probs.sum(axis=0)
    # lexsort-free tie break: largest summed probability, then the lowest index
    label = int(tied[np.argmax(summed[tied])])
    return label, tally


def fuse(outputs: Sequence[Sequence[int]] | np.ndarray, strategy: str,
         weights: Sequence[float] | None = None) -> Fused:
    out = np.asarray(outputs, dtype=np.int64)
    if out.ndim != 2 or out.shape[0] == 0:
        raise ValueError("fuse needs at least one member output of 10 bytes")
    n = out.shape[0]
    if strategy == "majority":
        label, tally = _vote(out, np.ones(n))
        scores = tally / n
        return Fused(label, float(scores[label]), scores.tolist(), strategy)
    if strategy == "weighted":
        w = np.asarray(weights if weights is not None else np.ones(n), dtype=np.float64)
        if w.shape != (n,) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weighted voting needs one non-negative weight per member, not all zero")
        label, tally = _vote(out, w)
        scores = tally / w.sum()
        return Fused(label, float(scores[label]), scores.tolist(), strategy)
    if strategy == "soft":
        scores = probabilities(out).mean(axis=0)
        label = int(np.argmax(scores))
        return Fused(label, float(scores[label]), scores.tolist(), strategy)
    raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")


def fuse_batch(outputs: np.ndarray, strategy: str, weights: Sequence[float] | None = None) -> np.ndarray:
    """Labels for many images at once: outputs (members, images, 10) -> labels (images,).
    The same rules as ``fuse``, vectorised, for evaluation over whole splits."""
    out = np.asarray(outputs, dtype=np.float64)
    m, n, k = out.shape
    probs = (out + 128.0) / 256.0
    if strategy == "soft":
        return np.argmax(probs.mean(axis=0), axis=1)
    w = np.ones(m) if strategy == "majority" or weights is None else np.asarray(weights, np.float64)
    votes = np.argmax(probs, axis=2)  # (m, n)
    tally = np.zeros((n, k))
    for i in range(m):
        tally[np.arange(n), votes[i]] += w[i]
    best = tally.max(axis=1, keepdims=True)
    tied = np.isclose(tally, best, rtol=0, atol=1e-12)
    summed = np.where(tied, probs.sum(axis=0), -np.inf)
    return np.argmax(summed, axis=1)
