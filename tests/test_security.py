"""Security limits (docs/threat-model.md): loopback by default, the API key, the upload limit on a
streamed body over a real socket, bounded buffers against an endless frame from a board, and
malformed ensemble, model and card files refused at start-up with a message."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import socket
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from conftest import ZOO, need_tool
from fleetvote.testbed.harness import LeanHttp, ServiceProcess, rss_bytes, write_ensemble
from fleetvote.testbed.processes import free_port


def members() -> list[str]:
    from fleetvote.offline.cards import load_cards

    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    return ids


def _no_board_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """fleetvote serve with no board at all: every member from the engine."""
    ens = write_ensemble(tmp_path / "ensemble.json", members()[:1])
    return {"FLEETVOTE_ENSEMBLE": str(ens), "FLEETVOTE_SCAN_USB": "false", "FLEETVOTE_LINK_GLOBS": "[]",
            "FLEETVOTE_URLS": "[]", **extra}


def _listening(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (IPv4 and IPv6)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(name):
            continue
        for line in Path(name).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                if len(addr) == 8:
                    out.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    words = [bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, 32, 8)]
                    out.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return out


# ---- where it listens -----------------------------------------------------------------------------

def test_serve_listens_on_loopback_only_unless_told_otherwise(tmp_path):
    from fleetvote.settings import Settings

    assert Settings().host == "127.0.0.1"
    port = free_port()
    svc = ServiceProcess(tmp_path, _no_board_env(tmp_path, FLEETVOTE_PORT=str(port)), port=port,
                         args=(), ready_path="/healthz")  # no --host: the default
    svc.start()
    try:
        assert _listening(port) == {"127.0.0.1"}
    finally:
        assert svc.stop() is not None
    # configured otherwise (here another loopback address, so nothing is exposed by the test)
    port = free_port()
    svc = ServiceProcess(tmp_path, _no_board_env(tmp_path, FLEETVOTE_HOST="127.0.0.2", FLEETVOTE_PORT=str(port)),
                         port=port, host="127.0.0.2", args=(), ready_path="/healthz")
    svc.start()
    try:
        assert _listening(port) == {"127.0.0.2"}
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        svc.stop()


# ---- the API key ----------------------------------------------------------------------------------

async def test_api_key_guards_every_endpoint_but_health_over_a_real_socket(tmp_path):
    from fleetvote.settings import Settings
    from fleetvote.testbed.harness import live_service

    s = Settings(ensemble=write_ensemble(tmp_path / "e.json", members()[:1]), zoo=ZOO, urls=[], link_globs=[],
                 scan_usb=False, api_key="k3y-s3cret")
    image = np.zeros(3072, np.uint8).tobytes()
    async with live_service(s) as (url, _app):
        anon, wrong = LeanHttp.for_url(url), LeanHttp.for_url(url, {"X-API-Key": "k3y-s3creT"})
        right = LeanHttp.for_url(url, {"X-API-Key": "k3y-s3cret"})
        try:
            for http in (anon, wrong):
                for method, path in (("GET", "/boards"), ("GET", "/boards/x"), ("GET", "/ensemble"),
                                     ("GET", "/metrics"), ("POST", "/classify")):
                    r = await http.request(method, path, image if method == "POST" else b"",
                                           "application/octet-stream" if method == "POST" else None)
                    assert r.status == 401, (method, path, r.status)
                    assert r.headers.get("www-authenticate") == 'ApiKey, Bearer realm="fleetvote"'
                    assert b"k3y" not in r.body
            for path in ("/healthz", "/readyz"):
                assert (await anon.request("GET", path)).status in (200, 503)
            assert (await right.request("GET", "/boards")).status == 200
            r = await right.request("POST", "/classify", image, "application/octet-stream")
            assert r.status == 200, r.body
        finally:
            for http in (anon, wrong, right):
                await http.close()


# ---- the upload limit, over a real socket ------------------------------------------------------------

@pytest.fixture
def limited_service(tmp_path):
    svc = ServiceProcess(tmp_path, _no_board_env(tmp_path, FLEETVOTE_UPLOAD_LIMIT="100000"), ready_path="/healthz")
    svc.start()
    yield svc
    svc.stop()


def _stream(port: int, head: bytes, chunk: bytes, most: int, timeout: float = 20.0) -> tuple[bytes, int]:
    """Send `head`, then `chunk` over and over (at most `most` bytes) until an answer comes back;
    returns the answer's first bytes and how many body bytes were sent by then."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    try:
        s.sendall(head)
    except (BrokenPipeError, ConnectionResetError):
        most = 0  # refused while we were still sending the head: read what it said
    s.setblocking(False)
    sent, pending, answer = 0, b"", b""
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            r, w, _ = select.select([s], [s] if sent < most else [], [], 0.5)
            if r:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    data = b""
                answer += data
                if not data or _complete(answer):
                    break
            if w:
                pending = pending or chunk
                try:
                    n = s.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    continue
                sent += n
                pending = pending[n:]
    finally:
        s.close()
    return answer, sent


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def test_a_chunked_upload_is_cut_off_at_the_limit_without_buffering_it(limited_service):
    svc = limited_service
    rss0 = svc.rss_bytes()
    head = (b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"\x01" * 0x10000 + b"\r\n"
    answer, sent = _stream(svc.port, head, chunk, most=200_000_000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"upload limit of 100000 bytes" in answer
    # answered long before the 200 MB offered were sent: only socket buffers' worth went past it
    assert sent < 8_000_000, sent
    assert svc.rss_bytes() - rss0 < 20 * 2**20
    assert _healthz(svc.port).startswith(b"HTTP/1.1 200")  # and it still serves


def _healthz(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_a_multipart_upload_over_the_limit_is_cut_off_too(limited_service):
    head = (b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=xx\r\n\r\n")
    part = b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
    first = b"%x\r\n" % len(part) + part + b"\r\n"
    answer, sent = _stream(limited_service.port, head + first, b"10000\r\n" + b"\x89" * 0x10000 + b"\r\n",
                           most=200_000_000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20_000_000


def test_a_declared_length_over_the_limit_is_refused_before_the_body(limited_service):
    answer, sent = _stream(limited_service.port,
                           b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                           b"Content-Length: 10000000000\r\n\r\n", b"", most=0, timeout=5)
    assert answer.startswith(b"HTTP/1.1 413") and sent == 0, answer[:200]


def test_oversized_request_headers_are_refused(limited_service):
    answer, _ = _stream(limited_service.port,
                        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 200_000 + b"\r\n\r\n", b"", most=0,
                        timeout=5)
    assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:200]


# ---- a board that never stops talking -------------------------------------------------------------

class EndlessBoard:
    """The master side of a raw pty: answers nothing but a stream of non-zero bytes, without a
    frame delimiter, until stopped; then, if asked, a delimiter and a valid INFO for the last
    HELLO it read."""

    def __init__(self, link: Path) -> None:
        self.master, slave = os.openpty()
        os.set_blocking(self.master, False)  # a full pty must not block the writer (nor whoever joins it)
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.slave_name = os.ttyname(slave)
        os.close(slave)  # the client opens it by name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(self.slave_name)
        self.link = link
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.seq: int | None = None

    def _run(self) -> None:
        from fleetvote.link import codec

        dec = codec.FrameDecoder()
        noise = bytes(range(1, 256)) * 257  # 65,535 bytes, never 0x00
        while not self.stop.is_set():
            r, w, _ = select.select([self.master], [self.master], [], 0.1)
            if r:
                try:
                    for ev in dec.feed(os.read(self.master, 65536)):
                        if isinstance(ev, codec.Hello):
                            self.seq = ev.seq
                except BlockingIOError:
                    pass
                except OSError:  # EIO: the client closed the slave
                    time.sleep(0.01)
            if w:
                try:
                    self.sent += os.write(self.master, noise)
                except BlockingIOError:
                    pass
                except OSError:
                    time.sleep(0.01)

    def answer_hello(self) -> None:
        from fleetvote.link import codec

        self.stop.set()
        self.thread.join()
        info = codec.Info(seq=self.seq, protocol_version=1, firmware_version=(0, 1, 0), board_id=b"\x01" * 12,
                          model_sha256=b"\x02" * 8, macc=1, arena_bytes=1, core_clock_hz=0, link_baud=0,
                          input_bytes=3072, num_classes=10, flags=1, weight_bytes=1, board_name="endless",
                          model_id="m")
        data = b"\x00" + codec.encode(info)
        while data:
            select.select([], [self.master], [], 1)
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.master)


async def test_an_endless_frame_from_a_board_never_grows_the_host_buffer(tmp_path):
    from fleetvote.link import codec
    from fleetvote.link.client import BoardClient, Timeouts

    board = EndlessBoard(tmp_path / "endless")
    board.thread.start()
    client = await BoardClient.open(str(board.link), Timeouts(hello=30))
    rss0 = rss_bytes(os.getpid())
    try:
        hello = asyncio.create_task(client.hello())
        most = 0
        while board.sent < 30_000_000:  # 30 MB without a delimiter
            most = max(most, client._protocol.decoder.buffered)
            await asyncio.sleep(0.001)
        assert not hello.done()
        await asyncio.to_thread(board.answer_hello)  # a delimiter ends the overlong frame; the reply decodes
        info = await asyncio.wait_for(hello, 10)
        assert info.board_name == "endless"
        assert most <= codec.MAX_ENCODED
        assert client.counters.decode_errors >= 1  # the overlong frame, reported once
        assert rss_bytes(os.getpid()) - rss0 < 16 * 2**20
    finally:
        await client.close()
        board.close()


async def test_the_service_stays_responsive_with_an_endless_board(tmp_path):
    from fleetvote.settings import Settings
    from fleetvote.testbed.harness import live_service

    board = EndlessBoard(tmp_path / "boards" / "endless")
    board.thread.start()
    s = Settings(ensemble=write_ensemble(tmp_path / "e.json", members()[:1]), zoo=ZOO, urls=[],
                 link_globs=[str(tmp_path / "boards" / "*")], scan_usb=False, rescan_s=0.2, hello_timeout_s=0.5)
    try:
        async with live_service(s) as (url, _app):
            http = LeanHttp.for_url(url)
            rss0 = rss_bytes(os.getpid())
            t0 = time.monotonic()
            while board.sent < 30_000_000 and time.monotonic() - t0 < 30:
                r = await http.request("GET", "/boards")
                assert r.status == 200
                assert r.json()["boards"][0]["state"] in ("connecting", "offline")
                r = await http.request("POST", "/classify", np.zeros(3072, np.uint8).tobytes(), "application/octet-stream")
                assert r.status == 200 and r.json()["fallbacks"] == 1
                await asyncio.sleep(0.05)
            assert board.sent >= 30_000_000
            assert rss_bytes(os.getpid()) - rss0 < 16 * 2**20
            await http.close()
    finally:
        board.close()


# ---- malformed files at start-up ------------------------------------------------------------------

def _zoo_with(tmp_path: Path, *, blob: bytes | None = None, card: str | None = None, as_dir: bool = False) -> Path:
    zoo = tmp_path / "zoo"
    d = zoo / "m1"
    d.mkdir(parents=True)
    good = ZOO / members()[0] / "model.tflite"
    if as_dir:
        (d / "model.tflite").mkdir()
    else:
        (d / "model.tflite").write_bytes(good.read_bytes() if blob is None else blob)
    if card is not None:
        (d / "card.json").write_text(card)
    return zoo


def _flipped(data: bytes) -> bytes:
    b = bytearray(data)
    for i in range(0, len(b), 97):
        b[i] ^= 0xFF
    return bytes(b)


BAD_FILES = {
    # name: (ensemble text, zoo maker kwargs, what the message must say)
    "not JSON": ('{"members": [', {}, "not valid JSON"),
    "a list": ("[1, 2]", {}, "invalid ensemble file"),
    "no member": ('{"members": []}', {}, "invalid ensemble file"),
    "a member twice": ('{"members": [{"id": "m1"}, {"id": "m1"}]}', {}, "listed twice"),
    "quorum over members": ('{"members": [{"id": "m1"}], "quorum": 2}', {}, "quorum 2 exceeds"),
    "path in an id": ('{"members": [{"id": "../zoo/m1"}]}', {}, "should match pattern"),
    "negative weight": ('{"members": [{"id": "m1", "weight": -1}]}', {}, "greater than or equal to 0"),
    "infinite weight": ('{"members": [{"id": "m1", "weight": Infinity}], "strategy": "weighted"}', {},
                        "less than or equal to 1000000"),
    "unknown strategy": ('{"members": [{"id": "m1"}], "strategy": "loud"}', {}, "strategy 'loud'"),
    "model of random bytes": ('{"members": [{"id": "m1"}]}', {"blob": os.urandom(4096)}, "not a TFLite model"),
    "empty model": ('{"members": [{"id": "m1"}]}', {"blob": b""}, "not a TFLite model"),
    "damaged model": ('{"members": [{"id": "m1"}]}', {"blob": "flip"}, "m1"),
    "model is a folder": ('{"members": [{"id": "m1"}]}', {"as_dir": True}, "cannot read"),
    "card not JSON": ('{"members": [{"id": "m1"}]}', {"card": "{oops"}, "bad card"),
    "card a list": ('{"members": [{"id": "m1"}]}', {"card": "[1]"}, "bad card"),
    "card accuracy a word": ('{"members": [{"id": "m1"}]}', {"card": '{"val_accuracy": "high"}'}, "bad card"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_malformed_file_stops_start_up_with_a_message(tmp_path, case):
    from fleetvote.api.app import create_app
    from fleetvote.errors import ConfigError
    from fleetvote.settings import Settings

    text, kw, words = BAD_FILES[case]
    if kw.get("blob") == "flip":
        kw = {"blob": _flipped((ZOO / members()[0] / "model.tflite").read_bytes())}
    zoo = _zoo_with(tmp_path, **kw)
    ens = zoo / "ensemble.json"
    ens.write_text(text)
    with pytest.raises(ConfigError) as info:
        create_app(Settings(ensemble=ens, zoo=zoo))
    assert words in str(info.value) and str(ens) in str(info.value)


def test_serve_with_a_malformed_ensemble_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "ensemble.json"
    bad.write_text('{"members": [{"id": "nope"}]}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETVOTE_")}
    r = subprocess.run([sys.executable, "-m", "fleetvote.cli", "serve", "--ensemble", str(bad), "--port",
                        str(free_port())], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2, r.stderr
    assert "fleetvote serve: error:" in r.stderr and "nope" in r.stderr
    assert "Traceback" not in r.stderr


# ---- what a board must be to vote, and decompression bombs ----------------------------------------

@pytest.fixture(scope="module")
def board_bin():
    from fleetvote.testbed.harness import BOARD_BIN, build_board

    need_tool("cc")
    return build_board() if not BOARD_BIN.exists() else BOARD_BIN


async def test_a_board_whose_model_hash_differs_from_the_member_does_not_vote(board_bin, tmp_path):
    """A board reporting a member's id but another model's hash (a stale flash, or a device posing
    as a board) is listed, but never serves the member: the engine answers instead."""
    from fleetvote.settings import Settings
    from fleetvote.testbed.harness import ControlledBoard, live_service

    ids = members()
    if len(ids) < 2:
        pytest.skip("needs two zoo members")
    zoo = tmp_path / "zoo"
    (zoo / ids[0]).mkdir(parents=True)
    # the member's id, but the bytes (and so the hash) of another model
    shutil.copy(ZOO / ids[1] / "model.tflite", zoo / ids[0] / "model.tflite")
    board = ControlledBoard(ids[0], 0, tmp_path)  # the genuine ids[0] firmware
    board.start()
    s = Settings(ensemble=write_ensemble(zoo / "ensemble.json", [ids[0]]), zoo=zoo, urls=[],
                 link_globs=[str(tmp_path / "boards" / "*")], scan_usb=False, rescan_s=0.2)
    try:
        async with live_service(s) as (url, _app):
            http = LeanHttp.for_url(url)
            t0 = time.monotonic()
            while True:
                boards = (await http.request("GET", "/boards")).json()["boards"]
                if boards and boards[0]["state"] == "ready":
                    break
                assert time.monotonic() - t0 < 10, boards
                await asyncio.sleep(0.05)
            assert boards[0]["model_id"] == ids[0] and boards[0]["member"] is False
            r = (await http.request("POST", "/classify", np.zeros(3072, np.uint8).tobytes(),
                                    "application/octet-stream")).json()
            assert r["members"][0]["source"] == "fallback"
            assert r["members"][0]["reason"] == "no_board"
            await http.close()
    finally:
        board.stop()


def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [
    5_000,  # 25 M pixels: over the service's 16.8 M
    60_000,  # over Pillow's own limit: DecompressionBombError, also 413
])
async def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, side):
    from fleetvote.settings import Settings
    from fleetvote.testbed.harness import live_service

    s = Settings(ensemble=write_ensemble(tmp_path / "e.json", members()[:1]), zoo=ZOO, urls=[], link_globs=[],
                 scan_usb=False)
    async with live_service(s) as (url, _app):
        http = LeanHttp.for_url(url)
        rss0 = rss_bytes(os.getpid())
        r = await http.request("POST", "/classify", _png_header(side, side), "image/png")
        assert r.status == 413 and "pixels" in r.json()["detail"], r.body
        assert rss_bytes(os.getpid()) - rss0 < 16 * 2**20
        await http.close()
