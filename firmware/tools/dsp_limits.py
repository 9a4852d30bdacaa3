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
"""

from __future__ import annotations

import sys
from pathlib import Path

# FV_DSP_ADD_TABLE_WORDS of core/fv_kernels_dsp.h: the ADD's tables of scaled inputs (256 words
# each) live in the column scratch; a smaller scratch would make every ADD run the reference
ADD_TABLE_WORDS = 512

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "service"))


def max_column(path: Path) -> int:
    from fleetvote.engine import Engine
    from fleetvote.engine.kernels import Add, Conv2D, DepthwiseConv2D, FullyConnected

    longest = 4
    for _, k in Engine.from_file(path).layer_table():
        if isinstance(k, DepthwiseConv2D):
            continue  # its scratch is its own plane (dw_plane_words)
        elif isinstance(k, Conv2D):
            longest = max(longest, k.kh * k.kw * k.cin)
        elif isinstance(k, FullyConnected):
            longest = max(longest, k.k)
        elif isinstance(k, Add):
            longest = max(longest, ADD_TABLE_WORDS)
    return (longest + 3) // 4 * 4


# The most RAM the pre-widened weights of a small convolution may take (words; 16 KB): a layer
# whose weights need more keeps widening them in its inner loop (core/fv_kernels_dsp.c).
PW_CAP_WORDS = 4096
# core/fv_kernels_dsp.c, conv2d_prewidened: PW_REC_EXTRA, the words of a channel pair's record
# besides its weights (2 biases doubled, 2 x 3 of requantisation), and PW_MIN_CHUNK_PAIRS, the
# fewest channel pairs a chunk of a 1x1 layer too large for the buffer may hold (else the layer
# widens in its inner loop and uses no pre-widened words at all)
PW_REC_EXTRA = 8
PW_MIN_CHUNK_PAIRS = 12


def pw_words(path: Path) -> int:
    """Words of the convolution kernel's pre-widened weights for the model at ``path``
    (``pw_words_of`` its layers)."""
    from fleetvote.engine import Engine

    return pw_words_of(k for _, k in Engine.from_file(path).layer_table())


def pw_words_of(kernels) -> int:
    """Words of the convolution kernel's pre-widened weights (core/fv_kernels_dsp.c,
    conv2d_prewidened), the most any layer uses: a record per channel pair of 4 words per group
    of 4 values and PW_REC_EXTRA more. A layer whose records all fit PW_CAP_WORDS takes them all
    at once; a larger 1x1 layer over whole groups (in_c % 4 == 0) goes in chunks of as many whole
    records as the buffer holds, only when that is at least PW_MIN_CHUNK_PAIRS pairs (a 1x1 over
    in_c <= 332: records of at most 4 * 83 + 8 = 340 words, 12 in 4096; from in_c = 336 on, 11
    or fewer fit and the firmware does not pre-widen), and uses those whole records, not the
    buffer's remainder. Only layers of the whole int8 activation range, at least a channel
    pair and at least two output pixels pre-widen; at least 2."""
    from fleetvote.engine.kernels import Conv2D, DepthwiseConv2D

    words = 2
    for k in kernels:
        if not isinstance(k, Conv2D) or isinstance(k, DepthwiseConv2D):
            continue
        pairs = k.cout // 2
        if (k.lo, k.hi) != (-128, 127) or pairs == 0 or k.oh * k.ow < 2:
            continue  # conv2d_prewidened returns 0 before it writes a word
        rec = 4 * ((k.kh * k.kw * k.cin + 3) // 4) + PW_REC_EXTRA
        if pairs * rec <= PW_CAP_WORDS:
            words = max(words, pairs * rec)
        elif k.kh == k.kw == 1 and k.cin % 4 == 0 and PW_CAP_WORDS // rec >= PW_MIN_CHUNK_PAIRS:
            # the chunk's pair count is FV_DSP_PW_WORDS / rec: the same with the words reserved
            # here (a multiple of rec) as with PW_CAP_WORDS, since every other layer's need is
            # at most this maximum
            words = max(words, PW_CAP_WORDS // rec * rec)
    return words


# the channel-plane path's plane row (core/fv_kernels_dsp.c, DWP_ROW: 4 channels of 36 halfwords)
# and the rows one output row reads (3x3): with fewer, its layers run the 4-channel path
DWP_ROW_WORDS = 72
DWP_MIN_ROWS = 3


def dw_plane_words(path: Path) -> int:
    """Words of the depthwise kernels' widened plane (core/fv_kernels_dsp.c): the largest layer's
    whole plane for the 4-channel path, the input rows and columns its output reads, 2 words per
    pixel, and at least the 3 plane rows the channel-plane path needs for a 3x3 layer (it works in
    bands of output rows when its whole plane, 72 words per input row, does not fit); at least 2
    (a model without depthwise layers)."""
    from fleetvote.engine import Engine
    from fleetvote.engine.kernels import DepthwiseConv2D

    words = 2
    kernels = [k for _, k in Engine.from_file(path).layer_table()]
    for i, k in enumerate(kernels):
        if isinstance(k, DepthwiseConv2D):
            ncols = ((k.ow + 1) // 2 * 2 - 1) * k.sw + k.dw * (k.kw - 1) + 1
            rows = (k.oh - 1) * k.sh + k.dh * (k.kh - 1) + 1
            words = max(words, 2 * ncols * rows)
            if k.kh == k.kw == 3:
                words = max(words, DWP_MIN_ROWS * DWP_ROW_WORDS)
            if i > 0:
                words = max(words, fused_plane_words(kernels[i - 1], k))
    return words


# the widths of the fused pair's passes (core/fv_kernels_dsp.c, DWF_ROWS): at stride 1 all four,
# at stride 2 from 8 on (width 4 gives 2 outputs per row, not the passes' 4)
DWF_WIDTHS = (4, 8, 16, 32)
DWF_WIDTHS_S2 = (8, 16, 32)
# the requantisation shifts the passes have functions for (DWP_E_MIN, DWP_E_MAX: right shifts)
DWP_E_MIN, DWP_E_MAX = 5, 13


def fused_plane_words(conv, dw) -> int:
    """Words of the channel planes a convolution writes for the 3x3 depthwise layer after it
    (core/fv_kernels_dsp.c, fv_conv2d_to_planes_opt): (c (in_h + 1) + 2) rows of in_w + 2
    halfwords, when the pair may fuse; 0 otherwise.

    This mirrors fv_dw_planes_ok's shape, stride, padding, dilation, activation, zero-point and
    shift conditions. Firmware-only stay those that need the firmware's own arithmetic or
    build: rq_fast_ok (the fast requantisation's bounds on bias and multiplier, per channel),
    pw_fits (the pre-widened weights against FV_DSP_PW_WORDS, sized by pw_words_of), the plane
    size against FV_DSP_DW_WORDS (sized here from this very function) and the runner's "only
    the depthwise reads the output" (only_next_reads, on the arena plan). A pair this counts and
    the firmware refuses is caught by the bench: the bench image reports the pairs the runner
    fused at prepare and tools/bench_firmware.py fails when they differ from this count
    (FV_DSP_FUSED_PAIRS), so no RAM or flash stays reserved for a pair that never fuses."""
    from fleetvote.engine.kernels import Conv2D, DepthwiseConv2D

    if not isinstance(conv, Conv2D) or isinstance(conv, DepthwiseConv2D) or not isinstance(dw, DepthwiseConv2D):
        return 0
    h, w, c = conv.oh, conv.ow, conv.cout
    if (dw.kh, dw.kw, dw.cin, dw.cout, dw.mult_depth, dw.dh, dw.dw) != (3, 3, c, c, 1, 1, 1) or c % 2:
        return 0
    s = dw.sw
    if dw.sh != s or w not in (DWF_WIDTHS if s == 1 else DWF_WIDTHS_S2 if s == 2 else ()):
        return 0
    # SAME: padding 1 before at stride 1, none before at stride 2 (the even sizes here)
    if (dw.pt, dw.pl) != ((1, 1) if s == 1 else (0, 0)) or dw.ow * s != w or dw.oh * s != h or dw.ow % 4:
        return 0
    if conv.out_zp != -128 or dw.in_zp != -128 or (dw.lo, dw.hi) != (-128, 127) or (conv.lo, conv.hi) != (-128, 127):
        return 0
    if any(not DWP_E_MIN <= -int(e) <= DWP_E_MAX for e in dw.shift):
        return 0
    return (c * (h + 1) + 2) * (w + 2) // 2


def fused_pairs(path: Path) -> int:
    """How many (convolution, depthwise) pairs of the model may fuse (fused_plane_words); with
    none, the firmware leaves the fused kernels and their 63 pass functions (19 KB of flash) out
    (FV_DSP_FUSED_PAIRS)."""
    from fleetvote.engine import Engine

    kernels = [k for _, k in Engine.from_file(path).layer_table()]
    return sum(1 for a, b in zip(kernels, kernels[1:]) if fused_plane_words(a, b) > 0)


def pool_words_of(conv, pool) -> int:
    """Words of the running maximum (core/fv_kernels_dsp.c, pool_max: one per output channel) a
    convolution needs when the 2x2 max pool after it may fuse with it (fv_conv_pool_ok); 0
    otherwise.

    This mirrors fv_conv_pool_ok's shape, padding, stride and activation-range conditions.
    Firmware-only stay rq_fast_ok (the fast requantisation's bounds, among them a multiplier >=
    0, the fusion's one condition of exactness), the column against FV_DSP_MAX_K (max_column
    sizes it for every convolution) and the runner's "only the pool reads the output"
    (only_next_reads); the bench catches a disagreement (the image reports the pairs the runner
    fused, tools/bench_firmware.py compares them with FV_DSP_POOL_PAIRS)."""
    from fleetvote.engine.kernels import Conv2D, DepthwiseConv2D, Pool2D

    if not isinstance(conv, Conv2D) or isinstance(conv, DepthwiseConv2D) or not isinstance(pool, Pool2D):
        return 0
    if pool.kind != "max" or (pool.fh, pool.fw, pool.sh, pool.sw, pool.pt, pool.pl) != (2, 2, 2, 2, 0, 0):
        return 0
    h, w = conv.oh, conv.ow
    if h < 2 or w < 2 or h % 2 or w % 2 or (pool.c, pool.oh, pool.ow) != (conv.cout, h // 2, w // 2):
        return 0
    if pool.lo > conv.lo or pool.hi < conv.hi:  # the pool's clamp must change nothing
        return 0
    return conv.cout


def pool_fusion(path: Path) -> tuple[int, int]:
    """(pairs, words): how many (convolution, max pool) pairs of the model may fuse
    (pool_words_of) and the running maximum's words for the widest (at least 2). With no pair the
    firmware leaves the fused kernels out (FV_DSP_POOL_PAIRS 0)."""
    from fleetvote.engine import Engine

    kernels = [k for _, k in Engine.from_file(path).layer_table()]
    words = [pool_words_of(a, b) for a, b in zip(kernels, kernels[1:])]
    return sum(1 for n in words if n > 0), max([2, *words])


def main() -> int:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    pool_pairs, pool_words = pool_fusion(src)
    text = (f"/* Generated by firmware/tools/dsp_limits.py from {src.parent.name}/{src.name}. Do not edit. */\n"
            f"#define FV_DSP_MAX_K {max_column(src)}\n"
            f"#define FV_DSP_DW_WORDS {dw_plane_words(src)}\n"
            f"#define FV_DSP_PW_WORDS {pw_words(src)}\n"
            f"#define FV_DSP_FUSED_PAIRS {fused_pairs(src)}\n"
            f"#define FV_DSP_POOL_PAIRS {pool_pairs}\n"
            f"#define FV_DSP_POOL_WORDS {pool_words}\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
