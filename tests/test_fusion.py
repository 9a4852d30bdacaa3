"""Fusion rules on crafted votes, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from fleetvote.fusion import fuse, fuse_batch


def out(*peaks: tuple[int, int]) -> list[int]:
    """An int8 softmax output with byte value v at class c for each (c, v), -128 elsewhere."""
    o = [-128] * 10
    for c, v in peaks:
        o[c] = v
    return o


def test_majority_takes_the_most_votes_and_reports_the_agreeing_share():
    f = fuse([out((3, 100)), out((3, 50)), out((5, 127))], "majority")
    assert f.label == 3 and f.confidence == pytest.approx(2 / 3)
    assert f.scores[3] == pytest.approx(2 / 3) and f.scores[5] == pytest.approx(1 / 3)


def test_majority_tie_goes_to_the_larger_summed_probability():
    # one vote each for 2 and 7; class 7's voter is surer, and the 2-voter gives 7 some mass too
    f = fuse([out((2, 0), (7, -20)), out((7, 120))], "majority")
    assert f.label == 7 and f.confidence == pytest.approx(0.5)


def test_majority_exact_tie_goes_to_the_lowest_class():
    f = fuse([out((4, 0)), out((1, 0))], "majority")
    assert f.label == 1


def test_weighted_vote_lets_a_heavier_member_win():
    outputs = [out((0, 100)), out((0, 100)), out((9, 100))]
    assert fuse(outputs, "weighted", [1, 1, 1]).label == 0
    f = fuse(outputs, "weighted", [0.2, 0.2, 1.0])
    assert f.label == 9 and f.confidence == pytest.approx(1.0 / 1.4)


def test_weighted_vote_rejects_bad_weights():
    with pytest.raises(ValueError):
        fuse([out((0, 1))], "weighted", [-1.0])
    with pytest.raises(ValueError):
        fuse([out((0, 1)), out((1, 1))], "weighted", [0.0, 0.0])


def test_soft_vote_averages_probabilities_and_can_overrule_the_majority():
    # two members barely prefer 1 over 2, one is sure of 2: the mean prefers 2
    a = out((1, -4), (2, -6))
    f = fuse([a, a, out((2, 127))], "soft")
    assert f.label == 2
    assert fuse([a, a, out((2, 127))], "majority").label == 1
    assert f.confidence == pytest.approx(np.mean([(-6 + 128) / 256, (-6 + 128) / 256, 255 / 256]))


def test_unknown_strategy_is_an_error():
    with pytest.raises(ValueError, match="unknown strategy"):
        fuse([out((0, 1))], "median")


@pytest.mark.parametrize("strategy", ["majority", "weighted", "soft"])
def test_batch_fusion_agrees_with_single_fusion(strategy):
    rng = np.random.default_rng(3)
    outputs = rng.integers(-128, 128, (4, 300, 10))
    outputs[:, :50] = outputs[0:1, :50]  # identical members: ties everywhere inside a member
    weights = [0.3, 0.9, 0.5, 0.1]
    batch = fuse_batch(outputs, strategy, weights)
    single = [fuse(outputs[:, i], strategy, weights).label for i in range(outputs.shape[1])]
    assert list(batch) == single
