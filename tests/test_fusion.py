"""Fusion rules on crafted votes, ties included; one image and batches agree; the registry takes a
new strategy (the fixture ``fourth_strategy``, which the other test modules import)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetvote import fusion
from fleetvote.fusion import STRATEGIES, fuse, fuse_batch


def median(probs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fourth rule for the tests: per class the median of the members' probabilities."""
    scores = np.median(probs, axis=0)
    return scores, np.argmax(scores, axis=1)


@pytest.fixture
def fourth_strategy(monkeypatch) -> str:
    """"median" registered after the three, as a new rule in fusion.py would be; gone after the test."""
    monkeypatch.setitem(fusion.REGISTRY, "median", fusion.Strategy("median", median, short="med."))
    return "median"


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


def test_weighted_tallies_that_differ_by_rounding_only_are_a_tie():
    # 0.1 + 0.2 != 0.3 in floats; the tie break (summed probability) decides, and class 5's voter is surer
    f = fuse([out((2, -100)), out((2, -100)), out((5, 127))], "weighted", [0.1, 0.2, 0.3])
    assert f.label == 5 and f.confidence == pytest.approx(0.5)


def test_soft_exact_tie_goes_to_the_lowest_class():
    assert fuse([out((6, 50), (3, 50))], "soft").label == 3


def test_unknown_strategy_is_an_error():
    with pytest.raises(ValueError, match="unknown strategy 'median'; use one of majority, weighted, soft"):
        fuse([out((0, 1))], "median")
    with pytest.raises(ValueError, match="unknown strategy"):
        fuse_batch(np.zeros((1, 2, 10)), "median")


def batch_agrees_with_single(outputs: np.ndarray, weights) -> None:
    for strategy in STRATEGIES:
        batch = fuse_batch(outputs, strategy, weights)
        single = [fuse(outputs[:, i], strategy, weights).label for i in range(outputs.shape[1])]
        assert list(batch) == single, strategy


def test_batch_fusion_agrees_with_single_fusion():
    rng = np.random.default_rng(3)
    outputs = rng.integers(-128, 128, (4, 300, 10))
    outputs[:, :50] = outputs[0:1, :50]  # identical members: ties everywhere inside a member
    batch_agrees_with_single(outputs, [0.3, 0.9, 0.5, 0.1])


# a few byte values, so that ties inside a member, between votes and between sums are common
BYTES = st.sampled_from([-128, -1, 0, 1, 127])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5).flatmap(lambda m: st.tuples(
    st.lists(st.lists(st.lists(BYTES, min_size=10, max_size=10), min_size=m, max_size=m), min_size=1, max_size=8),
    st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0]), min_size=m, max_size=m).filter(lambda w: sum(w) > 0))))
def test_batch_fusion_agrees_with_single_fusion_ties_included(case):
    images, weights = case  # images x members x 10
    batch_agrees_with_single(np.array(images).transpose(1, 0, 2), weights)


def test_a_registered_strategy_is_fused_singly_and_in_batches(fourth_strategy):
    assert list(STRATEGIES) == ["majority", "weighted", "soft", "median"]
    # two members prefer 1 a little, one is sure of 7: the median follows the two
    f = fuse([out((1, 10), (7, 0)), out((1, 10), (7, 0)), out((7, 127))], "median", [5.0, -1.0, 0.0])
    assert f.strategy == "median" and f.label == 1  # weights are neither used nor checked
    assert f.confidence == f.scores[1] == pytest.approx(138 / 256)
    rng = np.random.default_rng(4)
    outputs = rng.integers(-128, 128, (3, 200, 10))
    outputs[:, :40] = outputs[0:1, :40]
    batch_agrees_with_single(outputs, [1.0, 2.0, 3.0])
