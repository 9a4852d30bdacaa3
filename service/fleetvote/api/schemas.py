"""Response models of the HTTP API (every route declares one)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..fusion import STRATEGIES

# The fusion registry's names as a type: the enum that requests are validated against and that
# OpenAPI shows. Fixed when this module is imported, as FastAPI reads a route's types when the
# route is declared.
StrategyName = Literal[tuple(STRATEGIES)]  # type: ignore[valid-type]


class MemberAnswer(BaseModel):
    model_id: str
    board_id: str | None = Field(description="hex id of the board that answered; null for fallback")
    source: Literal["board", "fallback"]
    reason: str | None = Field(description="why the engine stood in (fallback only): no board, "
                                           "board offline, timeout, board error, queue full")
    label: int
    class_name: str
    output: list[int] = Field(description="the 10 int8 softmax bytes")
    probabilities: list[float]
    queue_ms: float = Field(description="waiting for the board's owner task")
    wire_ms: float = Field(description="round trip on the link minus the board's own compute time")
    board_us: int | None = Field(description="inference time the board reported, microseconds")
    latency_ms: float


class ClassifyResponse(BaseModel):
    label: int
    class_name: str
    confidence: float
    strategy: StrategyName
    scores: list[float]
    degraded: bool = Field(description="true when at least one member came from the fallback engine")
    fallbacks: int
    members: list[MemberAnswer]
    latency_ms: float


class BoardCounters(BaseModel):
    requests: int
    errors: int
    timeouts: int
    reconnects: int
    dropped_expired: int


class LatencyStats(BaseModel):
    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


class BoardView(BaseModel):
    id: str | None = Field(description="the board's 96-bit id, hex; null until greeted")
    url: str
    state: Literal["connecting", "ready", "busy", "degraded", "offline"]
    model_id: str | None
    model_sha256_prefix: str | None
    member: bool = Field(description="the board's model is a member of the ensemble (it votes)")
    board_name: str | None
    firmware_version: str | None
    protocol_version: int | None
    macc: int | None
    arena_bytes: int | None
    clock_hz: int | None
    baud: int | None
    queue_depth: int
    counters: BoardCounters
    round_trip: LatencyStats
    on_board: LatencyStats
    last_error: str | None
    deadline_ms: float | None


class BoardsResponse(BaseModel):
    boards: list[BoardView]


class EnsembleMemberView(BaseModel):
    id: str
    weight: float
    sha256: str
    macc: int
    boards: list[str] = Field(description="urls of ready boards serving this member")
    val_accuracy: float | None = None
    test_accuracy: float | None = None


class EnsembleResponse(BaseModel):
    strategy: str
    quorum: int
    fallback: bool
    members: list[EnsembleMemberView]


class Health(BaseModel):
    status: str
    detail: str | None = None
    members_on_boards: int | None = None
    quorum: int | None = None


class ErrorBody(BaseModel):
    detail: str | list[dict] = Field(description="what is wrong; FastAPI's list of errors for a bad query parameter")
