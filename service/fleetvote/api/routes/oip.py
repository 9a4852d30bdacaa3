"""The Open Inference Protocol (KServe v2) over HTTP/REST: what ``tritonclient``, perf_analyzer and
KServe's SDK speak. Models: ``fleet`` (the fused answer, as POST /classify) and every member under
its id; one version each, ``1``. Models in ``oip_schemas.py``.

    GET  /v2                                         server metadata
    GET  /v2/health/live, /v2/health/ready           200, or 503 when fewer members than the quorum
                                                     are on ready boards (as /readyz)
    GET  /v2/models/{name}[/versions/1]              model metadata
    GET  /v2/models/{name}[/versions/1]/ready        200, or 503 (a member: no ready board serves it)
    POST /v2/models/{name}[/versions/1]/infer        input ``image`` UINT8 [N, 32, 32, 3]

An infer request is N independent classifications through ``Fleet.classify`` (the typed path of
/classify; a member model asks that member alone), answered in one response. Its options are
request parameters: ``strategy``, ``deadline_ms``, ``fallback``, ``mode`` (the fleet model's
all, early or cascade, as /classify's). The body is JSON, or, with the
binary tensor data extension, a JSON header of ``Inference-Header-Content-Length`` bytes followed
by the raw tensors; outputs come back as binary when asked (``binary_data_output``, or an output's
``binary_data``), which is what tritonclient does by default. ``Content-Encoding: gzip`` or
``deflate`` is accepted, inflated to at most the upload limit.

Errors are the protocol's ``{"error": "..."}`` with the status /classify would give: 400 for a
request that is wrong (what the rest of the API answers with 422), 401, 404 (no such model or
version), 413, 415, 503 (every board queue full: Retry-After; fallback off and the quorum lost).
``OipRoute`` translates them for these routes only; the rest of the API keeps ``{"detail": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from ... import __version__
from ...adaptive import MODES
from ...ensemble import Ensemble, Member
from ...errors import Overloaded, QuorumLost, UnknownMember
from ...fleet.manager import QUEUE_FULL, STRAGGLING, Fleet
from ...fleet.results import Classification
from ...fusion import STRATEGIES
from ...images import ImageError
from ..deps import ApiKey, FleetDep, SettingsDep
from ..oip_schemas import (
    IMAGE,
    MEMBER_OUTPUTS,
    VERSION,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReady,
    OipError,
    ServerLive,
    ServerMetadata,
    ServerReady,
    fleet_outputs,
    inline_schema,
)

FLEET = "fleet"  # the fused model's name; a member called "fleet" would be hidden behind it
HEADER_LENGTH = "Inference-Header-Content-Length"
# The largest batch: N images run N fleet requests, so a batch of 64 asks each board for up to 64
# inferences (about 10 s on a real board at 150 ms each); larger batches are split by the client.
MAX_BATCH = 64
# The JSON of the largest request: MAX_BATCH images of 3,072 numbers, each at most "255, " (5
# bytes; 6 to spare for other spacing), and 64 KiB for the rest. Beyond it a body is refused (413)
# before it is parsed: a 10 KB gzip body inflating to 10 MiB of zeros stalled the loop 0.5 s.
MAX_JSON = MAX_BATCH * 32 * 32 * 3 * 6 + 64 * 1024
PIXELS = 32 * 32 * 3
# Request parameters, each with its check; "binary_data_output" is the binary extension's; "mode"
# the adaptive fleet's (all, early, cascade).
_PARAMETERS = ("strategy", "deadline_ms", "fallback", "mode", "binary_data_output")
_CONTENT_TYPES = ("", "application/json", "application/octet-stream")


class ProtocolError(Exception):
    """A request the protocol's routes refuse; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class OipRoute(APIRoute):
    """A route that answers every error in the protocol's form, ``{"error": ...}``: the
    dependencies' (API key, unknown query parameter), the upload limit's, and the fleet's."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def answer_in_protocol(request: Request) -> Response:
            try:
                return await handler(request)
            except ProtocolError as exc:
                return _error(exc.status, str(exc), exc.headers)
            except HTTPException as exc:
                # the protocol has no 422: a request it cannot take is a 400
                return _error(400 if exc.status_code == 422 else exc.status_code, str(exc.detail),
                              dict(exc.headers or {}))
            except RequestValidationError as exc:
                return _error(400, _problems(exc.errors()))
            except ImageError as exc:
                return _error(400 if exc.status == 422 else exc.status, str(exc))
            except Overloaded as exc:
                return _error(503, f"{exc}; retry shortly", {"Retry-After": str(exc.retry_after_s)})
            except QuorumLost as exc:
                return _error(503, str(exc))
            except UnknownMember as exc:  # the ensemble was reloaded under the request
                return _error(404, str(exc))

        return answer_in_protocol


def _problems(errors) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)


_ERRORS = {s: {"model": OipError, "description": d} for s, d in (
    (400, "the request is not one this model takes (the message says what to change)"),
    (401, "missing or wrong X-API-Key (only when the service has an API key)"),
    (404, "no such model or version"), (413, "body over the upload limit"),
    (415, "content type or encoding other than JSON, the binary extension, gzip or deflate"),
    (503, "every board queue is full (Retry-After), or fallback off and the quorum lost"))}

router = APIRouter(tags=["inference protocol (v2)"], route_class=OipRoute)
keyed = APIRouter(tags=["inference protocol (v2)"], route_class=OipRoute, dependencies=[ApiKey],
                  responses={401: _ERRORS[401]})

ModelName = Annotated[str, Path(description="`fleet`, or a member's id (GET /ensemble)")]
ModelVersion = Annotated[str, Path(description="`1`, the one version")]


# ---- health and metadata ---------------------------------------------------------------------

@router.get("/v2/health/live", response_model=ServerLive, summary="Liveness (v2): the process answers")
async def live() -> ServerLive:
    return ServerLive(live=True)


@router.get("/v2/health/ready", response_model=ServerReady, responses={503: {"model": ServerReady}},
            summary="Readiness (v2): at least the quorum of members on ready boards, as /readyz")
async def ready(fleet: FleetDep):
    ok = fleet.ready()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@keyed.get("/v2", response_model=ServerMetadata, summary="Server metadata (v2)")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="fleetvote", version=__version__, extensions=["binary_tensor_data"])


def _model(fleet: Fleet, name: str, version: str | None) -> tuple[Ensemble, Member | None]:
    """The ensemble in service and the member called ``name`` (None for the fleet model); 404
    for another name or version."""
    ens = fleet.ensemble
    if name == FLEET:
        member = None
    else:
        member = next((m for m in ens.members if m.id == name), None)
        if member is None:
            raise ProtocolError(f"no model {name!r}: the models are {FLEET!r} and the members "
                              f"{', '.join(m.id for m in ens.members)}", 404)
    if version is not None and version != VERSION:
        raise ProtocolError(f"model {name!r} has no version {version!r}; its one version is {VERSION}", 404)
    return ens, member


def _metadata(fleet: Fleet, name: str, version: str | None) -> ModelMetadata:
    ens, member = _model(fleet, name, version)
    if member is None:
        return ModelMetadata(name=FLEET, versions=[VERSION], platform="fleetvote_ensemble", inputs=[IMAGE],
                             outputs=fleet_outputs(len(ens.members)))
    return ModelMetadata(name=member.id, versions=[VERSION], platform="tflite_int8", inputs=[IMAGE],
                         outputs=MEMBER_OUTPUTS)


def _ready(fleet: Fleet, name: str, version: str | None) -> JSONResponse:
    _ens, member = _model(fleet, name, version)
    ok = fleet.ready() if member is None else fleet.on_boards(member)
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


_MODEL_ERRORS = {404: _ERRORS[404]}
_READY_DOC = {"response_model": ModelReady, "responses": {**_MODEL_ERRORS, 503: {"model": ModelReady}},
              "summary": "Model readiness (v2): the fleet as /readyz; a member when a ready board serves it"}


@keyed.get("/v2/models/{name}", response_model=ModelMetadata, responses=_MODEL_ERRORS,
           summary="Model metadata (v2)")
async def model_metadata(name: ModelName, fleet: FleetDep) -> ModelMetadata:
    return _metadata(fleet, name, None)


@keyed.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata, responses=_MODEL_ERRORS,
           summary="Model metadata (v2), of one version")
async def model_version_metadata(name: ModelName, version: ModelVersion, fleet: FleetDep) -> ModelMetadata:
    return _metadata(fleet, name, version)


@keyed.get("/v2/models/{name}/ready", **_READY_DOC)
async def model_ready(name: ModelName, fleet: FleetDep):
    return _ready(fleet, name, None)


@keyed.get("/v2/models/{name}/versions/{version}/ready", **_READY_DOC)
async def model_version_ready(name: ModelName, version: ModelVersion, fleet: FleetDep):
    return _ready(fleet, name, version)


# ---- infer -------------------------------------------------------------------------------------

_INFER_DOC = {
    "requestBody": {
        "required": True,
        "description": "JSON; or the binary tensor data extension: a JSON header of Inference-Header-Content-"
                       "Length bytes whose image input has parameters.binary_data_size, followed by the "
                       "N x 3,072 raw bytes (row-major N, H, W, C).",
        "content": {"application/json": {"schema": inline_schema(InferRequest)},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "parameters": [{"name": HEADER_LENGTH, "in": "header", "required": False, "schema": {"type": "integer"},
                    "description": "the length of the JSON header (binary tensor data extension)"}],
}
_INFER_RESPONSES = {
    200: {"description": "JSON, or, when binary outputs were asked for, a JSON header of "
                         "Inference-Header-Content-Length bytes followed by the raw outputs",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    **{s: _ERRORS[s] for s in (400, 404, 413, 415, 503)},
}


@keyed.post("/v2/models/{name}/infer", response_model=InferResponse, responses=_INFER_RESPONSES,
            openapi_extra=_INFER_DOC, summary="Inference (v2): N images, N answers")
async def infer(name: ModelName, request: Request, fleet: FleetDep, settings: SettingsDep) -> Response:
    return await _infer(request, fleet, settings.queue_size, settings.upload_limit, name, None)


@keyed.post("/v2/models/{name}/versions/{version}/infer", response_model=InferResponse,
            responses=_INFER_RESPONSES, openapi_extra=_INFER_DOC, summary="Inference (v2), of one version")
async def infer_version(name: ModelName, version: ModelVersion, request: Request, fleet: FleetDep,
                        settings: SettingsDep) -> Response:
    return await _infer(request, fleet, settings.queue_size, settings.upload_limit, name, version)


async def _infer(request: Request, fleet: Fleet, wave: int, limit: int, name: str, version: str | None
                 ) -> Response:
    ens, member = _model(fleet, name, version)  # this ensemble answers the whole batch, even across a reload
    header, tensors = _split(await _body(request, limit), request.headers.get(HEADER_LENGTH))
    if len(header) > MAX_JSON:
        raise ProtocolError(f"the request's JSON is {len(header)} bytes, more than the {MAX_JSON} that the largest "
                            f"batch ({MAX_BATCH} images as JSON numbers) needs; send the pixels as binary tensor "
                            "data, or fewer images per request", 413)
    # parsed off the event loop: a megabyte of JSON numbers takes tens of milliseconds to read
    req, images = await asyncio.to_thread(_parse, header, tensors)
    options, binary_all = _options(req.parameters, member)
    wanted = _outputs(req, member, len(ens.members), binary_all)
    if member is not None:
        # one vote: its label is its argmax under any rule; soft needs no weight (a member may weigh 0)
        options["strategy"] = "soft"
        options["mode"] = "all"  # one member: nothing to decide early or in stages
    elif options.get("mode") == "cascade" and ens.cascade is None:
        raise ProtocolError("mode cascade: the ensemble file has no cascade section; write one with fleetvote "
                            "ensemble-eval --write-ensemble, or use mode all or early")
    # a deadline_ms bounds the whole request, every image of its batch, from its arrival
    answers = await _classify_batch(fleet, images, wave, ensemble=ens, arrived=getattr(request.state, "arrived", None),
                                    members=None if member is None else [member.id], **options)
    return _respond(name, req.id, ens, member, answers, options.get("strategy") or ens.strategy, wanted)


def _parse(header: bytes, tensors: bytes) -> tuple[InferRequest, np.ndarray]:
    try:
        req = InferRequest.model_validate_json(header)
    except ValidationError as exc:
        raise ProtocolError(f"not an inference request: {_problems(exc.errors(include_url=False))}") from exc
    return req, _images(req, tensors)


async def _body(request: Request, limit: int) -> bytes:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _CONTENT_TYPES:
        raise ProtocolError(f"content type {ctype!r} is not one this route reads: send application/json, or the "
                          f"binary tensor data extension ({HEADER_LENGTH} header, application/octet-stream)", 415)
    data = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return data
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise ProtocolError(f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or none", 415)
    inflate = zlib.decompressobj(wbits)
    try:
        # at most limit + 1 bytes out: a small compressed bomb cannot make a large buffer
        out = inflate.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"the {encoding} body does not inflate ({exc})") from exc
    if len(out) > limit:
        raise ProtocolError(f"the {encoding} body inflates past the upload limit of {limit} bytes", 413)
    if not inflate.eof:
        raise ProtocolError(f"the {encoding} body is truncated")
    if inflate.unused_data:  # a second gzip member, or junk: refused rather than silently cut
        raise ProtocolError(f"the {encoding} body holds {len(inflate.unused_data)} bytes after its compressed "
                            "stream: send one stream")
    return out


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, raw tensors) of a body: the whole body is JSON without the extension's header."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 < n <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} {header_length!r} is not a length within the {len(body)}-byte body")
    return body[:n], body[n:]


def _images(req: InferRequest, tensors: bytes) -> np.ndarray:
    """The N images of the request's one input, ``image`` UINT8 [N, 32, 32, 3]."""
    want = "the one input is image, UINT8 [N, 32, 32, 3]"
    if len(req.inputs) != 1 or req.inputs[0].name != IMAGE.name:
        raise ProtocolError(f"inputs {[i.name for i in req.inputs]}: {want}")
    x = req.inputs[0]
    if x.datatype != IMAGE.datatype:
        raise ProtocolError(f"image has datatype {x.datatype}: {want} (pixels 0..255)")
    if len(x.shape) != 4 or x.shape[1:] != [32, 32, 3] or not 1 <= x.shape[0] <= MAX_BATCH:
        raise ProtocolError(f"image has shape {x.shape}: {want}, 1 <= N <= {MAX_BATCH} (resize to 32x32 RGB; "
                          "split larger batches)")
    n = x.shape[0]
    params = x.parameters or {}
    if set(params) - {"binary_data_size"}:
        raise ProtocolError(f"image parameters {sorted(set(params) - {'binary_data_size'})} are not known; "
                          "binary_data_size is")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if x.data is not None:
            raise ProtocolError("image has both data and binary_data_size: send one")
        if size != n * PIXELS or len(tensors) != size:
            raise ProtocolError(f"image [{n}, 32, 32, 3] is {n * PIXELS} bytes; binary_data_size is {size!r} and "
                              f"{len(tensors)} bytes follow the header")
        return np.frombuffer(tensors, np.uint8).reshape(n, 32, 32, 3)
    if tensors:
        raise ProtocolError(f"{len(tensors)} bytes follow the header but no input has binary_data_size")
    if x.data is None:
        raise ProtocolError("image has no data: send data, or binary_data_size and the bytes after the header")
    if _has_bool(x.data):  # numpy would take true as 1 among integers (and bools alone as kind b)
        raise ProtocolError("image data must be integer pixels in 0..255; JSON booleans (true, false) are not pixels")
    try:
        values = np.asarray(x.data)
    except ValueError as exc:  # a ragged nesting
        raise ProtocolError(f"image data is not a regular array ({exc})") from exc
    if values.dtype.kind not in "iu" or values.size != n * PIXELS:
        raise ProtocolError(f"image data must be {n * PIXELS} integers (flat or nested row-major); got "
                          f"{values.size} values of kind {values.dtype}")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ProtocolError("image data must be pixels in 0..255")
    return values.astype(np.uint8).reshape(n, 32, 32, 3)


