"""Fault injection into a virtual board that another process holds open: the board's --control
FIFO and --chaos option (firmware/ports/host/faults_control.c), then each fault against the service, which
must answer every request (falling back) and get the board back to ready."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, ZOO, need_tool
from fleetvote.errors import BoardError, BoardGone, BoardProtocolError, BoardTimeout
from fleetvote.link.client import BoardClient, Timeouts

BOARD = ROOT / "firmware" / "build" / "host" / "board"


@pytest.fixture(scope="module")
def board_bin():
    need_tool("cc")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    return BOARD


@pytest.fixture(scope="module")
def model_id(board_bin):
    from fleetvote.testbed.harness import board_models

    ids = board_models(board_bin)
    if not ids:
        pytest.skip("no zoo member built into the virtual board")
    return ids[0]


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@contextlib.asynccontextmanager
async def held_board(tmp_path, model_id, timeouts=Timeouts(classify=0.4, ping=0.4, hello=0.4)):
    """A controlled board, and a client holding its pty as the service would."""
    from fleetvote.testbed.harness import ControlledBoard

    b = ControlledBoard(model_id, 0, tmp_path)
    b.start()
    client = await BoardClient.open(str(b.link), timeouts)
    try:
        await client.hello()
        yield b, client
    finally:
        await client.close()
        b.stop()


# A request the test expects the board to answer gets this long, so that a busy machine (both
# cores training, say) cannot turn a slow answer into a timeout; a request the fault must time out
# keeps the client's 0.4 s.
ANSWERED_WITHIN_S = 3.0


async def answers_again(client, within: float = 5.0):
    """HELLO until the board answers (it is restarting after a RESET or a HANG), bounded."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await client.hello()
        except BoardTimeout:
            if time.monotonic() > deadline:
                raise


async def test_control_fifo_faults_the_next_classification_of_a_board_held_by_a_client(board_bin, model_id, tmp_path):
    async with held_board(tmp_path, model_id) as (b, client):
        want = (await client.classify(image(), timeout=ANSWERED_WITHIN_S)).scores

        async def after(kind: str, arg: int = 0, timeout: float | None = None):
            assert b.inject(kind, arg)
            await asyncio.sleep(0.05)  # the board reads its FIFO between requests
            t = time.perf_counter()
            try:
                r = await client.classify(image(), timeout=timeout)
                return r, time.perf_counter() - t
            except BoardError as exc:
                return exc, time.perf_counter() - t

        r, _ = await after("DROP")
        assert isinstance(r, BoardTimeout)
        r, s = await after("DELAY", 150, ANSWERED_WITHIN_S)
        assert r.scores == want and s >= 0.15
        r, _ = await after("DELAY", 800)
        assert isinstance(r, BoardTimeout)
        await asyncio.sleep(0.5)  # the late reply arrives and is dropped by its seq
        r, _ = await after("GARBAGE", 700, ANSWERED_WITHIN_S)
        assert r.scores == want  # the noise ends with a delimiter: the client resynchronises
        r, _ = await after("BAD_CRC", 0, ANSWERED_WITHIN_S)
        assert isinstance(r, BoardProtocolError) and "BAD_CRC" in str(r)
        r, _ = await after("RESET")
        assert isinstance(r, BoardTimeout)  # half a reply, then the board restarted
        assert (await answers_again(client)).model_id == model_id  # and greets again
        r, _ = await after("HANG", 300)  # its watchdog resets it after 300 ms
        assert isinstance(r, BoardTimeout)
        await answers_again(client)
        assert (await client.classify(image(), timeout=ANSWERED_WITHIN_S)).scores == want
        assert client.counters.dropped_late_replies >= 1
        assert b.fired() == [("DROP", 0), ("DELAY", 150), ("DELAY", 800), ("GARBAGE", 700), ("BAD_CRC", 0),
                             ("RESET", 0), ("HANG", 300)]


async def test_hang_forever_on_a_pty_ends_when_the_host_closes_and_reopens_the_link(board_bin, model_id, tmp_path):
    async with held_board(tmp_path, model_id) as (b, client):
        assert b.inject("HANG", 0)
        await asyncio.sleep(0.05)
        with pytest.raises(BoardTimeout):
            await client.classify(image())
        await asyncio.sleep(1.0)
        with pytest.raises(BoardTimeout):
            await client.ping()  # still hung: no watchdog
        await client.close()
        again = await BoardClient.open(str(b.link), Timeouts(hello=1.0))
        try:
            assert (await again.hello()).model_id == model_id
            assert len((await again.classify(image())).scores) == 10
        finally:
            await again.close()
        assert b.running


