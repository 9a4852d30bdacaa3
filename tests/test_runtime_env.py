"""The service installs and runs with its runtime dependencies only: no TensorFlow."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, ZOO, need_tool
from fleetvote.offline.cards import load_cards


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # the project without extras: the service's runtime dependencies only
    r = subprocess.run([*pip, str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return venv


def test_runtime_install_has_no_tensorflow(runtime_venv):
    r = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", "import tensorflow"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'tensorflow'" in r.stderr


def test_runtime_cli_help_works(runtime_venv):
    r = subprocess.run([str(runtime_venv / "bin" / "fleetvote"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "serve" in r.stdout and "classify" not in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runtime_service_classifies_on_one_virtual_board(runtime_venv, tmp_path, test_images):
    need_tool("cc")
    members = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not members:
        pytest.skip("no zoo member yet")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": members[0]}], "strategy": "soft", "quorum": 1}))
    port = _free_port()
    env = {**os.environ, "FLEETVOTE_ZOO": str(ZOO), "FLEETVOTE_SCAN_USB": "false",
           "FLEETVOTE_BOARD_BIN": str(ROOT / "firmware" / "build" / "host" / "board")}
    proc = subprocess.Popen([str(runtime_venv / "bin" / "fleetvote"), "serve", "--virtual", "--port", str(port),
                             "--ensemble", str(ens), "--run-dir", str(tmp_path / "run")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(base + "/readyz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("service not ready in 30 s")
        req = urllib.request.Request(base + "/classify", data=test_images.x[0].tobytes(),
                                     headers={"content-type": "application/octet-stream"})
        body = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert body["members"][0]["source"] == "board" and 0 <= body["label"] < 10
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    # the virtual board went with the service: no process left behind
    left = subprocess.run(["pgrep", "-f", f"--link {tmp_path / 'run'}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", out[-2000:]


def test_runtime_bench_runs_open_loop_at_planned_speed_without_test_extra_or_data(runtime_venv, tmp_path):
    need_tool("cc")
    members = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not members:
        pytest.skip("no zoo member yet")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    py = runtime_venv / "bin" / "python"
    no_extra = subprocess.run([str(py), "-c", "import pytest"], capture_output=True, text=True)
    assert no_extra.returncode != 0  # the test extra is not there
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": members[0]}], "strategy": "soft", "quorum": 1}))
    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_PATH"}
    env.update(FLEETVOTE_ZOO=str(ZOO), FLEETVOTE_BOARD_BIN=str(ROOT / "firmware" / "build" / "host" / "board"),
               FLEETVOTE_CATALOG=str(ROOT / "firmware" / "boards" / "catalog.json"))
    out = tmp_path / "bench"
    r = subprocess.run([str(runtime_venv / "bin" / "fleetvote"), "bench", "--serve-virtual", "--ensemble", str(ens),
                        "--board-speed", "planned", "--rate", "4", "--count", "6", "--synthetic", "--warmup", "1",
                        "--no-progress", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "open loop" in r.stdout
    rep = json.loads((out / "bench.json").read_text())
    (rate,) = rep["rates"]
    # (a member may fall back: a virtual board has no clock to estimate its deadline from, so it gets
    # 300 ms until its p99 is known, and an arrival queued behind another waits longer than that)
    assert rate["requests"] == rate["ok"] == 6 and rate["member_sources"]["board"] > 0
    assert sum(rate["member_sources"].values()) == pytest.approx(1.0)
    assert rate["latency_ms"]["p50"] > 100  # a planned-speed board: a real board's ~100-200 ms, not host speed
    assert "matplotlib" in rep["files"].get("plots", "") or "rates_png" in rep["files"]
