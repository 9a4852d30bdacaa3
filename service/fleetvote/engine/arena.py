"""The activation buffer plan: lifetimes, peak live bytes, and arena offsets.

Each non-constant tensor lives from the operator that writes it (the model input: from the
start) to the last operator that reads it. ``peak_bytes`` is the largest sum of live tensors over
the operators, a lower bound for any arena. ``arena_bytes`` places every buffer at an offset with
a greedy first-fit over buffers sorted by size (the strategy of TFLite Micro's
GreedyMemoryPlanner), each aligned to ``ALIGN`` bytes; the firmware's arena uses these very
offsets, so ``fleetvote analyze``, the code generator and the board agree on RAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .loader import TfliteModel

ALIGN = 16  # TFLM aligns tensor buffers to 16 bytes; the firmware's arena does the same


@dataclass
class Buffer:
    tensor: int
    size: int
    first: int  # index of the operator that writes it (-1 for the model input)
    last: int  # index of the last operator that reads it (len(ops) for the model output)
    offset: int = 0


@dataclass
class BufferPlan:
    buffers: list[Buffer]
    peak_bytes: int
    peak_op: int
    arena_bytes: int
    free_after: dict[int, list[int]] = field(default_factory=dict)

    def offset_of(self, tensor: int) -> int:
        return next(b.offset for b in self.buffers if b.tensor == tensor)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_buffers(model: TfliteModel) -> BufferPlan:
    n_ops = len(model.operators)
    first: dict[int, int] = {i: -1 for i in model.inputs}
    last: dict[int, int] = {}
    for op in model.operators:
        for i in op.inputs:
            if i >= 0 and not model.tensors[i].is_constant:
                last[i] = op.index
        for i in op.outputs:
            first.setdefault(i, op.index)
            last.setdefault(i, op.index)
    for i in model.outputs:
        last[i] = n_ops
    buffers = [Buffer(t, model.tensors[t].nbytes, first[t], last.get(t, first[t])) for t in first]

    peak, peak_op = 0, 0
    for k in range(n_ops):
        live = sum(b.size for b in buffers if b.first <= k <= b.last)
        if live > peak:
            peak, peak_op = live, k

    placed: list[Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.first)):
        overlapping = sorted(
            (p for p in placed if not (p.last < b.first or b.last < p.first)), key=lambda p: p.offset)
        offset = 0
        for p in overlapping:
            if offset + _align(b.size) <= p.offset:
                break
            offset = max(offset, p.offset + _align(p.size))
        b.offset = offset
        placed.append(b)
    arena = max((b.offset + _align(b.size) for b in buffers), default=0)

    free_after: dict[int, list[int]] = {}
    for b in buffers:
        if 0 <= b.last < n_ops and b.tensor not in model.outputs:
            free_after.setdefault(b.last, []).append(b.tensor)
    return BufferPlan(buffers, peak, peak_op, arena, free_after)
