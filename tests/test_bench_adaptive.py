"""The adaptive modes' benchmark (testbed/bench_adaptive.py) on a small virtual fleet: it answers
in every mode, counts what it should, and early's labels are all's."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from conftest import ZOO, need_tool
from test_service import board_bin  # noqa: F401  (a fixture: builds the virtual board)


def test_bench_reports_every_mode_and_the_slowed_board_with_earlys_labels_equal_to_alls(tmp_path, board_bin):  # noqa: F811
    need_tool("cc")
    from fleetvote.testbed.bench_adaptive import format_report, run

    spec = json.loads((ZOO / "ensemble.json").read_text())
    ids = [m["id"] for m in spec["members"]][:3]
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in ids], "strategy": "soft", "quorum": 1,
                               "cascade": {"stage1": ids[:1], "threshold": 0.5, "agree": True}}))
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    rep = asyncio.run(run(ens, [1], ["all", "early", "cascade"], board_ms=5, requests=12, per_board=1,
                          slow_ms=30, slow_requests=6, slow_member=None, deadline_ms=10_000, images=images,
                          binary=board_bin))
    by_mode = {x["mode"]: x for x in rep["saturation"]}
    assert set(by_mode) == {"all", "early", "cascade"}
    for x in by_mode.values():
        assert x["answered"] + x["refused"] == 12 and x["errors"] == 0 and x["rate"] > 0
    assert by_mode["all"]["members_per_answer"] == 3 and by_mode["all"]["same_label_as_all"] == 1.0
    assert by_mode["early"]["same_label_as_all"] == 1.0 and by_mode["early"]["members_per_answer"] <= 3
    assert sum(by_mode["cascade"]["stages"].values()) == by_mode["cascade"]["answered"]
    s = rep["slowed"]
    assert s["member"] == ids[0] and s["early"]["same_label_as_all"] == 1.0
    assert s["all"]["p50_ms"] >= 30  # the slowed board's pace: every all answer waits for it
    text = format_report(rep)
    assert "| 1 | early |" in text and "one board slowed by 30 ms" in text


def test_board_speed_is_milliseconds_or_each_members_planned_latency():
    import argparse

    from fleetvote.testbed.bench_adaptive import _board_ms, format_report

    assert _board_ms("150") == 150 and _board_ms("planned") == "planned"
    for bad in ("fast", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _board_ms(bad)
    rep = {"members": ["a", "b"], "strategy": "soft", "images": 3, "saturation": [], "slowed": None,
           "board_ms": {"a": 171.6, "b": 140.2}}
    assert "planned speed" in format_report(rep) and "a 172 ms, b 140 ms" in format_report(rep)


def test_a_missing_data_set_is_an_error_that_names_what_to_pass_not_a_traceback(tmp_path, capsys):
    from fleetvote.testbed.bench_adaptive import main

    assert main(["--data", str(tmp_path / "absent.tar.gz"), "--requests", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench_adaptive: error:") and "CIFAR10_PATH" in err and "Traceback" not in err
