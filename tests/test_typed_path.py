"""The typed request path: the fleet answers typed values (no JSON), the API turns them into its
schemas, the error tree is translated by the application's exception handlers, and one middleware
counts every request by route and status. No board is needed: with none, every member is computed
by the fallback engine, and a stub fleet stands in where a refusal is wanted."""

from __future__ import annotations

import contextlib
import json

import httpx
import numpy as np
import pytest

from conftest import ZOO
from fleetvote.api.schemas import BoardView, ClassifyResponse
from fleetvote.errors import Overloaded, QuorumLost
from fleetvote.fleet.owner import Board, BoardSnapshot, State
from fleetvote.fleet.results import Classification, MemberVote
from fleetvote.link.codec import Info

IMAGE = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
RAW = {"content": IMAGE.tobytes(), "headers": {"content-type": "application/octet-stream"}}


def member_ids(limit: int = 2) -> list[str]:
    from fleetvote.offline.cards import load_cards

    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    return ids[:limit]


@contextlib.asynccontextmanager
async def app_without_boards(tmp_path, **settings_kw):
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings

    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in member_ids()], "strategy": "soft", "quorum": 1}))
    app = create_app(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[], scan_usb=False, **settings_kw))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def counted(metrics_text: str) -> dict[tuple[str, str], int]:
    """fleetvote_http_requests_total's series, read with Prometheus' own text parser:
    (route, status) -> count."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.labels["route"], s.labels["status"]): int(s.value)
            for f in text_string_to_metric_families(metrics_text) if f.name == "fleetvote_http_requests"
            for s in f.samples if s.name == "fleetvote_http_requests_total"}


class RefusingFleet:
    """Stands in for the fleet (app.dependency_overrides) and refuses every image with ``exc``."""

    ensemble = None  # the route pins the fleet's ensemble before it reads the body

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def classify(self, image, **kwargs):
        raise self.exc


# ---- the fleet answers typed values ------------------------------------------------------------

async def test_fleet_classify_returns_a_classification_of_member_votes_not_a_dict(tmp_path):
    async with app_without_boards(tmp_path) as client:
        fleet = client.app.state.fleet
        result = await fleet.classify(IMAGE, strategy="majority")
    assert isinstance(result, Classification)
    assert all(isinstance(m, MemberVote) for m in result.members)
    assert [m.model_id for m in result.members] == member_ids()
    assert [m.source for m in result.members] == ["fallback", "fallback"]
    assert all(m.reason == "no_board" and m.detail is None and m.board_id is None for m in result.members)
    assert result.fallbacks == 2 and result.degraded
    assert result.fused.strategy == "majority"
    for m in result.members:  # the engine's bytes, unrounded
        assert len(m.output) == 10 and m.label == int(np.argmax(m.output))


async def test_classify_answer_on_the_wire_is_the_typed_result_rounded(tmp_path):
    async with app_without_boards(tmp_path) as client:
        body = (await client.post("/classify", **RAW)).json()
        typed = ClassifyResponse.of(await client.app.state.fleet.classify(IMAGE)).model_dump()
    for k in ("label", "class_name", "confidence", "strategy", "scores", "degraded", "fallbacks"):
        assert body[k] == typed[k], k
    volatile = ("latency_ms",)  # measured anew each time
    for got, want in zip(body["members"], typed["members"]):
        assert {k: v for k, v in got.items() if k not in volatile} == {k: v for k, v in want.items()
                                                                       if k not in volatile}
    assert all(p == round(p, 6) for m in body["members"] for p in m["probabilities"])
    assert body["confidence"] == round(body["confidence"], 6)


def test_an_ungreeted_board_is_a_snapshot_whose_view_has_every_hello_field_null():
    snap = Board("socket://127.0.0.1:9").snapshot()
    assert isinstance(snap, BoardSnapshot) and snap.state is State.OFFLINE and snap.info is None
    view = BoardView.of(snap).model_dump()
    assert view["state"] == "offline" and view["board_id"] is None and view["deadline_ms"] is None
    for k in ("model_id", "model_sha256", "board_name", "firmware_version", "protocol_version", "macc",
              "arena_bytes", "clock_hz", "baud"):
        assert view[k] is None, k
    assert view["round_trip"] == {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None}
    assert view["counters"] == {"requests": 0, "errors": 0, "timeouts": 0, "reconnects": 0, "dropped_expired": 0}


def test_a_greeted_board_view_shows_its_hello_and_rounded_latencies():
    b = Board("socket://127.0.0.1:9", deadline_ms=123.45678)
    b.info = Info(seq=1, protocol_version=2, firmware_version=(1, 4, 0), board_id=bytes(range(12)),
                  model_sha256=bytes.fromhex("0123456789abcdef"), macc=1000, arena_bytes=2048,
                  core_clock_hz=84_000_000, link_baud=0, input_bytes=3072, num_classes=10, flags=0,
                  weight_bytes=4096, board_name="host", model_id="m1")
    b.state = State.READY
    b.rtt_ms.extend([1.00001, 2.0, 3.0])
    b.counters.requests = 3
    view = BoardView.of(b.snapshot()).model_dump()
    assert view["board_id"] == bytes(range(12)).hex() and view["state"] == "ready"
    assert (view["model_id"], view["model_sha256"], view["firmware_version"]) == ("m1", "0123456789abcdef",
                                                                                         "1.4.0")
    assert (view["clock_hz"], view["baud"], view["deadline_ms"]) == (84_000_000, 0, 123.457)
    assert view["round_trip"]["count"] == 3 and view["round_trip"]["p50_ms"] == 2.0
    assert view["counters"]["requests"] == 3
    # the snapshot is a copy: the board counting on does not change it
    snap = b.snapshot()
    b.counters.requests += 1
    assert snap.counters.requests == 3


# ---- the error tree, translated by the application ---------------------------------------------

async def test_overloaded_fleet_is_answered_503_with_retry_after_by_the_exception_handler(tmp_path):
    from fleetvote.api.deps import get_fleet

    async with app_without_boards(tmp_path) as client:
        client.app.dependency_overrides[get_fleet] = lambda: RefusingFleet(Overloaded("every board queue is full"))
        r = await client.post("/classify", **RAW)
        assert (r.status_code, r.headers["retry-after"]) == (503, "1")
        assert r.json() == {"detail": "every board queue is full; retry shortly"}
        # Retry-After is the fleet's estimate of its backlog, in whole seconds
        client.app.dependency_overrides[get_fleet] = lambda: RefusingFleet(Overloaded("busy", retry_after_s=7))
        r = await client.post("/classify", **RAW)
        assert (r.status_code, r.headers["retry-after"]) == (503, "7")
        client.app.dependency_overrides[get_fleet] = lambda: RefusingFleet(QuorumLost("0 of 2 answered", ["a"]))
        r = await client.post("/classify", **RAW)
        assert r.status_code == 503 and r.json() == {"detail": "0 of 2 answered"}
        assert "retry-after" not in r.headers


async def test_lost_quorum_without_fallback_is_a_503_naming_the_missing_members(tmp_path):
    async with app_without_boards(tmp_path) as client:
        r = await client.post("/classify?fallback=false", **RAW)
    assert r.status_code == 503
    assert all(i in r.json()["detail"] for i in member_ids())


# ---- one count per request, by route and status -------------------------------------------------

async def test_a_422_for_a_misspelt_or_bad_query_parameter_is_counted(tmp_path):
    async with app_without_boards(tmp_path) as client:
        assert (await client.post("/classify?stratgy=soft", **RAW)).status_code == 422
        assert (await client.post("/classify?strategy=loud", **RAW)).status_code == 422
        assert (await client.post("/classify?deadline_ms=0", **RAW)).status_code == 422
        assert (await client.post("/classify", content=b"\x00" * 100,
                                  headers={"content-type": "application/octet-stream"})).status_code == 422
        assert (await client.get("/boards?verbose=1")).status_code == 422
        n = counted((await client.get("/metrics")).text)
    assert n[("/classify", "422")] == 4
    assert n[("/boards", "422")] == 1


async def test_a_404_for_an_unknown_board_and_for_an_unknown_path_are_counted(tmp_path):
    async with app_without_boards(tmp_path) as client:
        assert (await client.get("/boards/nope")).status_code == 404
        assert (await client.get("/boards/nope-either")).status_code == 404
        assert (await client.get("/no/such/thing")).status_code == 404
        assert (await client.get("/etc/passwd")).status_code == 404
        n = counted((await client.get("/metrics")).text)
    assert n[("/boards/{board_id}", "404")] == 2  # the route's template, as the JSON names the board
    assert n[("(unmatched)", "404")] == 2  # one series, however many paths a scanner tries


async def test_a_503_is_counted_whoever_raised_it(tmp_path):
    from fleetvote.api.deps import get_fleet

    async with app_without_boards(tmp_path) as client:
        assert (await client.post("/classify?fallback=false", **RAW)).status_code == 503  # QuorumLost
        client.app.dependency_overrides[get_fleet] = lambda: RefusingFleet(Overloaded("full"))
        assert (await client.post("/classify", **RAW)).status_code == 503
        client.app.dependency_overrides.clear()
        assert (await client.get("/readyz")).status_code == 503  # no board: not ready
        n = counted((await client.get("/metrics")).text)
    assert n[("/classify", "503")] == 2
    assert n[("/readyz", "503")] == 1


async def test_every_request_is_counted_once_with_its_status(tmp_path):
    async with app_without_boards(tmp_path, upload_limit=5000) as client:
        for _ in range(3):
            assert (await client.post("/classify", **RAW)).status_code == 200
        assert (await client.get("/boards")).status_code == 200
        assert (await client.get("/ensemble")).status_code == 200
        assert (await client.post("/classify", content=b"GIF89a", headers={"content-type": "image/gif"})
                ).status_code == 415
        # refused by the upload limit from its Content-Length, before any route ran
        assert (await client.post("/classify", content=b"\x00" * 6000,
                                  headers={"content-type": "application/octet-stream"})).status_code == 413
        text = (await client.get("/metrics")).text
    n = counted(text)
    assert {k: v for k, v in n.items() if k[0] != "/metrics"} == {
        ("/classify", "200"): 3, ("/classify", "413"): 1, ("/classify", "415"): 1,
        ("/boards", "200"): 1, ("/ensemble", "200"): 1}


async def test_an_unhandled_error_is_counted_as_the_500_the_client_gets(tmp_path):
    from fleetvote.api.deps import get_fleet

    async with app_without_boards(tmp_path) as client:
        client.app.dependency_overrides[get_fleet] = lambda: RefusingFleet(RuntimeError("a bug"))
        transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            assert (await c.post("/classify", **RAW)).status_code == 500
        client.app.dependency_overrides.clear()
        n = counted((await client.get("/metrics")).text)
    assert n[("/classify", "500")] == 1



async def test_a_weighted_vote_of_only_zero_weight_members_is_a_503_not_a_500(tmp_path):
    """Weights may be 0 (ensemble.json): when only such members vote (here the one asked), the
    weighted vote has no answer; the fleet refuses it as a lost quorum, the API answers 503."""
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings

    a, b = member_ids(2)
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": a, "weight": 0}, {"id": b, "weight": 1}],
                               "strategy": "weighted", "quorum": 1}))
    app = create_app(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[], scan_usb=False))
    async with app.router.lifespan_context(app):
        fleet = app.state.fleet
        with pytest.raises(QuorumLost, match="weight above 0"):
            await fleet.classify(IMAGE, members=[a])
        assert (await fleet.classify(IMAGE, members=[b])).fused.strategy == "weighted"
        assert (await fleet.classify(IMAGE, members=[a], strategy="soft")).fused.strategy == "soft"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            assert (await client.post("/classify", **RAW)).status_code == 200


@pytest.mark.parametrize("path", ["/classify", "/v2/models/fleet/infer"])
async def test_a_client_that_hangs_up_mid_upload_is_counted_499_not_500(tmp_path, path):
    """The ASGI server reports the hang-up as http.disconnect while the route reads the body."""
    async with app_without_boards(tmp_path) as client:
        app = client.app
        events = iter([{"type": "http.request", "body": b"\x00" * 100, "more_body": True},
                       {"type": "http.disconnect"}])
        sent = []

        async def receive():
            return next(events, {"type": "http.disconnect"})

        async def send(message):
            sent.append(message)

        ctype = b"application/json" if path.startswith("/v2") else b"application/octet-stream"
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "headers": [(b"host", b"test"), (b"content-type", ctype),
                                              (b"content-length", b"100000")],
                 "client": ("127.0.0.1", 1234), "server": ("test", 80), "state": {}}
        await app(scope, receive, send)
        assert sent[0]["status"] == 499
        scrape = (await client.get("/metrics")).text
        assert counted(scrape).get((path if path == "/classify" else "/v2/models/{name}/infer", "499")) == 1
        assert not any(status == "500" for (_, status) in counted(scrape))
