"""Boards on other hosts: ser2net 4.x exposes a board's serial port over RFC 2217 and the service
reaches it by an ``rfc2217://`` URL. Here the "other host" is loopback and the board is a virtual
one on a pty; ser2net opens the pty as a serial device, as it would open /dev/ttyACM0."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time

import httpx
import numpy as np

from conftest import ROOT, ZOO, need
from test_service import board_bin, member_ids, raw, wait_for  # noqa: F401  (board_bin is a fixture)


def ser2net_path() -> str:
    # Debian installs it in /usr/sbin, which is not on every user's PATH
    path = shutil.which("ser2net") or next((p for p in ("/usr/sbin/ser2net", "/usr/local/sbin/ser2net")
                                            if os.access(p, os.X_OK)), None)
    need(path is not None, "ser2net is not installed (Debian package ser2net)")
    return path  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(port: int, device: str) -> str:
    """The first connection of deploy/ser2net/ser2net.yaml (the documented set-up), moved to a
    loopback port and to the virtual board's pty."""
    text = (ROOT / "deploy" / "ser2net" / "ser2net.yaml").read_text()
    first = text[:text.index("connection:", text.index("connection:") + 1)]
    first, n = re.subn(r"accepter: telnet\(rfc2217\),tcp,[^,\s]+,\d+", f"accepter: telnet(rfc2217),tcp,127.0.0.1,{port}",
                       first)
    assert n == 1, "the documented accepter is telnet(rfc2217),tcp,ADDRESS,PORT"
    first, n = re.subn(r"connector: serialdev,[^,\s]+,", f"connector: serialdev,{device},", first)
    assert n == 1, "the documented connector is serialdev,DEVICE,SETTINGS"
    return first


@contextlib.contextmanager
def ser2net(tmp_path, port: int, device: str):
    cfg = tmp_path / "ser2net.yaml"
    cfg.write_text(config(port, device))
    # -n: stay in the foreground (our child, stopped by PID); -u: no UUCP lock files in /var/lock;
    # -P: a pid file of our own rather than the system daemon's
    proc = subprocess.Popen([ser2net_path(), "-n", "-u", "-c", str(cfg), "-P", str(tmp_path / "ser2net.pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, f"ser2net exited: {proc.stdout.read()}"
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "ser2net does not listen"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


@contextlib.asynccontextmanager
async def service_over(tmp_path, ids, url):
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings

    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in ids], "strategy": "soft", "quorum": 1}))
    # RFC 2217 negotiation alone takes pyserial 0.5-1 s: more than a tty's open, on a busy machine
    settings = Settings(ensemble=ens, zoo=ZOO, urls=[url], link_globs=[], scan_usb=False,
                        rescan_s=0.2, ping_interval_s=0.5, open_timeout_s=5.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                     timeout=30) as client:
            yield client


async def test_classify_through_ser2net_rfc2217_is_answered_by_the_board(board_bin, tmp_path, test_images):  # noqa: F811
    from fleetvote.engine import Engine
    from fleetvote.testbed.processes import stop_process
    from fleetvote.testbed.virtual import start_board

    ser2net_path()
    ids = member_ids(1)
    engine = Engine.from_file(ZOO / ids[0] / "model.tflite")
    board = start_board(ids[0], "ser2net-0")  # a bare pty: /dev/pts/N, as ser2net sees a tty
    port = free_port()
    # a pty has no modem lines, so ser2net never acknowledges pyserial's "DTR on": ign_set_control
    # tells pyserial not to wait for that answer (a board's real ttyACM needs no such option)
    url = f"rfc2217://127.0.0.1:{port}?ign_set_control"
    try:
        with ser2net(tmp_path, port, board.port) as daemon:
            async with service_over(tmp_path, ids, url) as client:
                boards = await wait_for(client, lambda b: len(b) == 1 and b[0]["state"] == "ready", timeout=15)
                assert boards[0]["url"] == url and boards[0]["model_id"] == ids[0]
                for idx in (0, 4321):
                    r = await client.post("/classify", **raw(test_images.x[idx]))
                    assert r.status_code == 200, r.text
                    m = r.json()["members"][0]
                    assert m["source"] == "board" and m["board_id"] == boards[0]["board_id"]
                    assert np.array_equal(m["output"], engine.run(test_images.x[idx]))

                # the remote host goes away: the member falls back, the board shows offline
                daemon.terminate()
                daemon.wait(5)
                r = await client.post("/classify?deadline_ms=2000", **raw(test_images.x[0]))
                assert r.status_code == 200 and r.json()["members"][0]["source"] == "fallback"
                await wait_for(client, lambda b: b[0]["state"] == "offline", timeout=15)
                # and comes back on the same port: the service reconnects by itself
                with ser2net(tmp_path, port, board.port):
                    await wait_for(client, lambda b: b[0]["state"] == "ready", timeout=20)
                    r = await client.post("/classify", **raw(test_images.x[0]))
                    assert r.json()["members"][0]["source"] == "board"
    finally:
        stop_process(board.process)
