"""GET /metrics as Prometheus reads it: every scrape is parsed with prometheus_client's own text
parser, and its names, labels and values are checked against the requests the test made and
against GET /boards. The key is accepted as `Authorization: Bearer`, which Prometheus can send."""

from __future__ import annotations

import contextlib
import json
import re

import httpx
import numpy as np
import pytest

from conftest import ROOT, ZOO
from test_service import board_bin, member_ids, raw, service  # noqa: F401  (board_bin: a fixture)

KEY = "scrape-key"


def scrape(text: str) -> dict[str, list]:
    """Sample name -> [(labels, value)], by Prometheus' parser (a malformed exposition raises)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples: dict, name: str, **labels) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    hits = [v for ls, v in samples.get(name, []) if all(ls.get(k) == x for k, x in labels.items())]
    assert len(hits) == 1, (name, labels, samples.get(name))
    return hits[0]


@contextlib.asynccontextmanager
async def app_without_boards(tmp_path, **settings_kw):
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings

    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in member_ids(2)], "strategy": "soft", "quorum": 1}))
    app = create_app(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[], scan_usb=False, **settings_kw))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield client


def documented_metrics() -> set[str]:
    """The metric names of the README's metrics table (its rows start with a metric's name)."""
    rows = [line.split(" | ")[0] for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| `fleetvote_")]
    return {name for row in rows for name in re.findall(r"`(fleetvote_[a-z_]+)", row)}


async def test_scrape_counts_requests_latency_and_engine_votes_by_route_status_member_and_reason(tmp_path):
    from fleetvote import __version__

    ids = member_ids(2)
    image = raw(np.zeros((32, 32, 3), np.uint8))
    async with app_without_boards(tmp_path, api_key=KEY) as client:
        auth = {"authorization": f"Bearer {KEY}"}
        for _ in range(3):
            assert (await client.post("/classify", headers={**image["headers"], **auth},
                                      content=image["content"])).status_code == 200
        # a 422 from a dependency (the unknown-query check) is counted under its route
        assert (await client.post("/classify?stratgy=soft", headers={**image["headers"], **auth},
                                  content=image["content"])).status_code == 422
        assert (await client.get("/boards")).status_code == 401
        r = await client.get("/metrics", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = scrape(r.text)
    assert value(m, "fleetvote_http_requests_total", route="/classify", status="200") == 3
    assert value(m, "fleetvote_http_requests_total", route="/classify", status="422") == 1
    assert value(m, "fleetvote_http_requests_total", route="/boards", status="401") == 1
    assert value(m, "fleetvote_http_request_duration_seconds_count", route="/classify", status="200") == 3
    assert 0 < value(m, "fleetvote_http_request_duration_seconds_sum", route="/classify", status="200") < 60
    assert value(m, "fleetvote_http_request_duration_seconds_bucket", route="/classify", status="200",
                 le="+Inf") == 3
    for mid in ids:  # no board: every vote the engine's, under the reason token /classify gives
        assert value(m, "fleetvote_member_requests_total", model_id=mid) == 3  # the 422 never reached the fleet
        assert value(m, "fleetvote_member_fallbacks_total", model_id=mid, board_id="", reason="no_board") == 3
    assert "fleetvote_member_spillovers_total" not in m
    assert value(m, "fleetvote_build_info", version=__version__) == 1
    # the process metrics of the client library (Linux /proc)
    assert value(m, "process_resident_memory_bytes") > 1e6 and value(m, "process_cpu_seconds_total") > 0
    assert "python_info" in m
    # Prometheus naming: counters end in _total, no _created series, base units only
    assert not [n for n in m if n.endswith("_created")]
    assert not [n for n in m if re.search(r"_(ms|us|milliseconds|microseconds)(_|$)", n)]


async def test_metrics_take_the_key_as_bearer_or_x_api_key_and_refuse_a_wrong_one(tmp_path):
    async with app_without_boards(tmp_path, api_key=KEY) as client:
        assert (await client.get("/metrics", headers={"authorization": f"Bearer {KEY}"})).status_code == 200
        assert (await client.get("/metrics", headers={"x-api-key": KEY})).status_code == 200
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": f"Basic {KEY}"},
                        {"x-api-key": "nope", "authorization": f"Bearer {KEY}"}):
            r = await client.get("/metrics", headers=headers)
            assert r.status_code == 401, headers
            assert "Bearer" in r.headers["www-authenticate"] and "X-API-Key" in r.json()["detail"]


def test_a_spillover_is_counted_apart_from_fallbacks_and_an_unknown_reason_is_refused():
    from fleetvote.metrics import Metrics

    metrics = Metrics()
    metrics.engine_vote("m1", "queue_full")
    metrics.engine_vote("m1", "timeout", "00ff")
    m = scrape(metrics.render().decode())
    assert value(m, "fleetvote_member_spillovers_total", model_id="m1", reason="queue_full") == 1
    assert value(m, "fleetvote_member_fallbacks_total", model_id="m1", board_id="00ff", reason="timeout") == 1
    assert [ls["reason"] for ls, _ in m["fleetvote_member_fallbacks_total"]] == ["timeout"]
    with pytest.raises(ValueError, match="unknown reason 'board error'"):
        metrics.engine_vote("m1", "board error")


async def test_board_series_carry_the_api_ids_and_agree_with_get_boards(board_bin, tmp_path):
    ids = member_ids(2)
    images = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    async with service(tmp_path, ids) as client:
        answers = [(await client.post("/classify", **raw(x))).json() for x in images]
        boards = (await client.get("/boards")).json()["boards"]
        m = scrape((await client.get("/metrics")).text)
    assert {b["model_id"] for b in boards} == set(ids)
    on_board_ms = {}
    for a in answers:
        for v in a["members"]:
            assert v["source"] == "board"
            on_board_ms.setdefault(v["board_id"], []).append(v["on_board_ms"])
    for b in boards:
        bid, mid = b["board_id"], b["model_id"]
        assert value(m, "fleetvote_board_requests_total", board_id=bid, model_id=mid) == b["counters"]["requests"] == 4
        for c in ("errors", "timeouts", "reconnects", "dropped_expired"):
            assert value(m, f"fleetvote_board_{c}_total", board_id=bid, model_id=mid) == b["counters"][c]
        assert value(m, "fleetvote_board_round_trip_seconds_count", board_id=bid, model_id=mid) == 4
        assert value(m, "fleetvote_board_on_board_seconds_count", board_id=bid, model_id=mid) == 4
        # the same quantity as /classify's on_board_ms, in seconds (the JSON rounds to 1 us)
        assert value(m, "fleetvote_board_on_board_seconds_sum", board_id=bid, model_id=mid) == \
            pytest.approx(sum(on_board_ms[bid]) / 1000, abs=1e-5)
        assert value(m, "fleetvote_board_queue_depth", board_id=bid, model_id=mid) == b["queue_depth"] == 0
        states = {ls["state"]: v for ls, v in m["fleetvote_board_state"] if ls["board_id"] == bid}
        assert states == {s: float(s == b["state"]) for s in ("connecting", "ready", "busy", "degraded", "offline")}
        info = [ls for ls, v in m["fleetvote_board_info"] if ls["board_id"] == bid]
        assert info == [{"board_id": bid, "url": b["url"], "model_id": mid, "model_sha256": b["model_sha256"],
                         "board_name": b["board_name"], "firmware_version": b["firmware_version"]}]
    for mid in ids:
        assert value(m, "fleetvote_member_requests_total", model_id=mid) == 4
    assert "fleetvote_member_fallbacks_total" not in m
    # every family exposed is in the README's vocabulary, and the README names no other
    families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in m if n.startswith("fleetvote_")}
    assert families - {"fleetvote_member_fallbacks_total", "fleetvote_member_spillovers_total"} \
        <= documented_metrics()
    assert documented_metrics() - families == {"fleetvote_member_fallbacks_total", "fleetvote_member_spillovers_total"}
