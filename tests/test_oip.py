"""The Open Inference Protocol (KServe v2) over HTTP: in process without boards (every member from
the fallback engine, bit-exact with the boards), and live over virtual boards with the real
``tritonclient[http]`` as the client."""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from conftest import ROOT, ZOO, need_module, need_tool
from fleetvote.engine import Engine
from fleetvote.ensemble import load_ensemble
from fleetvote.errors import Overloaded
from fleetvote.fusion import fuse, probabilities

RNG = np.random.default_rng(22)
IMAGES = RNG.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
HEADER = "Inference-Header-Content-Length"


def member_ids(limit: int = 2) -> list[str]:
    from fleetvote.offline.cards import load_cards

    ids = [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]
    if not ids:
        pytest.skip("no zoo member yet")
    return ids[:limit]


@contextlib.asynccontextmanager
async def app_without_boards(tmp_path, strategy="soft", weights=None, **settings_kw):
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings

    ens = tmp_path / "ensemble.json"
    ids = member_ids()
    members = [{"id": i} for i in ids] if weights is None else [{"id": i, "weight": w} for i, w in zip(ids, weights)]
    ens.write_text(json.dumps({"members": members, "strategy": strategy, "quorum": 1}))
    app = create_app(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[], scan_usb=False, **settings_kw))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def infer_body(images: np.ndarray, **extra) -> dict:
    return {"inputs": [{"name": "image", "datatype": "UINT8", "shape": list(images.shape),
                        "data": images.ravel().tolist()}], **extra}


def engines() -> list[Engine]:
    return [Engine.from_file(ZOO / i / "model.tflite") for i in member_ids()]


def outputs_of(body: dict) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


# ---- infer, in process ---------------------------------------------------------------------------

async def test_fleet_infer_answers_each_image_of_a_batch_with_the_fused_vote_of_the_members(tmp_path):
    images = IMAGES[:3]
    want = np.stack([np.stack([e.run(img) for e in engines()]) for img in images])  # [N, M, 10]
    async with app_without_boards(tmp_path) as client:
        weights = [m["weight"] for m in (await client.get("/ensemble")).json()["members"]]
        r = await client.post("/v2/models/fleet/infer", json=infer_body(images, id="req-7"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "fleet" and body["model_version"] == "1" and body["id"] == "req-7"
    out = outputs_of(body)
    assert [o["datatype"] for o in body["outputs"]] == ["INT32", "FP32", "FP32"]
    assert out["label"].shape == (3,) and out["scores"].shape == (3, 10)
    assert out["member_probabilities"].shape == (3, 2, 10)
    for n in range(3):
        fused = fuse(want[n], "soft", weights)
        assert out["label"][n] == fused.label
        assert np.allclose(out["scores"][n], fused.scores, atol=1e-6)
        assert np.array_equal(out["member_probabilities"][n], probabilities(want[n]).astype(np.float32))
    # FP32 in JSON as the float32's shortest decimal: (byte + 128) / 256 exactly, no float64 noise
    assert all((v * 256).is_integer() for v in body["outputs"][2]["data"])
    p = body["parameters"]
    assert p["strategy"] == "soft" and p["members"] == ",".join(member_ids())
    assert p["fallbacks"] == ",".join(member_ids()) and p["boards"] == "" and p["spillover"] == ""
    assert p["fallback_votes"] == 6 and p["board_votes"] == 0 and p["degraded"] is True
    assert p["ensemble_version"] == 1


async def test_a_batch_answers_as_its_images_asked_one_by_one(tmp_path):
    async with app_without_boards(tmp_path) as client:
        batch = outputs_of((await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:4]))).json())
        for n in range(4):
            one = outputs_of((await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[n:n + 1]))).json())
            for name, arr in one.items():
                assert np.array_equal(arr[0], batch[name][n]), name


