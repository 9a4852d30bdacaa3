/*
 * int32 fixed-point primitives of TFLite's integer kernels: kernels/internal/common.h (the
 * double-rounding MultiplyByQuantizedMultiplier; TFLITE_SINGLE_ROUNDING is not defined in TFLM
 * builds) and gemmlowp's fixedpoint/fixedpoint.h, specialised to int32 raw values.
 *
 * Notation: Qm.n is a signed int32 raw value r meaning r / 2^n, with m integer bits and
 * m + n = 31. gemmlowp's FixedPoint<int32_t, m> is Qm.(31-m).
 *
 * Implementation-defined behaviour relied on (gcc and clang on every target we build for):
 *  - `>>` on a negative int32_t is an arithmetic shift (floor division by 2^n), as in TFLite
 *    and gemmlowp, which rely on it too;
 *  - converting a uint32_t above INT32_MAX to int32_t wraps modulo 2^32.
 * Left shifts are done on uint32_t, because shifting a negative signed value left is undefined
 * in C99 even where the hardware result is the wanted one.
 *
 * int64_t appears only where the math needs more than 32 bits: the 62-bit product of the high
 * multiply and the 33-bit sum of RoundingHalfSum. No 64-bit division is emitted (both divisions
 * are by powers of two and written as shifts), so nothing is pulled from libgcc on Cortex-M.
 */
#ifndef FV_FIXEDPOINT_H
#define FV_FIXEDPOINT_H

#include <stdint.h>

/* Count of leading zero bits of a 32-bit word, 32 for 0 (__builtin_clz(0) is undefined).
 * Cortex-M3/M4/M7 have a CLZ instruction; gcc emits it for __builtin_clz. */
static inline int32_t fv_clz32(uint32_t x)
{
#if defined(__GNUC__)
    return x == 0u ? 32 : (int32_t)__builtin_clz(x);
#else
    int32_t n = 0;
    if (x == 0u) {
        return 32;
    }
    while ((x & 0x80000000u) == 0u) {
        x <<= 1;
        n++;
    }
    return n;
#endif
}

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), the product of two Q0.31
 * values in Q0.31. The only product that does not fit is INT32_MIN * INT32_MIN (= +1.0), which
 * saturates to INT32_MAX. Rounding: a nudge of +2^30 (or 1 - 2^30 for a negative product), then
 * a division by 2^31 that TRUNCATES toward zero (C '/'), which is not an arithmetic shift for a
 * negative dividend: the shift is made truncating by adding 2^31 - 1 first. */
static inline int32_t fv_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    {
        const int64_t ab = (int64_t)a * (int64_t)b; /* |ab| <= 2^62: exact */
        int64_t n = ab + (ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30)));
        if (n < 0) {
            n += ((int64_t)1 << 31) - 1; /* turn the floor shift below into truncation */
        }
        /* arithmetic shift of a signed int64; the quotient fits int32 because |a*b| < 2^62 */
        return (int32_t)(n >> 31);
    }
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero.
 * 0 <= exponent <= 31. */
static inline int32_t fv_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
    const int32_t remainder = x & mask;                     /* low bits of the two's complement */
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0); /* ties go away from zero */
    return (x >> exponent) + (remainder > threshold ? 1 : 0); /* arithmetic shift */
}

/* gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent (1..31): x * 2^exponent,
 * saturated to [INT32_MIN, INT32_MAX]. Exact when it does not saturate, so "Rounding" is moot. */
static inline int32_t fv_sat_shl(int32_t x, int32_t exponent)
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* TFLite MultiplyByQuantizedMultiplier, double rounding: x * multiplier * 2^shift / 2^31.
 * multiplier is Q0.31 in [2^30, 2^31) (or 0); shift > 0 is a left shift, applied to x BEFORE
 * the high multiply, in int32 (TFLite wraps there too; the code generator keeps
 * |x| * 2^shift < 2^31 for real layers). -31 <= shift <= 31. */
static inline int32_t fv_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t x_shifted = (int32_t)((uint32_t)x << left); /* wraps modulo 2^32 */
    return fv_rdbpot(fv_srdhm(x_shifted, multiplier), right);
}

/* gemmlowp RoundingHalfSum for int32: (a + b) / 2 rounded half away from zero. The sum needs 33
 * bits; the division by 2 truncates toward zero, written as a shift on a non-negative value. */
static inline int32_t fv_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a + (int64_t)b;
    if (s >= 0) {
        return (int32_t)((s + 1) >> 1);
    }
    return (int32_t)(-((1 - s) >> 1));
}

/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl: exp(a) for a in [-1/4, 0),
 * Q0.31 in and out. Fourth-order Taylor series around -1/8:
 * exp(-1/8 + x) = exp(-1/8) * (1 + x + x^2/2 + x^3/6 + x^4/24), x = a + 1/8 in [-1/8, 1/8). */
