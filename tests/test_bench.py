"""``fleetvote bench`` against a real server on loopback over virtual boards (the host firmware)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from conftest import ROOT, ZOO, need_tool
from fleetvote.offline.cards import load_cards
from test_fusion import fourth_strategy  # noqa: F401  (a fixture)

BOARD_BIN = ROOT / "firmware" / "build" / "host" / "board"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def board_bin():
    need_tool("cc")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    return BOARD_BIN


def member_ids(limit: int) -> list[str]:
    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    return ids[:limit]


@contextlib.contextmanager
def live_server(tmp_path, ids, strategy="soft"):
    """Virtual boards on ptys and the app under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings
    from fleetvote.testbed.processes import free_port, stop_process
    from fleetvote.testbed.virtual import start_board

    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in ids], "strategy": strategy, "quorum": 1}))
    links = tmp_path / "boards"
    boards = [start_board(m, f"bench-{k}", link=links / f"b{k}-{m}") for k, m in enumerate(ids)]
    port = free_port()
    settings = Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[str(links / "*")], scan_usb=False,
                        rescan_s=0.2, port=port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                                           log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(url + "/ensemble", timeout=2)
                if r.status_code == 200 and all(m["boards"] for m in r.json()["members"]):
                    break
            assert time.monotonic() < deadline, "the server's boards did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        for b in boards:
            stop_process(b.process)


def test_bench_sweep_writes_json_csv_png_with_sane_figures(board_bin, tmp_path, cifar_path, test_images):
    from fleetvote.engine import Engine
    from fleetvote.fusion import fuse_batch
    from fleetvote.testbed.bench_api import CSV_FIELDS, ORDER_SEED, run_bench

    ids = member_ids(2)
    out = tmp_path / "out"
    with live_server(tmp_path, ids) as url:
        rep = run_bench(url, out_dir=out, levels=(1, 2), count=6, strategies=("majority", "soft"), strategy_count=4,
                        overhead_levels=(1,), warmup=1, data=cifar_path, progress=False)
    for name in ("bench.json", "bench.csv", "bench_boards.csv", "bench_requests.jsonl"):
        assert (out / name).stat().st_size > 0
    for name in ("bench_latency.png", "bench_strategies.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    saved = json.loads((out / "bench.json").read_text())
    assert [lv["concurrency"] for lv in saved["levels"]] == [1, 2]
    # the answers are the engine's bytes fused by the same rule: accuracy is exactly predictable
    order = np.random.default_rng(ORDER_SEED).permutation(len(test_images))[:6]
    outs = np.stack([Engine.from_file(ZOO / i / "model.tflite").run(test_images.x[order]) for i in ids])
    expected = float(np.mean(fuse_batch(outs, "soft") == test_images.y[order]))
    for lv in saved["levels"]:
        lat = lv["latency_ms"]
        assert lv["requests"] == lv["ok"] == 6 and lv["errors"] == 0 and lv["status_503"] == 0
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert lv["throughput_rps"] > 0 and 0 <= lv["fallback_share"] <= 1
        assert lv["accuracy"] == pytest.approx(round(expected, 4))
        assert {b["model_id"] for b in lv["boards"]} == set(ids)
        for b in lv["boards"]:
            if b["source"] == "board":
                assert b["board_ms"]["p50"] > 0 and b["queue_ms"]["p50"] >= 0 and b["wire_ms"]["p50"] >= 0
                assert b["latency_ms"]["p50"] >= b["board_ms"]["p50"]
        assert lv["overhead_ms"]["p50"] > 0
        assert set(lv["cpu_ms_per_request"]) == {"client"}
    assert [s["strategy"] for s in saved["strategies"]] == ["majority", "soft"]
    assert all(s["requests"] == s["ok"] == 4 for s in saved["strategies"])
    (o,) = saved["overhead"]
    assert o["concurrency"] == 1 and 0 < o["p50_ms"] <= o["p99_ms"]
    assert saved["floor"]["latency_ms"]["p50"] > 0
    with open(out / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_FIELDS and len(rows) == 4
    assert rep["files"]["json"] == str(out / "bench.json")


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://example.com/", "ftp://127.0.0.1/"])
def test_bench_refuses_urls_off_loopback(url):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.bench_api import check_loopback

    with pytest.raises(ConfigError):
        check_loopback(url)


def test_bench_measures_every_registered_strategy_and_refuses_others(fourth_strategy):  # noqa: F811
    import argparse

    from fleetvote.fusion import STRATEGIES
    from fleetvote.testbed.bench_api import add_parser, plan_of

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    assert plan_of(parser.parse_args(["bench"]))[1] == list(STRATEGIES) and list(STRATEGIES)[-1] == "median"
    assert parser.parse_args(["bench", "--strategies", "median,soft"]).strategies == ["median", "soft"]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--strategies", "soft,loud"])


def test_bench_accepts_loopback_urls():
    from fleetvote.testbed.bench_api import check_loopback

    for url in ("http://127.0.0.1:8000/", "http://localhost:1", "http://[::1]:8000", "http://127.1.2.3:9"):
        assert check_loopback(url) == url.rstrip("/")


def test_bench_serve_virtual_starts_and_stops_its_own_server(board_bin, tmp_path, cifar_path):
    from fleetvote.testbed.processes import pids_alive

    ids = member_ids(1)
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": ids[0]}], "strategy": "majority", "quorum": 1}))
    out = tmp_path / "out"
    env = {**os.environ, "CIFAR10_PATH": cifar_path}
    r = subprocess.run([sys.executable, "-m", "fleetvote.cli", "bench", "--serve-virtual", "--ensemble", str(ens),
                        "--concurrency", "1", "--overhead-concurrency", "1", "--count", "3", "--strategies", "",
                        "--warmup", "0", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "service overhead" in r.stdout
    rep = json.loads((out / "bench.json").read_text())
    served = rep["served_by"]
    assert served["exit_status"] is not None and len(served["board_pids"]) == 1
    assert pids_alive([served["pid"], *served["board_pids"]]) == []
    assert rep["levels"][0]["ok"] == 3 and set(rep["levels"][0]["cpu_ms_per_request"]) == {"client", "server", "boards"}
