"""GET /boards, /boards/{id}, /ensemble."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ..deps import UNAUTHORIZED, ApiKey, FleetDep, MetricsDep, SettingsDep
from ..schemas import BoardsResponse, BoardView, EnsembleResponse, ErrorBody

router = APIRouter(tags=["fleet"], dependencies=[ApiKey], responses=UNAUTHORIZED)


@router.get("/boards", response_model=BoardsResponse, summary="Every board the service knows, with its health")
async def boards(fleet: FleetDep, metrics: MetricsDep):
    metrics.request("/boards", 200)
    return {"boards": [b.view() for b in fleet.boards.values()]}


@router.get("/boards/{board_id}", response_model=BoardView, responses={404: {"model": ErrorBody}},
            summary="One board, by its hex id or its url")
async def board(board_id: str, fleet: FleetDep, metrics: MetricsDep):
    b = fleet.find(board_id)
    if b is None:
        metrics.request("/boards/{id}", 404)
        raise HTTPException(404, f"no board {board_id!r}; GET /boards lists them")
    metrics.request("/boards/{id}", 200)
    return b.view()


@router.get("/ensemble", response_model=EnsembleResponse, summary="The members that vote, and how")
async def ensemble(fleet: FleetDep, settings: SettingsDep, metrics: MetricsDep):
    metrics.request("/ensemble", 200)
    e = fleet.ensemble
    return {"strategy": e.strategy, "quorum": fleet.quorum, "fallback": settings.fallback,
            "members": [{"id": m.id, "weight": m.weight, "sha256": m.sha256, "macc": m.engine.macc,
                         "boards": [b.url for b in fleet.boards_for(m)],
                         "val_accuracy": m.card.get("val_accuracy"), "test_accuracy": m.card.get("test_accuracy")}
                        for m in e.members]}