static inline int32_t fv_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;   /* exp(-1/8) * 2^31 */
    const int32_t constant_1_over_3 = 715827883; /* 2^31 / 3 */
    const int32_t x = a + (1 << 28);             /* + 1/8 in Q0.31 */
    const int32_t x2 = fv_srdhm(x, x);
    const int32_t x3 = fv_srdhm(x2, x);
    const int32_t x4 = fv_srdhm(x2, x2);
    const int32_t x4_over_4 = fv_rdbpot(x4, 2);
    /* ((x^4/4 + x^3) / 3 + x^2) / 2 = x^4/24 + x^3/6 + x^2/2; |x| <= 1/8, so no term or sum
     * comes near the int32 range */
    const int32_t poly = fv_rdbpot(fv_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + fv_srdhm(constant_term, x + poly);
}

/* gemmlowp exp_on_negative_values for FixedPoint<int32_t, 5>: exp(a) for a <= 0 in Q5.26,
 * result in Q0.31. Split a = f - m with f in [-1/4, 0) and m >= 0 a multiple of 1/4:
 * exp(f) comes from the Taylor series, then a barrel shifter multiplies by exp(-2^E) for every
 * set bit of m (bits 24..30 of the raw value stand for 2^E, E = -2..4). The clamp to 0 below -32 that
 * gemmlowp adds for more than 5 integer bits is not compiled for Q5 (Q5 cannot go below -32). */
static inline int32_t fv_exp_on_negative_values_q5_26(int32_t a)
{
    const int32_t one_quarter = 1 << 24; /* 1/4 in Q5.26 */
    const int32_t a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
    /* Rescale Q5.26 -> Q0.31 is a multiply by 2^5; the value is in [-2^24, -1] so it cannot
     * saturate */
    int32_t result = fv_exp_on_interval_between_negative_one_quarter_and_0_excl(
        fv_sat_shl(a_mod_quarter_minus_one_quarter, 5));
    /* a_mod_quarter_minus_one_quarter - a >= 0 and <= INT32_MAX since a >= INT32_MIN and the
     * first term is <= -1 */
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;

    /* exp(-2^E) in Q0.31, rounded: 2^31 * exp(-1/4), exp(-1/2), exp(-1), exp(-2), exp(-4),
     * exp(-8), exp(-16). Bit 26 + E of the Q5.26 remainder stands for 2^E. */
    if (remainder & (1 << 24)) { result = fv_srdhm(result, 1672461947); }
    if (remainder & (1 << 25)) { result = fv_srdhm(result, 1302514674); }
    if (remainder & (1 << 26)) { result = fv_srdhm(result, 790015084); }
    if (remainder & (1 << 27)) { result = fv_srdhm(result, 290630308); }
    if (remainder & (1 << 28)) { result = fv_srdhm(result, 39332535); }
    if (remainder & (1 << 29)) { result = fv_srdhm(result, 720401); }
    if (remainder & (1 << 30)) { result = fv_srdhm(result, 242); }

    return a == 0 ? INT32_MAX : result; /* exp(0) = 1, whose nearest Q0.31 value is INT32_MAX */
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a) for a in [0, 1) in Q0.31, result in
 * Q0.31 (the exact value lies in (1/2, 1]). Newton-Raphson on the half denominator
 * d = (1 + a) / 2 in [1/2, 1), in Q2.29, from the classic initial guess 48/17 - 32/17 * d
 * (max relative error 1/17), 3 iterations: x <- x + x * (1 - d * x). */
static inline int32_t fv_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t half_denominator = fv_rounding_half_sum(a, INT32_MAX); /* Q0.31 */
    const int32_t constant_48_over_17 = 1515870810;   /* Q2.29 */
    const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
    int32_t x = constant_48_over_17 + fv_srdhm(half_denominator, constant_neg_32_over_17);
    int32_t i;
    for (i = 0; i < 3; i++) {
        /* Q0.31 * Q2.29 -> Q2.29 */
        const int32_t half_denominator_times_x = fv_srdhm(half_denominator, x);
        const int32_t one_minus_half_denominator_times_x = (1 << 29) - half_denominator_times_x;
        /* Q2.29 * Q2.29 -> Q4.27, rescaled to Q2.29 by a saturating multiply by 2^2 */
        x = x + fv_sat_shl(fv_srdhm(x, one_minus_half_denominator_times_x), 2);
    }
    /* x approximates 1/d = 2/(1+a) in Q2.29; read as Q1.30 it is 1/(1+a); Rescale to Q0.31 */
    return fv_sat_shl(x, 1);
}

static inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/*
 * Requantise an accumulator to an output byte: MBQM with the channel's multiplier and shift, plus
 * the output zero point, clamped to the fused activation range (act_min/act_max are already in
 * output bytes, inside [-128, 127]). Shared by the reference and the DSP kernels, so both round
 * the same way by construction.
 */
static inline int8_t requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                                int32_t act_min, int32_t act_max)
{
    const int32_t v = fv_mbqm(acc, multiplier, shift) + output_offset;
    return (int8_t)clamp_i32(v, act_min, act_max);
}

#endif /* FV_FIXEDPOINT_H */
