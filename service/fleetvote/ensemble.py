"""The ensemble file (``models/zoo/ensemble.json``): which zoo members vote, how, and how many
answers from boards make a quorum. Validated at start-up; a bad file stops the service with a
message that says what is wrong.

    {
      "members": [{"id": "vgg12-s31", "weight": 0.81}, ...],   # zoo ids; weight >= 0 (weighted vote)
      "strategy": "soft",                                     # a name in fusion.REGISTRY (default soft)
      "quorum": 3,                                            # 1 <= quorum <= len(members)
      "mode": "all",                                          # all | early | cascade (default all)
      "cascade": {"stage1": ["vgg12-s31"], "threshold": 0.9, "agree": true}, # needed by mode cascade
      "cascade_alternatives": [{"stage1": ["vggw12-16-48-112-s43"], "threshold": 0.8}]  # optional
    }

A member's weight defaults to its card's validation accuracy when omitted. ``mode`` is what
``POST /classify`` does without ``?mode=`` (``adaptive.MODES``); ``cascade`` is the cascade's
operating point (``adaptive.Cascade``: the stage-1 members, a proper subset of the members, and
its stopping rule), written by ``fleetvote ensemble-eval --write-ensemble`` from a search on the
validation split. Without it, ``cascade`` is refused (the file's mode, or a request's).
``cascade_alternatives`` are other stage-1 choices of the same search, each as good on
validation: the fleet asks, per image, the choice whose stage-1 boards are least loaded, so that
stage 1 does not fall on the same few boards every time.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from .adaptive import MODES, Cascade
from .engine import Engine
from .errors import ConfigError, ModelError
from .fusion import REGISTRY, STRATEGIES


class MemberSpec(BaseModel):
    id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    # finite and bounded: an infinite weight makes the weighted vote's scores NaN
    weight: float | None = Field(default=None, ge=0, le=1e6)


class CascadeSpec(BaseModel):
    stage1: list[str] = Field(min_length=1)
    threshold: float = Field(ge=0, le=1)
    agree: bool = True


class EnsembleSpec(BaseModel):
    members: list[MemberSpec] = Field(min_length=1)
    strategy: str = "soft"
    quorum: int = Field(default=1, ge=1)
    mode: str = "all"
    cascade: CascadeSpec | None = None
    cascade_alternatives: list[CascadeSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "EnsembleSpec":
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        ids = [m.id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a member is listed twice: {ids}")
        if self.quorum > len(self.members):
            raise ValueError(f"quorum {self.quorum} exceeds the {len(self.members)} members")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        for c in [self.cascade] * (self.cascade is not None) + self.cascade_alternatives:
            s1 = c.stage1
            if len(set(s1)) != len(s1) or not set(s1) < set(ids):
                raise ValueError(f"cascade stage1 {s1} must be distinct members, fewer than all of {ids}")
        if self.cascade_alternatives and self.cascade is None:
            raise ValueError("cascade_alternatives without a cascade")
        if self.mode == "cascade" and self.cascade is None:
            raise ValueError("mode cascade needs a cascade section (fleetvote ensemble-eval --write-ensemble)")
        return self


@dataclass
class Member:
    id: str
    weight: float
    sha256: str
    engine: Engine
    card: dict

    @property
    def sha8(self) -> bytes:
        return bytes.fromhex(self.sha256)[:8]


@dataclass
class Ensemble:
    members: list[Member]
    strategy: str
    quorum: int
    path: Path
    # which load of the file this is (1 at start, +1 per reload) and when it was read (epoch s)
    version: int = 1
    loaded_at: float = field(default_factory=time.time)
    mode: str = "all"
    cascade: Cascade | None = None
    cascade_alternatives: tuple[Cascade, ...] = ()

    @property
    def cascades(self) -> tuple[Cascade, ...]:
        """The cascade and its alternatives; empty without a cascade."""
        return () if self.cascade is None else (self.cascade, *self.cascade_alternatives)

    def by_hash(self, model_id: str, sha8: bytes) -> Member | None:
        for m in self.members:
            if m.id == model_id and m.sha8 == sha8:
                return m
        return None

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]


def load_ensemble(path: str | Path, zoo: str | Path | None = None, reuse: Ensemble | None = None) -> Ensemble:
    """``reuse``: the ensemble in service, on a reload: a member whose model file is unchanged (same
    id and SHA-256) keeps its prepared engine, so a reload reads and hashes the models but
    prepares only the new ones (engines are read-only once prepared)."""
    p = Path(path)
    prepared = {(m.id, m.sha256): m.engine for m in reuse.members} if reuse else {}
    zoo_dir = Path(zoo) if zoo else p.parent
    try:
        raw = json.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the ensemble file ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc})") from exc
    try:
        spec = EnsembleSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{p}: invalid ensemble file: {problems}") from exc
    members = []
    for m in spec.members:
        mdir = zoo_dir / m.id
        model = mdir / "model.tflite"
        if not model.exists():
            raise ConfigError(f"{p}: member {m.id!r} has no {model}")
        try:
            data = model.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            # the bytes hashed are the bytes prepared, even if the file changes meanwhile
            engine = prepared.get((m.id, sha)) or Engine.from_bytes(data, name=str(model))
        except OSError as exc:
            raise ConfigError(f"{p}: member {m.id!r}: cannot read {model} ({exc.strerror})") from exc
        except ModelError as exc:
            raise ConfigError(f"{p}: member {m.id!r}: {exc}") from exc
        card = {}
        try:
            if (mdir / "card.json").exists():
                card = json.loads((mdir / "card.json").read_text())
                if not isinstance(card, dict):
                    raise ValueError("not a JSON object")
            weight = m.weight if m.weight is not None else float(card.get("val_accuracy", 1.0))
            if not 0 <= weight <= 1e6:  # NaN fails too
                raise ValueError(f"val_accuracy {weight} is not a weight in 0..1e6")
        except (OSError, ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise ConfigError(f"{p}: member {m.id!r}: bad card {mdir / 'card.json'} ({exc})") from exc
        members.append(Member(m.id, weight, sha, engine, card))
    if REGISTRY[spec.strategy].uses_weights and sum(m.weight for m in members) <= 0:
        raise ConfigError(f"{p}: {spec.strategy} voting with all weights zero")
    cascade, *alternatives = [Cascade(tuple(c.stage1), c.threshold, c.agree)
                              for c in [spec.cascade] * (spec.cascade is not None) + spec.cascade_alternatives] or [None]
    return Ensemble(members, spec.strategy, spec.quorum, p, mode=spec.mode, cascade=cascade,
                    cascade_alternatives=tuple(alternatives))
