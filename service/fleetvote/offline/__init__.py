"""The offline tools: what measures, checks and documents the models and the fleet on this
machine, before or beside any service: evaluation (``evaluate``, ``ensemble_eval``,
``robustness``), the model cards (``cards``), the layer table (``analyze``), the firmware's C
sources (``codegen``), the tflite-micro oracle and the bit-exact check (``oracle``, ``verify``),
training curves (``curves``), the bill of materials (``bom``) and the DSP kernels' buffers it
counts (``dsp_buffers``), accuracy against cost (``pareto``), the zoo's history (``retire``) and
README's results table (``results_table``).

Import rule: these modules may import the runtime (``fleetvote.engine``, ``fleetvote.data`` ...)
and ``fleetvote.command``; never the test bed, and the runtime never imports them
(tests/test_architecture.py). Heavy packages (TensorFlow, tflite-micro, matplotlib) are imported
inside the functions that need them, so ``fleetvote --help`` works without the ``train`` extra.

What their reports share is here: how they write a path (``rel_path``) and a fraction (``pct``)."""

from __future__ import annotations

from pathlib import Path

from ..settings import ROOT


def rel_path(path) -> str:
    """A path as the reader would type it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def pct(v: float | None) -> str:
    """A fraction as a report's percentage, two decimals (``0.8254`` -> ``82.54 %``); ``-`` for none."""
    return "-" if v is None else f"{100 * v:.2f} %"
