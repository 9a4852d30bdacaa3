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
                if r.status_code == 200 and all(m["board_ids"] for m in r.json()["members"]):
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


# ---- the open loop ---------------------------------------------------------------------------

class SlowServer:
    """A minimal HTTP/1.1 server (keep-alive) on loopback that answers POST /classify after
    ``delay_s`` with an answer in the API's shape (one member from a board, one from the fallback
    engine after a timeout, one spilled over from a full queue), and counts the requests it holds
    at once. Anything else gets 404."""

    MEMBERS = [
        {"model_id": "a", "board_id": "b0", "source": "board", "reason": None, "queue_ms": 1.0, "wire_ms": 1.0,
         "board_us": 1000, "latency_ms": 2.0},
        {"model_id": "b", "board_id": None, "source": "fallback", "reason": "timeout", "queue_ms": 0.0,
         "wire_ms": 0.0, "board_us": None, "latency_ms": 3.0},
        {"model_id": "c", "board_id": None, "source": "fallback", "reason": "queue full", "queue_ms": 0.0,
         "wire_ms": 0.0, "board_us": None, "latency_ms": 3.0},
    ]

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.held = self.most = self.posts = 0
        self.loop = None
        self.port = None

    async def _serve(self, reader, writer):
        import asyncio

        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next((int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:")), 0)
                await reader.readexactly(length)
                if lines[0].startswith("POST /classify"):
                    self.posts += 1
                    self.held += 1
                    self.most = max(self.most, self.held)
                    await asyncio.sleep(self.delay_s)
                    self.held -= 1
                    body = json.dumps({"label": 3, "fallbacks": 2, "latency_ms": self.delay_s * 1000,
                                       "members": self.MEMBERS}).encode()
                    status = "200 OK"
                else:
                    body, status = b"{}", "404 Not Found"
                writer.write(f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
                             "\r\n\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def __enter__(self):
        import asyncio

        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            server.close()
            tasks = asyncio.all_tasks(self.loop)  # the open connections: end them before the loop
            for t in tasks:
                t.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_arrivals_are_poisson_at_the_rate_and_the_same_on_a_rerun():
    from fleetvote.testbed.bench_api import arrivals

    at = arrivals(50.0, None, 200.0)
    gaps = np.diff(at)
    assert at[0] == 0 and np.all(gaps > 0) and at[-1] < 200.0
    # 10,000 exponential gaps: mean 1/rate within 3 %, coefficient of variation 1 (exponential) within 5 %
    assert len(at) == pytest.approx(50 * 200, rel=0.05)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)
    assert np.array_equal(at, arrivals(50.0, None, 200.0))
    assert len(arrivals(50.0, 7, None)) == 7 and len(arrivals(50.0, 7, 200.0)) == 7
    assert not np.array_equal(arrivals(50.0, 7, None), arrivals(51.0, 7, None))


def test_open_loop_sends_on_schedule_while_earlier_answers_are_slow(tmp_path, monkeypatch):
    from fleetvote.testbed.bench_api import RATE_FIELDS, run_bench

    monkeypatch.delenv("CIFAR10_PATH", raising=False)  # --synthetic needs no data set
    with SlowServer(0.3) as url:
        rep = run_bench(url, out_dir=tmp_path, levels=(), rates=(20.0,), count=12, synthetic=True, warmup=0,
                        progress=False, plots=False)
    (r,) = rep["rates"]
    assert rep["levels"] == [] and rep["strategies"] == [] and "synthetic" in rep["dataset"]
    assert r["requests"] == r["ok"] == 12 and r["status_503"] == 0 and r["accuracy"] is None
    # 12 arrivals at 20/s span about 0.55 s: a closed loop of one would need 12 x 0.3 s
    assert r["answered_rps"] > 1 / 0.3 * 1.5
    assert 0.3 * 1000 <= r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
    assert r["member_sources"] == {"board": pytest.approx(1 / 3, abs=1e-3), "fallback": pytest.approx(1 / 3, abs=1e-3),
                                   "spillover": pytest.approx(1 / 3, abs=1e-3)}
    assert r["cpu_ms_per_request"]["client"] > 0
    with open(tmp_path / "bench_rates.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == RATE_FIELDS and rows[0]["ok"] == "12"


def test_open_loop_holds_many_requests_at_once_and_counts_the_wait_for_a_connection():
    from fleetvote.testbed.bench_api import run_bench

    server = SlowServer(0.25)
    with server as url:
        wide = run_bench(url, levels=(), rates=(20.0,), count=10, synthetic=True, warmup=0, progress=False)
        most_wide = server.most
        server.most = 0
        narrow = run_bench(url, levels=(), rates=(20.0,), count=10, synthetic=True, warmup=0, progress=False,
                           max_in_flight=1)
        most_narrow = server.most
    assert most_wide >= 3  # at 20/s with 0.25 s answers about 5 are out at once; a closed loop of 1 holds 1
    assert most_narrow == 1
    # one connection: the 10th request waits for the 9 before it (~2.25 s) and its latency says so,
    # measured from its scheduled arrival, not from when the client got round to sending it
    assert narrow["rates"][0]["latency_ms"]["max"] >= 1800
    assert wide["rates"][0]["latency_ms"]["max"] < narrow["rates"][0]["latency_ms"]["max"] / 2


def test_member_origin_tells_spillover_from_fallback():
    from fleetvote.testbed.bench_api import member_origin

    assert member_origin({"source": "board", "reason": None}) == "board"
    assert member_origin({"source": "fallback", "reason": "queue full"}) == "spillover"
    assert member_origin({"source": "fallback", "reason": "queue_full"}) == "spillover"  # the token
    assert member_origin({"source": "spillover", "reason": "boards busy"}) == "spillover"
    for reason in ("timeout", "board offline", "no board serving this member", None):
        assert member_origin({"source": "fallback", "reason": reason}) == "fallback"


def test_bench_loads_a_remote_url_only_when_allowed():
    from fleetvote.testbed.bench_api import check_loopback

    assert check_loopback("http://10.0.0.5:8000/", allow_remote=True) == "http://10.0.0.5:8000"
    r = subprocess.run([sys.executable, "-m", "fleetvote.cli", "bench", "--url", "http://10.0.0.5:8000", "--rate", "1",
                        "--count", "1", "--synthetic"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--allow-remote" in r.stderr and "Traceback" not in r.stderr


def test_bench_rate_alone_runs_the_open_loop_only_and_refuses_bad_rates():
    import argparse

    from fleetvote.testbed.bench_api import DEFAULT_LEVELS, add_parser, plan_of

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    assert plan_of(parser.parse_args(["bench", "--rate", "2,4.5"])) == ([], [])
    assert parser.parse_args(["bench", "--rate", "2,4.5"]).rate == [2.0, 4.5]
    assert plan_of(parser.parse_args(["bench", "--rate", "2", "--concurrency", "1"]))[0] == [1]
    assert plan_of(parser.parse_args(["bench"]))[0] == list(DEFAULT_LEVELS)
    for bad in ("0", "-1", "fast", ""):
        with pytest.raises(SystemExit):
            parser.parse_args(["bench", "--rate", bad])
