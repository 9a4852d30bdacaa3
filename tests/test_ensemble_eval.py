"""``fleetvote ensemble-eval``: vote accuracies of zoo subsets, with hand-checkable properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import ZOO, need_module
from fleetvote.fusion import STRATEGIES
from fleetvote.offline.cards import load_cards
from test_fusion import fourth_strategy  # noqa: F401  (a fixture)


def member_ids(limit: int) -> list[str]:
    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    return ids[:limit]


def test_identical_members_vote_like_one_member():
    from fleetvote.offline.ensemble_eval import evaluate_subsets

    rng = np.random.default_rng(3)
    val = rng.integers(-128, 128, size=(300, 10)).astype(np.int8)
    test = rng.integers(-128, 128, size=(400, 10)).astype(np.int8)
    yv, yt = rng.integers(0, 10, 300), rng.integers(0, 10, 400)
    res = evaluate_subsets({"a": val, "b": val.copy()}, {"a": test, "b": test.copy()}, yv, yt,
                           {"a": 2.0, "b": 2.0})
    by = {r.members: r for r in res}
    single = float(np.mean(np.argmax(test, axis=1) == yt))
    for s in STRATEGIES:
        assert by[("a",)].test[s] == pytest.approx(single)
        assert by[("a", "b")].test[s] == pytest.approx(single)
        assert by[("a", "b")].val[s] == pytest.approx(by[("a",)].val[s])


def test_a_member_outvoted_by_two_agreeing_members():
    from fleetvote.offline.ensemble_eval import evaluate_subsets

    y = np.array([0, 1])
    good = np.full((2, 10), -128, np.int8)
    good[0, 0] = good[1, 1] = 100
    bad = np.full((2, 10), -128, np.int8)
    bad[:, 5] = 127  # very confident and always wrong
    outs = {"g1": good, "g2": good.copy(), "b": bad}
    res = {r.members: r for r in evaluate_subsets(outs, outs, y, y, {"g1": 1.0, "g2": 1.0, "b": 1.0})}
    assert res[("b", "g1", "g2")].test["majority"] == 1.0
    assert res[("b",)].test["soft"] == 0.0


def test_equal_strategies_go_to_the_one_registered_last_and_each_keeps_its_plot_style():
    from fleetvote.offline.ensemble_eval import evaluate_subsets, plot_styles

    rng = np.random.default_rng(5)
    outs = {"a": rng.integers(-128, 128, (50, 10)).astype(np.int8)}
    y = rng.integers(0, 10, 50)
    (r,) = evaluate_subsets(outs, outs, y, y, {"a": 1.0})  # one member: every strategy scores the same
    assert r.best_strategy == "soft"
    assert plot_styles() == {"majority": "o-", "weighted": "s--", "soft": "^-"}


def test_plot_styles_stay_distinct_for_many_strategies(monkeypatch):
    from fleetvote.offline import ensemble_eval

    names = [f"s{i}" for i in range(14)]
    monkeypatch.setattr(ensemble_eval, "STRATEGIES", names)
    styles = ensemble_eval.plot_styles()
    assert list(styles) == names and len(set(styles.values())) == 14


def synthetic_report(n_members: int = 3, n_images: int = 80) -> dict:
    """What ``ensemble_eval.run`` reports, from random member outputs instead of the zoo's."""
    from fleetvote.offline.ensemble_eval import evaluate_subsets, tables

    rng = np.random.default_rng(6)
    ids = [f"m{i}" for i in range(n_members)]
    outs = {i: rng.integers(-128, 128, (n_images, 10)).astype(np.int8) for i in ids}
    y = rng.integers(0, 10, n_images)
    results = evaluate_subsets(outs, outs, y, y, {i: 1.0 for i in ids})
    models = [{"id": i, "role": "member", "macc": 1000, "val_accuracy": 0.5, "test_accuracy": 0.5, "weight": 1.0}
              for i in ids]
    return {"members": ids, "models": models, "images": {"val": n_images, "test": n_images},
            "dataset": "random", "computed_with": "numpy", "cache": {"hits": 0, "computed": 0},
            "weights_rule": "1", "selection_rule": "best", **tables(results)}


