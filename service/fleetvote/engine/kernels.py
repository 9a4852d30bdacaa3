"""int8 kernels in numpy, bit-exact with TFLite Micro's reference kernels.

Each kernel is a class built once per layer by ``ops.prepare`` (multipliers, shifts, padding,
activation range and reshaped weights are computed there, never per image) with a ``__call__``
taking a batch of int8 activations (N, ...) and returning the int8 output batch.

Accumulation, and why it is exact. Convolutions and dense layers run as float32 matrix products
(BLAS), on raw int8 values: x in [-128, 127] and w in [-128, 127], so every product has
|x*w| <= 2^14. float32 represents every integer up to 2^24 exactly, so a dot product of at most
K_CHUNK = 1024 such terms is exact whatever order BLAS adds them in (every partial sum stays
<= 1024 * 2^14 = 2^24). Longer reductions are split into chunks of at most 1024 terms whose
exact float32 results are converted to int64 and added there. The input zero point is removed
afterwards with the per-channel weight sums: sum((x - zp) * w) = sum(x * w) - zp * sum(w);
padded positions hold zp, so they contribute zero, as the reference kernels skip them.
The int64 accumulator then equals TFLite's int32 accumulator (which cannot overflow either:
|acc| <= K * 255 * 128 + |bias| < 2^31 for K < 65,000).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnsupportedModel
from .fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    activation_range,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    wrap_int32,
)

if TYPE_CHECKING:  # annotations only: the loader reads the operator registry (ops.py), which holds these kernels
    from .loader import Operator, Tensor

K_CHUNK = 1024  # longest exact float32 dot product of int8 values, see the module docstring


def _f64(x) -> float:
    return float(np.float64(np.float32(x)))


def compute_padding(in_size: int, filt: int, stride: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """(output size, padding before, padding after), as TFLite's ComputePaddingHeightWidth."""
    eff = (filt - 1) * dilation + 1
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size - eff + stride) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2, total - total // 2


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int8-valued (M, K) @ (K, C) -> exact int64, in float32 chunks of K_CHUNK (see above)."""
    k = a.shape[1]
    if k <= K_CHUNK:
        return (a @ b).astype(np.int64)
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    for s in range(0, k, K_CHUNK):
        out += (a[:, s : s + K_CHUNK] @ b[s : s + K_CHUNK]).astype(np.int64)
    return out


def per_channel_multipliers(in_scale: float, w_scales: np.ndarray, out_scale: float, n: int):
    """Effective scale in_scale * w_scale / out_scale, in double, as the reference Prepare."""
    ws = np.broadcast_to(np.asarray(w_scales, dtype=np.float32), (n,))
    mult = np.zeros(n, np.int64)
    shift = np.zeros(n, np.int64)
    for c in range(n):
        mult[c], shift[c] = quantize_multiplier(_f64(in_scale) * _f64(ws[c]) / _f64(out_scale))
    return mult, shift


def _requantize(acc: np.ndarray, mult, shift, out_zp: int, lo: int, hi: int) -> np.ndarray:
    """Reference requantisation: the oracle for ``Requantizer``."""
    out = multiply_by_quantized_multiplier(acc, mult, shift) + out_zp
    return np.clip(out, lo, hi).astype(np.int8)


class Requantizer:
    """MultiplyByQuantizedMultiplier + offset + clamp, per output channel, in few in-place passes.

    Two identities make it cheap, both exact in int64 for int32 inputs:
    * SaturatingRoundingDoublingHighMul(a, m) = (a*m + 2^30) >> 31 (a floor shift) for m >= 0:
      the C nudge-then-truncate rounds halves towards +inf, which is what adding 2^30 before an
      arithmetic shift does; the one saturating case needs m = INT32_MIN, never a multiplier.
    * RoundingDivideByPOT(x, e) = (x + 2^(e-1) - [x < 0]) >> e for e >= 1 (halves away from 0).
    It is tested against ``_requantize`` on extreme values (tests/test_engine.py).
    """

    def __init__(self, mult, shift, out_zp: int, lo: int, hi: int, channels: int):
        mult = np.broadcast_to(np.asarray(mult, np.int64), (channels,))
        shift = np.broadcast_to(np.asarray(shift, np.int64), (channels,))
        if np.any(mult < 0):
            raise UnsupportedModel("negative requantisation multiplier")
        self.mult = mult.copy()
        self.left = np.maximum(shift, 0)
        self.right = np.maximum(-shift, 0)
        self.any_left = bool(self.left.any())
        self.half = np.where(self.right > 0, np.int64(1) << np.maximum(self.right - 1, 0), 0)
        self.round_neg = (self.right > 0).astype(np.int64)
        self.out_zp, self.lo, self.hi = out_zp, lo, hi

    def __call__(self, acc: np.ndarray) -> np.ndarray:
        """acc: int64 (..., channels), consumed (modified in place)."""
        a = acc
        if self.any_left:
            a <<= self.left
            a = wrap_int32(a)  # C: x * (1 << left_shift) in an int32
        a *= self.mult
        a += 1 << 30
        a >>= 31
        neg = a < 0
        a += self.half
        a -= neg * self.round_neg
        a >>= self.right
        a += self.out_zp
        np.clip(a, self.lo, self.hi, out=a)
        return a.astype(np.int8)


class Kernel:
    macc: int = 0

    def __call__(self, *xs: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class Conv2D(Kernel):
    def __init__(self, op: Operator, t: list[Tensor]):
        x, w = t[op.inputs[0]], t[op.inputs[1]]
        b = t[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        y = t[op.outputs[0]]
        o = op.options
        self.cout, self.kh, self.kw, self.cin = w.shape
        _, h, wd, c = x.shape
        if c != self.cin:
            raise UnsupportedModel(f"CONV_2D {op.index}: filter depth {self.cin} != input depth {c} (grouped convolution)")
        self.sh, self.sw = o["stride"]
        self.dh, self.dw = o["dilation"]
        self.oh, self.pt, self.pb = compute_padding(h, self.kh, self.sh, self.dh, o["padding"])
        self.ow, self.pl, self.pr = compute_padding(wd, self.kw, self.sw, self.dw, o["padding"])
        self.in_zp = int(x.zero_point[0])
        w8 = w.data.astype(np.int64)
        # (KH*KW*CIN, COUT) in the (kh, kw, cin) order of the im2col windows below
        self.w = w8.reshape(self.cout, -1).T.astype(np.float32).copy()
        self.w_sum = w8.reshape(self.cout, -1).sum(axis=1)
        self.bias = b.data.astype(np.int64) if b is not None else np.zeros(self.cout, np.int64)
        self.mult, self.shift = per_channel_multipliers(x.scale[0], w.scale, y.scale[0], self.cout)
        self.out_zp = int(y.zero_point[0])
        self.lo, self.hi = activation_range(o["activation"], float(y.scale[0]), self.out_zp)
        self.macc = self.oh * self.ow * self.cout * self.kh * self.kw * self.cin
        self.bias_eff = self.bias - self.in_zp * self.w_sum  # exact int64, folded once
        self.requant = Requantizer(self.mult, self.shift, self.out_zp, self.lo, self.hi, self.cout)

    def im2col(self, x: np.ndarray) -> np.ndarray:
        """Windows of int8 values, (N*OH*OW, KH*KW*CIN), copied in int8 and converted once."""
        n = x.shape[0]
        xp = np.pad(x, ((0, 0), (self.pt, self.pb), (self.pl, self.pr), (0, 0)), constant_values=self.in_zp)
        if self.kh == self.kw == 1 and self.pt == self.pl == 0:
            return xp[:, : (self.oh - 1) * self.sh + 1 : self.sh, : (self.ow - 1) * self.sw + 1 : self.sw] \
                .reshape(n * self.oh * self.ow, self.cin).astype(np.float32)
        cols = np.empty((n, self.oh, self.ow, self.kh, self.kw, self.cin), dtype=np.int8)
        for i in range(self.kh):
            for j in range(self.kw):
                r0, c0 = i * self.dh, j * self.dw
                cols[:, :, :, i, j, :] = xp[:, r0 : r0 + (self.oh - 1) * self.sh + 1 : self.sh,
                                            c0 : c0 + (self.ow - 1) * self.sw + 1 : self.sw, :]
        return cols.reshape(n * self.oh * self.ow, -1).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        acc = exact_matmul(self.im2col(x), self.w)
        acc += self.bias_eff
        return self.requant(acc).reshape(n, self.oh, self.ow, self.cout)


class DepthwiseConv2D(Kernel):
    def __init__(self, op: Operator, t: list[Tensor]):
        x, w = t[op.inputs[0]], t[op.inputs[1]]
        b = t[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        y = t[op.outputs[0]]
        o = op.options
        _, self.kh, self.kw, self.cout = w.shape
        _, h, wd, self.cin = x.shape
        self.mult_depth = self.cout // self.cin
        if self.cin * self.mult_depth != self.cout:
            raise UnsupportedModel(f"DEPTHWISE_CONV_2D {op.index}: {self.cout} outputs for {self.cin} inputs")
        self.sh, self.sw = o["stride"]
        self.dh, self.dw = o["dilation"]
        self.oh, self.pt, self.pb = compute_padding(h, self.kh, self.sh, self.dh, o["padding"])
        self.ow, self.pl, self.pr = compute_padding(wd, self.kw, self.sw, self.dw, o["padding"])
        self.in_zp = int(x.zero_point[0])
        self.w = w.data.reshape(self.kh, self.kw, self.cout).astype(np.int32)
        self.bias = b.data.astype(np.int64) if b is not None else np.zeros(self.cout, np.int64)
        self.mult, self.shift = per_channel_multipliers(x.scale[0], w.scale, y.scale[0], self.cout)
        self.out_zp = int(y.zero_point[0])
        self.lo, self.hi = activation_range(o["activation"], float(y.scale[0]), self.out_zp)
        self.macc = self.oh * self.ow * self.cout * self.kh * self.kw
        self.requant = Requantizer(self.mult, self.shift, self.out_zp, self.lo, self.hi, self.cout)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        # int32 is exact here: |(x - zp) * w| <= 255 * 128 and at most kh*kw (9) terms
        xp = np.pad(x.astype(np.int32) - self.in_zp, ((0, 0), (self.pt, self.pb), (self.pl, self.pr), (0, 0)))
        if self.mult_depth > 1:  # output channel c*m + k reads input channel c
            xp = np.repeat(xp, self.mult_depth, axis=3)
        acc = np.zeros((n, self.oh, self.ow, self.cout), dtype=np.int32)
        for i in range(self.kh):
            for j in range(self.kw):
                r0, c0 = i * self.dh, j * self.dw
                acc += xp[:, r0 : r0 + (self.oh - 1) * self.sh + 1 : self.sh,
                          c0 : c0 + (self.ow - 1) * self.sw + 1 : self.sw, :] * self.w[i, j]
        acc64 = acc.reshape(-1, self.cout).astype(np.int64)
        acc64 += self.bias
        return self.requant(acc64).reshape(acc.shape)


class FullyConnected(Kernel):
    def __init__(self, op: Operator, t: list[Tensor]):
        x, w = t[op.inputs[0]], t[op.inputs[1]]
        b = t[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        y = t[op.outputs[0]]
        self.cout, self.k = w.shape
        if int(np.prod(x.shape[1:])) != self.k and int(np.prod(x.shape)) % self.k:
            raise UnsupportedModel(f"FULLY_CONNECTED {op.index}: input {x.shape} does not match weights {w.shape}")
        if np.any(w.zero_point != 0):
            raise UnsupportedModel(f"FULLY_CONNECTED {op.index}: int8 weights must be symmetric (zero point 0)")
        self.in_zp = int(x.zero_point[0])
        w8 = w.data.astype(np.int64)
        self.w = w8.T.astype(np.float32).copy()
        self.w_sum = w8.sum(axis=1)
        self.bias = b.data.astype(np.int64) if b is not None else np.zeros(self.cout, np.int64)
        if len(w.scale) > 1:  # FullyConnectedPerChannel: (double(s_in) * double(s_w[c])) / double(s_out)
            self.mult, self.shift = per_channel_multipliers(x.scale[0], w.scale, y.scale[0], self.cout)
        else:  # GetQuantizedConvolutionMultipler: the product s_in * s_w is taken in float32 first
            m, s = quantize_multiplier(_f64(np.float32(x.scale[0]) * np.float32(w.scale[0])) / _f64(y.scale[0]))
            self.mult, self.shift = np.full(self.cout, m, np.int64), np.full(self.cout, s, np.int64)
        self.out_zp = int(y.zero_point[0])
        self.lo, self.hi = activation_range(op.options.get("activation", "NONE"), float(y.scale[0]), self.out_zp)
        self.out_shape = tuple(y.shape[1:]) if len(y.shape) > 1 else (self.cout,)
        self.macc = self.k * self.cout
        self.bias_eff = self.bias - self.in_zp * self.w_sum
        self.requant = Requantizer(self.mult, self.shift, self.out_zp, self.lo, self.hi, self.cout)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        a = x.reshape(n, self.k).astype(np.float32)
        acc = exact_matmul(a, self.w)
        acc += self.bias_eff
        return self.requant(acc).reshape((n, *self.out_shape))


class Pool2D(Kernel):
    def __init__(self, op: Operator, t: list[Tensor], kind: str):
        x, y = t[op.inputs[0]], t[op.outputs[0]]
        o = op.options
        self.kind = kind
        self.fh, self.fw = o["filter"]
        self.sh, self.sw = o["stride"]
        _, h, wd, self.c = x.shape
        self.oh, self.pt, self.pb = compute_padding(h, self.fh, self.sh, 1, o["padding"])
        self.ow, self.pl, self.pr = compute_padding(wd, self.fw, self.sw, 1, o["padding"])
        self.lo, self.hi = activation_range(o["activation"], float(y.scale[0]), int(y.zero_point[0]))
        if kind == "avg" and not (np.isclose(x.scale[0], y.scale[0]) and x.zero_point[0] == y.zero_point[0]):
            raise UnsupportedModel(f"AVERAGE_POOL_2D {op.index}: input and output quantisation differ")
        # number of in-bounds input positions under each output position (edges see fewer)
        ones = np.pad(np.ones((h, wd), np.int32), ((self.pt, self.pb), (self.pl, self.pr)))
        self.count = sum(
            ones[i : i + (self.oh - 1) * self.sh + 1 : self.sh, j : j + (self.ow - 1) * self.sw + 1 : self.sw]
            for i in range(self.fh) for j in range(self.fw)
        )[None, :, :, None]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        pad = ((0, 0), (self.pt, self.pb), (self.pl, self.pr), (0, 0))
        if self.kind == "max":
            xp = np.pad(x.astype(np.int16), pad, constant_values=-32768)  # below any int8: never the max
            acc = None
            for i in range(self.fh):
                for j in range(self.fw):
                    win = xp[:, i : i + (self.oh - 1) * self.sh + 1 : self.sh, j : j + (self.ow - 1) * self.sw + 1 : self.sw]
                    acc = win if acc is None else np.maximum(acc, win)
            return np.clip(acc, self.lo, self.hi).astype(np.int8)
        xp = np.pad(x.astype(np.int32), pad)
        acc = np.zeros((x.shape[0], self.oh, self.ow, self.c), np.int32)
        for i in range(self.fh):
            for j in range(self.fw):
                acc += xp[:, i : i + (self.oh - 1) * self.sh + 1 : self.sh, j : j + (self.ow - 1) * self.sw + 1 : self.sw]
        # C division truncates toward zero; the reference rounds half away from zero around it
        half = self.count // 2
        num = np.where(acc > 0, acc + half, acc - half)
        avg = np.sign(num) * (np.abs(num) // self.count)
        return np.clip(avg, self.lo, self.hi).astype(np.int8)


class Add(Kernel):
    LEFT_SHIFT = 20  # headroom TFLite gives the rescaled inputs before adding them

    def __init__(self, op: Operator, t: list[Tensor]):
        a, b, y = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
        if a.shape != b.shape:
            raise UnsupportedModel(f"ADD {op.index}: broadcasting {a.shape} + {b.shape} is not supported")
        sa, sb, so = _f64(a.scale[0]), _f64(b.scale[0]), _f64(y.scale[0])
        twice_max = 2 * max(sa, sb)
        self.m1, self.s1 = quantize_multiplier(sa / twice_max)
        self.m2, self.s2 = quantize_multiplier(sb / twice_max)
        self.mo, self.so = quantize_multiplier(twice_max / ((1 << self.LEFT_SHIFT) * so))
        self.zp1, self.zp2 = int(a.zero_point[0]), int(b.zero_point[0])
        self.out_zp = int(y.zero_point[0])
        self.lo, self.hi = activation_range(op.options.get("activation", "NONE"), float(y.scale[0]), self.out_zp)
        self.const = [a.data, b.data]

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        x1 = (a.astype(np.int64) - self.zp1) << self.LEFT_SHIFT
        x2 = (b.astype(np.int64) - self.zp2) << self.LEFT_SHIFT
        s = multiply_by_quantized_multiplier(x1, self.m1, self.s1) + multiply_by_quantized_multiplier(x2, self.m2, self.s2)
        out = multiply_by_quantized_multiplier(s, self.mo, self.so) + self.out_zp
        return np.clip(out, self.lo, self.hi).astype(np.int8)


class Mean(Kernel):
    """MEAN over the spatial axes of an NHWC tensor (what global average pooling exports to).

    TFLM folds the division by the element count n into the requantisation multiplier: with
    (M, S) = QuantizeMultiplier(in_scale / out_scale) and sh = floor(log2 n) (at most 32 and
    31 + S), M2 = (M << sh) // n keeps 31 significant bits, and
    out = MBQM(sum(x) - in_zp * n, M2, S - sh) + out_zp.
    """

    def __init__(self, op: Operator, t: list[Tensor]):
        x, ax, y = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
        axes = sorted(int(v) % len(x.shape) for v in np.atleast_1d(ax.data))
        if len(x.shape) != 4 or axes != [1, 2]:
            raise UnsupportedModel(f"MEAN {op.index}: only the mean over axes 1 and 2 of a 4-D tensor is supported")
        self.n = x.shape[1] * x.shape[2]
        self.in_zp, self.out_zp = int(x.zero_point[0]), int(y.zero_point[0])
        m, s = quantize_multiplier(_f64(x.scale[0]) / _f64(y.scale[0]))
        sh = min(self.n.bit_length() - 1, 32, 31 + s)
        self.mult, self.shift = (m << sh) // self.n, s - sh
        self.out_shape = tuple(y.shape[1:])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # |sum - zp * n| <= n * 255 = 261,120 for n = 32*32: far inside int32
        acc = x.astype(np.int64).sum(axis=(1, 2)) - self.in_zp * self.n
        out = multiply_by_quantized_multiplier(acc, self.mult, self.shift) + self.out_zp
        return np.clip(out, -128, 127).astype(np.int8).reshape((x.shape[0], *self.out_shape))


class Reshape(Kernel):
    def __init__(self, op: Operator, t: list[Tensor]):
        self.out_shape = tuple(t[op.outputs[0]].shape[1:])
        x, y = t[op.inputs[0]], t[op.outputs[0]]
        if not (np.allclose(x.scale[:1], y.scale[:1]) and np.array_equal(x.zero_point[:1], y.zero_point[:1])):
            raise UnsupportedModel(f"RESHAPE {op.index}: input and output quantisation differ")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.reshape((x.shape[0], *self.out_shape))


class Pad(Kernel):
    def __init__(self, op: Operator, t: list[Tensor]):
        x, p, y = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
        pads = p.data.astype(np.int64).reshape(-1, 2)
        if pads[0].any() or np.any(pads < 0):
            raise UnsupportedModel(f"PAD {op.index}: padding the batch axis or negative padding is not supported")
        self.pads = [tuple(int(v) for v in row) for row in pads]
        # PAD (not PADV2) fills with the zero point: the quantised 0.0
        self.value = int(y.zero_point[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.pad(x, self.pads, constant_values=self.value)


class Softmax(Kernel):
    """int8 softmax of TFLite's reference kernel: gemmlowp fixed-point exp and reciprocal.

    Output scale 1/256, zero point -128: output = round(p * 256) - 128, saturated to 127.
    """

    SCALED_DIFF_INTEGER_BITS = 5
    ACCUMULATION_INTEGER_BITS = 12

    def __init__(self, op: Operator, t: list[Tensor]):
        x, y = t[op.inputs[0]], t[op.outputs[0]]
        if not (np.isclose(y.scale[0], 1 / 256) and int(y.zero_point[0]) == -128):
            raise UnsupportedModel(f"SOFTMAX {op.index}: output must have scale 1/256 and zero point -128")
        beta = op.options.get("beta", 1.0)
        # PreprocessSoftmaxScaling: the multiplier of (x - max) into Q5.26 fixed point
        real = min(_f64(beta) * _f64(x.scale[0]) * (1 << (31 - self.SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
        self.input_multiplier, self.input_left_shift = quantize_multiplier(real)  # real > 1: shift >= 0
        # CalculateInputRadius: largest |x - max| that stays representable after rescaling
        max_input_rescaled = (
            1.0 * ((1 << self.SCALED_DIFF_INTEGER_BITS) - 1)
            * (1 << (31 - self.SCALED_DIFF_INTEGER_BITS)) / (1 << self.input_left_shift)
        )
        self.diff_min = -int(np.floor(max_input_rescaled))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return softmax_int8(x.reshape(x.shape[0], -1), self.input_multiplier, self.input_left_shift,
                            self.diff_min).reshape(x.shape)


# --- gemmlowp fixed-point helpers (int32 raw values carried in int64) ---------------------------

def _srdhm(a, b):
    return saturating_rounding_doubling_high_mul(a, b)


def _sat_shl(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT with a positive exponent: x * 2^e, saturated to int32."""
    return np.clip(x * (1 << exponent), INT32_MIN, INT32_MAX)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883  # 1/3 in Q0.31
    x = a + (1 << 28)  # a + 1/8
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    x4_over_24_plus_x3_over_6_plus_x2_over_2 = rounding_divide_by_pot(
        _srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1)
    return wrap_int32(constant_term + _srdhm(constant_term, x + x4_over_24_plus_x3_over_6_plus_x2_over_2))


