"""The HTTP service over a fleet of virtual boards (the host build of the firmware on real ptys)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, ZOO, need_tool
from fleetvote.engine import Engine
from fleetvote.fusion import STRATEGIES, fuse
from fleetvote.offline.cards import load_cards
from test_fusion import fourth_strategy  # noqa: F401  (a fixture)

BOARD_BIN = ROOT / "firmware" / "build" / "host" / "board"


@pytest.fixture(scope="session")
def board_bin():
    need_tool("cc")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    return BOARD_BIN


def member_ids(limit: int = 3) -> list[str]:
    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    return ids[:limit]


@contextlib.asynccontextmanager
async def service(tmp_path, ids, latency_ms=0, **settings_kw):
    """Virtual boards on ptys with links in tmp_path/boards, and the app over them."""
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings
    from fleetvote.testbed.processes import stop_process
    from fleetvote.testbed.virtual import start_board

    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in ids], "strategy": "soft",
                               "quorum": settings_kw.pop("quorum", len(ids))}))
    links = tmp_path / "boards"
    boards = [start_board(m, f"test-{k}", link=links / f"b{k}-{m}", latency_ms=latency_ms)
              for k, m in enumerate(ids)]
    settings = Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[str(links / "*")], scan_usb=False,
                        rescan_s=0.2, ping_interval_s=0.5, **settings_kw)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                         timeout=30) as client:
                client.boards = boards  # type: ignore[attr-defined]
                client.app = app  # type: ignore[attr-defined]
                client.key = settings.api_key  # type: ignore[attr-defined]
                await wait_for(client, lambda b: all(x["state"] == "ready" for x in b) and len(b) == len(ids))
                yield client
    finally:
        for b in boards:
            stop_process(b.process)


async def wait_for(client, predicate, timeout=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        headers = {"x-api-key": client.key} if getattr(client, "key", None) else {}
        boards = (await client.get("/boards", headers=headers)).json()["boards"]
        if predicate(boards):
            return boards
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out; boards: {boards}")


def raw(img: np.ndarray) -> dict:
    return {"content": img.tobytes(), "headers": {"content-type": "application/octet-stream"}}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
async def test_classify_gives_the_engine_bytes_and_label_for_each_strategy(board_bin, tmp_path, test_images, strategy):
    ids = member_ids()
    engines = [Engine.from_file(ZOO / i / "model.tflite") for i in ids]
    async with service(tmp_path, ids) as client:
        weights = [m["weight"] for m in (await client.get("/ensemble")).json()["members"]]
        for idx in (0, 1234, 9999):
            img = test_images.x[idx]
            r = await client.post(f"/classify?strategy={strategy}", **raw(img))
            assert r.status_code == 200, r.text
            body = r.json()
            want = np.stack([e.run(img) for e in engines])
            got = np.array([m["output"] for m in body["members"]])
            assert [m["source"] for m in body["members"]] == ["board"] * len(ids)
            assert np.array_equal(got, want)
            assert body["label"] == fuse(want, strategy, weights).label
            assert body["degraded"] is False and body["fallbacks"] == 0


async def test_png_upload_in_multipart_classifies_like_the_raw_bytes(board_bin, tmp_path, test_images):
    ids = member_ids(1)
    img = test_images.x[7]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    async with service(tmp_path, ids) as client:
        a = (await client.post("/classify", files={"file": ("x.png", buf.getvalue(), "image/png")})).json()
        b = (await client.post("/classify", **raw(img))).json()
        assert a["members"][0]["output"] == b["members"][0]["output"]


async def test_classify_falls_back_when_board_killed_mid_request_and_board_comes_back(board_bin, tmp_path, test_images):
    from fleetvote.testbed.processes import stop_process
    from fleetvote.testbed.virtual import start_board

    ids = member_ids(1)
    async with service(tmp_path, ids, latency_ms=600) as client:
        victim = client.boards[0]
        req = asyncio.create_task(client.post("/classify?deadline_ms=3000", **raw(test_images.x[3])))
        await asyncio.sleep(0.2)  # the board is computing (600 ms) when it dies
        victim.process.send_signal(signal.SIGKILL)
        r = await req
        assert r.status_code == 200
        body = r.json()
        m = body["members"][0]
        assert m["source"] == "fallback" and m["reason"] and body["degraded"] is True
        assert m["output"] == [int(v) for v in Engine.from_file(ZOO / ids[0] / "model.tflite").run(test_images.x[3])]
        await wait_for(client, lambda b: b[0]["state"] == "offline")
        # the board comes back on a new pty behind the same link: ready again, no restart
        again = start_board(ids[0], "test-0", link=victim.link)
        try:
            boards = await wait_for(client, lambda b: b[0]["state"] == "ready", timeout=15)
            assert boards[0]["counters"]["reconnects"] >= 1
            r = await client.post("/classify", **raw(test_images.x[3]))
            assert r.json()["members"][0]["source"] == "board"
        finally:
            stop_process(again.process)


async def test_every_board_killed_not_ready_but_still_answering(board_bin, tmp_path, test_images):
    ids = member_ids(2)
    async with service(tmp_path, ids) as client:
        assert (await client.get("/readyz")).status_code == 200
        for b in client.boards:
            b.process.send_signal(signal.SIGKILL)
        await wait_for(client, lambda bs: all(x["state"] == "offline" for x in bs))
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["members_on_boards"] == 0
        r = await client.post("/classify", **raw(test_images.x[0]))
        assert r.status_code == 200 and r.json()["degraded"] is True
        assert r.json()["fallbacks"] == len(ids)
        r = await client.post("/classify?fallback=false", **raw(test_images.x[0]))
        assert r.status_code == 503
        assert all(i in r.json()["detail"] for i in ids)
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("kwargs,status", [
    ({"content": b"\x00" * 100, "headers": {"content-type": "application/octet-stream"}}, 422),
    ({"content": b"junk", "headers": {"content-type": "image/jpeg"}}, 422),
    ({"content": b"GIF89a....", "headers": {"content-type": "image/gif"}}, 415),
    ({"content": b"\x00" * 11_000_000, "headers": {"content-type": "application/octet-stream"}}, 413),  # > 10 MiB
    ({"files": {"note": ("a.txt", b"hello", "text/plain")}, "data": {"x": "1"}}, 415),
    ({"data": {"just": "fields"}}, 415),
    ({"files": {"a": ("a", b"", "image/png")}, "data": {}}, 422),
    ({"content": b"\x1f\x8b\x08\x00", "headers": {"content-type": "image/png", "content-encoding": "gzip"}}, 415),
])
async def test_bad_uploads_get_their_4xx(board_bin, tmp_path, kwargs, status):
    ids = member_ids(1)
    async with service(tmp_path, ids) as client:
        r = await client.post("/classify", **kwargs)
        assert r.status_code == status, r.text
        assert r.json()["detail"]


async def test_streamed_body_over_the_limit_is_refused_without_reading_it_all(board_bin, tmp_path):
    ids = member_ids(1)
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(100):  # 6.4 MB offered, 64 KB at a time, no Content-Length
            sent += 65536
            yield b"\x01" * 65536

    async with service(tmp_path, ids, upload_limit=100_000) as client:
        r = await client.post("/classify", content=chunks(), headers={"content-type": "application/octet-stream"})
        assert r.status_code == 413
        assert sent < 1_000_000


async def test_api_key_is_required_everywhere_but_health(board_bin, tmp_path, test_images):
    ids = member_ids(1)
    async with service(tmp_path, ids, api_key="s3cret") as client:
        assert (await client.get("/boards")).status_code == 401
        assert (await client.post("/classify", **raw(test_images.x[0]))).status_code == 401
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/boards", headers={"x-api-key": "s3cret"})).status_code == 200


async def test_boards_and_metrics_report_counters_and_latency(board_bin, tmp_path, test_images):
    ids = member_ids(2)
    async with service(tmp_path, ids) as client:
        for i in range(5):
            assert (await client.post("/classify", **raw(test_images.x[i]))).status_code == 200
        headers = {"x-api-key": client.key} if getattr(client, "key", None) else {}
        boards = (await client.get("/boards", headers=headers)).json()["boards"]
        assert {b["model_id"] for b in boards} == set(ids)
        assert len({b["board_id"] for b in boards}) == len(ids)
        for b in boards:
            assert b["counters"]["requests"] == 5 and b["round_trip"]["count"] == 5
            one = (await client.get(f"/boards/{b['board_id']}")).json()
            assert one["url"] == b["url"]
        assert (await client.get("/boards/nope")).status_code == 404
        text = (await client.get("/metrics")).text
        assert 'fleetvote_http_requests_total{route="/classify",status="200"} 5.0' in text
        assert "fleetvote_board_round_trip_seconds_bucket" in text
        ens = (await client.get("/ensemble")).json()
        assert [m["model_id"] for m in ens["members"]] == ids and all(m["board_ids"] for m in ens["members"])


async def test_a_burst_beyond_the_board_queues_spills_over_to_the_engine_and_is_all_answered(
        board_bin, tmp_path, test_images):
    ids = member_ids(1)
    async with service(tmp_path, ids, latency_ms=300, queue_size=1) as client:
        reqs = [asyncio.create_task(client.post("/classify?deadline_ms=5000", **raw(test_images.x[i])))
                for i in range(4)]
        rs = await asyncio.gather(*reqs)
        assert [r.status_code for r in rs] == [200] * 4
        reasons = [r.json()["members"][0]["reason"] for r in rs]
        assert "queue_full" in reasons and None in reasons  # spillover beside the board's answers


async def test_admission_answers_503_with_retry_after_from_the_backlog_when_nothing_fits(
        board_bin, tmp_path, test_images):
    ids = member_ids(1)
    async with service(tmp_path, ids, latency_ms=300, queue_size=1, fallback=False) as client:
        first = await client.post("/classify?deadline_ms=5000", **raw(test_images.x[0]))
        assert first.status_code == 200, first.text  # measured: ~300 ms
        reqs = [asyncio.create_task(client.post("/classify?deadline_ms=5000", **raw(test_images.x[i])))
                for i in range(4)]
        rs = await asyncio.gather(*reqs)
        codes = sorted(r.status_code for r in rs)
        assert 503 in codes and 200 in codes
        r503 = next(r for r in rs if r.status_code == 503)
        # the board's backlog (one computing, one queued, this one) at ~300 ms each: 1 s, rounded up
        assert int(r503.headers["retry-after"]) in (1, 2)
        # a deadline shorter than one board answer, fallback off: refused at once, nothing queued
        t0 = time.perf_counter()
        r = await client.post("/classify?deadline_ms=100", **raw(test_images.x[0]))
        assert r.status_code == 503 and (time.perf_counter() - t0) < 0.1


def api_modules() -> dict:
    return {n: m for n, m in sys.modules.items() if n == "fleetvote.api" or n.startswith("fleetvote.api.")}


@pytest.fixture
def api_with_fourth_strategy(fourth_strategy):  # noqa: F811
    """``create_app`` of the API package imported afresh, after the fourth strategy was registered:
    FastAPI reads a route's parameter types when the route is declared, at import, as it would
    after an edit of the registry. The modules as they were are put back after the test."""
    import fleetvote

    saved, package_attr = api_modules(), fleetvote.__dict__.get("api")
    for name in saved:
        del sys.modules[name]
    try:
        from fleetvote.api.app import create_app

        yield create_app
    finally:
        for name in api_modules():
            del sys.modules[name]
        sys.modules.update(saved)
        if package_attr is None:
            fleetvote.__dict__.pop("api", None)
        else:
            fleetvote.api = package_attr


async def test_classify_takes_a_registered_strategy_and_refuses_an_unknown_one(api_with_fourth_strategy, tmp_path):
    from fleetvote.settings import Settings

    ids = member_ids(2)
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in ids], "strategy": "median", "quorum": 1}))
    # no board: every member is computed by the fallback engine, which is all this test needs
    app = api_with_fourth_strategy(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[], scan_usb=False))
    param = next(p for p in app.openapi()["paths"]["/classify"]["post"]["parameters"] if p["name"] == "strategy")
    # the registry, in its order, the strategy registered after import included
    assert param["schema"]["anyOf"][0]["enum"] == list(STRATEGIES) and list(STRATEGIES)[-1] == "median"
    img = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            for query in ("?strategy=median", ""):  # asked for, and the ensemble file's default
                r = await client.post(f"/classify{query}", **raw(img))
                assert r.status_code == 200, r.text
                body = r.json()
                outputs = [m["output"] for m in body["members"]]
                assert body["strategy"] == "median" and body["label"] == fuse(outputs, "median").label
            r = await client.post("/classify?strategy=loud", **raw(img))
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "strategy"]


def test_bad_ensemble_file_stops_startup_with_a_clear_message(tmp_path):
    from fleetvote.api.app import create_app
    from fleetvote.errors import ConfigError
    from fleetvote.settings import Settings

    bad = tmp_path / "ensemble.json"
    bad.write_text(json.dumps({"members": [{"id": "nope"}], "strategy": "soft", "quorum": 1}))
    with pytest.raises(ConfigError, match="has no"):
        create_app(Settings(ensemble=bad, zoo=ZOO))
    bad.write_text(json.dumps({"members": [], "strategy": "loud"}))
    with pytest.raises(ConfigError, match="invalid ensemble file"):
        create_app(Settings(ensemble=bad, zoo=ZOO))
    truncated = tmp_path / "zoo" / "m1"
    truncated.mkdir(parents=True)
    blob = next(ZOO.glob("*/model.tflite")).read_bytes()
    (truncated / "model.tflite").write_bytes(blob[: len(blob) // 2])
    bad.write_text(json.dumps({"members": [{"id": "m1"}]}))
    with pytest.raises(ConfigError, match="m1"):
        create_app(Settings(ensemble=bad, zoo=tmp_path / "zoo"))


def test_vidpid_filter_keeps_only_configured_boards():
    from fleetvote.fleet.discovery import FakePort, filter_ports, scan

    ports = [FakePort("/dev/ttyACM0", 0x0483, 0x374B), FakePort("/dev/ttyACM1", 0x0483, 0x5740),
             FakePort("/dev/ttyUSB0", 0x10C4, 0xEA60), FakePort("/dev/ttyS0"),
             FakePort("/dev/ttyACM2", 0x0483, 0x374E)]
    assert filter_ports(ports, ["0483:374B", "0483:374E"]) == ["/dev/ttyACM0", "/dev/ttyACM2"]
    assert filter_ports(ports, ["0483:374B", "0483:5740"]) == ["/dev/ttyACM0", "/dev/ttyACM1"]
    found = scan(["socket://127.0.0.1:7000"], [], ["0483:374B"], True, lambda: ports)
    assert found == ["socket://127.0.0.1:7000", "/dev/ttyACM0"]


def test_settings_reject_a_malformed_vidpid():
    from pydantic import ValidationError

    from fleetvote.settings import Settings

    with pytest.raises(ValidationError):
        Settings(usb_ids=["0483-374B"])
