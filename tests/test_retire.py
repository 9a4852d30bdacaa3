"""``fleetvote retire``: a model no fleet uses leaves a copy of the zoo, its card goes into the
history; the fleet's members, the reference, the baseline and the models a test names stay.
Every test works on a temporary copy of the zoo: the real one is never touched."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import ROOT, ZOO
from fleetvote.errors import ConfigError
from fleetvote.offline.retire import load_history, naming_tests, problems, render, retire


@pytest.fixture
def zoo(tmp_path):
    """A copy of the zoo's cards and ensemble file (the models themselves are not needed)."""
    copy = tmp_path / "zoo"
    for card in ZOO.glob("*/card.json"):
        (copy / card.parent.name).mkdir(parents=True)
        shutil.copy(card, copy / card.parent.name / "card.json")
        (copy / card.parent.name / "model.tflite").write_bytes(b"stand-in")
    shutil.copy(ZOO / "ensemble.json", copy / "ensemble.json")
    return copy


@pytest.fixture
def tests_dir(tmp_path):
    d = tmp_path / "tests"
    d.mkdir()
    (d / "test_x.py").write_text('MODEL = "named-by-a-test"\nOTHER = "spare-r2"  # another model\n')
    (d / "vectors.bin").write_bytes(b"\xff\xfe named-by-a-test \x00")  # binary data is not a test
    return d


def spare_member(zoo) -> tuple[str, str]:
    """(a member of the copy that no fleet uses, no real test names and no model is made from;
    the real zoo member it is). Where every real member is in the fleet, a parent or named (the
    zoo after a retirement), the copy gets one: a real member's files under a new id, its card's
    id changed and nothing made from it."""
    cards = [json.loads(p.read_text()) for p in sorted(zoo.glob("*/card.json"))]
    for c in cards:
        if c["role"] == "member" and not problems([c["id"]], zoo):
            return c["id"], c["id"]
    src = next(c["id"] for c in cards if c["role"] == "member")
    mid = f"{src}-spare"
    shutil.copytree(zoo / src, zoo / mid)
    card = json.loads((zoo / mid / "card.json").read_text())
    (zoo / mid / "card.json").write_text(json.dumps({**card, "id": mid}, indent=1))
    assert not problems([mid], zoo)
    return mid, src


def add_model(zoo, mid: str, role: str = "member", **recipe) -> dict:
    card = {"id": mid, "role": role, "arch": "vgg:12", "epochs": 30, "train_seconds": 812.5, "val_accuracy": 0.8254,
            "test_accuracy": 0.8121, "macc": 4977600, "params": 81898, "flash_bytes": 84000, "ram_bytes": 24576,
            "sha256": "ab" * 32, "bench_firmware": {"instructions_per_mac": {"ref": 7.5, "opt": 1.25}}}
    if recipe:  # how export writes a card's training arguments: init and teacher by id
        card["recipe"] = {"init": None, "teacher": None, **recipe}
    (zoo / mid).mkdir()
    (zoo / mid / "card.json").write_text(json.dumps(card))
    (zoo / mid / "model.tflite").write_bytes(b"stand-in")
    return card