async def test_member_model_infer_gives_that_members_int8_bytes_and_label(tmp_path):
    mid = member_ids()[1]
    engine = Engine.from_file(ZOO / mid / "model.tflite")
    # weighted voting with this member at weight 0: its own model still answers (one vote, no weights)
    async with app_without_boards(tmp_path, strategy="weighted", weights=[1.0, 0.0]) as client:
        r = await client.post(f"/v2/models/{mid}/versions/1/infer", json=infer_body(IMAGES[:2]))
    assert r.status_code == 200, r.text
    body = r.json()
    out = outputs_of(body)
    want = np.stack([engine.run(img) for img in IMAGES[:2]])
    assert np.array_equal(out["output"], want)
    assert list(out["label"]) == [int(np.argmax(w)) for w in want]
    assert np.array_equal(out["scores"], probabilities(want).astype(np.float32))
    # only that member was asked
    assert body["parameters"]["fallbacks"] == mid and body["parameters"]["fallback_votes"] == 2


async def test_strategy_and_fallback_parameters_reach_the_fleet(tmp_path):
    async with app_without_boards(tmp_path) as client:
        r = await client.post("/v2/models/fleet/infer",
                              json=infer_body(IMAGES[:1], parameters={"strategy": "majority", "deadline_ms": 500}))
        assert r.status_code == 200 and r.json()["parameters"]["strategy"] == "majority"
        # no board and no fallback: the quorum is lost, as /classify?fallback=false answers
        r = await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:1], parameters={"fallback": False}))
    assert r.status_code == 503 and "quorum" in r.json()["error"]


def binary_request(images: np.ndarray, **body) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": list(images.shape),
                                     "parameters": {"binary_data_size": images.size}}], **body}).encode()
    return header + images.tobytes(), {HEADER: str(len(header)), "content-type": "application/octet-stream"}


def parse_binary(r: httpx.Response) -> tuple[dict, dict[str, np.ndarray]]:
    n = int(r.headers[HEADER])
    head = json.loads(r.content[:n])
    arrays, at = {}, n
    kinds = {"INT32": "<i4", "FP32": "<f4", "INT8": "i1"}
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        arrays[o["name"]] = np.frombuffer(r.content[at:at + size], kinds[o["datatype"]]).reshape(o["shape"])
        at += size
    assert at == len(r.content)
    return head, arrays