def test_a_registered_strategy_is_scored_plotted_and_tabled(fourth_strategy):
    need_module("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fleetvote.offline.ensemble_eval import draw, format_report, plot_styles
    from fleetvote.offline.results_table import best_subsets_table

    rep = synthetic_report()
    assert all(set(b["test"]) == set(STRATEGIES) for b in rep["subsets"])
    assert set(rep["best_per_strategy"]) == {"majority", "weighted", "soft", "median"}
    styles = plot_styles()
    assert list(styles) == list(STRATEGIES) and len(set(styles.values())) == 4
    fig, ax = plt.subplots()
    try:
        draw(rep, ax)
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        line = lines["median (best subset on val)"]
        assert line.get_marker() + line.get_linestyle() == styles["median"]
        assert list(line.get_ydata()) == [rep["best_per_strategy"]["median"][str(k)]["test"]["median"]
                                          for k in (1, 2, 3)]
    finally:
        plt.close(fig)
    header = next(line for line in format_report(rep).splitlines() if line.split()[:2] == ["k", "members"])
    assert header.split()[-10:] == ["val", "medi", "test", "majo", "test", "weig", "test", "soft", "test", "medi"]
    table = best_subsets_table({"best": rep["best"]})
    assert table[2] == "| k | members | chosen strategy | val (chosen) | test maj. / wtd. / soft / med. |"
    assert all(row.count("%") == 5 for row in table[4:])  # val (chosen) and one per strategy


def test_log_odds_weights():
    from fleetvote.offline.ensemble_eval import log_odds_weight

    assert log_odds_weight(0.5) == pytest.approx(math.log(9))
    assert log_odds_weight(0.1) == 0.0 and log_odds_weight(0.05) == 0.0  # chance or worse: no say
    assert log_odds_weight(0.7) < log_odds_weight(0.8) < log_odds_weight(0.9) < log_odds_weight(1.0) < 20


def test_single_member_subset_has_the_member_engine_accuracy_and_cache_is_reused(tmp_path, cifar_path,
                                                                                 monkeypatch):
    from fleetvote.data import load_split
    from fleetvote.engine import Engine
    from fleetvote.offline import ensemble_eval

    ids = member_ids(2)
    rep = ensemble_eval.run(ZOO, ids, limit=60, data=cifar_path, cache=tmp_path, progress=False)
    # the zoo's baseline and reference are run too, for the comparison rows and the gates
    from fleetvote.offline.cards import load_cards

    n_models = len(ids) + sum(1 for c in load_cards(ZOO) if c["role"] in ("baseline", "reference"))
    assert rep["cache"] == {"dir": str(tmp_path), "hits": 0, "computed": 2 * n_models}
    ds = load_split("test", cifar_path)
    idx = ensemble_eval.subset_indices(len(ds), 60)
    for i in ids:
        want = float(np.mean(np.argmax(Engine.from_file(ZOO / i / "model.tflite").run(ds.x[idx]), axis=1) == ds.y[idx]))
        (single,) = [s for s in rep["subsets"] if s["members"] == [i]]
        assert single["test"] == {s: pytest.approx(round(want, 4)) for s in STRATEGIES}
        assert next(m for m in rep["models"] if m["id"] == i)["test_accuracy"] == pytest.approx(round(want, 4))
    assert len(rep["subsets"]) == 2 ** len(ids) - 1
    assert set(rep["best"]) == {str(k) for k in range(1, len(ids) + 1)}

    def no_engine(*a, **k):
        raise AssertionError("the engine ran although every output was cached")

    monkeypatch.setattr(Engine, "run", no_engine)
    again = ensemble_eval.run(ZOO, ids, limit=60, data=cifar_path, cache=tmp_path, progress=False)
    assert again["cache"]["hits"] == 2 * n_models and again["subsets"] == rep["subsets"]


def test_cli_writes_report_plot_and_a_loadable_ensemble(tmp_path, cifar_path, capsys):
    from fleetvote.cli import main
    from fleetvote.ensemble import load_ensemble

    ids = member_ids(3)
    ens = tmp_path / "ens.json"
    assert main(["ensemble-eval", "--members", ",".join(ids), "--limit", "40", "--data", cifar_path,
                 "--json", str(tmp_path / "r.json"), "--png", str(tmp_path / "r.png"),
                 "--png-evaluations", str(tmp_path / "ev.png"), "--mode", "cascade",
                 "--write-ensemble", str(ens), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    e = load_ensemble(ens, ZOO)
    best = rep["best"][str(len(ids))]
    assert [m.id for m in e.members] == best["members"]
    assert e.strategy == best["best_strategy_on_val"] and e.quorum == len(ids) // 2 + 1
    assert all(m.weight == next(x["weight"] for x in rep["models"] if x["id"] == m.id) for m in e.members)
    # the cascade searched on validation for the members written, and the mode asked for
    assert (tmp_path / "ev.png").read_bytes()[:4] == b"\x89PNG"
    a = rep["adaptive"]
    assert a["members"] == best["members"] and e.mode == "cascade"
    assert list(e.cascade.stage1) == a["cascade"]["stage1"] and e.cascade.threshold == a["cascade"]["threshold"]
    assert a["cascade"]["val"] >= a["all"]["val"] - a["tolerance"] - 1e-9
    assert a["early"]["test"] == a["all"]["test"]  # early's labels are all's
    # the gates, as PASS/MISS lines after the report, one per member written and one per fleet
    out = capsys.readouterr().out
    after = out.split("gates on the test split")[1]
    gate_lines = [ln for ln in after.splitlines() if ln.strip()[:4] in ("PASS", "MISS")]
    assert len(gate_lines) == len(ids) + 2 and rep["gates"][-1]["gate"] == "fleet3"
    assert all(m in out for m in best["members"])


def synthetic_outputs(n_members: int = 5, n: int = 400, seed: int = 11):
    """Members that are right on a share of the images (different shares), with random wrong
    answers elsewhere: outputs on both splits and their labels."""
    rng = np.random.default_rng(seed)
    out, ys = {}, {}
    for split in ("val", "test"):
        y = rng.integers(0, 10, n)
        ys[split] = y
        for k in range(n_members):
            o = rng.integers(-128, 0, (n, 10)).astype(np.int8)
            right = rng.random(n) < 0.45 + 0.08 * k
            o[np.arange(n), np.where(right, y, (y + 1 + k) % 10)] = 100
            out.setdefault(split, {})[f"m{k}"] = o
    return out, ys


def choices(rep: dict) -> dict:
    """Everything ensemble-eval chooses: weights, the best subset and vote per size, per strategy,
    the ensemble file (members, weights, vote, cascade)."""
    from fleetvote.offline.ensemble_eval import ensemble_from

    return {"weights": {m["id"]: m["weight"] for m in rep["models"]},
            "best": {k: (b["members"], b["best_strategy_on_val"]) for k, b in rep["best"].items()},
            "per_strategy": {s: {k: b["members"] for k, b in d.items()} for s, d in rep["best_per_strategy"].items()},
            "ensemble": ensemble_from(rep, 3)}


def test_subsets_votes_weights_and_cascade_are_chosen_on_validation_alone():
    from fleetvote.offline.ensemble_eval import assemble

    out, ys = synthetic_outputs()
    ids = sorted(out["val"])
    cards = {i: {"id": i, "role": "member", "macc": 1000} for i in ids}
    rep = assemble(out["val"], out["test"], ys["val"], ys["test"], ids, [], cards, size=3)
    # test labels that make the member worst on validation perfect on test, and the others' test
    # outputs shuffled: a choice that read the test split would move
    worst = min(ids, key=lambda i: next(m["val_accuracy"] for m in rep["models"] if m["id"] == i))
    y_other = np.argmax(out["test"][worst], axis=1)
    rng = np.random.default_rng(0)
    test_other = {i: (o if i == worst else o[rng.permutation(len(o))]) for i, o in out["test"].items()}
    other = assemble(out["val"], test_other, ys["val"], y_other, ids, [], cards, size=3)
    assert next(m for m in other["models"] if m["id"] == worst)["test_accuracy"] == 1.0
    assert other["subsets"] != rep["subsets"]  # the test figures did change
    assert rep["best"]["1"]["members"] != [worst]
    assert choices(other) == choices(rep)
    assert other["adaptive"]["cascade"]["stage1"] == rep["adaptive"]["cascade"]["stage1"]


def gate_report(member_tests: list[float], fleet5: float | None, fleet3: float | None,
                reference: float | None) -> dict:
    ids = [f"m{k}" for k in range(len(member_tests))]
    models = [{"id": i, "role": "member", "test_accuracy": t} for i, t in zip(ids, member_tests)]
    if reference is not None:
        models.append({"id": "resnet8", "role": "reference", "test_accuracy": reference})
    best = {str(k): {"members": ids[:k], "test": {"soft": 0.5, "majority": 0.0}, "best_strategy_on_val": "soft"}
            for k in range(1, len(ids) + 1)}
    if fleet3 is not None:
        best["3"]["test"]["soft"] = fleet3
    if fleet5 is not None:
        best["5"] = {"members": ids[:5], "test": {"soft": 0.0, "majority": fleet5}, "best_strategy_on_val": "majority"}
    return {"models": models, "best": best}


def test_gates_pass_at_their_bars_and_miss_below_them():
    from fleetvote.offline.ensemble_eval import format_gates, gates

    # at the bars: a member at 85.0 % passes (at least), the fleet of five at 88.0 % passes, the
    # fleet of three at the bar misses (above it is the gate)
    gs = {g["what"]: g for g in gates(gate_report([0.85, 0.86, 0.87, 0.9, 0.849], 0.88, 0.856, 0.845))}
    assert [g["passed"] for w, g in gs.items() if w.startswith("member")] == [True, True, True, True, False]
    assert gs["fleet of 5 (majority)"]["passed"] and gs["fleet of 5 (majority)"]["value"] == 0.88
    three = gs["fleet of 3 (soft)"]
    assert three["bar"] == 0.856 and not three["passed"]  # max(resnet8 84.5 %, published 85.6 %)
    lines = format_gates(list(gs.values()))
    assert lines[4].split()[:3] == ["MISS", "member", "m4"] and "84.90 %" in lines[4]
    assert lines[5].startswith("  PASS  fleet of 5 (majority): 88.00 % (gate >= 88.00 %; stretch 89.0 % MISS)")
    assert lines[6].startswith("  MISS  fleet of 3 (soft): 85.60 % (gate > 85.60 % = max(resnet8 84.50 %")
    # a reference above the published figure raises the bar
    g3 = gates(gate_report([0.9] * 5, 0.9, 0.865, 0.866))[-1]
    assert g3["bar"] == 0.866 and not g3["passed"]
    assert gates(gate_report([0.9] * 5, 0.9, 0.867, 0.866))[-1]["passed"]
    # a zoo too small for a fleet of five or three: the gate misses and says why
    small = gates(gate_report([0.9, 0.9], None, None, None))
    assert [g["passed"] for g in small] == [True, True, False, False]
    assert small[2]["what"] == "fleet of 5: only 2 members in the zoo" and small[2]["value"] is None
    assert "no reference model" in small[3]["bar_from"]