def _exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """exp(a) for a <= 0 given in Q(integer_bits).(31 - integer_bits); result in Q0.31."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter
    # rescale a value in [-1/4, 0) from Q(integer_bits) to Q0.31
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        np.clip(a_mod_quarter_minus_one_quarter * (1 << integer_bits), INT32_MIN, INT32_MAX))
    remainder = a_mod_quarter_minus_one_quarter - a
    # multiply by exp(-2^k) for each bit k of the remainder (barrel shifter)
    for exponent, multiplier in (
        (-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
        (2, 39332535), (3, 720401), (4, 242),
    ):
        if integer_bits > exponent:
            shift = fractional_bits + exponent
            if 0 <= shift <= 30:
                result = np.where(remainder & (1 << shift), _srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (fractional_bits + 5))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1) in Q0.31, result in Q2.29: Newton-Raphson, 3 iterations."""
    half_denominator = rounding_divide_by_pot(a + INT32_MAX, 1)  # (1 + a) / 2, in Q0.31
    constant_48_over_17 = 1515870810  # Q2.29
    constant_neg_32_over_17 = -1010580540  # Q2.29
    x = constant_48_over_17 + _srdhm(half_denominator, constant_neg_32_over_17)
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)  # Q2.29
        one_minus = (1 << 29) - half_denominator_times_x  # Q2.29
        x = x + _sat_shl(_srdhm(x, one_minus), 2)
    return _sat_shl(x, 1)  # Q2.29 -> Q1.30 times 2 == the reciprocal of half_denominator / 2 ... in Q0.31 units