async def test_binary_tensor_extension_in_and_out_gives_the_json_answer(tmp_path):
    async with app_without_boards(tmp_path) as client:
        as_json = outputs_of((await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:3]))).json())
        content, headers = binary_request(IMAGES[:3], parameters={"binary_data_output": True})
        r = await client.post("/v2/models/fleet/infer", content=content, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/octet-stream"
        head, arrays = parse_binary(r)
        # one output as binary, the others as JSON
        content, headers = binary_request(IMAGES[:3], outputs=[{"name": "label", "parameters": {"binary_data": True}},
                                                               {"name": "scores"}])
        mixed = await client.post("/v2/models/fleet/infer", content=content, headers=headers)
    assert set(arrays) == set(as_json)
    for name in arrays:
        assert np.array_equal(arrays[name], as_json[name].astype(arrays[name].dtype)), name
    n = int(mixed.headers[HEADER])
    head = json.loads(mixed.content[:n])
    assert [o["name"] for o in head["outputs"]] == ["label", "scores"]
    assert np.array_equal(np.frombuffer(mixed.content[n:], "<i4"), as_json["label"])
    assert np.array_equal(np.array(head["outputs"][1]["data"]).reshape(3, 10), as_json["scores"])


async def test_gzip_and_deflate_bodies_are_inflated_and_a_bomb_is_refused(tmp_path):
    import zlib

    body = json.dumps(infer_body(IMAGES[:1])).encode()
    async with app_without_boards(tmp_path, upload_limit=200_000) as client:
        for enc, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
            r = await client.post("/v2/models/fleet/infer", content=packed,
                                  headers={"content-type": "application/json", "content-encoding": enc})
            assert r.status_code == 200, (enc, r.text)
        bomb = gzip.compress(b" " * 5_000_000)  # 5 MB of spaces in about 5 kB
        r = await client.post("/v2/models/fleet/infer", content=bomb, headers={"content-encoding": "gzip"})
        assert r.status_code == 413 and "upload limit" in r.json()["error"]
        r = await client.post("/v2/models/fleet/infer", content=gzip.compress(body)[:-20],
                              headers={"content-encoding": "gzip"})
        assert r.status_code == 400 and "error" in r.json()
        r = await client.post("/v2/models/fleet/infer", content=gzip.compress(body) + gzip.compress(b" "),
                              headers={"content-type": "application/json", "content-encoding": "gzip"})
        assert r.status_code == 400 and "after its compressed stream" in r.json()["error"]


async def test_json_longer_than_the_largest_batch_needs_is_refused_before_it_is_parsed(tmp_path):
    """Under the default 10 MiB upload limit, 10 kB of gzip inflating to 5 M zeros in one tensor
    would take the event loop half a second to parse: 413, with what to do instead."""
    from fleetvote.api.routes.oip import MAX_JSON

    zeros = b'{"inputs": [{"name": "image", "shape": [1, 32, 32, 3], "datatype": "UINT8", "data": [' + \
        b"0," * 2_500_000 + b'0]}]}'
    assert len(zeros) > MAX_JSON
    async with app_without_boards(tmp_path) as client:
        r = await client.post("/v2/models/fleet/infer", content=gzip.compress(zeros),
                              headers={"content-type": "application/json", "content-encoding": "gzip"})
        assert r.status_code == 413 and "binary tensor data" in r.json()["error"]
        # the largest batch as JSON, spaced as json.dumps spaces it, is still taken
        big = json.dumps(infer_body(np.full((64, 32, 32, 3), 255, np.uint8))).encode()
        assert len(big) <= MAX_JSON


# ---- refusals ----------------------------------------------------------------------------------

def _with_image(**changes) -> dict:
    body = infer_body(IMAGES[:1])
    body["inputs"][0].update(changes)
    return body


BAD_REQUESTS = [
    ("not json", b"{nope", "not an inference request"),
    ("no inputs", {"inputs": []}, "inputs"),
    ("unknown field", {**infer_body(IMAGES[:1]), "inptus": []}, "inptus"),
    ("float pixels", _with_image(data=[0.5] * 3072), "integers"),
    ("a boolean among integer pixels", _with_image(data=[True] + [0] * 3071), "JSON booleans"),
    ("a nested boolean pixel", _with_image(data=[[[[0, 0, 0]] * 31 + [[0, False, 0]]] * 32]), "JSON booleans"),
    ("boolean pixels", _with_image(data=[True] * 3072), "JSON booleans"),
    ("pixel over 255", _with_image(data=[256] * 3072), "0..255"),
    ("too few values", _with_image(data=[1] * 3071), "3072 integers"),
    ("ragged data", _with_image(data=[[1, 2], [3]]), "regular"),
    ("wrong datatype", _with_image(datatype="FP32"), "datatype FP32"),
    ("wrong shape", _with_image(shape=[1, 28, 28, 1]), "shape [1, 28, 28, 1]"),
    ("batch too large", _with_image(shape=[65, 32, 32, 3], data=[0] * (65 * 3072)), "N <= 64"),
    ("wrong input name", _with_image(name="input_1"), "the one input is image"),
    ("no data", _with_image(data=None), "no data"),
    ("unknown parameter", infer_body(IMAGES[:1], parameters={"stratgy": "soft"}), "unknown parameter(s) stratgy"),
    ("unknown mode", infer_body(IMAGES[:1], parameters={"mode": "fastest"}), "not one of all, early, cascade"),
    ("unknown strategy", infer_body(IMAGES[:1], parameters={"strategy": "loudest"}), "not one of"),
    ("deadline out of range", infer_body(IMAGES[:1], parameters={"deadline_ms": 0}), "1..600000"),
    ("fallback as a string", infer_body(IMAGES[:1], parameters={"fallback": "no"}), "true or false"),
    ("unknown output", infer_body(IMAGES[:1], outputs=[{"name": "logits"}]), "no output 'logits'"),
]


@pytest.mark.parametrize("case,body,says", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
async def test_a_bad_infer_request_is_a_400_in_the_protocols_error_body(tmp_path, case, body, says):
    async with app_without_boards(tmp_path) as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = await client.post("/v2/models/fleet/infer", content=content, headers={"content-type": "application/json"})
        still = await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:1]))
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"} and says in r.json()["error"]
    assert still.status_code == 200  # nothing lost: the next request is answered


