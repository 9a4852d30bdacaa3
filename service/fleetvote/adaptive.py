"""The adaptive fleet's two rules, as pure functions of member bytes: when the vote is decided
before every member has answered (mode ``early``), and when a cascade's first stage may answer
alone (mode ``cascade``). The fleet (``fleet/manager.py``) applies them to one request; the
offline search (``offline/adaptive_eval.py``) to whole splits, batch first as ``fusion`` does.

Modes (``MODES``):

* ``all``: every member votes (the fleet's behaviour before modes existed);
* ``early``: every member is asked; the answer returns as soon as the members still out cannot
  change the label under the request's strategy. The label is always the one ``all`` would give;
  ``scores`` and ``confidence`` are those of the members that answered;
* ``cascade``: stage 1 asks a subset of the members; if its answer passes the stopping rule
  (``Cascade``) it is returned, else stage 2 asks the rest and the full vote decides.

**Early, exactly.** Each member's output is 10 arbitrary int8 bytes, so a member still out can
bring any vote and any probability in 0..255/256 to any class. Among all its possible outputs,
the one that helps class c most against the current leader L is "127 at c, -128 elsewhere": it
votes c (the largest vote, largest weight, largest probability mass c can get from it) and gives
L nothing. Every strategy here is monotone in that sense, so L is decided exactly when it still
wins in the ten *extreme completions*, "every member still out outputs 127 at c", c = 0..9:

* ``majority``, a count bound with its tie-break: c catches up with L only if
  ``votes_c + out >= votes_L``; at equality the larger summed probability wins, then the lower
  index, and c's sum can grow by ``out * 255/256`` while L's cannot;
* ``weighted``, a weight bound: the same with the tallies of the weights, ``tally_c + weight
  still out`` against ``tally_L``, ties (within 1e-12, as ``fusion``) broken as above;
* ``soft``, a probability-mass bound: ``sum_c + out * 255/256`` against ``sum_L``, the lower index
  winning a tie (the mean divides both sides by the same member count).

The completions are evaluated with the strategy's own rule (``fusion.REGISTRY``), so the bound is
computed in the same float order, with the same tie-breaks, as the full vote: no second copy of a
rule to drift from the first. If the ten completions do not agree, two real outputs of the
members still out give different labels, so no rule could have answered yet: the decision is as
early as it can be. A strategy not in ``BOUNDS`` (registered later, not known to be monotone)
waits for every member in ``early``: exact, not early.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .fusion import Fused, fuse, lookup, probabilities

MODES = ("all", "early", "cascade")
NUM_CLASSES = 10

# The strategies for which the extreme completions are the worst case (see the module docstring),
# with the bound each amounts to.
BOUNDS = {
    "majority": "count bound: votes_c + out against votes_L; ties by summed probability, then lower index",
    "weighted": "weight bound: tally_c + weight still out against tally_L; ties as majority",
    "soft": "probability-mass bound: sum_c + out * 255/256 against sum_L; ties to the lower index",
}

# the output of a member still out that helps class c most: 127 at c (probability 255/256), -128
# (probability 0) elsewhere; row c of this matrix
_EXTREME = np.where(np.eye(NUM_CLASSES, dtype=bool), 127, -128).astype(np.int64)


def _weights(strategy: str, weights: Sequence[float] | None, n: int) -> np.ndarray:
    if lookup(strategy).uses_weights and weights is not None:
        return np.asarray(weights, dtype=np.float64)
    return np.ones(n)


def settled_batch(outputs: np.ndarray, known: np.ndarray, strategy: str,
                  weights: Sequence[float] | None = None) -> np.ndarray:
    """For each image, the label the full vote of all members will give whatever the members not
    ``known`` output, or -1 where they can still change it.

    ``outputs``: (members, images, 10) int8 bytes; the rows of members not known are ignored.
    ``known``: (members,) bool, or (members, images) for a different set per image."""
    out = np.asarray(outputs, dtype=np.int64)
    m, n, k = out.shape
    kn = np.broadcast_to(np.asarray(known, dtype=bool).reshape(m, -1), (m, n))
    rule = lookup(strategy).rule
    w = _weights(strategy, weights, m)
    if strategy not in BOUNDS:
        labels = rule(probabilities(out), w)[1]
        return np.where(kn.all(axis=0), labels, -1)
    # (members, images, completion c, classes): members still out replaced by row c of _EXTREME
    comp = np.where(kn[:, :, None, None], out[:, :, None, :], _EXTREME[None, None, :, :])
    labels = rule(probabilities(comp.reshape(m, n * k, k)), w)[1].reshape(n, k)
    agreed = (labels == labels[:, :1]).all(axis=1)
    return np.where(agreed & kn.any(axis=0), labels[:, 0], -1)


def settled_label(outputs: np.ndarray, known: Sequence[bool], strategy: str,
                  weights: Sequence[float] | None = None) -> int | None:
    """One image: outputs (members, 10) -> the decided label, or None while it is open."""
    label = int(settled_batch(np.asarray(outputs)[:, None, :], np.asarray(known, bool), strategy, weights)[0])
    return None if label < 0 else label


def early_answer(outputs: np.ndarray, known: Sequence[bool], strategy: str,
                 weights: Sequence[float] | None = None) -> Fused | None:
    """The answer of the members that have answered, once their vote decides the full vote's
    label; None while it does not. Its label is the full vote's (``settled_label``); its scores and
    confidence are those of the members known. (For these strategies the two labels always agree
    when the vote is settled; the check keeps a strategy for which they would not waiting.)"""
    kn = np.asarray(known, dtype=bool)
    label = settled_label(outputs, kn, strategy, weights)
    if label is None:
        return None
    w = None if weights is None else list(np.asarray(weights, dtype=np.float64)[kn])
    try:
        fused = fuse(np.asarray(outputs)[kn], strategy, w)
    except ValueError:  # weighted, and every member known has weight 0: nothing to fuse yet
        return None
    return fused if fused.label == label else None


# ---- the cascade ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cascade:
    """A cascade's operating point: which members answer first, and when their answer stands.

    Stage 1's answer stands when its confidence, the mean over stage 1's members of their
    probability for the fused label, is at least ``threshold``, and, with ``agree``, when every
    stage-1 member votes that label. The confidence is the same whatever the strategy (for soft
    voting it equals the fused ``confidence``), so a threshold searched under one strategy keeps
    its meaning under another."""

    stage1: tuple[str, ...]  # member ids
    threshold: float
    agree: bool = True


def stops_batch(outputs: np.ndarray, strategy: str, threshold: float, agree: bool,
                weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1 over many images: outputs (stage-1 members, images, 10) -> (stops (images,) bool,
    labels (images,)): whether its answer stands, and its fused label."""
    out = np.asarray(outputs, dtype=np.int64)
    probs = probabilities(out)
    labels = lookup(strategy).rule(probs, _weights(strategy, weights, out.shape[0]))[1]
    picked = np.take_along_axis(probs, labels[None, :, None], axis=2)[:, :, 0]  # (members, images)
    stops = picked.mean(axis=0) >= threshold
    if agree:
        stops &= (np.argmax(probs, axis=2) == labels[None, :]).all(axis=0)
    return stops, labels


def cascade_stops(outputs: np.ndarray, strategy: str, cascade: Cascade,
                  weights: Sequence[float] | None = None) -> bool:
    """One image: stage 1's outputs (members, 10) -> whether its answer stands."""
    stops, _ = stops_batch(np.asarray(outputs)[:, None, :], strategy, cascade.threshold, cascade.agree, weights)
    return bool(stops[0])
