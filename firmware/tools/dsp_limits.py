#!/usr/bin/env python3
"""fv_dsp_limits.h for one model: the longest column the DSP kernels widen (k_h * k_w * in_c of
a convolution, depth of a fully connected layer), and at least the ADD's two tables of 256 words
when the model has an ADD, so that their scratch (5 bytes per element, core/fv_kernels_dsp.h) is
exactly what the model needs and no layer falls back to the reference; the words of the
depthwise kernel's widened input plane (FV_DSP_DW_WORDS), at least the channel planes of a
(convolution, depthwise) pair the runner may fuse; the pre-widened convolution weights
(FV_DSP_PW_WORDS); how many such pairs there are (FV_DSP_FUSED_PAIRS); and how many
(convolution, max pool) pairs may fuse (FV_DSP_POOL_PAIRS) with the words of their running
maximum (FV_DSP_POOL_WORDS).

    dsp_limits.py models/zoo/<id>/model.tflite OUT.h

The rules themselves live in service/fleetvote/offline/dsp_buffers.py, where the planner also
reads them (the RAM of these buffers in a model the size report has not measured); this file
applies them to one model file and writes the header only when it changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "service"))

from fleetvote.offline.dsp_buffers import (  # noqa: E402  (the service package, by path above)
    ADD_TABLE_WORDS,
    DWF_WIDTHS,
    DWF_WIDTHS_S2,
    DWP_E_MAX,
    DWP_E_MIN,
    DWP_MIN_ROWS,
    DWP_ROW_WORDS,
    PW_CAP_WORDS,
    PW_MIN_CHUNK_PAIRS,
    PW_REC_EXTRA,
    dw_plane_words_of,
    fused_pairs_of,
    fused_plane_words,
    max_column_of,
    model_kernels,
    model_limits,
    pool_fusion_of,
    pool_words_of,
    pw_words_of,
)

__all__ = ["ADD_TABLE_WORDS", "DWF_WIDTHS", "DWF_WIDTHS_S2", "DWP_E_MAX", "DWP_E_MIN", "DWP_MIN_ROWS",
           "DWP_ROW_WORDS", "PW_CAP_WORDS", "PW_MIN_CHUNK_PAIRS", "PW_REC_EXTRA", "dw_plane_words",
           "fused_pairs", "fused_plane_words", "max_column", "pool_fusion", "pool_words_of", "pw_words",
           "pw_words_of"]


def max_column(path: Path) -> int:
    """FV_DSP_MAX_K of the model at ``path`` (dsp_buffers.max_column_of)."""
    return max_column_of(model_kernels(path))


def pw_words(path: Path) -> int:
    """FV_DSP_PW_WORDS of the model at ``path`` (dsp_buffers.pw_words_of)."""
    return pw_words_of(model_kernels(path))


def dw_plane_words(path: Path) -> int:
    """FV_DSP_DW_WORDS of the model at ``path`` (dsp_buffers.dw_plane_words_of)."""
    return dw_plane_words_of(model_kernels(path))


def fused_pairs(path: Path) -> int:
    """FV_DSP_FUSED_PAIRS of the model at ``path`` (dsp_buffers.fused_pairs_of)."""
    return fused_pairs_of(model_kernels(path))


def pool_fusion(path: Path) -> tuple[int, int]:
    """(FV_DSP_POOL_PAIRS, FV_DSP_POOL_WORDS) of the model at ``path`` (dsp_buffers.pool_fusion_of)."""
    return pool_fusion_of(model_kernels(path))


def main() -> int:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    text = model_limits(src).header(f"{src.parent.name}/{src.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