async def test_binary_sizes_that_disagree_are_a_400(tmp_path):
    async with app_without_boards(tmp_path) as client:
        content, headers = binary_request(IMAGES[:2])
        short = await client.post("/v2/models/fleet/infer", content=content[:-1], headers=headers)
        bad_len = await client.post("/v2/models/fleet/infer", content=content, headers={HEADER: "99999999"})
    assert short.status_code == 400 and "bytes follow the header" in short.json()["error"]
    assert bad_len.status_code == 400 and HEADER in bad_len.json()["error"]


async def test_strategy_on_a_member_model_is_refused(tmp_path):
    async with app_without_boards(tmp_path) as client:
        r = await client.post(f"/v2/models/{member_ids()[0]}/infer",
                              json=infer_body(IMAGES[:1], parameters={"strategy": "soft"}))
    assert r.status_code == 400 and "one vote" in r.json()["error"]


async def test_other_content_types_and_encodings_are_415(tmp_path):
    async with app_without_boards(tmp_path) as client:
        png = await client.post("/v2/models/fleet/infer", content=b"\x89PNG", headers={"content-type": "image/png"})
        br = await client.post("/v2/models/fleet/infer", content=b"x", headers={"content-encoding": "br"})
    assert png.status_code == 415 and "application/json" in png.json()["error"]
    assert br.status_code == 415 and "gzip" in br.json()["error"]


async def test_a_body_over_the_upload_limit_is_a_413_in_the_protocols_error_body(tmp_path):
    async with app_without_boards(tmp_path, upload_limit=10_000) as client:
        r = await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:2]))
        classify = await client.post("/classify", content=b"x" * 20_000)
    assert r.status_code == 413 and "upload limit" in r.json()["error"]
    assert classify.status_code == 413 and "detail" in classify.json()  # the rest of the API as before


async def test_a_streamed_body_over_the_limit_is_a_413_in_the_protocols_error_body(tmp_path):
    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b" " * 1000

    async with app_without_boards(tmp_path, upload_limit=10_000) as client:
        r = await client.post("/v2/models/fleet/infer", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "upload limit" in r.json()["error"]


async def test_unknown_models_and_versions_are_404_and_unknown_query_400(tmp_path):
    async with app_without_boards(tmp_path) as client:
        for path in ("/v2/models/nope", "/v2/models/fleet/versions/2", "/v2/models/nope/ready"):
            r = await client.get(path)
            assert r.status_code == 404 and "error" in r.json(), path
        r = await client.post("/v2/models/nope/infer", json=infer_body(IMAGES[:1]))
        assert r.status_code == 404 and "'fleet'" in r.json()["error"]
        r = await client.get("/v2/models/fleet?verbose=1")
        assert r.status_code == 400 and "verbose" in r.json()["error"]


class RefusingFleet:
    """A fleet whose every classify is refused (admission control)."""

    def __init__(self, fleet) -> None:
        self.ensemble = fleet.ensemble

    async def classify(self, image, **kwargs):
        raise Overloaded("every board queue is full")


async def test_a_full_fleet_is_a_503_with_retry_after_in_the_protocols_error_body(tmp_path):
    from fleetvote.api.deps import get_fleet

    async with app_without_boards(tmp_path) as client:
        refusing = RefusingFleet(client.app.state.fleet)
        client.app.dependency_overrides[get_fleet] = lambda: refusing
        r = await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:4]))
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "queue" in r.json()["error"]