def _has_bool(data: list) -> bool:
    """Whether a JSON boolean is among the values of ``data``, however nested (a loop, not a
    recursion: the nesting is the client's to choose)."""
    lists = [data]
    while lists:
        values = lists.pop()
        if any(type(v) is bool for v in values):
            return True
        lists.extend(v for v in values if type(v) is list)
    return False


def _options(parameters: dict | None, member: Member | None) -> tuple[dict, bool]:
    """Fleet.classify's options from the request's parameters, and whether every output is wanted
    as binary (``binary_data_output``)."""
    p = dict(parameters or {})
    unknown = sorted(set(p) - set(_PARAMETERS))
    if unknown:
        raise ProtocolError(f"unknown parameter(s) {', '.join(unknown)}; this model takes {', '.join(_PARAMETERS)}")
    out: dict = {}
    if "strategy" in p:
        if member is not None:
            raise ProtocolError(f"strategy fuses the members' votes: ask the {FLEET!r} model; "
                              f"{member.id!r} has one vote")
        if p["strategy"] not in STRATEGIES:
            raise ProtocolError(f"strategy {p['strategy']!r} is not one of {', '.join(STRATEGIES)}")
        out["strategy"] = p["strategy"]
    if "mode" in p:
        if member is not None:
            raise ProtocolError(f"mode adapts the members' vote: ask the {FLEET!r} model; {member.id!r} has one vote")
        if p["mode"] not in MODES:
            raise ProtocolError(f"mode {p['mode']!r} is not one of {', '.join(MODES)}")
        out["mode"] = p["mode"]
    if "deadline_ms" in p:
        d = p["deadline_ms"]
        # the bounds of /classify's deadline_ms query
        if isinstance(d, bool) or not isinstance(d, int | float) or not 1 <= d <= 600_000:
            raise ProtocolError(f"deadline_ms {d!r} must be a number of milliseconds in 1..600000")
        out["deadline_ms"] = float(d)
    for flag in ("fallback", "binary_data_output"):
        if flag in p and not isinstance(p[flag], bool):
            raise ProtocolError(f"{flag} {p[flag]!r} must be true or false")
    if "fallback" in p:
        out["fallback"] = p["fallback"]
    return out, bool(p.get("binary_data_output", False))


