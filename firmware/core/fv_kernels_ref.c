/*
 * Reference int8 kernels: the arithmetic of TFLite Micro's reference kernels
 * (kernels/internal/reference/integer_ops/, reference/{pooling,softmax,pad}.h, micro/kernels/reduce)
 * written as plain loops over raw pointers. They are the oracle for faster variants and are
 * tested byte for byte against the numpy engine (firmware/tests/test_kernels.c).
 *
 * Pure integer C99: no floating point, no allocation, nothing from libc but memset/memcpy.
 * Every multiplier, shift, padding and range arrives precomputed in the params struct.
 *
 * Sign conventions (TFLite's): a real value is scale * (q - zero_point). The kernels receive
 * input_offset = -input_zero_point, so (q + input_offset) is the centred input, in [-255, 255]
 * for int8 q and zero points; output_offset = +output_zero_point is added after requantisation.
 * Weights are symmetric (zero point 0), in [-128, 127].
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fv_assert.h"
#include "fv_fixedpoint.h"
#include "fv_kernels.h"

/* Preconditions of the params structs, which come from the code generator, never from the wire.
 * Breaking one is an impossible internal state (habit 4), not bad input, so it is an assert
 * (fv_assert.h: the trap instruction on a board, a message and abort() on the host). The checks
 * are O(1) per call, or one compare per output where a division depends on them. Bounds that
 * would cost a pass over the weights (the accumulator bounds below) are not checked here: they
 * belong in the code generator, once per layer. */

/*
 * CONV_2D, TFLite ConvPerChannel. NHWC input [in_h][in_w][in_c], weights [out_c][k_h][k_w][in_c],
 * output [out_h][out_w][out_c].
 *
 * Accumulator range: each term is w * (x + input_offset) with |w| <= 128 and |x + input_offset| <= 255,
 * so |acc| <= K * 32640 + |bias| with K = k_h * k_w * in_c. int32 cannot overflow while
 * K * 32640 + max|bias| < 2^31, i.e. K <= 65,793 without bias. Real layers are far inside (a
 * 3x3x512 convolution has K = 4608: |acc| <= 150 M < 2^28); the bound is a property of the layer,
 * to be checked once when the params are generated.
 *
 * Padding: taps that fall outside the image are skipped. Skipping equals padding with the input
 * zero point, whose centred value is 0. pad_top/pad_left is the padding before the image; the
 * padding after it is implicit in out_h/out_w.
 */
void fv_conv2d_ref(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, oc, ky, kx, ic;

    FV_ASSERT(p->in_c > 0 && p->out_c > 0 && p->k_h > 0 && p->k_w > 0);
    for (oy = 0; oy < p->out_h; oy++) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (ox = 0; ox < p->out_w; ox++) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            for (oc = 0; oc < p->out_c; oc++) {
                const int8_t *w_oc = p->weights + (size_t)oc * (size_t)(p->k_h * p->k_w * p->in_c);
                int32_t acc = 0;
                for (ky = 0; ky < p->k_h; ky++) {
                    const int32_t y = y0 + p->dil_h * ky;
                    if (y < 0 || y >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; kx++) {
                        const int32_t x = x0 + p->dil_w * kx;
                        const int8_t *px;
                        const int8_t *pw;
                        if (x < 0 || x >= p->in_w) {
                            continue;
                        }
                        px = in + ((size_t)y * (size_t)p->in_w + (size_t)x) * (size_t)p->in_c;
                        pw = w_oc + ((size_t)ky * (size_t)p->k_w + (size_t)kx) * (size_t)p->in_c;
                        for (ic = 0; ic < p->in_c; ic++) {
                            acc += (int32_t)pw[ic] * ((int32_t)px[ic] + p->input_offset);
                        }
                    }
                }
                if (p->bias != NULL) {
                    acc += p->bias[oc];
                }
                out[((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)p->out_c + (size_t)oc] =
                    requantize(acc, p->multiplier[oc], p->shift[oc], p->output_offset, p->act_min, p->act_max);
            }
        }
    }
}

/*
 * DEPTHWISE_CONV_2D, TFLite DepthwiseConvPerChannel. Input channel ic feeds the output channels
 * oc = ic * depth_multiplier + m, m in [0, depth_multiplier). Weights [k_h][k_w][out_c].
 *
 * Accumulator range: k_h * k_w terms of at most 32640, so |acc| <= k_h * k_w * 32640 + |bias|;
 * a 3x3 kernel gives 293,760, and int32 holds any kernel up to 65,793 taps.
 */
