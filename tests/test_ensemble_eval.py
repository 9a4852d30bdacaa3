"""``fleetvote ensemble-eval``: vote accuracies of zoo subsets, with hand-checkable properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import ZOO
from fleetvote.cards import load_cards


def member_ids(limit: int) -> list[str]:
    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    return ids[:limit]


def test_identical_members_vote_like_one_member():
    from fleetvote.ensemble_eval import evaluate_subsets

    rng = np.random.default_rng(3)
    val = rng.integers(-128, 128, size=(300, 10)).astype(np.int8)
    test = rng.integers(-128, 128, size=(400, 10)).astype(np.int8)
    yv, yt = rng.integers(0, 10, 300), rng.integers(0, 10, 400)
    res = evaluate_subsets({"a": val, "b": val.copy()}, {"a": test, "b": test.copy()}, yv, yt,
                           {"a": 2.0, "b": 2.0})
    by = {r.members: r for r in res}
    single = float(np.mean(np.argmax(test, axis=1) == yt))
    for s in ("majority", "weighted", "soft"):
        assert by[("a",)].test[s] == pytest.approx(single)
        assert by[("a", "b")].test[s] == pytest.approx(single)
        assert by[("a", "b")].val[s] == pytest.approx(by[("a",)].val[s])


def test_a_member_outvoted_by_two_agreeing_members():
    from fleetvote.ensemble_eval import evaluate_subsets

    y = np.array([0, 1])
    good = np.full((2, 10), -128, np.int8)
    good[0, 0] = good[1, 1] = 100
    bad = np.full((2, 10), -128, np.int8)
    bad[:, 5] = 127  # very confident and always wrong
    outs = {"g1": good, "g2": good.copy(), "b": bad}
    res = {r.members: r for r in evaluate_subsets(outs, outs, y, y, {"g1": 1.0, "g2": 1.0, "b": 1.0})}
    assert res[("b", "g1", "g2")].test["majority"] == 1.0
    assert res[("b",)].test["soft"] == 0.0


def test_log_odds_weights():
    from fleetvote.ensemble_eval import log_odds_weight

    assert log_odds_weight(0.5) == pytest.approx(math.log(9))
    assert log_odds_weight(0.1) == 0.0 and log_odds_weight(0.05) == 0.0  # chance or worse: no say
    assert log_odds_weight(0.7) < log_odds_weight(0.8) < log_odds_weight(0.9) < log_odds_weight(1.0) < 20


def test_single_member_subset_has_the_member_engine_accuracy_and_cache_is_reused(tmp_path, cifar_path,
                                                                                 monkeypatch):
    from fleetvote import ensemble_eval
    from fleetvote.data import load_split
    from fleetvote.engine import Engine

    ids = member_ids(2)
    rep = ensemble_eval.run(ZOO, ids, limit=60, data=cifar_path, cache=tmp_path, progress=False)
    # the zoo's baseline is run too, for the comparison row
    from fleetvote.cards import load_cards

    n_models = len(ids) + sum(1 for c in load_cards(ZOO) if c["role"] == "baseline")
    assert rep["cache"] == {"dir": str(tmp_path), "hits": 0, "computed": 2 * n_models}
    ds = load_split("test", cifar_path)
    idx = ensemble_eval.subset_indices(len(ds), 60)
    for i in ids:
        want = float(np.mean(np.argmax(Engine.from_file(ZOO / i / "model.tflite").run(ds.x[idx]), axis=1) == ds.y[idx]))
        (single,) = [s for s in rep["subsets"] if s["members"] == [i]]
        assert single["test"] == {s: pytest.approx(round(want, 4)) for s in ("majority", "weighted", "soft")}
        assert next(m for m in rep["models"] if m["id"] == i)["test_accuracy"] == pytest.approx(round(want, 4))
    assert len(rep["subsets"]) == 2 ** len(ids) - 1
    assert set(rep["best"]) == {str(k) for k in range(1, len(ids) + 1)}

    def no_engine(*a, **k):
        raise AssertionError("the engine ran although every output was cached")

    monkeypatch.setattr(Engine, "run", no_engine)
    again = ensemble_eval.run(ZOO, ids, limit=60, data=cifar_path, cache=tmp_path, progress=False)
    assert again["cache"]["hits"] == 2 * n_models and again["subsets"] == rep["subsets"]


def test_cli_writes_report_plot_and_a_loadable_ensemble(tmp_path, cifar_path):
    from fleetvote.cli import main
    from fleetvote.ensemble import load_ensemble

    ids = member_ids(3)
    ens = tmp_path / "ens.json"
    assert main(["ensemble-eval", "--members", ",".join(ids), "--limit", "40", "--data", cifar_path,
                 "--json", str(tmp_path / "r.json"), "--png", str(tmp_path / "r.png"),
                 "--write-ensemble", str(ens), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    e = load_ensemble(ens, ZOO)
    best = rep["best"][str(len(ids))]
    assert [m.id for m in e.members] == best["members"]
    assert e.strategy == best["best_strategy_on_val"] and e.quorum == len(ids) // 2 + 1
    assert all(m.weight == next(x["weight"] for x in rep["models"] if x["id"] == m.id) for m in e.members)
