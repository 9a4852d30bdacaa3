"""``fleetvote pareto`` and the results tables of issue 16: the Pareto plot's points and fronts on a
tiny hand-made case, the fleets of 3, 4 and 5 per vote beside the reference and both baselines,
and the gates in the README block."""

from __future__ import annotations

import json

from conftest import need_module

HOST_MS = 2.0
F411 = {"board": "nucleo-f411re", "price_usd": 13, "price_date": "2026-11", "price_source": "list"}


def row(mid: str, role: str, total_ms: float | None, acc: float, **board) -> dict:
    b = {**F411, **board} if total_ms is not None else {"board": None, "price_usd": None}
    return {"id": mid, "role": role, "test_accuracy": acc, "val_accuracy": acc + 0.01, "macc": 1000,
            "flash_bytes": 100, "ram_bytes": 50, **b,
            "latency": None if total_ms is None else {"total_ms": total_ms, "energy_mj": None}}


def tiny_reports() -> tuple[dict, dict]:
    """Members a (80 %, 100 ms), b (82 %, 120 ms), c (70 %, 90 ms); the reference r (84 %, 260 ms),
    the baseline (81 %, 140 ms on a $27 board), a member z on no board; best fleets: 1 = b,
    2 = a+b (majority, 83 %), 3 = a+b+c (soft, 85 %)."""
    plan = {"host_overhead_ms": {"p50": HOST_MS},
            "models": [row("a", "member", 100.0, 0.80), row("b", "member", 120.0, 0.82), row("c", "member", 90.0, 0.70),
                       row("z", "member", None, 0.95),
                       row("r", "reference", 260.0, 0.84), row("base", "baseline", 140.0, 0.81,
                                                                  board="nucleo-h743zi2", price_usd=27)],
            "command": "fleetvote plan --json p.json"}

    def best(members, vote, acc):
        return {"members": members, "best_strategy_on_val": vote,
                "test": {"majority": 0.0, "weighted": 0.0, "soft": 0.0, vote: acc}}

    ev = {"models": [{"id": r["id"], "role": r["role"], "test_accuracy": r["test_accuracy"]} for r in plan["models"]],
          "best": {"1": best(["b"], "soft", 0.82), "2": best(["a", "b"], "majority", 0.83),
                   "3": best(["a", "b", "c"], "soft", 0.85)},
          "images": {"test": 10}, "dataset": "tiny", "command": "fleetvote ensemble-eval --json e.json"}
    return ev, plan


def test_points_are_singles_and_best_fleets_with_their_boards_sum_and_slowest_member():
    from fleetvote.offline.pareto import points

    ev, plan = tiny_reports()
    pts = {p["id"]: p for p in points(ev, plan)}
    # the report's best "fleet" of 1 is member b, already a point: not drawn a second time
    assert ev["best"]["1"]["members"] == ["b"]
    assert set(pts) == {"a", "b", "c", "z", "r", "base", "fleet-2", "fleet-3"}
    assert (pts["a"]["bom_usd"], pts["a"]["latency_ms"], pts["a"]["test_accuracy"]) == (13, 102.0, 0.80)
    assert (pts["base"]["bom_usd"], pts["base"]["latency_ms"], pts["base"]["kind"]) == (27, 142.0, "baseline")
    assert pts["r"]["kind"] == "reference" and pts["r"]["latency_ms"] == 262.0
    assert pts["z"]["bom_usd"] is None and pts["z"]["latency_ms"] is None
    f3 = pts["fleet-3"]
    assert (f3["bom_usd"], f3["latency_ms"], f3["test_accuracy"], f3["vote"]) == (39, 122.0, 0.85, "soft")
    assert pts["fleet-2"]["vote"] == "majority" and pts["fleet-2"]["test_accuracy"] == 0.83
    assert pts["fleet-2"]["members"] == ["a", "b"] and pts["b"]["bom_usd"] == 13


def test_front_keeps_the_points_nothing_beats_on_both_cost_and_accuracy():
    from fleetvote.offline.pareto import dominates, front, report

    rep = report(*tiny_reports())
    # by price: $13 buys b (82 %) or the reference (84 %): r dominates a, b and c; $26
    # buys 83 %, below r's 84 % at $13; $39 buys 85 %; the baseline ($27, 81 %) is beaten by r
    assert rep["front"]["bom_usd"] == ["r", "fleet-3"]
    # by latency: c 70 % at 92 ms, a 80 % at 102, b 82 % at 122, the fleets of 2 and 3 at 122 ms
    # (3 better); r is slower and worse
    assert rep["front"]["latency_ms"] == ["c", "a", "fleet-3"]
    assert rep["unplaced"] == ["z"]
    p, q = {"x": 1, "test_accuracy": 0.5}, {"x": 1, "test_accuracy": 0.5}
    assert not dominates(p, q, "x") and front([{**p, "id": "p"}, {**q, "id": "q"}], "x") == ["p", "q"]
    assert dominates({"x": 1, "test_accuracy": 0.5}, {"x": 2, "test_accuracy": 0.5}, "x")


