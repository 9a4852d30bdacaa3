"""The offline side of the adaptive modes: early's board evaluations per image, and the cascade's
search on validation (offline/adaptive_eval.py), on synthetic member outputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from fleetvote.fusion import fuse_batch
from fleetvote.offline import adaptive_eval as ae


def one_hot(c, high=127):
    return [high if i == c else -128 for i in range(10)]


def synthetic(n=400, hard_share=0.25, seed=0):
    """3 members, every one sure (p = 255/256) of its vote but where said: on the hard images
    member 0 is unsure (p = 0.5) and wrong; on the next eighth of the images member 1 is sure and
    wrong, on the eighth after that member 2. The soft vote is always right; member 0 alone is
    right whenever it is sure. Returns (outputs, labels, hard, wrong_1, wrong_2)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    i = np.arange(n)
    h, e = int(n * hard_share), n // 8
    hard, wrong1, wrong2 = i < h, (h <= i) & (i < h + e), (h + e <= i) & (i < h + 2 * e)
    out = np.zeros((3, n, 10), np.int64)
    for j in range(n):
        other = (y[j] + 1) % 10
        out[0, j] = one_hot(other, 0) if hard[j] else one_hot(y[j])
        out[1, j] = one_hot(other) if wrong1[j] else one_hot(y[j])
        out[2, j] = one_hot(other) if wrong2[j] else one_hot(y[j])
    return out, y, hard, wrong1, wrong2


def test_early_evaluations_count_the_answers_until_the_vote_is_settled():
    out, y, hard, w1, w2 = synthetic()
    labels, evals = ae.early_evaluations(out, [0, 1, 2], "majority")
    assert np.array_equal(labels, fuse_batch(out, "majority"))
    # where members 0 and 1 agree with all their mass, 2 of 3 settle it; where they differ, not
    differ = hard | w1
    assert (evals[~differ] == 2).all() and (evals[differ] == 3).all()
    # in the other order members 1 and 2 settle every image but those where one of them errs
    assert np.array_equal(ae.early_evaluations(out, [1, 2, 0], "majority")[1], np.where(w1 | w2, 3, 2))


def test_the_search_keeps_the_cheapest_cascade_within_the_tolerance_of_all():
    out, y, *_ = synthetic()
    points = ae.search(out, y, "soft")
    all_acc = float(np.mean(fuse_batch(out, "soft") == y))
    assert all_acc == 1.0
    best = ae.choose(points, all_acc, tolerance=0.0)
    # member 0 alone, sure only on the easy images: 1 + 2 x 25 % evaluations, nothing lost
    assert best.stage1 == (0,) and best.accuracy == 1.0
    assert best.evaluations == pytest.approx(1 + 2 * 0.25)
    assert 0.5 < best.threshold <= 255 / 256
    # allowed to lose an eighth of the images, one member alone always answers
    loose = ae.choose(points, all_acc, tolerance=0.125)
    assert loose.evaluations == pytest.approx(1.0)


def test_never_standing_is_always_a_point_so_the_search_has_an_answer():
    out, y, *_ = synthetic()
    points = ae.search(out, y, "majority")
    never = [p for p in points if p.threshold == 1.0]
    assert never and all(p.evaluations == 3 and p.stage1_share == 0 for p in never)
    all_acc = float(np.mean(fuse_batch(out, "majority") == y))
    assert ae.choose(never, all_acc, tolerance=0.0).evaluations == 3