def test_a_model_no_fleet_uses_leaves_the_zoo_and_its_card_goes_into_the_history(zoo, tests_dir, tmp_path):
    card = add_model(zoo, "spare")
    add_model(zoo, "spare-r2")  # a longer id, which a test names, is another model
    other = add_model(zoo, "spare-b")
    hist, md = tmp_path / "history.json", tmp_path / "history.md"
    before = sorted(p.name for p in zoo.iterdir())
    added = retire(["spare"], zoo, hist, md, why="short schedule", dirs=[tests_dir], today="2026-12-02")
    assert [e["card"] for e in added] == [card]
    assert not (zoo / "spare").exists() and (zoo / "spare-r2" / "card.json").exists()
    with pytest.raises(ConfigError, match="spare-r2: named by a test"):
        retire(["spare-r2"], zoo, hist, md, dirs=[tests_dir])
    assert sorted(p.name for p in zoo.iterdir()) == sorted(set(before) - {"spare"})
    h = load_history(hist)
    assert h["models"] == [{"card": card, "left": "2026-12-02", "why": "short schedule"}]
    row = next(line for line in md.read_text().splitlines() if line.startswith("| `spare`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:12] == ["`spare`", "member", "`vgg:12`", "30", "812.5", "82.54 %", "81.21 %", "4,977,600", "81,898",
                          "84,000", "24,576", "1.25"]
    assert cells[-2:] == ["2026-12-02", "short schedule"]
    # a second retirement appends: the first card stays
    retire(["spare-b"], zoo, hist, md, dirs=[tests_dir], today="2026-12-03")
    assert [e["card"]["id"] for e in load_history(hist)["models"]] == ["spare", "spare-b"]
    assert load_history(hist)["models"][1]["card"] == other
    assert md.read_text() == render(load_history(hist))


def test_a_real_zoo_member_no_fleet_uses_can_leave_a_copy_of_the_zoo(zoo, tmp_path):
    mid, real = spare_member(zoo)
    card = json.loads((zoo / mid / "card.json").read_text())
    retire([mid], zoo, tmp_path / "h.json", tmp_path / "h.md")
    assert not (zoo / mid).exists() and load_history(tmp_path / "h.json")["models"][0]["card"] == card
    assert (ZOO / real / "card.json").exists()  # the real zoo is untouched


def test_members_of_the_fleet_the_reference_the_baseline_and_models_a_test_names_stay(zoo, tests_dir, tmp_path):
    add_model(zoo, "named-by-a-test")
    add_model(zoo, "spare")
    fleet = json.loads((zoo / "ensemble.json").read_text())["members"][0]["id"]
    refs = [json.loads(p.read_text())["id"] for p in zoo.glob("*/card.json")
            if json.loads(p.read_text())["role"] in ("reference", "baseline")]
    hist, md = tmp_path / "history.json", tmp_path / "history.md"
    snapshot = sorted(str(p.relative_to(zoo)) for p in zoo.rglob("*"))
    for ids, why in (([fleet], "a member of"), (["named-by-a-test"], "named by a test (")
                     , *(([r], f"role {json.loads((zoo / r / 'card.json').read_text())['role']}") for r in refs),
                     (["nope"], "not in"), (["../zoo"], "not a zoo id"),
                     (["spare", fleet], "a member of")):  # one refusal refuses them all
        with pytest.raises(ConfigError, match="nothing retired") as exc:
            retire(ids, zoo, hist, md, dirs=[tests_dir])
        assert why in str(exc.value)
        assert sorted(str(p.relative_to(zoo)) for p in zoo.rglob("*")) == snapshot
        assert not hist.exists() and not md.exists()
    assert "test_x.py:1" in problems(["named-by-a-test"], zoo, [tests_dir])[0]
    assert problems(["spare"], zoo, [tests_dir]) == []
    assert "cannot tell whether a test needs" in problems(["spare"], zoo, [tmp_path / "absent"])[0]


def test_a_model_another_card_or_recipe_is_made_from_stays_unless_that_one_leaves_too(zoo, tests_dir, tmp_path):
    add_model(zoo, "warm-parent")
    add_model(zoo, "warm-child", init="warm-parent")
    add_model(zoo, "teacher-m")
    add_model(zoo, "student-m", teacher="runs/teacher-m")  # a path names the model of its last part
    add_model(zoo, "recipe-parent")
    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps({"_recipe": {"parent": "warm-parent"},  # not a recipe: "_" keys are settings
                                   "queued": {"parent": "recipe-parent", "args": []}}))
    hist, md = tmp_path / "history.json", tmp_path / "history.md"
    snapshot = sorted(str(p.relative_to(zoo)) for p in zoo.rglob("*"))
    for ids, why in ((["warm-parent"], "card warm-child (init)"), (["teacher-m"], "card student-m (teacher)"),
                     (["recipe-parent"], "recipe queued (parent)")):
        with pytest.raises(ConfigError, match="nothing retired") as exc:
            retire(ids, zoo, hist, md, dirs=[tests_dir], recipes=recipes)
        assert f"{ids[0]}: other models are made from it ({why}" in str(exc.value)
        assert "retire them in the same call" in str(exc.value)
        assert sorted(str(p.relative_to(zoo)) for p in zoo.rglob("*")) == snapshot and not hist.exists()
    # the parent leaves with its child: nothing left in the zoo is made from it
    retire(["warm-parent", "warm-child"], zoo, hist, md, dirs=[tests_dir], recipes=recipes)
    assert not (zoo / "warm-parent").exists() and not (zoo / "warm-child").exists()
    assert problems(["recipe-parent", "teacher-m"], zoo, [tests_dir], recipes)  # other dependants stay
    recipes.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        problems(["teacher-m"], zoo, [tests_dir], recipes)