void fv_depthwise_conv2d_ref(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, ic, m, ky, kx;

    FV_ASSERT(p->depth_multiplier > 0 && p->out_c == p->in_c * p->depth_multiplier);
    for (oy = 0; oy < p->out_h; oy++) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (ox = 0; ox < p->out_w; ox++) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            for (ic = 0; ic < p->in_c; ic++) {
                for (m = 0; m < p->depth_multiplier; m++) {
                    const int32_t oc = ic * p->depth_multiplier + m;
                    int32_t acc = 0;
                    for (ky = 0; ky < p->k_h; ky++) {
                        const int32_t y = y0 + p->dil_h * ky;
                        if (y < 0 || y >= p->in_h) {
                            continue;
                        }
                        for (kx = 0; kx < p->k_w; kx++) {
                            const int32_t x = x0 + p->dil_w * kx;
                            int32_t xv;
                            int32_t wv;
                            if (x < 0 || x >= p->in_w) {
                                continue;
                            }
                            xv = in[((size_t)y * (size_t)p->in_w + (size_t)x) * (size_t)p->in_c + (size_t)ic];
                            wv = p->weights[((size_t)ky * (size_t)p->k_w + (size_t)kx) * (size_t)p->out_c + (size_t)oc];
                            acc += wv * (xv + p->input_offset);
                        }
                    }
                    if (p->bias != NULL) {
                        acc += p->bias[oc];
                    }
                    out[((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)p->out_c + (size_t)oc] =
                        requantize(acc, p->multiplier[oc], p->shift[oc], p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

/*
 * FULLY_CONNECTED, TFLite FullyConnected(PerChannel), batch 1: out[oc] = sum_d w[oc][d] * (x[d] + input_offset).
 * Per-tensor layers repeat the same multiplier/shift in every channel; the arithmetic is the same.
 *
 * Accumulator range: |acc| <= depth * 32640 + |bias|, the same bound as conv: depth 2048 gives
 * 66,846,720 < 2^26, and int32 is safe up to depth 65,793.
 */
void fv_fully_connected_ref(const fv_fc_params *p, const int8_t *in, int8_t *out)
{
    int32_t oc, d;

    FV_ASSERT(p->depth > 0);
    for (oc = 0; oc < p->out_c; oc++) {
        const int8_t *w = p->weights + (size_t)oc * (size_t)p->depth;
        int32_t acc = 0;
        for (d = 0; d < p->depth; d++) {
            acc += (int32_t)w[d] * ((int32_t)in[d] + p->input_offset);
        }
        if (p->bias != NULL) {
            acc += p->bias[oc];
        }
        out[oc] = requantize(acc, p->multiplier[oc], p->shift[oc], p->output_offset, p->act_min, p->act_max);
    }
}

/*
 * Window of output (oy, ox) clipped to the image: [*y_begin, *y_end) x [*x_begin, *x_end) in input
 * coordinates. Cells of the window in the padding are skipped, not read as any value.
 */
static void pool_window(const fv_pool_params *p, int32_t oy, int32_t ox, int32_t *y_begin, int32_t *y_end,
                        int32_t *x_begin, int32_t *x_end)
{
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    *y_begin = y0 < 0 ? 0 : y0;
    *y_end = y0 + p->f_h < p->in_h ? y0 + p->f_h : p->in_h;
    *x_begin = x0 < 0 ? 0 : x0;
    *x_end = x0 + p->f_w < p->in_w ? x0 + p->f_w : p->in_w;
}

/* MAX_POOL_2D: the maximum of the in-bounds cells (starting from -128, the smallest int8),
 * clamped to the activation range. No requantisation: input and output share scale and zero point. */
void fv_max_pool_ref(const fv_pool_params *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, c, y, x, y_begin, y_end, x_begin, x_end;

    for (oy = 0; oy < p->out_h; oy++) {
        for (ox = 0; ox < p->out_w; ox++) {
            pool_window(p, oy, ox, &y_begin, &y_end, &x_begin, &x_end);
            for (c = 0; c < p->c; c++) {
                int32_t m = -128;
                for (y = y_begin; y < y_end; y++) {
                    for (x = x_begin; x < x_end; x++) {
                        const int32_t v = in[((size_t)y * (size_t)p->in_w + (size_t)x) * (size_t)p->c + (size_t)c];
                        m = v > m ? v : m;
                    }
                }
                out[((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)p->c + (size_t)c] =
                    (int8_t)clamp_i32(m, p->act_min, p->act_max);
            }
        }
    }
}

/*
 * AVERAGE_POOL_2D: the sum of the in-bounds cells divided by their count (not f_h * f_w: edge
 * windows under SAME padding see fewer cells), rounded half away from zero, clamped to the
 * activation range. Same scale and zero point in and out, so the raw bytes are averaged.
 * |sum| <= 128 * f_h * f_w. C99 '/' truncates toward zero; adding +-count/2 first makes it round.
 */
void fv_avg_pool_ref(const fv_pool_params *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, c, y, x, y_begin, y_end, x_begin, x_end;

    for (oy = 0; oy < p->out_h; oy++) {
        for (ox = 0; ox < p->out_w; ox++) {
            int32_t count;
            pool_window(p, oy, ox, &y_begin, &y_end, &x_begin, &x_end);
            count = (y_end - y_begin) * (x_end - x_begin);
            /* padding never exceeds the window (pad < filter), so every window sees a cell */
            FV_ASSERT(y_end > y_begin && x_end > x_begin);
            for (c = 0; c < p->c; c++) {
                int32_t acc = 0;
                int32_t avg;
                for (y = y_begin; y < y_end; y++) {
                    for (x = x_begin; x < x_end; x++) {
                        acc += in[((size_t)y * (size_t)p->in_w + (size_t)x) * (size_t)p->c + (size_t)c];
                    }
                }
                avg = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                out[((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)p->c + (size_t)c] =
                    (int8_t)clamp_i32(avg, p->act_min, p->act_max);
            }
        }
    }
}

/*
 * ADD, TFLite AddElementwise. Both centred inputs are scaled by 2^left_shift (2^20) to give the
 * rescaling headroom: |x + offset| <= 255, so |x * 2^20| < 2^28. Each is multiplied by
 * s_i / (2 * max(s1, s2)) <= 1/2, their sum stays below 2^28, and the output multiplier
 * 2 * max(s1, s2) / (2^20 * s_out) brings it to output units.
 * The three MBQMs are the general (double-rounding) form; the input shifts are <= 0 in every
 * prepared model, where it equals TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp.
 */
void fv_add_ref(const fv_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    int32_t i;

    /* |x + offset| <= 255 < 2^8, so the scaled input fits int32 for any left_shift <= 22 */
    FV_ASSERT(p->left_shift >= 0 && p->left_shift <= 22);
    for (i = 0; i < p->size; i++) {
        const int32_t a = ((int32_t)in1[i] + p->in1_offset) * ((int32_t)1 << p->left_shift);
        const int32_t b = ((int32_t)in2[i] + p->in2_offset) * ((int32_t)1 << p->left_shift);
        const int32_t sa = fv_mbqm(a, p->in1_multiplier, p->in1_shift);
        const int32_t sb = fv_mbqm(b, p->in2_multiplier, p->in2_shift);
        const int32_t raw = fv_mbqm(sa + sb, p->out_multiplier, p->out_shift) + p->output_offset;
        out[i] = (int8_t)clamp_i32(raw, p->act_min, p->act_max);
    }
}

/*
 * MEAN over H and W (Keras GlobalAveragePooling2D), TFLM's integer path. The division by
 * n = h * w is folded into the multiplier by the code generator: with (M, S) = QuantizeMultiplier(
 * s_in / s_out) and sh = min(floor(log2 n), 32, 31 + S), multiplier = (M << sh) / n and
 * shift = S - sh, so multiplier keeps ~31 significant bits and shift >= -31.
 * acc = sum(x) - zp_in * n = sum(x - zp_in), |acc| <= 255 * n: int32 holds n up to 8.4 million.
 * No activation: the result is only saturated to int8.
 */
void fv_mean_ref(const fv_mean_params *p, const int8_t *in, int8_t *out)
{
    const int32_t n = p->h * p->w;
    int32_t c, i;

    for (c = 0; c < p->c; c++) {
        int32_t sum = 0;
        int32_t acc;
        for (i = 0; i < n; i++) {
            sum += in[(size_t)i * (size_t)p->c + (size_t)c];
        }
        acc = sum - p->input_zero_point * n;
        out[c] = (int8_t)clamp_i32(fv_mbqm(acc, p->multiplier, p->shift) + p->output_offset, -128, 127);
    }
}

/*
 * PAD of H and W with the output zero point (PAD, not PADV2: the quantised 0.0). Output
 * [in_h + pad_top + pad_bottom][in_w + pad_left + pad_right][c]. Whole padded rows are one memset;
 * each image row is a left memset, a memcpy and a right memset.
 */
void fv_pad_ref(const fv_pad_params *p, const int8_t *in, int8_t *out)
{
    const size_t c = (size_t)p->c;
    const size_t out_w = (size_t)(p->in_w + p->pad_left + p->pad_right);
    const size_t out_row = out_w * c;
    const size_t in_row = (size_t)p->in_w * c;
    const int fill = (int)p->value; /* memset stores (unsigned char)fill: the same byte */
    int32_t y;

    FV_ASSERT(p->pad_top >= 0 && p->pad_bottom >= 0 && p->pad_left >= 0 && p->pad_right >= 0);
    memset(out, fill, (size_t)p->pad_top * out_row);
    out += (size_t)p->pad_top * out_row;
    for (y = 0; y < p->in_h; y++) {
        memset(out, fill, (size_t)p->pad_left * c);
        memcpy(out + (size_t)p->pad_left * c, in, in_row);
        memset(out + (size_t)p->pad_left * c + in_row, fill, (size_t)p->pad_right * c);
        out += out_row;
        in += in_row;
    }
    memset(out, fill, (size_t)p->pad_bottom * out_row);
}

/*
 * SOFTMAX int8 -> int8 (output scale 1/256, zero point -128), TFLite reference_ops::Softmax: the
 * gemmlowp fixed-point path (TFLM has no int8 lookup table).
 *
 * Per element, d = x - max(x) <= 0. Elements with d < diff_min contribute exp = 0 and output -128
 * (diff_min is minus the largest |d| whose rescaled value, d * input_multiplier * 2^input_left_shift
 * / 2^31 in Q5.26, fits above -32). The others are rescaled to Q5.26 with a left shift then a
 * high multiply (MultiplyByQuantizedMultiplierGreaterThanOne: no final rounding shift; no wrap,
 * as |d| * 2^input_left_shift <= 31 * 2^26 by the choice of diff_min) and exponentiated to Q0.31.
 *
 * The sum of exps is kept in Q12.19 (each term rounded from Q0.31 by 2^12): at most 2^19 per
 * element, so size <= 4095 keeps it in int32. Its reciprocal comes from one_over_one_plus_x on
 * the sum normalised to [1, 2): sum = 2^nbou * (1 + f), nbou = 12 - clz(sum), f in [0, 1).
 * Then out = exp * 1/(1+f) / 2^(nbou + 31 - 8) - 128, i.e. round(256 * exp / sum) - 128.
 *
 * The final exponent nbou + 23 exceeds 31 when sum >= 2^28 (512.0): only possible with 512 or
 * more classes and a flat row. TFLM aborts there (TFLITE_CHECK); this kernel, like the numpy
 * engine, returns the quotient 0 (exactly the rounded value, since 0 <= product < 2^31 <= 2^e / 2),
 * so the outputs are -128.
 */
void fv_softmax_ref(const fv_softmax_params *p, const int8_t *in, int8_t *out)
{
    int32_t i;
    int32_t max_in = -128;
    int32_t sum_of_exps = 0; /* Q12.19 */
    int32_t headroom_plus_one, num_bits_over_unit, shifted_scale, exponent;
    uint32_t shifted_sum;

    FV_ASSERT(p->size > 0 && p->size <= 4095);
    FV_ASSERT(p->input_left_shift >= 0 && p->input_left_shift <= 31);
    for (i = 0; i < p->size; i++) {
        max_in = in[i] > max_in ? in[i] : max_in;
    }
    for (i = 0; i < p->size; i++) {
        const int32_t d = (int32_t)in[i] - max_in;
        if (d >= p->diff_min) {
            const int32_t scaled = fv_srdhm((int32_t)((uint32_t)d << p->input_left_shift), p->input_multiplier);
            sum_of_exps += fv_rdbpot(fv_exp_on_negative_values_q5_26(scaled), 12);
        }
    }
    /* The max element contributes exp(0) = 2^19 in Q12.19, so sum_of_exps > 0 and clz <= 12. */
    headroom_plus_one = fv_clz32((uint32_t)sum_of_exps);
    num_bits_over_unit = 12 - headroom_plus_one;
    /* sum << clz has its top bit set: it is 2^31 * (1 + f); subtracting 2^31 leaves f in Q0.31 */
    shifted_sum = ((uint32_t)sum_of_exps << headroom_plus_one) - 0x80000000u;
    shifted_scale = fv_one_over_one_plus_x_for_x_in_0_1((int32_t)shifted_sum);
    exponent = num_bits_over_unit + 31 - 8;

    for (i = 0; i < p->size; i++) {
        const int32_t d = (int32_t)in[i] - max_in;
        int32_t v = -128;
        if (d >= p->diff_min) {
            const int32_t scaled = fv_srdhm((int32_t)((uint32_t)d << p->input_left_shift), p->input_multiplier);
            const int32_t prod = fv_srdhm(shifted_scale, fv_exp_on_negative_values_q5_26(scaled));
            const int32_t unsat = exponent <= 31 ? fv_rdbpot(prod, exponent) : 0;
            v = clamp_i32(unsat - 128, -128, 127);
        }
        out[i] = (int8_t)v;
    }
}