def test_the_report_has_all_early_and_the_cascade_on_test_and_a_loadable_section():
    val, y_val, *_ = synthetic(seed=1)
    test, y_test, *_ = synthetic(seed=2, hard_share=0.5)
    rep = ae.report(val, test, y_val, y_test, ["a", "b", "c"], "soft", [1.0, 1.0, 1.0], {"a": 1, "b": 2, "c": 3})
    assert rep["all"] == {"val": 1.0, "test": 1.0, "evaluations": 3}
    assert rep["early"]["test"] == 1.0 and rep["early_order"] == ["a", "b", "c"]
    # order a, b, c: 3 answers on the hard half and where b errs (an eighth), else 2
    assert rep["early"]["evaluations"] == pytest.approx(3 * 0.625 + 2 * 0.375)
    c = rep["cascade"]
    assert c["stage1"] == ["a"] and c["test"] == 1.0 and c["evaluations"] == pytest.approx(1 + 2 * 0.5)
    assert ae.cascade_section(rep) == {"stage1": ["a"], "threshold": c["threshold"], "agree": c["agree"]}
    table = ae.format_table(rep)
    assert "| early |" in table and "| cascade (kept) |" in table and "66.7 %" in table


def test_readmes_board_evaluations_table_comes_from_the_adaptive_report_and_is_absent_without_one():
    from fleetvote.offline.results_table import evaluations_table

    val, y_val, *_ = synthetic(seed=1)
    rep = ae.report(val, val, y_val, y_val, ["a", "b", "c"], "soft", [1.0, 1.0, 1.0], {})
    lines = evaluations_table({"adaptive": rep})
    assert lines[0].startswith("**Board evaluations** (the 3 members")
    assert any(x.startswith("| all | every member | 100.00 % | 3.000 | 100.0 % |") for x in lines)
    assert any(x.startswith("| cascade (kept) | stage 1 a,") for x in lines)
    assert "docs/evaluations.png" in "\n".join(lines)
    assert evaluations_table({}) == []


def symmetric(n=600):
    """3 members, each sure and right except on its own sixth of the images, where it is unsure
    (p = 0.5) and wrong: any one member is as good a stage 1 as another."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 10, n)
    out = np.zeros((3, n, 10), np.int64)
    for j in range(n):
        for k in range(3):
            hard = j % 6 == k
            out[k, j] = one_hot((y[j] + 1) % 10, 0) if hard else one_hot(y[j])
    return out, y


def test_the_busiest_members_share_counts_stage1_always_and_stage2_when_stage1_did_not_stand():
    assert ae.busiest_share([(0,)], [0.75], 3) == 1.0  # a fixed stage 1 gets every image
    assert ae.busiest_share([(0,), (1,), (2,)], [0.75] * 3, 3) == pytest.approx((1 + 0.25 + 0.25) / 3)
    assert ae.busiest_share([(0, 1), (2,)], [1.0, 1.0], 3) == pytest.approx(0.5)


def test_the_stage1s_used_in_turn_spread_the_images_over_every_member():
    out, y = symmetric()
    points = ae.search(out, y, "soft")
    kept = ae.choose_set(points, 1.0, 3, tolerance=0.0)
    assert sorted(p.stage1 for p in kept) == [(0,), (1,), (2,)]
    assert all(p.accuracy == 1.0 and p.evaluations == pytest.approx(1 + 2 / 6) for p in kept)
    share = ae.busiest_share([p.stage1 for p in kept], [p.stage1_share for p in kept], 3)
    assert share == pytest.approx((1 + 2 / 6) / 3)
    # with no stage 1 within half of all's evaluations, only the cheapest is kept
    assert len(ae.choose_set(points, 1.0, 3, tolerance=0.0, budget=0.4)) == 1


def test_the_ensemble_files_alternatives_are_the_rotations_other_stage1s():
    out, y = symmetric()
    rep = ae.report(out, out, y, y, ["a", "b", "c"], "soft", [1.0] * 3, {})
    assert [c["stage1"] for c in rep["rotation"]["cascades"]][0] == rep["cascade"]["stage1"]
    alts = ae.alternatives_section(rep)
    assert len(alts) == 2 and sorted(sum((c["stage1"] for c in alts), rep["cascade"]["stage1"])) == ["a", "b", "c"]
    assert rep["cascade"]["busiest_share"] == 1.0 and rep["rotation"]["busiest_share"] < 0.5
    assert "3 stage 1s in turn" in ae.format_table(rep)