async def test_unplug_through_the_fifo_closes_the_link_and_removes_it(board_bin, model_id, tmp_path):
    async with held_board(tmp_path, model_id) as (b, client):
        assert b.inject("UNPLUG")
        await asyncio.sleep(0.05)
        with pytest.raises(BoardGone):
            await client.classify(image())
        b.process.wait(3)
        assert not b.link.exists() and not b.control.exists()
        assert not b.inject("DROP")  # nobody reads the FIFO any more
        assert "faults fired 1: DROP 0 DELAY 0 GARBAGE 0 BAD_CRC 0 RESET 0 HANG 0 UNPLUG 1" in b.log.read_text()


async def test_control_fifo_ignores_malformed_lines_and_clear_disarms(board_bin, model_id, tmp_path):
    async with held_board(tmp_path, model_id) as (b, client):
        for line in ("NOPE", "DELAY lots", "9 1", "DROP 99999999999", "x" * 300):
            assert b.inject(line)
        assert b.inject("DROP")
        assert b.inject("CLEAR")
        await asyncio.sleep(0.05)
        assert len((await client.classify(image())).scores) == 10
        assert b.fired() == []
        assert b.log.read_text().count("--control: ignored") == 5


def _chaos_board(tmp_path, model_id, spec: str):
    p = subprocess.Popen([str(BOARD), "--model", model_id, "--pty", "--link", str(tmp_path / "b"), "--chaos", spec],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("pty ")
    return p


async def _count_failures(tmp_path, n: int) -> tuple[list[str], int, int]:
    """Outcomes of n classifications, how many replies came after their request had timed out (a
    slow answer on a busy machine, not a fault: a DROP never answers), and how many corrupted
    (BAD_CRC) replies did: each of those was a BAD_CRC whose request counted a timeout."""
    client = await BoardClient.open(str(tmp_path / "b"), Timeouts(classify=0.2, ping=0.3))
    out = []
    try:
        for i in range(n):
            try:
                await client.classify(image(i))
                out.append("ok")
            except BoardError as exc:
                out.append(type(exc).__name__)
        await asyncio.sleep(0.5)  # a last late reply, if any
        late = client.counters.dropped_late_replies
        # a corrupted reply in time fails its request (BoardProtocolError); every other one came late
        late_bad = client.counters.decode_errors - out.count("BoardProtocolError")
    finally:
        await client.close()
    return out, late, late_bad


async def test_chaos_option_faults_a_seeded_share_of_classifications(board_bin, model_id, tmp_path):
    runs = []
    for _ in range(2):
        p = _chaos_board(tmp_path, model_id, "7:0.5:DROP,BAD_CRC")
        try:
            outcomes, late, late_bad = await _count_failures(tmp_path, 40)
        finally:
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=5)
        fired = [line for line in err.splitlines() if line.startswith("board: fault ")]
        runs.append(fired)
        assert len(fired) == 40 - outcomes.count("ok") - late
        assert 8 <= len(fired) <= 32  # about half
        assert set(outcomes) == {"ok", "BoardTimeout", "BoardProtocolError"}
        assert f"board: faults fired {len(fired)}: DROP {outcomes.count('BoardTimeout') - late - late_bad} DELAY 0 " \
               f"GARBAGE 0 BAD_CRC {outcomes.count('BoardProtocolError') + late_bad}" in err
    assert runs[0] == runs[1]  # the same seed, the same faults


@pytest.mark.parametrize("spec", ["7", "7:1.5", "x:0.1", "7:0.1:NOPE", "7:0.1:", "7:0.1:DROP,"])
def test_a_malformed_chaos_option_is_refused(board_bin, model_id, spec):
    r = subprocess.run([str(BOARD), "--model", model_id, "--pty", "--chaos", spec], capture_output=True, text=True,
                       timeout=5)
    assert r.returncode == 2 and "--chaos" in r.stderr


# ---- each fault against the service ------------------------------------------------------------

CASES = {
    # kind: (how to inject, answer the faulted request must have)
    "DROP": "timeout",
    "DELAY_SHORT": "board",  # 100 ms, within the 400 ms deadline
    "DELAY_LONG": "timeout",
    "GARBAGE": "board",
    "BAD_CRC": "board_error",
    "RESET": "timeout",
    "HANG": "timeout",
    "HANG_FOREVER": "timeout",
    "UNPLUG": "link_lost",
    "FREEZE": "timeout",
    "KILL": "link_lost",
}