def _count_leading_zeros_u32(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    v = x.copy()
    for bits in (16, 8, 4, 2, 1):
        small = v < (1 << (32 - bits))
        out = np.where(small, out + bits, out)
        v = np.where(small, v << bits, v)
    return np.where(x == 0, 32, out)


def softmax_int8(x: np.ndarray, input_multiplier: int, input_left_shift: int, diff_min: int) -> np.ndarray:
    """reference_ops::Softmax for int8 in and out, row by row, vectorised over rows."""
    xi = x.astype(np.int64)
    diff = xi - xi.max(axis=1, keepdims=True)
    valid = diff >= diff_min
    # MultiplyByQuantizedMultiplierGreaterThanOne: shift >= 0, one rounding
    rescaled = saturating_rounding_doubling_high_mul(
        wrap_int32(diff << input_left_shift), input_multiplier)
    exp = _exp_on_negative_values(rescaled, Softmax.SCALED_DIFF_INTEGER_BITS)  # Q0.31
    # Rescale<12>(Q0.31) -> Q12.19: rounding divide by 2^12
    sum_of_exps = np.where(valid, rounding_divide_by_pot(exp, Softmax.ACCUMULATION_INTEGER_BITS), 0).sum(axis=1)
    # GetReciprocal(sum, 12): normalise sum to [1, 2) and take 1/x
    headroom_plus_one = _count_leading_zeros_u32(sum_of_exps.astype(np.int64))
    num_bits_over_unit = Softmax.ACCUMULATION_INTEGER_BITS - headroom_plus_one
    shifted_sum_minus_one = wrap_int32((sum_of_exps.astype(np.int64) << headroom_plus_one) - (1 << 31))
    shifted_scale = _one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one)[:, None]
    prod = _srdhm(shifted_scale, exp)
    unsat = rounding_divide_by_pot(prod, (num_bits_over_unit + 31 - 8)[:, None])
    out = np.where(valid, np.clip(unsat - 128, -128, 127), -128)
    return out.astype(np.int8)