class MixedFleet:
    """Answers every image with member 0 from a board, 1 from the engine after a timeout and the
    last spilled over (its boards' queues full), as Fleet.classify would type it."""

    def __init__(self, fleet) -> None:
        self.ensemble = fleet.ensemble

    async def classify(self, image, **kwargs):
        from fleetvote.fleet.manager import QUEUE_FULL
        from fleetvote.fleet.results import Classification, MemberVote

        ids = [m.id for m in self.ensemble.members]
        out = (100,) + (-128,) * 9
        votes = (MemberVote(ids[0], out, "board", None, "ab12", 0.1, 0.2, 0.9, 1.5),
                 MemberVote(ids[1], out, "fallback", "timeout", None, 0.0, 0.0, None, 2.0),
                 MemberVote(ids[2], out, "fallback", QUEUE_FULL, None, 0.0, 0.0, None, 2.0))
        return Classification(fuse(np.array([v.output for v in votes]), "soft", [1.0] * 3), votes, 3.0)


async def infer_with(stand_in, tmp_path, images: np.ndarray) -> tuple[httpx.Response, list[str]]:
    """POST one infer of `images` to an app on a three-member ensemble whose fleet is
    `stand_in(real_fleet)`; gives the answer and the three member ids."""
    from fleetvote.api.deps import get_fleet
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings

    ids = member_ids(3)
    if len(ids) < 3:
        pytest.skip("fewer than 3 zoo members")
    (tmp_path / "e.json").write_text(json.dumps({"members": [{"id": i} for i in ids]}))
    app = create_app(Settings(ensemble=tmp_path / "e.json", zoo=ZOO, urls=[], link_globs=[], scan_usb=False))
    async with app.router.lifespan_context(app):
        app.dependency_overrides[get_fleet] = lambda: stand_in(app.state.fleet)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post("/v2/models/fleet/infer", json=infer_body(images)), ids


async def test_response_parameters_say_which_members_were_boards_fallbacks_or_spillover(tmp_path):
    r, ids = await infer_with(MixedFleet, tmp_path, IMAGES[:3])
    assert r.status_code == 200, r.text
    p = r.json()["parameters"]
    assert (p["boards"], p["fallbacks"], p["spillover"], p["missing"]) == (ids[0], ids[1], ids[2], "")
    assert (p["board_votes"], p["fallback_votes"], p["spillover_votes"], p["degraded"]) == (3, 3, 3, True)


class PartialFleet(MixedFleet):
    """Fallback off and member 1's board missing: it did not vote."""

    async def classify(self, image, **kwargs):
        from fleetvote.fleet.results import Classification

        c = await super().classify(image)
        votes = (c.members[0], c.members[2])
        return Classification(fuse(np.array([v.output for v in votes]), "soft", [1.0] * 2), votes, 3.0)


async def test_a_member_that_did_not_vote_is_a_row_of_zeros_and_named_missing(tmp_path):
    r, ids = await infer_with(PartialFleet, tmp_path, IMAGES[:2])
    assert r.status_code == 200, r.text
    probs = outputs_of(r.json())["member_probabilities"]
    assert probs.shape == (2, 3, 10) and not probs[:, 1].any() and probs[:, 0].any() and probs[:, 2].any()
    assert r.json()["parameters"]["missing"] == ids[1]


async def test_with_an_api_key_every_route_but_health_wants_it_and_says_so_in_the_protocol(tmp_path):
    async with app_without_boards(tmp_path, api_key="s3cret") as client:
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 503  # no board: not ready, as /readyz
        for method, path in (("GET", "/v2"), ("GET", "/v2/models/fleet"), ("GET", "/v2/models/fleet/ready"),
                             ("POST", "/v2/models/fleet/infer")):
            r = await client.request(method, path)
            assert r.status_code == 401 and "X-API-Key" in r.json()["error"], path
        r = await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:1]), headers={"x-api-key": "s3cret"})
        assert r.status_code == 200