@pytest.mark.parametrize("fault", list(CASES))
async def test_service_answers_through_each_fault_and_the_board_returns_to_ready(board_bin, model_id, tmp_path, fault):
    from fleetvote.engine import Engine
    from fleetvote.settings import Settings
    from fleetvote.testbed.harness import ControlledBoard, LeanHttp, live_service, write_ensemble

    engine = Engine.from_file(ZOO / model_id / "model.tflite")
    board = ControlledBoard(model_id, 0, tmp_path)
    board.start()
    settings = Settings(ensemble=write_ensemble(tmp_path / "ensemble.json", [model_id]), zoo=ZOO, urls=[],
                        link_globs=[str(tmp_path / "boards" / "*")], scan_usb=False, rescan_s=0.2,
                        ping_interval_s=0.5)
    deadline = 400

    async def state(http):
        boards = (await http.request("GET", "/boards")).json()["boards"]
        return boards[0]["state"] if boards else None

    async def classify(http, i):
        t = time.perf_counter()
        r = await http.request("POST", f"/classify?deadline_ms={deadline}", image(i).tobytes(), "application/octet-stream")
        assert r.status == 200, r.body
        m = r.json()["members"][0]
        assert m["output"] == engine.run(image(i)).tolist()
        return m, (time.perf_counter() - t) * 1000

    try:
        async with live_service(settings) as (url, _app):
            http = LeanHttp.for_url(url)
            t0 = time.monotonic()
            while await state(http) != "ready":
                assert time.monotonic() - t0 < 10
                await asyncio.sleep(0.05)
            kind, arg = {"DELAY_SHORT": ("DELAY", 100), "DELAY_LONG": ("DELAY", 2500), "GARBAGE": ("GARBAGE", 900),
                         "HANG": ("HANG", 3000), "HANG_FOREVER": ("HANG", 0)}.get(fault, (fault, 0))
            if fault == "FREEZE":
                board.freeze()
            elif fault == "KILL":
                req = asyncio.create_task(classify(http, 1))
                await asyncio.sleep(0.002)
                board.kill()
            else:
                assert board.inject(kind, arg)
                await asyncio.sleep(0.05)
            m, ms = await req if fault == "KILL" else await classify(http, 1)
            want = CASES[fault]
            if want == "board":
                assert m["source"] == "board"
            elif fault != "KILL":  # a kill may land before or after the board answered
                assert m["source"] == "fallback" and m["reason"].startswith(want), m
            assert ms < deadline + 1000
            if fault == "FREEZE":
                await asyncio.sleep(0.8)
                board.thaw()
            if fault in ("KILL", "UNPLUG"):
                await asyncio.to_thread(board.process.wait, 5)
                await asyncio.sleep(0.5)  # unplugged for a while
                await asyncio.to_thread(board.start)
            # meanwhile every request is answered (from the engine while the board is away)
            t0 = time.monotonic()
            i = 2
            while True:
                m, _ = await classify(http, i)
                if m["source"] == "board" and await state(http) == "ready":
                    break
                assert time.monotonic() - t0 < 15, (f"board not back after {fault}: {await state(http)}; "
                                                    f"last answer from {m['source']} ({m.get('reason')})")
                i += 1
                await asyncio.sleep(0.1)
            await http.close()
    finally:
        board.stop()


async def test_stopping_the_service_leaves_no_asyncio_task_behind(board_bin, model_id, tmp_path):
    from fleetvote.settings import Settings
    from fleetvote.testbed.harness import ControlledBoard, live_service, resources, write_ensemble

    boards = [ControlledBoard(model_id, i, tmp_path) for i in range(2)]
    for b in boards:
        b.start()
    settings = Settings(ensemble=write_ensemble(tmp_path / "ensemble.json", [model_id]), zoo=ZOO, urls=[],
                        link_globs=[str(tmp_path / "boards" / "*")], scan_usb=False, rescan_s=0.2)
    before = resources()
    try:
        async with live_service(settings) as (_url, app):
            t0 = time.monotonic()
            while not (len(app.state.fleet.boards) == 2 and all(b.state.value == "ready"
                                                                for b in app.state.fleet.boards.values())):
                assert time.monotonic() - t0 < 10
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        after = resources()
    finally:
        for b in boards:
            b.stop()
    assert after.tasks == before.tasks, after.leaks_vs(before)
