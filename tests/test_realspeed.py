"""Virtual boards at the speed of real ones (``serve --virtual --board-speed planned --replicas N``),
the serve flags that shape them, and the capacity bench (``testbed/capacity.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, ZOO, need_tool
from fleetvote.offline.cards import load_cards


@pytest.fixture(scope="module")
def board_bin():
    need_tool("cc")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    return ROOT / "firmware" / "build" / "host" / "board"


def one_member_ensemble(tmp_path: Path) -> tuple[Path, str]:
    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": ids[0]}], "strategy": "soft", "quorum": 1}))
    return ens, ids[0]


def serve_args(*argv: str):
    from fleetvote.cli import build_parser

    return build_parser().parse_args(["serve", *argv])


def test_planned_latency_is_what_fleetvote_plan_estimates(tmp_path):
    from fleetvote.offline.bom import run
    from fleetvote.testbed.virtual import planned_latency_ms

    members = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"][:3]
    if not members:
        pytest.skip("no zoo member yet")
    plan = planned_latency_ms(members, ZOO)
    rows = {m["id"]: m for m in run(ZOO)["models"]}
    for mid in members:
        lat = rows[mid]["latency"]
        assert plan[mid]["board"] == rows[mid]["board"]
        assert plan[mid]["total_ms"] == lat["total_ms"] == pytest.approx(lat["transfer_ms"] + lat["compute_ms"], abs=0.02)
        assert 10 < plan[mid]["total_ms"] < 5000  # milliseconds of a real board, not host speed


def test_planned_latency_refuses_a_model_without_a_card():
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.virtual import planned_latency_ms

    with pytest.raises(ConfigError, match="no card"):
        planned_latency_ms(["no-such-model"], ZOO)


def test_serve_flags_reach_the_settings():
    from fleetvote.cli import serve_settings

    s = serve_settings(serve_args("--virtual", "--queue-size", "3", "--quorum", "2", "--deadline-margin-ms", "10",
                                  "--upload-limit", "5000", "--deadline-ms", "900", "--no-fallback"))
    assert (s.queue_size, s.quorum, s.deadline_margin_ms, s.upload_limit, s.deadline_ms, s.fallback) == \
        (3, 2, 10.0, 5000, 900.0, False)
    a = serve_args("--virtual", "--replicas", "3", "--board-speed", "planned")
    assert (a.replicas, a.board_speed) == (3, "planned")


@pytest.mark.parametrize("argv, says", [
    (["--queue-size", "0"], "queue_size"),
    (["--upload-limit", "10"], "upload_limit"),
    (["--replicas", "2"], "add --virtual"),
    (["--board-speed", "planned"], "add --virtual"),
])
def test_serve_refuses_bad_flags_with_a_clear_error(argv, says):
    r = subprocess.run([sys.executable, "-m", "fleetvote.cli", "serve", *argv], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("argv", [["--replicas", "0"], ["--board-speed", "warp"], ["--queue-size", "many"]])
def test_serve_refuses_malformed_flags_at_parse_time(argv):
    with pytest.raises(SystemExit):
        serve_args("--virtual", *argv)


@contextlib.contextmanager
def serving(tmp_path: Path, ens: Path, *flags: str):
    from fleetvote.testbed.processes import free_port

    port = free_port()
    env = {**os.environ, "FLEETVOTE_SCAN_USB": "false", "FLEETVOTE_LINK_GLOBS": "[]", "FLEETVOTE_ZOO": str(ZOO)}
    proc = subprocess.Popen([sys.executable, "-m", "fleetvote.cli", "serve", "--virtual", "--port", str(port),
                             "--ensemble", str(ens), "--run-dir", str(tmp_path / "run"), *flags],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the service was not ready in 40 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_planned_speed_replicas_serve_each_member_on_n_boards_at_its_planned_latency(board_bin, tmp_path):
    from fleetvote.testbed.virtual import planned_latency_ms

    ens, mid = one_member_ensemble(tmp_path)
    planned_ms = planned_latency_ms([mid], ZOO)[mid]["total_ms"]
    with serving(tmp_path, ens, "--board-speed", "planned", "--replicas", "2", "--no-fallback") as url:
        deadline = time.monotonic() + 20
        while len(httpx.get(url + "/ensemble").json()["members"][0]["board_ids"]) < 2:
            assert time.monotonic() < deadline, "the second replica never served"
            time.sleep(0.2)
        body = os.urandom(3072)

        def post(_):
            return httpx.post(url + "/classify", content=body, timeout=10,
                              headers={"content-type": "application/octet-stream"}).json()

        with ThreadPoolExecutor(2) as pool:  # two at once: the least loaded board takes each
            answers = list(pool.map(post, range(2)))
    members = [a["members"][0] for a in answers]
    assert all(m["source"] == "board" for m in members)
    assert len({m["board_id"] for m in members}) == 2
    for m in members:
        # the board pads its compute to the planned latency, rounded to whole milliseconds
        assert m["on_board_ms"] >= round(planned_ms) - 1
        assert m["latency_ms"] >= planned_ms - 1


def test_capacity_of_planned_boards_never_beats_the_planners_prediction(board_bin, tmp_path):
    from fleetvote.testbed.capacity import measure_capacity, predicted_rps
    from fleetvote.testbed.virtual import planned_latency_ms

    ens, mid = one_member_ensemble(tmp_path)
    plan = planned_latency_ms([mid], ZOO)
    row = measure_capacity(1, plan, ens, tmp_path / "run", duration=3.0, warmup=1)
    assert row["predicted_rps"] == pytest.approx(predicted_rps(plan, 1), abs=1e-3)
    assert row["predicted_rps"] == pytest.approx(1000 / plan[mid]["total_ms"], abs=1e-3)
    for lv in row["levels"]:
        assert lv["errors"] == lv["status_503"] == 0 and lv["member_sources"]["board"] == 1.0
    # a board cannot answer faster than its padding (5 % for the ramp at the ends of a level);
    # host-speed boards would answer tens of times faster. The lower bound only says it ran.
    assert 0.3 < row["ratio"] <= 1.05


def test_realspeed_section_replaces_only_what_lies_between_its_markers():
    from fleetvote.testbed.capacity import END, START, splice

    readme = f"# x\n\nbefore\n\n{START}\nold table\n{END}\n\nafter\n"
    once = splice(readme, "new table")
    assert once == f"# x\n\nbefore\n\n{START}\nnew table\n{END}\n\nafter\n"
    assert splice(once, "new table") == once
    appended = splice("# x\n", "t")
    assert appended.endswith(f"### At real-board speed\n\n{START}\nt\n{END}\n")


def test_the_capacity_report_is_written_by_the_test_beds_report_writer(tmp_path, capsys, monkeypatch):
    from fleetvote.testbed import capacity, reports

    monkeypatch.setattr(reports, "host_figures", lambda: {"cpus": 99, "load_avg_1m": 1.5})
    plan = {"m0": {"board": "nucleo-f411re", "transfer_ms": 10.0, "compute_ms": 90.0, "total_ms": 100.0}}
    rows = [{"replicas": 1, "boards": 1, "measured_rps": 9.0, "at_concurrency": 4, "predicted_rps": 10.0,
             "ratio": 0.9, "levels": []}]
    rep = {"plan": plan, "capacity": rows, "command": "make bench-capacity", "argv": "python -m x",
           "deadline_ms": capacity.CAPACITY_DEADLINE_MS}
    path = capacity.write_capacity_report(rep, tmp_path)
    saved = json.loads(path.read_text())
    assert path == tmp_path / "capacity.json" and saved["json"] == str(path)
    assert saved["host"] == {"cpus": 99, "load_avg_1m": 1.5} and saved["date"].startswith("20")
    assert saved["capacity"] == rows and f"every figure in {path}" in capsys.readouterr().out
    # with the real-speed figures, the section is printed and spliced into the README given
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{capacity.START}\nold\n{capacity.END}\n")
    monkeypatch.setattr(capacity, "render_readme", lambda r: f"tables of {r['host']['cpus']} CPUs")
    capacity.write_capacity_report({**rep, "realspeed": {}}, reports.run_folder(str(tmp_path / "rs"), "capacity"),
                                   readme)
    assert "tables of 99 CPUs" in capsys.readouterr().out
    assert readme.read_text() == f"# x\n\n{capacity.START}\ntables of 99 CPUs\n{capacity.END}\n"


def test_bench_capacity_writes_its_report_in_the_run_folder_it_was_given(tmp_path, capsys, monkeypatch):
    from fleetvote.testbed import capacity

    plan = {"m0": {"board": "nucleo-f411re", "transfer_ms": 10.0, "compute_ms": 90.0, "total_ms": 100.0}}
    monkeypatch.setattr(capacity, "load_ensemble", lambda path, zoo: type("E", (), {"members": []})())
    monkeypatch.setattr(capacity, "planned_latency_ms", lambda ids, zoo, catalog: plan)
    monkeypatch.setattr(capacity, "measure_capacity", lambda r, plan, ens, run_dir, duration: {
        "replicas": r, "boards": r, "measured_rps": 9.0 * r, "at_concurrency": 4 * r,
        "predicted_rps": capacity.predicted_rps(plan, r), "ratio": 0.9, "levels": []})
    assert capacity.main(["--replicas", "1,2", "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "capacity.json").read_text())
    assert [r["replicas"] for r in saved["capacity"]] == [1, 2] and saved["command"] == "make bench-capacity"
    assert set(saved["host"]) == {"cpus", "load_avg_1m"} and "every figure in" in capsys.readouterr().out
