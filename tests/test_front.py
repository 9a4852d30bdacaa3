"""The HTTP front (deploy/front/haproxy.cfg): HAProxy from Debian in front of the service, which
cuts slow clients before they reach it. Run against a real haproxy with a short head timeout; the
backend is a small HTTP server, since what is checked is the front's own behaviour."""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import threading
import time

import httpx
import pytest

from conftest import ROOT, need_tool
from fleetvote.testbed.hostile import FRONT_CONFIG, start_front
from test_deploy import environment, interpolate, load_compose


@pytest.fixture
def backend():
    """An HTTP server on a free port that answers 200 to every GET and POST."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _ok(self):
            n = int(self.headers.get("content-length") or 0)
            self.rfile.read(n)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _ok

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_the_front_configuration_is_valid_for_debians_haproxy():
    haproxy = need_tool("haproxy")
    r = subprocess.run([haproxy, "-c", "-f", str(FRONT_CONFIG)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


async def test_slow_request_heads_are_closed_by_the_front_at_its_head_timeout_while_others_are_served(
        backend, tmp_path):
    need_tool("haproxy")
    head_timeout = 1.0
    proc, port = start_front(backend, head_timeout, tmp_path)
    try:
        async def slow() -> tuple[float, bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t0 = time.perf_counter()
            writer.write(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
            got = b""

            async def trickle():
                for n in range(100):
                    await asyncio.sleep(0.3)
                    writer.write(b"X-Slow-%d: 1\r\n" % n)

            sender = asyncio.ensure_future(trickle())
            try:
                while chunk := await reader.read(4096):
                    got += chunk
            except ConnectionError:
                pass
            sender.cancel()
            writer.close()
            return time.perf_counter() - t0, got

        slow_tasks = [asyncio.ensure_future(slow()) for _ in range(30)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await asyncio.sleep(0.3)
            for _ in range(10):  # an ordinary client meanwhile
                assert (await client.get("/healthz")).status_code == 200
        results = await asyncio.wait_for(asyncio.gather(*slow_tasks), timeout=10)
        held = [t for t, _ in results]
        assert all(got.startswith(b"HTTP/1.1 408") for _, got in results), results[0][1][:200]
        assert head_timeout - 0.05 <= min(held) and max(held) <= head_timeout + 0.75, held
    finally:
        proc.terminate()
        proc.wait(5)


def test_compose_runs_the_front_from_debians_haproxy_in_front_of_the_service():
    compose = load_compose()
    front = compose["services"]["front"]
    assert front["build"] == "deploy/front" and "profiles" not in front
    dockerfile = (ROOT / "deploy" / "front" / "Dockerfile").read_text()
    assert "FROM debian:12" in dockerfile and "apt-get install -y --no-install-recommends haproxy" in dockerfile
    env = environment(front)
    assert env["FLEETVOTE_BACKEND"] == "fleetvote:8000" and "fleetvote" in compose["services"]
    assert [interpolate(p) for p in front["ports"]] == ["127.0.0.1:8088:8080"]  # beside the balancer on 8080
    assert interpolate(front["ports"][0], {"FLEETVOTE_FRONT_ADDR": "0.0.0.0"}).startswith("0.0.0.0:")
    # the front's defaults are what the documentation states
    cfg = FRONT_CONFIG.read_text()
    for line in ("presetenv FRONT_HEAD_TIMEOUT  5s", "timeout http-keep-alive 5s", "presetenv FRONT_MAXCONN       4096"):
        assert line in cfg
    assert os.path.basename(FRONT_CONFIG) == "haproxy.cfg"