def _outputs(req: InferRequest, member: Member | None, members: int, binary_all: bool) -> list[tuple[str, bool]]:
    """(name, as binary) of each output asked for; every output of the model by default."""
    known = [o.name for o in (MEMBER_OUTPUTS if member is not None else fleet_outputs(members))]
    if req.outputs is None:
        return [(name, binary_all) for name in known]
    wanted = []
    for o in req.outputs:
        if o.name not in known:
            raise ProtocolError(f"no output {o.name!r}: this model gives {', '.join(known)}")
        params = o.parameters or {}
        if set(params) - {"binary_data"} or not isinstance(params.get("binary_data", False), bool):
            raise ProtocolError(f"output {o.name} takes one parameter, binary_data (true or false); got {params}")
        wanted.append((o.name, bool(params.get("binary_data", binary_all))))
    return wanted


async def _classify_batch(fleet: Fleet, images: np.ndarray, wave: int, **options) -> list[Classification]:
    """Every image through Fleet.classify, at most ``wave`` at a time (the board queue size: each
    board's queue can take a whole wave, so a batch does not overflow the queues of its own boards
    and spill over to the engine). The first refusal (Overloaded, QuorumLost) answers the batch."""
    gate = asyncio.Semaphore(wave)

    async def one(image: np.ndarray) -> Classification:
        async with gate:
            return await fleet.classify(image, **options)

    tasks = [asyncio.ensure_future(one(image)) for image in images]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for t in tasks:  # after a refusal, the rest of the batch is not waited for
            t.cancel()


