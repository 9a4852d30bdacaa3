"""GET /boards, /boards/{id}, /ensemble."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ..deps import UNAUTHORIZED, ApiKey, FleetDep, SettingsDep
from ..schemas import BoardsResponse, BoardView, CascadeView, EnsembleMemberView, EnsembleResponse, ErrorBody, iso_time

router = APIRouter(tags=["fleet"], dependencies=[ApiKey], responses=UNAUTHORIZED)


@router.get("/boards", response_model=BoardsResponse, summary="Every board the service knows, with its health")
async def boards(fleet: FleetDep) -> BoardsResponse:
    return BoardsResponse(boards=[BoardView.of(b.snapshot()) for b in fleet.boards.values()])


@router.get("/boards/{board_id}", response_model=BoardView, responses={404: {"model": ErrorBody}},
            summary="One board, by its hex id or its url")
async def board(board_id: str, fleet: FleetDep) -> BoardView:
    b = fleet.find(board_id)
    if b is None:
        raise HTTPException(404, f"no board {board_id!r}; GET /boards lists them")
    return BoardView.of(b.snapshot())


@router.get("/ensemble", response_model=EnsembleResponse, summary="The members that vote, and how")
async def ensemble(fleet: FleetDep, settings: SettingsDep) -> EnsembleResponse:
    e = fleet.ensemble
    c = e.cascade
    return EnsembleResponse(strategy=e.strategy, quorum=fleet.quorum, fallback=settings.fallback,
                            members=[EnsembleMemberView.of(m, [b.board_id for b in fleet.boards_for(m)])
                                     for m in e.members],
                            version=e.version, loaded_at=iso_time(e.loaded_at), mode=e.mode,
                            cascade=None if c is None else CascadeView.of(c),
                            cascade_alternatives=[CascadeView.of(a) for a in e.cascade_alternatives])
