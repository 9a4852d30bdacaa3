"""A pure-numpy int8 interpreter for the zoo's ``.tflite`` models, bit-exact with TFLite Micro's
reference kernels (and so with the boards' firmware).

    engine = Engine.from_file("models/zoo/vgg12-s31/model.tflite")
    out = engine.run(images)          # uint8 (N, 32, 32, 3) or (32, 32, 3) -> int8 (N, 10)
    probs = engine.probabilities(out) # (out + 128) / 256

Everything that does not depend on the image (multipliers, shifts, padding, reshaped weights,
the buffer plan) is computed in ``Engine.__init__``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UnsupportedModel
from .arena import BufferPlan, plan_buffers
from .kernels import Kernel
from .loader import TfliteModel, load_model, load_model_bytes
from .ops import prepare

__all__ = ["Engine", "TfliteModel", "load_model", "load_model_bytes", "BufferPlan"]

BATCH_CHUNK = 128  # images per pass: bounds the im2col buffers (about 40 MB at 32x32x32)


class Engine:
    def __init__(self, model: TfliteModel):
        self.model = model
        inp, out = model.input, model.output
        if tuple(inp.shape[1:]) != (32, 32, 3):
            raise UnsupportedModel(f"input shape {inp.shape}; expected (1, 32, 32, 3)")
        self.input_zero_point = int(inp.zero_point[0])
        self.output_scale = float(out.scale[0])
        self.output_zero_point = int(out.zero_point[0])
        self.num_classes = int(np.prod(out.shape[1:]))
        self.layers: list[tuple] = prepare(model)
        self.plan = plan_buffers(model)
        self.macc = sum(k.macc for _, k in self.layers)

    @classmethod
    def from_file(cls, path: str | Path) -> "Engine":
        return cls(load_model(path))

    @classmethod
    def from_bytes(cls, blob: bytes, name: str = "model") -> "Engine":
        return cls(load_model_bytes(blob, name=name))

    @property
    def sha256(self) -> str:
        return self.model.sha256

    def quantize_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels -> int8 input bytes. With scale 1/255 and zero point -128 this is
        pixel - 128; other input quantisations are honoured exactly as the converter defines."""
        inp = self.model.input
        scale, zp = float(inp.scale[0]), int(inp.zero_point[0])
        if np.isclose(scale, 1 / 255, rtol=1e-6) and zp == -128:
            return (images.astype(np.int16) - 128).astype(np.int8)
        q = np.round(images.astype(np.float32) / np.float32(255.0) / np.float32(scale)) + zp
        return np.clip(q, -128, 127).astype(np.int8)

    def run(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, 32, 32, 3) or one (32, 32, 3) -> int8 outputs (N, classes) or (classes,)."""
        images = np.asarray(images)
        single = images.ndim == 3
        if single:
            images = images[None]
        if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3):
            raise ValueError(f"expected uint8 images of shape (N, 32, 32, 3), got {images.dtype} {images.shape}")
        outs = [self.run_quantized(self.quantize_input(images[s : s + BATCH_CHUNK]))
                for s in range(0, images.shape[0], BATCH_CHUNK)]
        out = np.concatenate(outs) if outs else np.zeros((0, self.num_classes), np.int8)
        return out[0] if single else out

    def run_quantized(self, x: np.ndarray) -> np.ndarray:
        """int8 input batch (N, 32, 32, 3) -> int8 output batch (N, classes)."""
        values: dict[int, np.ndarray] = {self.model.inputs[0]: x}
        for op, kernel in self.layers:
            args = []
            for i in op.inputs:
                if i < 0:
                    continue
                t = self.model.tensors[i]
                if t.is_constant:
                    if op.opcode == "ADD":  # a constant addend: broadcast it over the batch
                        args.append(np.broadcast_to(t.data, (x.shape[0], *t.data.shape[1:])))
                    continue
                args.append(values[i])
            values[op.outputs[0]] = kernel(*args)
            for i in self.plan.free_after.get(op.index, ()):  # drop what no later layer reads
                values.pop(i, None)
        return values[self.model.outputs[0]].reshape(x.shape[0], -1)

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        return (out.astype(np.float32) - self.output_zero_point) * np.float32(self.output_scale)

    def layer_table(self) -> list[tuple[str, Kernel]]:
        return [(op.opcode, k) for op, k in self.layers]
