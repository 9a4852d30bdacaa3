"""The modes on the HTTP API: ``POST /classify?mode=all|early|cascade``, the ensemble file's
``mode`` and ``cascade``, the answer's mode, stage, members and skipped, and /metrics' counts per
mode and stage. No board: every member comes from the engine, which is enough to see the modes
(the fan-out's timing is tests/test_fanout.py's)."""

from __future__ import annotations

import contextlib
import json
import re

import httpx
import numpy as np
import pytest

from conftest import ZOO
from fleetvote.ensemble import load_ensemble
from fleetvote.errors import ConfigError

IMAGE = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
RAW = {"content": IMAGE.tobytes(), "headers": {"content-type": "application/octet-stream"}}


def member_ids(limit: int = 3) -> list[str]:
    from fleetvote.offline.cards import load_cards

    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if len(ids) < limit:
        pytest.skip("fewer zoo members than the test needs")
    return ids[:limit]


@contextlib.asynccontextmanager
async def app_with(tmp_path, **ensemble):
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings

    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in member_ids()], "strategy": "soft", "quorum": 1,
                               **ensemble}))
    app = create_app(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[], scan_usb=False))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield client


def cascade_of(threshold: float) -> dict:
    return {"cascade": {"stage1": member_ids()[:1], "threshold": threshold, "agree": True}}


async def test_the_default_mode_is_all_and_every_member_votes(tmp_path):
    async with app_with(tmp_path) as client:
        body = (await client.post("/classify", **RAW)).json()
        ens = (await client.get("/ensemble")).json()
    assert (body["mode"], body["stage"], body["skipped"]) == ("all", 1, [])
    assert [m["model_id"] for m in body["members"]] == member_ids()
    assert ens["mode"] == "all" and ens["cascade"] is None


async def test_early_gives_the_label_of_all_and_lists_what_it_fused_and_skipped(tmp_path):
    async with app_with(tmp_path) as client:
        full = (await client.post("/classify", **RAW)).json()
        early = (await client.post("/classify?mode=early", **RAW)).json()
    assert early["mode"] == "early" and early["label"] == full["label"]
    fused = [m["model_id"] for m in early["members"]]
    assert sorted(fused + early["skipped"]) == sorted(member_ids())
    assert not set(fused) & set(early["skipped"])


async def test_the_ensemble_files_mode_is_the_default_and_a_request_overrides_it(tmp_path):
    async with app_with(tmp_path, mode="cascade", **cascade_of(0.0)) as client:
        default = (await client.post("/classify", **RAW)).json()
        forced = (await client.post("/classify?mode=all", **RAW)).json()
        ens = (await client.get("/ensemble")).json()
    # threshold 0 and one stage-1 member (who always agrees with itself): stage 1 always answers
    assert (default["mode"], default["stage"]) == ("cascade", 1)
    assert [m["model_id"] for m in default["members"]] == member_ids()[:1]
    assert default["skipped"] == member_ids()[1:]
    assert (forced["mode"], forced["skipped"]) == ("all", [])
    assert ens["mode"] == "cascade" and ens["cascade"]["stage1"] == member_ids()[:1]


async def test_a_cascade_whose_stage1_is_never_sure_enough_asks_everyone(tmp_path):
    async with app_with(tmp_path, **cascade_of(1.0)) as client:  # p <= 255/256 < 1: never stands
        body = (await client.post("/classify?mode=cascade", **RAW)).json()
        full = (await client.post("/classify", **RAW)).json()
    assert (body["stage"], body["skipped"]) == (2, [])
    assert body["label"] == full["label"] and body["scores"] == full["scores"]


async def test_mode_cascade_without_a_cascade_section_is_a_422_that_says_what_to_do(tmp_path):
    async with app_with(tmp_path) as client:
        r = await client.post("/classify?mode=cascade", **RAW)
        bad = await client.post("/classify?mode=fast", **RAW)
    assert r.status_code == 422 and "ensemble-eval --write-ensemble" in r.json()["detail"]
    assert bad.status_code == 422


