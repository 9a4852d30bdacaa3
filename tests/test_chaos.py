"""Short versions of `make chaos` and `make load` (service/fleetvote/testbed/chaos.py,
loadtest.py): faults at random into half the boards while clients classify over real HTTP on
loopback; then a closed-loop load against `fleetvote serve`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, need_tool


@pytest.fixture(scope="module")
def board_bin():
    need_tool("cc")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    from fleetvote.testbed.harness import BOARD_BIN, board_models

    if not board_models(BOARD_BIN):
        pytest.skip("no zoo member built into the virtual board")
    return BOARD_BIN


async def test_chaos_every_request_answered_in_time_and_every_board_back_without_leaks(board_bin):
    from fleetvote.testbed.chaos import ALL_FAULTS, Chaos, ChaosConfig

    # modest concurrency, and time the loop measurably could not run while a request was in
    # flight is not held against the service: the bound (deadline + engine time + 50 ms) is about
    # the service's deadlines, not about how a 2-core machine shared with other work schedules it
    cfg = ChaosConfig(boards=4, victims=2, members=2, requests=800, concurrency=3, deadline_ms=300, fault_interval_s=0.1,
                      faults=ALL_FAULTS, seed=11, recovery_s=20, allow_loop_lag=True)
    rep = await Chaos(cfg).run()
    text = "\n".join(rep.lines())
    print(text)
    assert rep.answered == rep.requests == 800, text
    assert rep.lost == 0 and rep.wrong == 0, text
    assert rep.faults_injected >= 6 and rep.recovered == rep.faults_injected and rep.not_recovered == 0, text
    # the Queue.get tasks Board._serve leaves when the fleet stops are a known bug, reported and
    # pinned by tests/test_faults.py::test_stopping_the_service_leaves_no_asyncio_task_behind
    known = "after the run: asyncio tasks"
    assert not [x for x in rep.leaks if not (x.startswith(known) and "Queue.get" in x)], text
    assert rep.late_beyond_loop_lag == 0, text


def test_chaos_command_line_prints_the_counts(board_bin):
    r = subprocess.run([sys.executable, "-m", "fleetvote.testbed.chaos", "--boards", "2", "--members", "2", "--victims", "1", "--requests", "40",
                        "--concurrency", "2", "--faults", "DROP,GARBAGE,BAD_CRC", "--fault-interval", "0.1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stdout + r.stderr  # 1 while the known task leak stands (see above)
    for word in ("requests 40: answered 40", "wrong 0, lost 0", "faults injected", "recovered", "leaks:", "chaos: "):
        assert word in r.stdout, r.stdout
    h = subprocess.run([sys.executable, "-m", "fleetvote.testbed.chaos", "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "--victims" in h.stdout


def test_tiny_load_has_no_error_and_flat_memory(board_bin):
    from fleetvote.testbed.loadtest import LoadConfig, run_load

    rep = run_load(LoadConfig(requests=800, concurrency=16, boards=2, members=2, warmup=100, rss_every=200))
    text = "\n".join(rep.lines())
    print(text)
    assert rep.errors == 0 and rep.ok + rep.admission_503 == 800, text
    assert rep.ok > 0 and rep.p99_ms is not None and rep.throughput_rps > 0, text
    assert rep.rss_growth is not None and rep.rss_growth < 0.10, text
