"""POST /classify: one image in, the fleet's fused answer out.

Errors are not caught here: ImageError (a bad upload), Overloaded and QuorumLost reach the
application's exception handlers (``api/app.py``), which answer them."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from ...images import ImageError, decode
from ..deps import UNAUTHORIZED, ApiKey, FleetDep
from ..schemas import ClassifyResponse, ErrorBody, ModeName, StrategyName

router = APIRouter(tags=["classify"], dependencies=[ApiKey], responses=UNAUTHORIZED)

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "The image: a multipart upload (any file field) or the raw body. PNG, JPEG, BMP, WebP "
                       "(resized to 32x32, converted to RGB), or application/octet-stream of exactly 3,072 "
                       "bytes (32x32 RGB, row-major, HWC).",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def _read_image(request: Request):
    ctype = request.headers.get("content-type", "")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # image formats are compressed already: nothing inflates here
        raise ImageError(f"Content-Encoding {encoding!r} is not supported on /classify: send the image as is", 415)
    if ctype.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=8)
        except HTTPException:
            raise
        except Exception as exc:
            raise ImageError(f"unreadable multipart body ({exc})", 422) from exc
        files = [v for v in form.values() if hasattr(v, "read")]
        if not files:
            raise ImageError("the multipart body has no file field", 422)
        f = files[0]
        data = await f.read()
        raw = f.content_type == "application/octet-stream" and len(data) != 3072
        return await _decode(data, "application/octet-stream" if raw else f.content_type)
    return await _decode(await request.body(), ctype or None)


async def _decode(data: bytes, content_type: str | None):
    """images.decode in a worker thread: a 12-megapixel JPEG (2.4 MB, 4000x3000) takes about 0.5 s
    to decode and shrink on this project's 2 shared cores, which on the event loop would stall
    every other request. A raw 3,072-byte image is cheap: decoded in place."""
    if len(data) == 3072 and content_type in (None, "application/octet-stream"):
        return decode(data, content_type)
    return await run_in_threadpool(decode, data, content_type)


@router.post("/classify", response_model=ClassifyResponse, openapi_extra=_BODY_DOC,
             responses={413: {"model": ErrorBody}, 415: {"model": ErrorBody}, 422: {"model": ErrorBody},
                        503: {"model": ErrorBody}},
             summary="Classify one image with the whole fleet")
async def classify(
    request: Request, fleet: FleetDep,
    strategy: Annotated[StrategyName | None,
                        Query(description="fusion rule; default: the ensemble file's")] = None,
    deadline_ms: Annotated[float | None, Query(ge=1, le=600_000,
                           description="the request's whole time in the service, arrival to answer; a "
                                       "request that cannot be answered in it gets 503 with Retry-After at once; "
                                       "default: the deadline_ms setting, else each board's own estimate")] = None,
    fallback: Annotated[bool | None, Query(description="compute missing members with the engine")] = None,
    mode: Annotated[ModeName | None, Query(
        description="all: every member votes; early: answer as soon as the members still out cannot change the "
                    "label; cascade: the ensemble's stage-1 members first, the rest only when their answer is "
                    "not confident enough. Default: the ensemble file's mode, else all")] = None,
) -> ClassifyResponse:
    ens = fleet.ensemble  # pinned: a reload while the body is read does not change what was checked
    if mode == "cascade" and ens.cascade is None:
        raise HTTPException(422, "mode cascade: the ensemble file has no cascade section; write one with "
                                 "fleetvote ensemble-eval --write-ensemble, or use mode all or early")
    # the deadline counts from the request's arrival (requestlog.RequestLog notes it): the
    # middlewares, the body's reading and its decoding are part of the request's time
    arrived = getattr(request.state, "arrived", None) or time.perf_counter()
    image = await _read_image(request)
    answer = await fleet.classify(image, strategy=strategy, deadline_ms=deadline_ms, fallback=fallback, mode=mode,
                                  arrived=arrived, ensemble=ens)
    return ClassifyResponse.of(answer)
