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
