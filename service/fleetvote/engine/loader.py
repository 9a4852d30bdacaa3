"""Read a ``.tflite`` flatbuffer without TensorFlow, and check that the int8 runtime can run it.

The reader uses the ``tflite`` package's generated schema accessors. A flatbuffer has no length
checks of its own: a truncated or corrupt file makes the accessors raise struct.error,
IndexError or return garbage offsets, so every access happens inside one guarded parse, and the
result is cross-checked (buffer sizes against tensor shapes, indices in range) before use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError, UnsupportedModel
from . import ops as _ops

# TFLite TensorType enum -> (name, numpy dtype)
TENSOR_TYPES = {
    0: ("float32", np.float32), 1: ("float16", np.float16), 2: ("int32", np.int32),
    3: ("uint8", np.uint8), 4: ("int64", np.int64), 5: ("string", None), 6: ("bool", np.bool_),
    7: ("int16", np.int16), 8: ("complex64", None), 9: ("int8", np.int8), 10: ("float64", np.float64),
}

# operators the engine and the firmware run: the registry's (ops.py), name -> TFLite builtin code
SUPPORTED_OPS = _ops.SUPPORTED_OPS
_OP_NAMES = {o.builtin: o.tflite for o in _ops.OPS}

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
PADDINGS = {0: "SAME", 1: "VALID"}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str
    scale: np.ndarray  # float32, one per channel or one in all; empty when not quantised
    zero_point: np.ndarray  # int64
    quantized_dimension: int
    data: np.ndarray | None  # constant data, None for activations

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def nbytes(self) -> int:
        itemsize = np.dtype(TENSOR_TYPES[_TYPE_CODES[self.type_name]][1] or np.uint8).itemsize
        return int(np.prod(self.shape, dtype=np.int64)) * itemsize


_TYPE_CODES = {name: code for code, (name, _) in TENSOR_TYPES.items()}


@dataclass
class Operator:
    index: int
    opcode: str
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)


@dataclass
class TfliteModel:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    sha256: str
    size: int

    @property
    def input(self) -> Tensor:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> Tensor:
        return self.tensors[self.outputs[0]]


def _opcode_name(code: int) -> str:
    import tflite

    for name, value in vars(tflite.BuiltinOperator).items():
        if not name.startswith("_") and value == code:
            return name
    return f"builtin #{code}"


def _options(op, opcode: str) -> dict:
    import tflite

    table = op.BuiltinOptions()
    if table is None:
        return {}

    def init(cls):
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o

    if opcode == "CONV_2D":
        o = init(tflite.Conv2DOptions)
        return {"padding": PADDINGS.get(o.Padding(), o.Padding()), "stride": (o.StrideH(), o.StrideW()),
                "dilation": (o.DilationHFactor(), o.DilationWFactor()),
                "activation": ACTIVATIONS.get(o.FusedActivationFunction(), o.FusedActivationFunction())}
    if opcode == "DEPTHWISE_CONV_2D":
        o = init(tflite.DepthwiseConv2DOptions)
        return {"padding": PADDINGS.get(o.Padding(), o.Padding()), "stride": (o.StrideH(), o.StrideW()),
                "dilation": (o.DilationHFactor(), o.DilationWFactor()), "depth_multiplier": o.DepthMultiplier(),
                "activation": ACTIVATIONS.get(o.FusedActivationFunction(), o.FusedActivationFunction())}
    if opcode in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        o = init(tflite.Pool2DOptions)
        return {"padding": PADDINGS.get(o.Padding(), o.Padding()), "stride": (o.StrideH(), o.StrideW()),
                "filter": (o.FilterHeight(), o.FilterWidth()),
                "activation": ACTIVATIONS.get(o.FusedActivationFunction(), o.FusedActivationFunction())}
    if opcode == "FULLY_CONNECTED":
        o = init(tflite.FullyConnectedOptions)
        return {"activation": ACTIVATIONS.get(o.FusedActivationFunction(), o.FusedActivationFunction()),
                "keep_num_dims": bool(o.KeepNumDims())}
    if opcode == "ADD":
        o = init(tflite.AddOptions)
        return {"activation": ACTIVATIONS.get(o.FusedActivationFunction(), o.FusedActivationFunction())}
    if opcode == "MEAN":
        o = init(tflite.ReducerOptions)
        return {"keep_dims": bool(o.KeepDims())}
    if opcode == "SOFTMAX":
        o = init(tflite.SoftmaxOptions)
        return {"beta": float(o.Beta())}
    return {}


def _parse(buf: bytes) -> TfliteModel:
    import tflite

    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise UnsupportedModel(f"the model has {model.SubgraphsLength()} subgraphs; only 1 is supported")
    sg = model.Subgraphs(0)
    n_buffers = model.BuffersLength()

    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        code = t.Type()
        if code not in TENSOR_TYPES:
            raise ModelFormatError(f"tensor {i} has unknown type code {code}")
        type_name, dtype = TENSOR_TYPES[code]
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if any(d < 0 for d in shape):
            raise UnsupportedModel(f"tensor {i} has a dynamic shape {shape}")
        q = t.Quantization()
        scale = np.zeros(0, np.float32)
        zp = np.zeros(0, np.int64)
        qdim = 0
        if q is not None and q.ScaleLength():
            scale = np.asarray(q.ScaleAsNumpy(), dtype=np.float32)
            zp = np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64) if q.ZeroPointLength() else np.zeros(len(scale), np.int64)
            qdim = int(q.QuantizedDimension())
        data = None
        b = t.Buffer()
        if not 0 <= b < n_buffers:
            raise ModelFormatError(f"tensor {i} points at buffer {b} of {n_buffers}")
        buffer = model.Buffers(b)
        if buffer.DataLength() or (hasattr(buffer, "Offset") and buffer.Offset() > 1):
            if hasattr(buffer, "Offset") and buffer.Offset() > 1:  # data stored after the flatbuffer
                off, size = int(buffer.Offset()), int(buffer.Size())
                if off + size > len(buf):
                    raise ModelFormatError(f"tensor {i}: buffer data beyond the end of the file (truncated?)")
                raw = np.frombuffer(buf, dtype=np.uint8, count=size, offset=off)
            else:
                raw = buffer.DataAsNumpy()
            if dtype is None:
                raise UnsupportedModel(f"tensor {i} ({t.Name().decode(errors='replace')}) has type {type_name}")
            expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if raw.size != expected:
                raise ModelFormatError(
                    f"tensor {i}: buffer holds {raw.size} bytes, shape {shape} needs {expected} (truncated?)")
            data = raw.view(dtype).reshape(shape).copy()
        name = t.Name().decode("utf-8", errors="replace") if t.Name() else f"t{i}"
        tensors.append(Tensor(i, name, shape, type_name, scale, zp, qdim, data))

    def indices(arr_fn, length_fn, what):
        if not length_fn():
            return ()
        idx = tuple(int(v) for v in arr_fn())
        for v in idx:
            if not -1 <= v < len(tensors):
                raise ModelFormatError(f"{what} refers to tensor {v} of {len(tensors)}")
        return idx

    operators = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        oc_index = op.OpcodeIndex()
        if not 0 <= oc_index < model.OperatorCodesLength():
            raise ModelFormatError(f"operator {k} has opcode index {oc_index} of {model.OperatorCodesLength()}")
        oc = model.OperatorCodes(oc_index)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        opcode = _OP_NAMES.get(code) or _opcode_name(code)
        options = _options(op, opcode) if opcode in SUPPORTED_OPS else {}
        operators.append(Operator(k, opcode, indices(op.InputsAsNumpy, op.InputsLength, f"operator {k}"),
                                  indices(op.OutputsAsNumpy, op.OutputsLength, f"operator {k}"), options))
    inputs = indices(sg.InputsAsNumpy, sg.InputsLength, "subgraph inputs")
    outputs = indices(sg.OutputsAsNumpy, sg.OutputsLength, "subgraph outputs")
    return TfliteModel(tensors, operators, inputs, outputs, "", len(buf))


def load_model_bytes(buf: bytes, check_ops: bool = True, name: str = "model") -> TfliteModel:
    """Parse and validate; raises ModelFormatError or UnsupportedModel naming the problem."""
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelFormatError(f"{name}: not a TFLite model (no 'TFL3' file identifier at byte 4)")
    try:
        model = _parse(buf)
    except (ModelFormatError, UnsupportedModel):
        raise
    except Exception as exc:  # the generated accessors fail in many ways on a damaged file
        raise ModelFormatError(f"{name}: corrupt or truncated flatbuffer ({type(exc).__name__}: {exc})") from exc
    model.sha256 = hashlib.sha256(buf).hexdigest()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModel(f"{name}: {len(model.inputs)} inputs and {len(model.outputs)} outputs; expected 1 and 1")
    if check_ops:
        validate(model, name)
    return model


def validate(model: TfliteModel, name: str = "model") -> None:
    # types first: a float model also holds float-only operators, and "it is float" is the news
    for op in model.operators:
        for t_index in op.inputs + op.outputs:
            if t_index < 0:
                continue
            t = model.tensors[t_index]
            if t.type_name in ("float32", "float16", "float64"):
                raise UnsupportedModel(
                    f"{name}: tensor {t.index} ({t.name}) of {op.opcode} is {t.type_name}; "
                    "export the model with full-integer quantisation (fleetvote export)")
    for op in model.operators:
        if op.opcode not in SUPPORTED_OPS:
            raise UnsupportedModel(
                f"{name}: operator {op.index} is {op.opcode}, which the int8 runtime does not run "
                f"(supported: {', '.join(sorted(SUPPORTED_OPS))})")
        for t_index in op.inputs + op.outputs:
            if t_index < 0:
                continue
            t = model.tensors[t_index]
            if not t.is_constant and t.type_name != "int8":
                raise UnsupportedModel(
                    f"{name}: activation tensor {t.index} ({t.name}) of {op.opcode} is {t.type_name}, not int8")
            if t.is_constant and t.type_name not in ("int8", "int32"):
                raise UnsupportedModel(f"{name}: constant tensor {t.index} ({t.name}) is {t.type_name}")
            if t.type_name == "int8" and len(t.scale) == 0:
                raise UnsupportedModel(f"{name}: int8 tensor {t.index} ({t.name}) has no quantisation parameters")
    for t_index in model.inputs + model.outputs:
        t = model.tensors[t_index]
        if t.type_name != "int8":
            raise UnsupportedModel(f"{name}: model input/output tensor {t.name} is {t.type_name}, not int8")


def load_model(path: str | Path, check_ops: bool = True) -> TfliteModel:
    p = Path(path)
    try:
        buf = p.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"{p}: cannot read ({exc.strerror})") from exc
    return load_model_bytes(buf, check_ops=check_ops, name=str(p))
