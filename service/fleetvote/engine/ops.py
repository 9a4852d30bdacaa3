"""The operator registry: every layer kind the int8 runtime and the firmware run, stated once.

Each ``Op`` says, for one kind: the TFLite builtin operator it is (name and schema code), the
engine's kernel that prepares and runs it, the firmware's op number (``fv_op_kind``, the index of
the runner's kernel tables) and the C params struct the code generator writes for it. Read from
here, not copied:

- the loader's supported set (``SUPPORTED_OPS``) and the engine's kernel table (``KERNELS``);
- the code generator (``fleetvote.offline.codegen``), whose params emitters are keyed by op name
  and checked against this list when it is imported;
- the firmware's op enum, ``firmware/core/fv_ops.h``, generated from it by
  ``fleetvote codegen --ops-header firmware/core/fv_ops.h`` (``make -C firmware ops-header``) and
  committed; tests/test_ops.py fails while the committed header differs from the generated one;
- the firmware bench's per-layer labels (firmware/tools/bench_firmware.py).

The op numbers are the firmware's ABI: generated models and the runner's tables are indexed by
them, so an existing number never changes and a new kind takes the next one (1..N, no gaps).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable

from .kernels import Add, Conv2D, DepthwiseConv2D, FullyConnected, Kernel, Mean, Pad, Pool2D, Reshape, Softmax

if TYPE_CHECKING:
    from .loader import Operator, Tensor, TfliteModel


@dataclass(frozen=True)
class Op:
    tflite: str  # the TFLite builtin operator's name (tflite.BuiltinOperator)
    builtin: int  # its builtin code in the TFLite schema
    number: int  # the firmware's fv_op_kind value; never renumbered
    kernel: Callable[[Operator, list[Tensor]], Kernel]  # prepares one layer (the engine's kernel)
    params: str | None  # the C params struct codegen writes for a layer; None: the layer has none

    @property
    def c_name(self) -> str:
        """The member of the firmware's ``fv_op_kind``."""
        return f"FV_OP_{self.tflite}"

    @property
    def label(self) -> str:
        """The name the firmware bench prints for a layer of this kind."""
        return self.tflite


OPS: tuple[Op, ...] = (
    Op("CONV_2D", 3, 1, Conv2D, "fv_conv_params"),
    Op("DEPTHWISE_CONV_2D", 4, 2, DepthwiseConv2D, "fv_conv_params"),
    Op("FULLY_CONNECTED", 9, 3, FullyConnected, "fv_fc_params"),
    Op("MAX_POOL_2D", 17, 4, partial(Pool2D, kind="max"), "fv_pool_params"),
    Op("AVERAGE_POOL_2D", 1, 5, partial(Pool2D, kind="avg"), "fv_pool_params"),
    Op("ADD", 0, 6, Add, "fv_add_params"),
    Op("MEAN", 40, 7, Mean, "fv_mean_params"),
    Op("PAD", 34, 8, Pad, "fv_pad_params"),
    Op("RESHAPE", 22, 9, Reshape, None),
    Op("SOFTMAX", 25, 10, Softmax, "fv_softmax_params"),
)

# the runner's tables have one row per number up to the last: keep them dense and in order
assert [o.number for o in OPS] == list(range(1, len(OPS) + 1)), "op numbers must be 1..N in order"
assert len({o.tflite for o in OPS}) == len({o.builtin for o in OPS}) == len(OPS), "an op is listed twice"

BY_NAME: dict[str, Op] = {o.tflite: o for o in OPS}
BY_NUMBER: dict[int, Op] = {o.number: o for o in OPS}
BY_BUILTIN: dict[int, Op] = {o.builtin: o for o in OPS}

SUPPORTED_OPS: dict[str, int] = {o.tflite: o.builtin for o in OPS}  # name -> builtin code
KERNELS: dict[str, Callable[[Operator, list[Tensor]], Kernel]] = {o.tflite: o.kernel for o in OPS}


def prepare(model: TfliteModel) -> list[tuple[Operator, Kernel]]:
    """Each operator of a validated model with its prepared kernel, in execution order."""
    return [(op, KERNELS[op.opcode](op, model.tensors)) for op in model.operators]