async def test_metrics_count_answers_per_mode_and_stage_and_the_evaluations_saved(tmp_path):
    async with app_with(tmp_path, **cascade_of(0.0)) as client:
        for mode in ("all", "cascade", "cascade"):
            assert (await client.post(f"/classify?mode={mode}", **RAW)).status_code == 200
        text = (await client.get("/metrics")).text
    answers = {k: float(v) for k, v in
               re.findall(r'^fleetvote_answers_total\{(mode="\w+",stage="\d")\} ([\d.]+)$', text, re.M)}
    assert answers == {'mode="all",stage="1"': 1, 'mode="cascade",stage="1"': 2}
    saved = {k: float(v) for k, v in
             re.findall(r'^fleetvote_board_evaluations_saved_total\{mode="(\w+)"\} ([\d.]+)$', text, re.M)}
    assert saved == {"all": 0, "cascade": 2 * (len(member_ids()) - 1)}


# ---- the ensemble file ---------------------------------------------------------------------------

def write(tmp_path, **extra):
    p = tmp_path / "ensemble.json"
    p.write_text(json.dumps({"members": [{"id": i} for i in member_ids()], **extra}))
    return p


def test_an_ensemble_file_without_mode_is_all_and_without_cascade_has_none(tmp_path):
    e = load_ensemble(write(tmp_path), ZOO)
    assert e.mode == "all" and e.cascade is None


def test_an_ensemble_files_cascade_is_read_as_its_operating_point(tmp_path):
    ids = member_ids()
    e = load_ensemble(write(tmp_path, mode="early", cascade={"stage1": ids[:2], "threshold": 0.75}), ZOO)
    assert e.mode == "early" and e.cascade.stage1 == tuple(ids[:2]) and e.cascade.threshold == 0.75
    assert e.cascade.agree is True


@pytest.mark.parametrize("extra, words", [
    ({"mode": "fast"}, "mode 'fast' is not one of all, early, cascade"),
    ({"mode": "cascade"}, "needs a cascade section"),
    ({"cascade": {"stage1": ["nobody"], "threshold": 0.5}}, "must be distinct members"),
    ({"cascade": {"stage1": "ALL", "threshold": 0.5}}, "stage1"),
    ({"cascade": {"stage1": ["x"], "threshold": 1.5}}, "threshold"),
])
def test_a_bad_mode_or_cascade_stops_the_service_with_a_message(tmp_path, extra, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_ensemble(write(tmp_path, **extra), ZOO)


def test_a_cascade_stage1_of_every_member_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="fewer than all"):
        load_ensemble(write(tmp_path, cascade={"stage1": member_ids(), "threshold": 0.5}), ZOO)


def test_cascade_alternatives_are_read_and_shown_and_need_a_cascade(tmp_path):
    ids = member_ids()
    e = load_ensemble(write(tmp_path, cascade={"stage1": ids[:1], "threshold": 0.5},
                            cascade_alternatives=[{"stage1": ids[1:2], "threshold": 0.6, "agree": False}]), ZOO)
    assert [c.stage1 for c in e.cascades] == [tuple(ids[:1]), tuple(ids[1:2])]
    assert e.cascade_alternatives[0].threshold == 0.6 and e.cascade_alternatives[0].agree is False
    with pytest.raises(ConfigError, match="cascade_alternatives without a cascade"):
        load_ensemble(write(tmp_path, cascade_alternatives=[{"stage1": ids[:1], "threshold": 0.5}]), ZOO)
    with pytest.raises(ConfigError, match="must be distinct members"):
        load_ensemble(write(tmp_path, cascade={"stage1": ids[:1], "threshold": 0.5},
                            cascade_alternatives=[{"stage1": ["nobody"], "threshold": 0.5}]), ZOO)


async def test_ensemble_view_lists_the_cascade_alternatives(tmp_path):
    ids = member_ids()
    async with app_with(tmp_path, cascade={"stage1": ids[:1], "threshold": 0.0},
                        cascade_alternatives=[{"stage1": ids[1:2], "threshold": 0.0}]) as client:
        ens = (await client.get("/ensemble")).json()
        body = (await client.post("/classify?mode=cascade", **RAW)).json()
    assert [c["stage1"] for c in ens["cascade_alternatives"]] == [ids[1:2]]
    assert body["stage"] == 1 and len(body["members"]) == 1 and body["members"][0]["model_id"] in ids[:2]
