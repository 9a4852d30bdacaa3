"""Uploads and slow clients over a real socket (``fleetvote serve``, ``api/server.py``,
``api/limits.py``): a 413 reaches every client whether or not it waits for ``100-continue``, the
default limit takes a 12-megapixel phone JPEG, a large photo is decoded off the event loop, and
slow heads, slow bodies and too many connections are cut off."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import shutil
import socket
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
import requests

from conftest import ZOO
from fleetvote.testbed.harness import ServiceProcess, write_ensemble

LIMIT = 1_000_000  # below both sizes the clients send
SIZES = (2_000_000, 40_000_000)
TIMEOUT_S = 1.0  # head and body timeouts of the service under test
RAW = {"content-type": "application/octet-stream"}


def member() -> str:
    from fleetvote.offline.cards import load_cards

    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    return ids[0]


def no_board_env(tmp_path, **extra: str) -> dict[str, str]:
    """fleetvote serve with no board at all: every member from the engine."""
    ens = write_ensemble(tmp_path / "ensemble.json", [member()])
    return {"FLEETVOTE_ENSEMBLE": str(ens), "FLEETVOTE_SCAN_USB": "false", "FLEETVOTE_LINK_GLOBS": "[]",
            "FLEETVOTE_URLS": "[]", **extra}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guarded")
    svc = ServiceProcess(tmp, no_board_env(tmp, FLEETVOTE_UPLOAD_LIMIT=str(LIMIT), FLEETVOTE_HEAD_TIMEOUT_S=str(TIMEOUT_S),
                                           FLEETVOTE_BODY_TIMEOUT_S=str(TIMEOUT_S)), ready_path="/healthz")
    svc.start()
    yield svc
    svc.stop()


# ---- a 413 for every client ----------------------------------------------------------------------

def _post_async_httpx(url: str, body: bytes, tries: int) -> collections.Counter:
    """The client of the issue: httpx's AsyncClient sends no Expect and writes the whole body
    before it reads; before the lingering close it met a reset (40 MB: 20 of 20 tries)."""
    async def run():
        seen = collections.Counter()
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(tries):
                try:
                    seen[(await client.post(url, content=body, headers=RAW)).status_code] += 1
                except httpx.HTTPError as exc:
                    seen[type(exc).__name__] += 1
        return seen
    return asyncio.run(run())


def _post(client: str, url: str, body: bytes, tmp_path) -> int | str:
    try:
        if client == "httpx":
            return httpx.post(url, content=body, headers=RAW, timeout=30).status_code
        if client == "requests":
            return requests.post(url, data=body, headers=RAW, timeout=30).status_code
    except (httpx.HTTPError, requests.RequestException) as exc:
        return type(exc).__name__
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    path = tmp_path / "body"
    path.write_bytes(body)
    # curl sends Expect: 100-continue with a body this large; "Expect:" (empty) turns it off
    expect = ["-H", "Expect:"] if client == "curl-no-expect" else []
    r = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", *expect, "--data-binary", f"@{path}",
                        "-H", "content-type: application/octet-stream", url], capture_output=True, text=True,
                       timeout=60)
    return int(r.stdout) if r.stdout.isdigit() else f"curl exit {r.returncode}"


@pytest.mark.parametrize("size", SIZES)
def test_a_body_over_the_limit_gets_413_in_every_client(guarded, tmp_path, size):
    body = b"\0" * size
    url = guarded.url + "/classify"
    got = {"httpx async": dict(_post_async_httpx(url, body, tries=5))}
    for client in ("httpx", "requests", "curl", "curl-no-expect"):
        got[client] = {_post(client, url, body, tmp_path): 1}
    assert all(list(v) == [413] for v in got.values()), got
    assert httpx.get(guarded.url + "/healthz").status_code == 200


def phone_jpeg(quality: int = 90) -> bytes:
    """A 12-megapixel (4000x3000) JPEG standing for a phone photo: smooth shapes, texture at two
    scales and a little sensor noise, at quality 90 (phones save at 85-95): about 2.4 MB, beside
    the issue's 1.9 MB photo."""
    from PIL import Image

    rng = np.random.default_rng(12)
    h, w = 3000, 4000
    low = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    mid = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    a = 0.7 * np.asarray(low, np.float32) + 0.3 * np.asarray(mid, np.float32) + rng.normal(0, 3, (h, w, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_the_default_upload_limit_takes_a_12_megapixel_phone_jpeg(tmp_path):
    from fleetvote.settings import Settings

    photo = phone_jpeg()
    assert 1_500_000 < len(photo) < Settings.model_fields["upload_limit"].default
    svc = ServiceProcess(tmp_path, no_board_env(tmp_path), ready_path="/healthz")  # the default limit
    svc.start()
    try:
        r = httpx.post(svc.url + "/classify", content=photo, headers={"content-type": "image/jpeg"}, timeout=60)
    finally:
        svc.stop()
    assert r.status_code == 200, r.text
    assert 0 <= r.json()["label"] < 10


async def test_a_large_photo_is_decoded_off_the_event_loop(tmp_path, monkeypatch):
    import json

    from fleetvote.api.app import create_app
    from fleetvote.api.routes import classify
    from fleetvote.settings import Settings

    threads = []
    real = classify.decode

    def recording(data, content_type):
        threads.append(threading.current_thread())
        return real(data, content_type)

    monkeypatch.setattr(classify, "decode", recording)
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": member()}], "strategy": "soft", "quorum": 1}))
    app = create_app(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[], scan_usb=False))
    png = io.BytesIO()
    from PIL import Image
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(png, "PNG")
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.post("/classify", content=png.getvalue(), headers={"content-type": "image/png"})
            r_raw = await client.post("/classify", content=bytes(3072), headers=RAW)
    assert r.status_code == r_raw.status_code == 200
    assert threads[0] is not threading.main_thread()  # the PNG: a worker thread
    assert threads[1] is threading.main_thread()  # 3,072 raw bytes: decoded in place


# ---- slow clients --------------------------------------------------------------------------------

def _read_response(s: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length: its head, then that many bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"closed before the head was complete: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "closed before the body was complete"
        body += chunk
    return head + b"\r\n\r\n" + body


def _until_closed(s: socket.socket, trickle: bytes = b"", every_s: float = 0.2, most_s: float = 10.0
                  ) -> tuple[bytes, float]:
    """Send ``trickle`` a line at a time every ``every_s`` (nothing if empty) and read until the
    server closes; returns what it answered and the seconds it took."""
    lines = trickle.split(b"\n") if trickle else []
    s.settimeout(every_s)
    got, t0 = b"", time.monotonic()
    while time.monotonic() - t0 < most_s:
        if lines:
            with contextlib.suppress(OSError):
                s.sendall(lines.pop(0) + b"\n")
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return got, time.monotonic() - t0


SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Slow-%d: 1\r\n" % i for i in range(100))


def test_a_request_head_sent_a_line_at_a_time_is_cut_off_at_the_head_timeout(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as s:
        got, took = _until_closed(s, SLOW_HEAD)
    assert got.startswith(b"HTTP/1.1 408") and b"request head" in got, got[:200]
    assert TIMEOUT_S <= took < TIMEOUT_S + 1.5


def test_a_silent_connection_is_closed_at_the_head_timeout(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as s:
        got, took = _until_closed(s)
    assert got == b"" and TIMEOUT_S <= took < TIMEOUT_S + 1.5


def test_a_kept_alive_connection_gets_the_head_timeout_for_its_next_request(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        first = _read_response(s)  # all of it: a recv may return the head without the body
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        got, took = _until_closed(s, SLOW_HEAD)
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert TIMEOUT_S - 0.2 <= took < TIMEOUT_S + 1.5  # counted from the answer, a little before our clock


def test_an_answer_given_before_the_body_is_read_lets_a_slow_client_finish_sending(guarded):
    """An unknown model is refused (404) before its body is read; a client still sending that
    body for longer than the head timeout is not cut off mid-send: the service drains and closes."""
    with socket.create_connection(("127.0.0.1", guarded.port)) as s:
        s.sendall(b"POST /v2/models/no-such-model/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 30000\r\n\r\n")
        t0 = time.monotonic()
        for _ in range(30):  # 30 kB over 2.5 s: past the 1 s head timeout
            s.sendall(b" " * 1000)
            time.sleep(2.5 / 30)
        assert time.monotonic() - t0 > 2 * TIMEOUT_S
        s.settimeout(5)
        got = _read_response(s)
    assert got.startswith(b"HTTP/1.1 404"), got[:200]


def test_a_body_sent_a_byte_at_a_time_gets_408_at_the_body_timeout(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as s:
        s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: 3072\r\n\r\n")
        got, took = _until_closed(s, b"\n".join([b"\x01"] * 3000))
    assert got.startswith(b"HTTP/1.1 408") and b"body" in got, got[:200]
    # the service counts from the head's arrival, a little before our clock starts
    assert TIMEOUT_S - 0.2 <= took < TIMEOUT_S + 1.5
    assert httpx.post(guarded.url + "/classify", content=bytes(3072), headers=RAW).status_code == 200


def test_connections_beyond_the_cap_get_503_and_the_service_recovers(tmp_path):
    svc = ServiceProcess(tmp_path, no_board_env(tmp_path, FLEETVOTE_MAX_CONNECTIONS="3"), ready_path="/healthz")
    svc.start()
    try:
        held = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(3)]
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")  # heads never finished: they hold their places
        time.sleep(0.3)
        over = httpx.get(svc.url + "/healthz", timeout=5)
        for s in held:
            s.close()
        time.sleep(0.3)
        after = httpx.get(svc.url + "/healthz", timeout=5)
    finally:
        svc.stop()
    assert over.status_code == 503
    assert after.status_code == 200


def test_slow_client_settings_have_flags_and_are_checked():
    from fleetvote.cli import build_parser, serve_settings
    from fleetvote.errors import ConfigError

    a = build_parser().parse_args(["serve", "--head-timeout-s", "3", "--body-timeout-s", "7", "--max-connections", "9"])
    s = serve_settings(a)
    assert (s.head_timeout_s, s.body_timeout_s, s.max_connections) == (3.0, 7.0, 9)
    with pytest.raises(ConfigError, match="max_connections"):
        serve_settings(build_parser().parse_args(["serve", "--max-connections", "0"]))


def test_three_hundred_slow_heads_are_all_closed_at_the_head_timeout_while_others_are_served(guarded):
    import selectors

    n = 300
    sel = selectors.DefaultSelector()
    socks = []
    t0 = time.monotonic()  # before the first connects: each one's timer starts when the server accepts it
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", guarded.port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    closed_at: dict[socket.socket, float] = {}
    ordinary = []
    line = 0
    try:
        for s in socks:
            s.send(b"GET /healthz HTTP/1.1\r\n")
        while len(closed_at) < n and time.monotonic() - t0 < TIMEOUT_S + 5:
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed_at[s] = time.monotonic() - t0
                    sel.unregister(s)
            if time.monotonic() - t0 > 0.25 * line:  # every slow client: one more header line
                line += 1
                for s in socks:
                    if s not in closed_at:
                        with contextlib.suppress(OSError):
                            s.send(b"X-Slow-%d: 1\r\n" % line)
                t1 = time.monotonic()
                ordinary.append((httpx.get(guarded.url + "/healthz", timeout=5).status_code, time.monotonic() - t1))
    finally:
        for s in socks:
            s.close()
    assert len(closed_at) == n, f"{n - len(closed_at)} slow connections still open"
    assert TIMEOUT_S - 0.05 <= min(closed_at.values()) and max(closed_at.values()) < TIMEOUT_S + 1.5
    assert all(status == 200 for status, _ in ordinary) and max(s for _, s in ordinary) < 1.0


def test_a_requests_deadline_counts_from_the_first_byte_of_its_head(guarded):
    """A head that takes 600 ms to arrive (within the head timeout) has used 600 ms of a 400 ms
    deadline: 503 at admission, before any work. The same request sent at once is answered."""
    import json
    import time

    body = bytes(3072)
    head = (f"POST /classify?deadline_ms=400 HTTP/1.1\r\nHost: x\r\ncontent-type: application/octet-stream\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", guarded.port)) as s:
        s.settimeout(10)
        s.sendall(head + body)
        whole = _read_response(s)
        assert whole.startswith(b"HTTP/1.1 200"), whole[:300]
        assert json.loads(whole.partition(b"\r\n\r\n")[2])["latency_ms"] < 400
        s.sendall(head[:20])  # the next request on the same connection: its head in two parts
        time.sleep(0.6)
        s.sendall(head[20:] + body)
        slow = _read_response(s)
    assert slow.startswith(b"HTTP/1.1 503") and b"retry-after" in slow.lower(), slow[:300]