async def test_metadata_describes_the_models_and_the_openapi_document_lists_the_routes(tmp_path):
    ids = member_ids()
    async with app_without_boards(tmp_path) as client:
        server = (await client.get("/v2")).json()
        fleet = (await client.get("/v2/models/fleet")).json()
        member = (await client.get(f"/v2/models/{ids[0]}/versions/1")).json()
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert server["name"] == "fleetvote" and "binary_tensor_data" in server["extensions"]
    assert fleet["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}]
    assert {o["name"]: o["shape"] for o in fleet["outputs"]} == {
        "label": [-1], "scores": [-1, 10], "member_probabilities": [-1, len(ids), 10]}
    assert member["name"] == ids[0] and member["versions"] == ["1"]
    assert [o["name"] for o in member["outputs"]] == ["label", "scores", "output"]
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
                 "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}",
                 "/v2/models/{name}/versions/{version}/ready", "/v2/models/{name}/versions/{version}/infer"):
        assert path in paths, path
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert "application/json" in infer["requestBody"]["content"]
    assert {"400", "404", "413", "415", "503"} <= set(infer["responses"])


# ---- live, with tritonclient --------------------------------------------------------------------

@pytest.fixture(scope="module")
def live_fleet(tmp_path_factory):
    """One virtual board per member (up to 3) and the service under uvicorn on loopback."""
    from fleetvote.settings import Settings
    from fleetvote.testbed.harness import ControlledBoard, ServiceThread, board_models, write_ensemble

    need_tool("cc")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    members = board_models()[:3]
    if not members:
        pytest.skip("no zoo member built into the virtual board")
    work = tmp_path_factory.mktemp("oip")
    boards = [ControlledBoard(m, i, work) for i, m in enumerate(members)]
    try:
        for b in boards:
            b.start()
        s = Settings(ensemble=write_ensemble(work / "ensemble.json", members), zoo=ZOO, urls=[],
                     link_globs=[str(work / "boards" / "*")], scan_usb=False, rescan_s=0.2)
        with ServiceThread(s) as svc:
            yield svc.url, members, s.ensemble
    finally:
        for b in boards:
            b.stop()


def triton(url: str):
    need_module("tritonclient")
    import tritonclient.http as httpclient

    return httpclient, httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=30)


def wait_ready(client, timeout: float = 15.0) -> None:
    import time

    t0 = time.monotonic()
    while not client.is_server_ready():
        assert time.monotonic() - t0 < timeout, "the fleet did not become ready"
        time.sleep(0.1)


def test_tritonclient_sees_a_live_ready_server_and_the_models_metadata(live_fleet):
    url, members, _ = live_fleet
    _, client = triton(url)
    assert client.is_server_live()
    wait_ready(client)
    assert client.is_model_ready("fleet") and client.is_model_ready(members[0], "1")
    assert not client.is_model_ready("fleet", "2")
    server = client.get_server_metadata()
    assert server["name"] == "fleetvote" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("fleet", "1")
    assert meta["inputs"][0] == {"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}
    assert [o["name"] for o in meta["outputs"]] == ["label", "scores", "member_probabilities"]
    assert client.get_model_metadata(members[1])["name"] == members[1]


@pytest.mark.parametrize("n", [1, 8])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infers_a_batch_on_the_boards_bit_exact_with_the_engine(live_fleet, n, binary):
    url, members, ensemble_file = live_fleet
    httpclient, client = triton(url)
    wait_ready(client)
    images = IMAGES[:n]
    x = httpclient.InferInput("image", list(images.shape), "UINT8")
    x.set_data_from_numpy(images, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary)
               for name in ("label", "scores", "member_probabilities")]
    result = client.infer("fleet", [x], outputs=outputs, request_id=f"n{n}",
                          parameters={"strategy": "soft", "deadline_ms": 5000})
    want = np.stack([np.stack([Engine.from_file(ZOO / m / "model.tflite").run(img) for m in members])
                     for img in images])
    got = result.as_numpy("member_probabilities")
    assert got.shape == (n, len(members), 10) and got.dtype == np.float32
    assert np.array_equal(got, probabilities(want).astype(np.float32))  # the boards' bytes, exactly
    labels = result.as_numpy("label")
    assert labels.dtype == np.int32
    weights = load_ensemble(ensemble_file, ZOO).weights
    assert list(labels) == [fuse(w, "soft", weights).label for w in want]
    response = result.get_response()
    assert response["id"] == f"n{n}"
    assert response["parameters"]["boards"] == ",".join(members)
    assert response["parameters"]["board_votes"] == n * len(members)
    assert response["parameters"]["fallbacks"] == ""