def test_a_real_warm_restart_parent_stays_while_its_child_is_in_the_zoo(zoo):
    """models/recipes.json: make model ID=<child> needs the parent's card (models/fleetvote_models/recipes.py)."""
    pairs = [(c["id"], c["recipe"]["init"]) for c in (json.loads(p.read_text()) for p in zoo.glob("*/card.json"))
             if (c.get("recipe") or {}).get("init")]
    if not pairs:
        pytest.skip("no zoo card names a parent")
    child, parent = pairs[0]
    assert any(f"card {child} (init)" in p for p in problems([parent], zoo))


def test_a_test_names_a_model_only_as_a_whole_word(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    (d / "a.py").write_text('x = "m1-r2"\ny = "zoo/m1/model.tflite"\nz = "m10"\n')
    assert naming_tests("m1", [d]) == [f"{d / 'a.py'}:2"]
    assert naming_tests("m1-r2", [d]) == [f"{d / 'a.py'}:1"]


def test_cli_retires_says_what_and_refuses_with_the_reason(zoo, tmp_path, capsys):
    from fleetvote.cli import main

    mid = "cli" + "-spare"  # spelled apart: the real tests, which this file is one of, never name it
    add_model(zoo, mid)
    args = ["--zoo", str(zoo), "--history", str(tmp_path / "h.json"), "--history-md", str(tmp_path / "h.md")]
    assert main(["retire", mid, "--dry-run", *args]) == 0
    assert f"would retire {mid}" in capsys.readouterr().out and (zoo / mid).exists()
    assert main(["retire", mid, *args]) == 0
    assert not (zoo / mid).exists() and f"retired {mid}" in capsys.readouterr().out
    assert main(["retire", mid, *args]) == 2
    assert f"{mid}: not in" in capsys.readouterr().err
    (tmp_path / "h.md").write_text("edited by hand")
    files = ["--history", str(tmp_path / "h.json"), "--history-md", str(tmp_path / "h.md")]
    assert main(["retire", "--render", *files]) == 0
    assert (tmp_path / "h.md").read_text() == render(load_history(tmp_path / "h.json"))
    assert main(["retire", "--render", mid, *args]) == 2


def test_a_history_whose_left_is_not_a_date_or_null_is_refused(tmp_path):
    card = {"id": "m", "role": "member"}
    path = tmp_path / "h.json"
    for left in ("2026-12-02", None):
        path.write_text(json.dumps({"models": [{"card": card, "left": left, "why": "x"}]}))
        assert load_history(path)["models"][0]["left"] == left
    for left in ("replaced under its id by the 60-epoch baseline", 20261202, "2026-12-02 later"):
        path.write_text(json.dumps({"models": [{"card": card, "left": left, "why": "x"}]}))
        with pytest.raises(ConfigError, match="a date \\(YYYY-MM-DD\\), or null"):
            load_history(path)


def test_committed_history_table_is_written_from_the_history_file():
    """docs/history.md is models/history.json rendered (fleetvote retire --render after an edit)."""
    h = load_history(ROOT / "models" / "history.json")
    assert (ROOT / "docs" / "history.md").read_text() == render(h)
    assert any(e["card"]["role"] == "baseline" for e in h["models"])  # the old baseline's row
