"""Vote fusion: many members' int8 softmax outputs -> one label; the registry of fusion strategies.

Every member's output is the 10 int8 bytes of its softmax; its probabilities are
``(byte + 128) / 256``. Member i's vote ``v_i`` is ``argmax p_i`` (ties inside one member go to the
lowest class index, as numpy's argmax). Every strategy yields ``scores`` (one per class), a label,
and ``confidence = scores[label]``; each rule's docstring below says how.

``REGISTRY`` is the only list of strategies: the API's enum, the dashboard's menu, the bench,
ensemble-eval and the results tables read it. Adding a strategy is adding a rule here with
``@register``. Its order matters: reports list strategies in it, simplest first, and where two
score the same (ensemble-eval's choice on validation) the one registered last wins.

Each rule is written once, over a batch of images: ``fuse`` runs it on a batch of one, ``fuse_batch``
on whole splits. All are pure functions of the members' bytes: the same bytes give the same answer
whether they came from boards or from the numpy engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# probs (members, images, classes), one weight per member -> scores (images, classes), labels (images,)
Rule = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Strategy:
    name: str
    rule: Rule
    short: str  # column heading in the results tables ("maj.")
    uses_weights: bool = False  # fuse validates the member weights only for such a rule


REGISTRY: dict[str, Strategy] = {}
# The registered names, in order. A live view of the registry rather than a copy: a strategy
# registered after import (as the tests do) is seen by every module that imported this name.
STRATEGIES = REGISTRY.keys()


def register(name: str, short: str, uses_weights: bool = False) -> Callable[[Rule], Rule]:
    def add(rule: Rule) -> Rule:
        if name in REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        REGISTRY[name] = Strategy(name, rule, short, uses_weights)
        return rule

    return add


def lookup(name: str) -> Strategy:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; use one of {', '.join(REGISTRY)}") from None


@dataclass(frozen=True)
class Fused:
    label: int
    confidence: float
    scores: list[float]
    strategy: str


def probabilities(outputs: np.ndarray) -> np.ndarray:
    """int8 softmax bytes (..., 10) -> probabilities (scale 1/256, zero point -128)."""
    return (np.asarray(outputs, dtype=np.float64) + 128.0) / 256.0


def _vote(probs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tally, labels): ``tally[c]`` sums the weights of the members voting c; the label has the
    largest tally, a tie going to the larger summed probability, then the lowest index."""
    m, n, k = probs.shape
    votes = np.argmax(probs, axis=2)
    tally = np.zeros((n, k))
    # member by member: each tally is the same float sum in the same order for any batch size
    for i in range(m):
        tally[np.arange(n), votes[i]] += weights[i]
    # weights are floats: tallies that differ by rounding only (1e-12) are a tie
    tied = np.isclose(tally, tally.max(axis=1, keepdims=True), rtol=0, atol=1e-12)
    # sums of k/256 are exact, so the tie break is exact; argmax takes the lowest index of equals
    labels = np.argmax(np.where(tied, probs.sum(axis=0), -np.inf), axis=1)
    return tally, labels


@register("majority", short="maj.")
def majority(probs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores[c]`` = share of members voting c (votes / N), so ``confidence`` is the share of
    members that voted for the label (Clipper's measure). Ties as ``_vote``. Weights are ignored."""
    tally, labels = _vote(probs, np.ones(probs.shape[0]))
    return tally / probs.shape[0], labels


@register("weighted", short="wtd.", uses_weights=True)
def weighted(probs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As majority, but member i's vote counts ``w_i`` (the ensemble file's weights): ``scores[c]`` =
    sum of the weights of members voting c / sum of all weights."""
    tally, labels = _vote(probs, weights)
    total = weights.sum()
    # fuse refuses all-zero weights; fuse_batch, which wants only labels, lets them through (every
    # class tied at 0, the tie break decides), so the scores stay 0 instead of 0/0
    return (tally / total if total > 0 else tally), labels


@register("soft", short="soft")
def soft(probs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores[c]`` = mean over members of ``p_i[c]``; the label is its argmax (lowest index on a
    tie). Weights are ignored."""
    scores = probs.mean(axis=0)
    return scores, np.argmax(scores, axis=1)


def fuse(outputs: Sequence[Sequence[int]] | np.ndarray, strategy: str,
         weights: Sequence[float] | None = None) -> Fused:
    """One image: outputs (members, 10) -> the fused answer. Weights default to 1 each."""
    out = np.asarray(outputs, dtype=np.int64)
    if out.ndim != 2 or out.shape[0] == 0:
        raise ValueError("fuse needs at least one member output of 10 bytes")
    s = lookup(strategy)
    n = out.shape[0]
    w = np.ones(n)
    if s.uses_weights and weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"{s.name} voting needs one non-negative weight per member, not all zero")
    scores, labels = s.rule(probabilities(out[:, None, :]), w)
    label = int(labels[0])
    return Fused(label, float(scores[0, label]), scores[0].tolist(), s.name)


def fuse_batch(outputs: np.ndarray, strategy: str, weights: Sequence[float] | None = None) -> np.ndarray:
    """Labels for many images at once: outputs (members, images, 10) -> labels (images,), by the
    same rule as ``fuse``. Weights are not checked (evaluation scores every strategy, also those the
    ensemble file's weights were not meant for)."""
    s = lookup(strategy)
    probs = probabilities(outputs)
    w = np.asarray(weights, np.float64) if s.uses_weights and weights is not None else np.ones(probs.shape[0])
    return s.rule(probs, w)[1]