def test_cli_draws_two_panels_and_writes_the_points(tmp_path, capsys):
    need_module("matplotlib")
    from fleetvote.cli import main
    from fleetvote.offline.pareto import report

    ev, plan = tiny_reports()
    (tmp_path / "e.json").write_text(json.dumps(ev))
    (tmp_path / "p.json").write_text(json.dumps(plan))
    png, js = tmp_path / "pareto.png", tmp_path / "pareto.json"
    assert main(["pareto", "--eval", str(tmp_path / "e.json"), "--plan", str(tmp_path / "p.json"),
                 "--png", str(png), "--json", str(js)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    got = json.loads(js.read_text())
    want = report(ev, plan, str(png))
    assert {k: got[k] for k in want} == json.loads(json.dumps(want))
    out = capsys.readouterr().out
    assert "front in bill of materials ($): r 84.00 % at $13; fleet of 3 85.00 % at $39" in out
    assert "fits no catalogue board (left out): z" in out
    assert main(["pareto", "--eval", str(tmp_path / "none.json"), "--plan", str(tmp_path / "p.json")]) == 2


def test_the_figure_draws_the_front_through_its_points():
    need_module("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fleetvote.offline.pareto import AXES, draw, report

    rep = report(*tiny_reports())
    fig, ax = plt.subplots()
    try:
        draw(rep, ax, AXES[0])
        (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "non-dominated front"]
        assert list(line.get_xdata()) == [13, 39] and list(line.get_ydata()) == [84.0, 85.0]
    finally:
        plt.close(fig)


# ---- the README block ----------------------------------------------------------------------------

def per_vote_report(baseline_sha: str) -> dict:
    from fleetvote.fusion import STRATEGIES

    best = {s: {str(k): {"members": [f"m{i}" for i in range(k)], "val": {s: 0.86 + k / 1000},
                         "test": {s: 0.85 + k / 1000 + list(STRATEGIES).index(s) / 10000}} for k in (1, 2, 3, 4, 5)}
            for s in STRATEGIES}
    return {"best_per_strategy": best,
            "models": [{"id": "resnet8", "role": "reference", "val_accuracy": 0.8538, "test_accuracy": 0.845,
                        "epochs": 150},
                       {"id": "baseline", "role": "baseline", "val_accuracy": 0.86, "test_accuracy": 0.855,
                        "epochs": 60, "sha256": baseline_sha}],
            "gates": [{"gate": "fleet5", "what": "fleet of 5 (soft)", "value": 0.8547, "bar": 0.88, "stretch": 0.89,
                       "passed": False, "rule": ">="}]}


def history() -> dict:
    return {"models": [{"card": {"id": "baseline", "role": "baseline", "epochs": 10, "val_accuracy": 0.834,
                                 "test_accuracy": 0.8289, "sha256": "old"}, "left": None, "why": "y"}]}


def test_fleets_of_3_4_and_5_per_vote_beside_the_reference_the_fair_and_the_old_baseline():
    from fleetvote.fusion import STRATEGIES
    from fleetvote.offline.results_table import fleets_per_vote_table, gates_lines

    lines = fleets_per_vote_table(per_vote_report("new"), history())
    rows = [ln for ln in lines if ln.startswith("| 3 |") or ln.startswith("| 4 |") or ln.startswith("| 5 |")]
    assert [ln.split("|")[1:3] for ln in rows] == [[f" {k} ", f" {s} "] for k in (3, 4, 5) for s in STRATEGIES]
    soft5 = next(ln for ln in rows if ln.startswith("| 5 | soft |")).split(" | ")
    # 85.5 % + 0.02 points: over resnet8 84.50 %, the fair baseline 85.50 %, the old one 82.89 %
    t = 0.855 + list(STRATEGIES).index("soft") / 10000
    assert soft5[4] == f"{100 * t:.2f} %"
    assert soft5[5:8] == [f"{100 * (t - 0.845):+.2f}", f"{100 * (t - 0.855):+.2f}", f"{100 * (t - 0.8289):+.2f} |"]
    tail = lines[-3:]
    assert tail[0].startswith("| reference `resnet8` (150 epochs) | argmax | one board | 85.38 % | 84.50 %")
    assert tail[1].startswith("| fair baseline `baseline` (60 epochs) | argmax | one board | 86.00 % | 85.50 %")
    assert tail[2].startswith("| old baseline (10 epochs; its card in [docs/history.md](docs/history.md)) | argmax "
                              "| one board | 83.40 % | 82.89 %")
    # while the zoo's baseline is still the old one (the same hash): no fair baseline yet, said so
    lines = fleets_per_vote_table(per_vote_report("old"), history())
    assert lines[-2].startswith("| fair baseline | - | not in the zoo yet")
    assert lines[-1].startswith("| old baseline (10 epochs; the zoo's `baseline` until the fair one replaces it)")
    assert next(ln for ln in lines if ln.startswith("| 5 | soft |")).split(" | ")[6] == "-"
    g = gates_lines(per_vote_report("new"))
    assert g[2] == "- MISS  fleet of 5 (soft): 85.47 % (gate >= 88.00 %; stretch 89.0 % MISS)"
    assert gates_lines({}) == []


def test_fleets_per_vote_header_names_the_reference_by_its_id():
    from fleetvote.offline.results_table import fleets_per_vote_table

    header = fleets_per_vote_table(per_vote_report("new"), history())[2]
    assert "| over `resnet8` |" in header
    ev = per_vote_report("new")
    ev["models"][0]["id"] = "resnet10"  # another reference: the column says which
    lines = fleets_per_vote_table(ev, history())
    assert "| over `resnet10` |" in lines[2] and "resnet8" not in "\n".join(lines)
    ev["models"] = ev["models"][1:]  # no reference at all
    assert "| over the reference |" in fleets_per_vote_table(ev, history())[2]
    assert lines[0].startswith("**Fleets of 3, 4 and 5 per vote**")


def test_results_block_links_the_pareto_plot_and_names_its_front():
    from fleetvote.offline.pareto import report
    from fleetvote.offline.results_table import pareto_lines

    rep = report(*tiny_reports(), png="docs/pareto.png")
    lines = pareto_lines(rep)
    assert "![accuracy against bill of materials and estimated latency](docs/pareto.png)" in lines
    assert "- front in bill of materials ($): r 84.00 % at $13; fleet of 3 85.00 % at $39" in lines
    assert "- front in estimated latency (ms): c 70.00 % at 92.0 ms; a 80.00 % at 102.0 ms; fleet of 3 85.00 % " \
           "at 122.0 ms" in lines


def test_plan_plans_the_best_fleets_of_3_4_and_5_and_pareto_reads_the_plan(tmp_path):
    from test_plan import counted, write_zoo

    from fleetvote.offline.bom import run
    from fleetvote.offline.pareto import points

    cards = [{"id": f"m{k}", "role": "member", "macc": 4_000_000 + 100_000 * k, "flash_bytes": 90_000,
              "ram_bytes": 40_000, "arena_bytes": 40_000, "bench_firmware": counted(7.5, 1.3, mid=f"m{k}")}
             for k in range(6)]
    zoo = write_zoo(tmp_path / "zoo", *cards)
    ids = [c["id"] for c in cards]
    ev = {"models": [{"id": i, "role": "member", "test_accuracy": 0.8} for i in ids], "subsets": [],
          "best": {str(k): {"members": ids[:k], "best_strategy_on_val": "soft",
                            "test": {"majority": 0.8, "weighted": 0.8, "soft": 0.8 + k / 100}} for k in range(1, 7)}}
    evp = tmp_path / "ev.json"
    evp.write_text(json.dumps(ev))
    plan = run(zoo, eval_json=evp, size_report=tmp_path / "none.json", bench_firmware=tmp_path / "none.json",
               bench_table=tmp_path / "none.json", measured_dir=tmp_path / "none")
    assert [f["name"] for f in plan["fleets"]] == ["best 3", "best 4", "best 5"]
    assert [f["members"] for f in plan["fleets"]] == [ids[:3], ids[:4], ids[:5]]
    # the Pareto plot's fleets cost what the plan says they cost
    pts = {p["id"]: p for p in points(ev, json.loads(json.dumps(plan)))}
    assert set(pts) == set(ids) | {f"fleet-{k}" for k in range(2, 6)}  # fleets of 2 to 5: never 1 (a member), nor 6
    for f in plan["fleets"]:
        k = len(f["members"])
        assert (pts[f"fleet-{k}"]["bom_usd"], pts[f"fleet-{k}"]["latency_ms"]) == (f["total_usd"], f["latency_ms"])
