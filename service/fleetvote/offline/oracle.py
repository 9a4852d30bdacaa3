"""The oracle: TFLite Micro's reference kernels, through the ``tflite-micro`` Python package.

"Bit-exact" in this project means: the same int8 output bytes as this interpreter. It runs one
image at a time (about 150 images/s on a member), so it is for verification and reports, never
for serving. The package is part of the ``train`` extra.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import FleetvoteError


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FleetvoteError("the tflite-micro package is missing: pip install -e '.[train]'") from exc
    return runtime


class MicroInterpreter:
    def __init__(self, model: str | Path | bytes, arena_size: int | None = None):
        rt = _runtime()
        blob = model if isinstance(model, bytes) else Path(model).read_bytes()
        self._blob = blob
        self._interp = rt.Interpreter.from_bytes(blob, arena_size=arena_size)
        d = self._interp.get_input_details(0)
        self.input_shape = tuple(d["shape"])
        self.input_scale, self.input_zero_point = d["quantization_parameters"]["scales"][0], \
            int(d["quantization_parameters"]["zero_points"][0])

    def run_quantized(self, x: np.ndarray) -> np.ndarray:
        """int8 inputs (N, 32, 32, 3) -> int8 outputs (N, classes), one invoke per image."""
        outs = []
        for img in x:
            self._interp.set_input(img.reshape(self.input_shape).astype(np.int8), 0)
            self._interp.invoke()
            outs.append(np.array(self._interp.get_output(0)).reshape(-1))
            self._interp.reset()
        return np.stack(outs).astype(np.int8) if outs else np.zeros((0, 10), np.int8)

    def run(self, images: np.ndarray) -> np.ndarray:
        """uint8 images -> int8 outputs, quantising the input as the export contract says."""
        q = np.round(images.astype(np.float32) / np.float32(255.0) / np.float32(self.input_scale)) + self.input_zero_point
        return self.run_quantized(np.clip(q, -128, 127).astype(np.int8))


def sys_flush() -> None:
    import sys

    sys.stdout.flush()
    sys.stderr.flush()


def arena_used_bytes(model: str | Path | bytes) -> dict[str, int]:
    """tflite-micro's arena report (print_allocations): {"total", "head", "tail"} in bytes.

    "head" is the planned, non-persistent part: the activation buffers of its memory planner,
    the figure our own buffer plan computes. "tail" holds TFLM's structs and per-channel arrays.
    """
    import ctypes
    import tempfile

    interp = MicroInterpreter(model)
    libc = ctypes.CDLL(None)
    # print_allocations writes from C++ through stdio: capture file descriptors 1 and 2 and
    # flush C's buffers before putting them back
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            sys_flush()
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            interp._interp.print_allocations()
            libc.fflush(None)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    found = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text))
    if set(found) != {"total", "head", "tail"}:
        raise FleetvoteError(f"could not read the arena sizes from tflite-micro's report: {text[:200]!r}")
    return {k: int(v) for k, v in found.items()}
