"""Response models of the HTTP API (every route declares one), and how the fleet's typed values
become them: ``ClassifyResponse.of(Classification)``, ``BoardView.of(BoardSnapshot)``,
``EnsembleMemberView.of(Member, ...)``. Rounding for the wire happens here: probabilities, scores and
confidence to 6 decimals, milliseconds to 3."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from ..adaptive import MODES
from ..data import CLASS_NAMES
from ..ensemble import Member
from ..fleet.owner import BoardSnapshot, Percentiles
from ..fleet.results import Classification, MemberVote
from ..fusion import STRATEGIES
from ..link.codec import Info
from ..metrics import REASONS

# The fusion registry's names as a type: the enum that requests are validated against and that
# OpenAPI shows. Fixed when this module is imported, as FastAPI reads a route's types when the
# route is declared.
StrategyName = Literal[tuple(STRATEGIES)]  # type: ignore[valid-type]
ModeName = Literal[MODES]  # type: ignore[valid-type]


class MemberAnswer(BaseModel):
    model_id: str
    board_id: str | None = Field(description="hex id of the board that answered; null for fallback")
    source: Literal["board", "fallback"]
    reason: str | None = Field(description="why the engine stood in (fallback only), a token: "
                                           + ", ".join(REASONS) + "; queue_full is a spillover")
    detail: str | None = Field(description="the board's failure in words (fallback for timeout, "
                                           "board_error, link_lost or error only)")
    label: int
    class_name: str
    output: list[int] = Field(description="the 10 int8 softmax bytes")
    probabilities: list[float]
    queue_ms: float = Field(description="waiting for the board's owner task")
    wire_ms: float = Field(description="round trip on the link minus the board's own compute time")
    on_board_ms: float | None = Field(description="inference time the board reported")
    latency_ms: float

    @classmethod
    def of(cls, v: MemberVote) -> MemberAnswer:
        return cls(model_id=v.model_id, board_id=v.board_id, source=v.source, reason=v.reason, detail=v.detail,
                   label=v.label,
                   class_name=CLASS_NAMES[v.label], output=list(v.output),
                   probabilities=[round(float(p), 6) for p in v.probabilities], queue_ms=round(v.queue_ms, 3),
                   wire_ms=round(v.wire_ms, 3),
                   on_board_ms=None if v.on_board_ms is None else round(v.on_board_ms, 3),
                   latency_ms=round(v.latency_ms, 3))


class ClassifyResponse(BaseModel):
    label: int
    class_name: str
    confidence: float
    strategy: StrategyName
    scores: list[float]
    degraded: bool = Field(description="true when at least one member came from the fallback engine")
    fallbacks: int
    members: list[MemberAnswer] = Field(description="the members whose votes were fused")
    latency_ms: float
    mode: ModeName = Field(description="all, early or cascade; scores and confidence are computed from the "
                                       "fused members (in early only the label is guaranteed equal to all's)")
    stage: int = Field(description="the cascade's stage that answered (1 or 2); 1 in the other modes")
    skipped: list[str] = Field(description="ids of the members not waited for (early) or never asked (cascade)")

    @classmethod
    def of(cls, c: Classification) -> ClassifyResponse:
        f = c.fused
        return cls(label=f.label, class_name=CLASS_NAMES[f.label], confidence=round(f.confidence, 6),
                   strategy=f.strategy, scores=[round(s, 6) for s in f.scores], degraded=c.degraded,
                   fallbacks=c.fallbacks, members=[MemberAnswer.of(m) for m in c.members],
                   latency_ms=round(c.latency_ms, 3), mode=c.mode, stage=c.stage, skipped=list(c.skipped))


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

    @classmethod
    def of(cls, x: Percentiles) -> LatencyStats:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return cls(count=x.count, p50_ms=ms(x.p50_ms), p90_ms=ms(x.p90_ms), p99_ms=ms(x.p99_ms))


class BoardView(BaseModel):
    board_id: str | None = Field(description="the board's 96-bit id, hex; null until greeted")
    url: str
    state: Literal["connecting", "ready", "busy", "degraded", "offline"]
    model_id: str | None
    model_sha256: str | None = Field(description="what the board reports of its model's SHA-256: the first "
                                                 "8 bytes, hex (a prefix of /ensemble's model_sha256)")
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

    @classmethod
    def of(cls, b: BoardSnapshot) -> BoardView:
        return cls(board_id=b.board_id, url=b.url, state=b.state.value, member=b.member, queue_depth=b.queue_depth,
                   counters=BoardCounters(**vars(b.counters)), round_trip=LatencyStats.of(b.round_trip),
                   on_board=LatencyStats.of(b.on_board), last_error=b.last_error,
                   deadline_ms=None if b.deadline_ms is None else round(b.deadline_ms, 3), **_hello(b.info))


def _hello(i: Info | None) -> dict:
    """BoardView's fields from the board's HELLO, all null until it was greeted."""
    if i is None:
        return dict.fromkeys(("model_id", "model_sha256", "board_name", "firmware_version",
                              "protocol_version", "macc", "arena_bytes", "clock_hz", "baud"))
    return {"model_id": i.model_id, "model_sha256": i.model_sha256.hex(), "board_name": i.board_name,
            "firmware_version": ".".join(map(str, i.firmware_version)), "protocol_version": i.protocol_version,
            "macc": i.macc, "arena_bytes": i.arena_bytes, "clock_hz": i.core_clock_hz, "baud": i.link_baud}


class BoardsResponse(BaseModel):
    boards: list[BoardView]


class EnsembleMemberView(BaseModel):
    model_id: str
    weight: float
    model_sha256: str = Field(description="SHA-256 of the member's model.tflite, hex")
    macc: int
    board_ids: list[str] = Field(description="ids of the boards serving this member now")
    val_accuracy: float | None = None
    test_accuracy: float | None = None

    @classmethod
    def of(cls, m: Member, board_ids: list[str]) -> EnsembleMemberView:
        return cls(model_id=m.id, weight=m.weight, model_sha256=m.sha256, macc=m.engine.macc, board_ids=board_ids,
                   val_accuracy=m.card.get("val_accuracy"), test_accuracy=m.card.get("test_accuracy"))


class CascadeView(BaseModel):
    """A cascade's operating point (``adaptive.Cascade``)."""

    stage1: list[str] = Field(description="the members asked first")
    threshold: float = Field(description="stage 1 answers alone when its members' mean probability for its "
                                         "label is at least this")
    agree: bool = Field(description="and, when true, every stage-1 member votes that label")

    @classmethod
    def of(cls, c) -> CascadeView:
        return cls(stage1=list(c.stage1), threshold=c.threshold, agree=c.agree)


class EnsembleResponse(BaseModel):
    strategy: str
    quorum: int
    fallback: bool
    members: list[EnsembleMemberView]
    version: int = Field(description="which load of the ensemble file this is: 1 at start, +1 per reload")
    loaded_at: str = Field(description="when the file was read, ISO 8601 UTC")
    mode: ModeName = Field(default="all", description="what POST /classify does without ?mode=")
    cascade: CascadeView | None = Field(default=None, description="the cascade's operating point, if any")
    cascade_alternatives: list[CascadeView] = Field(
        default_factory=list, description="other stage-1 choices; per image, the least loaded is asked")


def iso_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds")


class ReloadResponse(BaseModel):
    version: int
    loaded_at: str
    reload_ms: float = Field(description="reading the file and the models, and swapping them in")
    strategy: str
    quorum: int
    members: list[str]


class Health(BaseModel):
    status: str
    detail: str | None = None
    members_on_boards: int | None = None
    quorum: int | None = None


class ErrorBody(BaseModel):
    detail: str | list[dict] = Field(description="what is wrong; FastAPI's list of errors for a bad query parameter")
