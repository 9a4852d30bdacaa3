"""What the fleet answers for one image: typed values, no JSON.

``Fleet.classify`` returns a ``Classification``: the fused answer (``fusion.Fused``) and one
``MemberVote`` per member that took part, in the ensemble's order. Figures are kept as measured
(milliseconds as floats, probabilities exact); rounding and naming for the wire are the HTTP API's
business (``api/schemas.py``), as is the state of a board (``board.BoardSnapshot``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..fusion import Fused, probabilities

Source = Literal["board", "fallback"]


@dataclass(frozen=True)
class MemberVote:
    """One member's part in one answer: its int8 softmax bytes and where they came from."""

    model_id: str
    output: tuple[int, ...]  # the 10 int8 softmax bytes
    source: Source
    reason: str | None  # why the engine stood in (fallback only): a token of metrics.REASONS
    board_id: str | None  # hex id of the board that answered; None for fallback
    queue_ms: float  # waiting for the board's owner task
    wire_ms: float  # round trip on the link minus the board's own compute time
    on_board_ms: float | None  # inference time the board reported
    latency_ms: float
    detail: str | None = None  # the failure's text, when a board failed (fallback only)

    @property
    def probabilities(self) -> np.ndarray:
        return probabilities(np.asarray(self.output))

    @property
    def label(self) -> int:
        return int(np.argmax(self.probabilities))


@dataclass(frozen=True)
class Classification:
    """The fleet's answer for one image. ``members`` are the votes that were fused; in the modes
    ``early`` and ``cascade`` (``adaptive.py``) the members not waited for or never asked are in
    ``skipped``, and ``stage`` says which of a cascade's stages answered (always 1 otherwise)."""

    fused: Fused
    members: tuple[MemberVote, ...]
    latency_ms: float
    mode: str = "all"
    stage: int = 1
    skipped: tuple[str, ...] = ()

    @property
    def fallbacks(self) -> int:
        return sum(1 for m in self.members if m.source == "fallback")

    @property
    def degraded(self) -> bool:
        """At least one member came from the fallback engine."""
        return self.fallbacks > 0
