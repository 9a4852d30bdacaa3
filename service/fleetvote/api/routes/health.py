"""GET /healthz (the process is alive), /readyz (boards serve at least the quorum), /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ...metrics import CONTENT_TYPE
from ..deps import UNAUTHORIZED, ApiKey, FleetDep, MetricsDep
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}},
            summary="Readiness: at least the quorum of members are served by ready boards")
async def readyz(fleet: FleetDep):
    n = fleet.members_on_boards()
    body = {"members_on_boards": n, "quorum": fleet.quorum}
    if n >= fleet.quorum:
        return {"status": "ready", **body}
    # a fleet kept alive only by the fallback engine still answers /classify, but is not ready
    return JSONResponse({"status": "not ready", "detail": f"{n} members on ready boards, quorum {fleet.quorum}",
                         **body}, status_code=503)


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[ApiKey], responses=UNAUTHORIZED,
            summary="Prometheus metrics (text exposition format 0.0.4); the key as X-API-Key or Bearer")
async def metrics(m: MetricsDep):
    return Response(m.render(), media_type=CONTENT_TYPE)
