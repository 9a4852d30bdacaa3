"""TFLite's integer requantisation primitives, vectorised over numpy int64 arrays.

These mirror tensorflow/lite/kernels/internal/common.h (double-rounding variant, which TFLite
Micro's reference kernels use) and gemmlowp's fixedpoint.h. Values are carried in int64 so that
products of two int32 never overflow; every function returns values that fit int32, exactly
what the C code leaves in its int32 variables.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def quantize_multiplier(m: float) -> tuple[int, int]:
    """A real multiplier as (q31 mantissa, power-of-two exponent): m = q / 2^31 * 2^shift.

    frexp gives q in [0.5, 1); rounding q * 2^31 half away from zero (TfLiteRound) can give
    exactly 2^31, which is renormalised to 2^30 with shift + 1. Exponents below -31 shift every
    bit out, so they become a zero multiplier, as in quantization_util.cc.
    """
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's complement wrap of int64 values into the int32 range (what C's int32 keeps)."""
    return ((x.astype(np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """(a * b * 2) >> 32 rounded to nearest, with the single overflow case saturated.

    The C code adds a nudge of +2^30 (or 1 - 2^30 for negative products) and divides by 2^31
    with C's truncating division, which is not an arithmetic shift for negative values.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # |a*b| <= 2^62: exact in int64
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))  # truncate toward zero
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, q)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """x / 2^exponent, rounded to nearest with ties away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier: x * multiplier * 2^shift / 2^31, double rounding."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = wrap_int32(np.asarray(x, dtype=np.int64) << left)  # C: x * (1 << left_shift) in int32
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


def quantize_value(f: float, scale: float, zero_point: int) -> int:
    """TFLite's Quantize for activation ranges: zero_point + round(f / scale), in float32."""
    r = float(np.float32(f) / np.float32(scale))
    return zero_point + int(math.floor(abs(r) + 0.5)) * (1 if r >= 0 else -1)


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 outputs."""
    qmin, qmax = -128, 127
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize_value(0.0, scale, zero_point)), qmax
    if activation == "RELU6":
        return (max(qmin, quantize_value(0.0, scale, zero_point)),
                min(qmax, quantize_value(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(qmin, quantize_value(-1.0, scale, zero_point)),
                min(qmax, quantize_value(1.0, scale, zero_point)))
    raise ValueError(f"activation {activation}")