def _arrays(ens: Ensemble, member: Member | None, answers: list[Classification]) -> dict[str, np.ndarray]:
    labels = np.array([a.fused.label for a in answers], np.int32)
    if member is not None:
        votes = [a.members[0] for a in answers]
        return {"label": labels, "scores": np.array([v.probabilities for v in votes], np.float32),
                "output": np.array([v.output for v in votes], np.int8)}
    ids = [m.id for m in ens.members]
    # a member that did not vote (fallback off, its board missing) has a row of zeros
    probs = np.zeros((len(answers), len(ids), 10), np.float32)
    for n, a in enumerate(answers):
        for v in a.members:
            probs[n, ids.index(v.model_id)] = v.probabilities
    return {"label": labels, "scores": np.array([a.fused.scores for a in answers], np.float32),
            "member_probabilities": probs}


def _sources(ens: Ensemble, asked: list[str], answers: list[Classification]) -> dict:
    """Response parameters: which members answered from boards, which the engine stood in for
    (fallbacks: no board, offline, late, failed), which spilled over to the engine (every queue of
    their boards full) and which did not vote (fallback off), as comma lists over the batch in
    /ensemble's order; and the votes of each kind."""
    kinds: dict[str, set[str]] = {"boards": set(), "fallbacks": set(), "spillover": set()}
    counts = dict.fromkeys(kinds, 0)
    missing: set[str] = set()
    for a in answers:
        for v in a.members:
            kind = ("boards" if v.source == "board" else "spillover" if v.reason in (QUEUE_FULL, STRAGGLING)
                    else "fallbacks")
            counts[kind] += 1
            kinds[kind].add(v.model_id)
        missing |= set(asked) - {v.model_id for v in a.members} - set(a.skipped)
    kinds["missing"] = missing
    kinds["skipped"] = {i for a in answers for i in a.skipped}  # early and cascade: not waited for, never asked

    def listed(ids: set[str]) -> str:
        return ",".join(m.id for m in ens.members if m.id in ids)

    return {**{k: listed(ids) for k, ids in kinds.items()}, "board_votes": counts["boards"],
            "fallback_votes": counts["fallbacks"], "spillover_votes": counts["spillover"],
            "degraded": any(a.degraded for a in answers)}