def test_tritonclient_default_request_gzip_and_member_model(live_fleet):
    url, members, _ = live_fleet
    httpclient, client = triton(url)
    wait_ready(client)
    x = httpclient.InferInput("image", [2, 32, 32, 3], "UINT8")
    x.set_data_from_numpy(IMAGES[:2])
    # no outputs named: tritonclient asks for every output as binary (binary_data_output)
    plain = client.infer("fleet", [x])
    packed = client.infer("fleet", [x], request_compression_algorithm="gzip")
    for name in ("label", "scores", "member_probabilities"):
        assert np.array_equal(plain.as_numpy(name), packed.as_numpy(name)), name
    one = client.infer(members[0], [x], model_version="1")
    # that member's board answered, and no other member was asked
    assert one.get_response()["parameters"]["boards"] == members[0]
    assert one.get_response()["parameters"]["board_votes"] == 2
    want = np.stack([Engine.from_file(ZOO / members[0] / "model.tflite").run(img) for img in IMAGES[:2]])
    assert np.array_equal(one.as_numpy("output"), want)
    assert np.array_equal(one.as_numpy("label"), np.argmax(want, axis=1).astype(np.int32))


def test_tritonclient_gets_the_servers_error_message(live_fleet):
    url, _, _ = live_fleet
    httpclient, client = triton(url)
    from tritonclient.utils import InferenceServerException

    x = httpclient.InferInput("image", [1, 28, 28, 1], "UINT8")
    x.set_data_from_numpy(np.zeros((1, 28, 28, 1), np.uint8))
    with pytest.raises(InferenceServerException) as err:
        client.infer("fleet", [x])
    assert err.value.status() == "400" and "[N, 32, 32, 3]" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("no-such-model")
    assert err.value.status() == "404"


async def test_the_mode_parameter_reaches_the_fleet_and_the_response_says_it(tmp_path):
    async with app_without_boards(tmp_path) as client:
        full = await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:4]))
        early = await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:4], parameters={"mode": "early"}))
        cascade = await client.post("/v2/models/fleet/infer",
                                    json=infer_body(IMAGES[:1], parameters={"mode": "cascade"}))
        bad = await client.post("/v2/models/fleet/infer", json=infer_body(IMAGES[:1], parameters={"mode": "fast"}))
        member = await client.post(f"/v2/models/{member_ids()[0]}/infer",
                                   json=infer_body(IMAGES[:1], parameters={"mode": "early"}))
    assert full.status_code == early.status_code == 200, early.text
    assert full.json()["parameters"]["mode"] == "all" and early.json()["parameters"]["mode"] == "early"
    assert np.array_equal(outputs_of(early.json())["label"], outputs_of(full.json())["label"])  # exact
    p = early.json()["parameters"]
    assert set(filter(None, p["skipped"].split(","))) <= set(member_ids()) and p["missing"] == ""
    assert cascade.status_code == 400 and "no cascade section" in cascade.json()["error"]
    assert bad.status_code == 400 and "not one of all, early, cascade" in bad.json()["error"]
    assert member.status_code == 400 and "ask the 'fleet' model" in member.json()["error"]
