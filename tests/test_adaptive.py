"""The adaptive fleet's rules as pure functions: the early decision (exact: the early label is the
full vote's whatever the members still out say, and it comes as soon as no output of theirs can
change it) and the cascade's stopping rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fleetvote.adaptive import (BOUNDS, MODES, Cascade, cascade_stops, early_answer, settled_batch,
                                settled_label, stops_batch)
from fleetvote.fusion import STRATEGIES, fuse, fuse_batch


def one_hot(c: int, high: int = 127) -> list[int]:
    return [high if i == c else -128 for i in range(10)]


def test_every_registered_strategy_has_an_exact_bound_and_the_modes_are_pinned():
    assert set(BOUNDS) == set(STRATEGIES) == {"majority", "weighted", "soft"}
    assert MODES == ("all", "early", "cascade")


# ---- the bounds, case by case ----------------------------------------------------------------------

def test_majority_three_of_five_agreeing_decide_the_label():
    out = np.array([one_hot(2, 0)] * 3 + [one_hot(0)] * 2)
    assert settled_label(out, [True, True, True, False, False], "majority") == 2
    assert settled_label(out, [True, True, False, False, False], "majority") is None


def test_majority_tie_break_decides_two_of_four_only_for_the_lower_index():
    # two known members vote L with all their mass; two still out can tie the count for class c,
    # and at most tie the summed probability (2 x 255/256 each side): the lower index wins the tie
    for label, decided in ((0, True), (1, False)):
        out = np.array([one_hot(label)] * 2 + [one_hot(9)] * 2)
        got = settled_label(out, [True, True, False, False], "majority")
        assert got == (label if decided else None), label
    # one byte less of mass on L and even class 0's tie is open
    out = np.array([one_hot(0, 126), one_hot(0)] + [one_hot(9)] * 2)
    assert settled_label(out, [True, True, False, False], "majority") is None


def test_weighted_one_heavy_member_decides_alone_where_majority_waits():
    out = np.array([one_hot(5, 40), one_hot(1), one_hot(2), one_hot(3)])
    known = [True, False, False, False]
    assert settled_label(out, known, "weighted", [10.0, 1.0, 1.0, 1.0]) == 5
    assert settled_label(out, known, "weighted", [3.0, 1.0, 1.0, 1.0]) is None  # 3 = 3: the tie is open
    assert settled_label(out, known, "majority", [10.0, 1.0, 1.0, 1.0]) is None


def test_soft_needs_a_probability_mass_lead_larger_than_what_is_still_out():
    # 3 known members put 255 units each on class 4, one member out can add at most 255 to another
    out = np.array([one_hot(4)] * 3 + [one_hot(0)])
    assert settled_label(out, [True, True, True, False], "soft") == 4
    # spread the known mass: class 4 leads class 7 by less than 255 units
    spread = [-128] * 10
    spread[4], spread[7] = 100, 90
    out = np.array([spread, spread, one_hot(4, 0), one_hot(0)])
    assert settled_label(out, [True, True, True, False], "soft") is None


def test_no_member_known_is_never_decided_and_all_known_is_the_full_vote():
    rng = np.random.default_rng(1)
    out = rng.integers(-128, 128, (5, 10))
    for s in STRATEGIES:
        assert settled_label(out, [False] * 5, s) is None
        assert settled_label(out, [True] * 5, s, [1, 2, 3, 4, 5]) == fuse(out, s, [1, 2, 3, 4, 5]).label


def test_an_early_answer_has_the_full_label_and_the_scores_of_the_members_known():
    out = np.array([one_hot(2, 100), one_hot(2, 90), one_hot(2, 80), one_hot(0), one_hot(1)])
    known = [True, True, True, False, False]
    a = early_answer(out, known, "soft")
    assert a is not None and a.label == fuse(out, "soft").label == 2
    assert a.scores == fuse(out[:3], "soft").scores
    assert early_answer(out, [True, False, False, False, False], "soft") is None


def test_an_early_weighted_answer_waits_while_every_member_known_weighs_nothing():
    out = np.array([one_hot(3), one_hot(3), one_hot(3)])
    assert early_answer(out, [True, False, False], "weighted", [0.0, 1e-15, 1e-15]) is None


# ---- the property: the early label is always the full vote's, and as early as it can be --------

@st.composite
def votes(draw):
    n = draw(st.integers(1, 7))
    # outputs: arbitrary int8 bytes, or a few levels only (ties between members and classes)
    levels = draw(st.sampled_from([None, [-128, 0, 127], [-128, 127]]))
    if levels is None:
        cell = st.integers(-128, 127)
    else:
        cell = st.sampled_from(levels)
    out = np.array(draw(st.lists(st.lists(cell, min_size=10, max_size=10), min_size=n, max_size=n)))
    weight = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 3.8584]), st.floats(0, 10, allow_nan=False))
    weights = draw(st.lists(weight, min_size=n, max_size=n).filter(lambda w: sum(w) > 0))
    order = draw(st.permutations(range(n)))
    return out, weights, order


@settings(max_examples=400, deadline=None)
@given(votes(), st.sampled_from(["majority", "weighted", "soft"]))
def test_the_early_label_always_equals_the_full_votes_for_any_outputs_weights_and_arrival_order(case, strategy):
    out, weights, order = case
    full = fuse(out, strategy, weights).label
    known = np.zeros(len(out), bool)
    decided_at = None
    for j, k in enumerate(order):
        known[k] = True
        label = settled_label(out, known, strategy, weights)
        if label is not None:
            assert label == full
            decided_at = j if decided_at is None else decided_at
            a = early_answer(out, known, strategy, weights)
            if not (strategy == "weighted" and sum(np.asarray(weights)[known]) <= 0):
                assert a is not None and a.label == full
        else:
            # as early as it can be: not decided means two real outputs of the members still
            # out give different full labels (the extreme ones, checked here with fuse itself)
            assert decided_at is None, "a decided vote became open again"
            labels = set()
            for c in range(10):
                comp = out.copy()
                comp[~known] = one_hot(c)
                labels.add(fuse(comp, strategy, weights).label)
            assert len(labels) > 1
    assert decided_at is not None  # every member in: always decided


def test_settled_batch_over_many_images_matches_one_image_at_a_time():
    rng = np.random.default_rng(7)
    out = rng.integers(-128, 128, (5, 300, 10))
    out[:3, :150] = one_hot(3)  # easy images: the three members known agree with all their mass
    known = np.array([True, True, True, False, False])
    w = [3.8, 3.6, 3.8, 3.8, 3.7]
    for s in STRATEGIES:
        batch = settled_batch(out, known, s, w)
        one = [settled_label(out[:, i], known, s, w) for i in range(out.shape[1])]
        assert list(batch) == [-1 if x is None else x for x in one]
        full = fuse_batch(out, s, w)
        assert np.all((batch == -1) | (batch == full))
        assert (batch[:150] == 3).all()  # the easy ones are decided by three members


# ---- the cascade's stopping rule -----------------------------------------------------------------

def test_cascade_stage1_stands_when_its_members_agree_confidently():
    c = Cascade(("a", "b"), threshold=0.6, agree=True)
    sure = np.array([one_hot(1, 100), one_hot(1, 60)])  # p = 228/256, 188/256: mean 0.8125
    assert cascade_stops(sure, "soft", c)
    assert not cascade_stops(sure, "soft", Cascade(("a", "b"), threshold=0.82))
    split = np.array([one_hot(1), one_hot(2)])
    assert not cascade_stops(split, "soft", c)  # disagreement escalates
    # without agreement required, only the confidence of the fused label counts: 0.5 each side
    assert cascade_stops(split, "soft", Cascade(("a", "b"), threshold=0.49, agree=False))
    assert not cascade_stops(split, "soft", Cascade(("a", "b"), threshold=0.51, agree=False))


def test_cascade_stops_batch_agrees_with_one_image_at_a_time():
    rng = np.random.default_rng(11)
    out = rng.integers(-128, 128, (2, 200, 10))
    for s in STRATEGIES:
        for agree in (True, False):
            stops, labels = stops_batch(out, s, 0.5, agree)
            assert list(labels) == list(fuse_batch(out, s))
            c = Cascade(("a", "b"), 0.5, agree)
            assert list(stops) == [cascade_stops(out[:, i], s, c) for i in range(200)]


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_cascade_threshold_edges_stand_always_or_never(threshold):
    out = np.array([one_hot(4, 0)])
    assert cascade_stops(out, "soft", Cascade(("a",), threshold, agree=False)) is (threshold == 0.0)