def _json_values(a: np.ndarray) -> list:
    """Row-major values for JSON. FP32 as the shortest decimal that reads back as the same float32
    (numpy's repr): 0.0109375, not the float64 0.010937499813735485 of the same bits."""
    if a.dtype == np.float32:
        return [float(str(v)) for v in a.ravel()]
    return a.ravel().tolist()


def _respond(name: str, request_id: str | None, ens: Ensemble, member: Member | None,
             answers: list[Classification], strategy: str, wanted: list[tuple[str, bool]]) -> Response:
    arrays = _arrays(ens, member, answers)
    dtypes = {o.name: o.datatype for o in (MEMBER_OUTPUTS if member is not None else fleet_outputs(len(ens.members)))}
    outputs, blobs = [], []
    for out_name, binary in wanted:
        a = arrays[out_name]
        entry = {"name": out_name, "datatype": dtypes[out_name], "shape": list(a.shape)}
        if binary:
            blob = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_values(a)
        outputs.append(entry)
    asked = [m.id for m in ens.members] if member is None else [member.id]
    parameters = {"ensemble_version": ens.version, **_sources(ens, asked, answers)}
    if member is None:
        parameters = {"strategy": strategy, "mode": answers[0].mode if answers else ens.mode,
                      "members": ",".join(m.id for m in ens.members), **parameters}
    body = {"model_name": name, "model_version": VERSION, "outputs": outputs, "parameters": parameters}
    if request_id is not None:
        body["id"] = request_id
    header = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


routers = (router, keyed)
