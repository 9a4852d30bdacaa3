"""fleetvote curves: validation accuracy against epoch, and the end slope that says a schedule
was too short."""

from __future__ import annotations

import json

import pytest

from fleetvote.offline.curves import collect, end_slope, plot, table


def _model(zoo, mid, role, val):
    d = zoo / mid
    d.mkdir(parents=True)
    (d / "card.json").write_text(json.dumps({"id": mid, "role": role}))
    (d / "train_log.jsonl").write_text("".join(
        json.dumps({"epoch": i + 1, "val_accuracy": v, "train_accuracy": v + 0.01}) + "\n" for i, v in enumerate(val)))


def test_end_slope_is_in_points_per_ten_epochs_and_needs_ten_epochs():
    rising = [0.50 + 0.002 * i for i in range(30)]  # +0.2 points an epoch
    assert end_slope(rising) == pytest.approx(2.0)
    assert end_slope([0.8] * 12) == pytest.approx(0.0, abs=1e-9)
    assert end_slope([0.8] * 9) is None


def test_curves_mark_the_shared_recipe_and_draw_every_logged_model(tmp_path):
    zoo = tmp_path / "zoo"
    _model(zoo, "resnet8", "reference", [0.5 + 0.01 * i for i in range(20)])
    _model(zoo, "old", "member", [0.6, 0.7, 0.75])
    (zoo / "nolog").mkdir()
    (zoo / "nolog" / "card.json").write_text(json.dumps({"id": "nolog", "role": "member"}))
    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps({"resnet8": {"role": "reference", "recipe": True, "args": []},
                                   "old": {"role": "member", "args": []}}))
    rows = {r["id"]: r for r in collect(zoo, recipes)}
    assert set(rows) == {"resnet8", "old"}
    assert rows["resnet8"]["shared_recipe"] and not rows["old"]["shared_recipe"]
    assert rows["resnet8"]["best_epoch"] == 20 and rows["resnet8"]["end_slope_pts_per_10"] == pytest.approx(10.0)
    text = table(list(rows.values()))
    assert text.index("resnet8") < text.index("old")  # the shared recipe's models first
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    plot(list(rows.values()), png)
    assert png.read_bytes()[:4] == b"\x89PNG"
