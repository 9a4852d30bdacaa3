/*
 * Optimised int8 kernels for the Cortex-M4 DSP extension (ACLE intrinsics from gcc's
 * arm_acle.h: __sxtb16, __sxtab16, __smlad, __smlabb, __smlatt). Strong definitions of the
 * fv_*_opt functions declared in fv_kernels.h (the runner's weak ones fall back to the
 * reference); compiled only for ARM. Byte for byte equal to fv_kernels_ref.c (the oracle, STYLE
 * habit 2), which firmware/tests checks under QEMU on the kernel vectors and on random shapes.
 *
 * Why equal: every output is the same int32 sum of products w * (x + input_offset) plus the
 * bias, only added in a different order, then requantised by the same fv_mbqm. SMLAD adds
 * modulo 2^32 as the reference's int32 additions do (and the layer bounds in fv_kernels_ref.c
 * keep either from wrapping); a padding tap contributes w * 0 here where the reference skips it.
 *
 * The trick (CMSIS-NN's, rewritten): SXTB16 turns 4 int8 weights (w0 w1 w2 w3) into two words of
 * int16 pairs, (w0, w2) and, after a rotate by 8, (w1, w3). The input is widened once per
 * output pixel into a column of int16 in the same pair order, input offset included (SXTAB16
 * adds it to both halves), so one SMLAD does two multiply-accumulates. The inner loop computes
 * 2 output channels x 2 output pixels: per 4 input values, 2 weight loads + 4 SXTB16, 4 column
 * loads, 8 SMLAD for 16 MACs, 21 instructions with the loop's add, compare and branch: 1.31 per
 * MAC. With the requantisation of each output and the building of the columns, the zoo's 3x3
 * layers take 1.4-2.0 instructions per MAC (make bench-firmware), the reference 5-9.
 *
 * Value ranges: x + input_offset is in [-255, 255] (int8 plus an offset in [-127, 128]), so
 * the widened halves never wrap; weights are in [-128, 127]; each SMLAD product is below 2^15.
 */
#include <arm_acle.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fv_assert.h"
#include "fv_fixedpoint.h"
#include "fv_kernels.h"

#if !defined(__ARM_FEATURE_DSP)
#error "fv_kernels_dsp.c needs the DSP extension (-mcpu=cortex-m4 or cortex-m7)"
#endif

/* The longest column (k_h * k_w * in_c of a convolution, depth of a fully connected layer) the
 * scratch holds; longer layers run the reference kernel. RAM: 2 columns of int16 and one of
 * int8, 3 bytes per element. A firmware build sizes it to its model (fv_dsp_limits.h, written by
 * firmware/tools/dsp_limits.py); elsewhere 1152 = 3 x 3 x 128, 3.4 KB, unless -D says otherwise. */
#if !defined(FV_DSP_MAX_K) && defined(__has_include)
#if __has_include("fv_dsp_limits.h")
#include "fv_dsp_limits.h"
#endif
#endif
#ifndef FV_DSP_MAX_K
#define FV_DSP_MAX_K 1152
#endif
#define FV_DSP_PAD_K ((FV_DSP_MAX_K + 3) & ~3)

/* Two widened columns, each a word per pair of int16 (2 words per group of 4 values); the
 * second at a constant distance from the first, so the inner loop addresses both with one
 * register (an immediate offset of 2 * FV_DSP_PAD_K bytes, within LDR's 4095 up to 2047). */
#define COL_WORDS (FV_DSP_PAD_K / 2)
static int32_t cols[2 * COL_WORDS] __attribute__((aligned(8)));
static int8_t stage[FV_DSP_PAD_K] __attribute__((aligned(4)));
#define col_a (&cols[0])
#define col_b (&cols[COL_WORDS])

static inline int32_t ld_s8x4(const int8_t *p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4); /* one LDR (unaligned is fine on the M4), even under -fno-builtin */
    return v;
}

/* SXTB16 / SXTAB16 of the word rotated right by 8 (bytes 1 and 3), one instruction: ACLE has
 * no form with the rotation and gcc 12 does not fuse a separate ROR into them (CMSIS-Core's
 * __SXTB16_RORn exists for the same reason). */
static inline int32_t sxtb16_ror8(int32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

static inline int32_t sxtab16_ror8(int32_t a, int32_t v)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
}

/* The last 1-3 weights of a row as a word, zero above: the column's tail group is widened from
 * bytes padded with the input zero point, i.e. centred zeros, so the tail takes one more group
 * step; the row is never read past its end. */
static inline int32_t ld_s8_tail(const int8_t *p, int32_t n)
{
    uint32_t v = (uint8_t)p[0];
    if (n > 1) {
        v |= (uint32_t)(uint8_t)p[1] << 8;
    }
    if (n > 2) {
        v |= (uint32_t)(uint8_t)p[2] << 16;
    }
    return (int32_t)v;
}

/* The input offset in both halfwords, for SXTAB16. */
static inline int32_t pack_offset(int32_t offset)
{
    return (int32_t)(((uint32_t)offset & 0xFFFFu) * 0x10001u);
}


/* groups of 4 int8 from src (padded to a multiple of 4) -> int16 pairs in pair order, +offset */
static void widen(const int8_t *src, int32_t *dst, int32_t groups, int32_t off2)
{
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t v = ld_s8x4(src);
        dst[0] = __sxtab16(off2, v);
        dst[1] = sxtab16_ror8(off2, v);
        src += 4;
        dst += 2;
    }
}

/* A compiler barrier between the column loads of the 2x2 loop: without it gcc 12 hoists all
 * four loads to the top, needs 14 registers and spills one (22 instructions a group instead of
 * 21). Nothing is written in the loop, so it orders nothing else. */
#define FV_LOAD_ORDER() __asm__ volatile("" ::: "memory")

/* ---- dot products of int8 weight rows with widened columns, over k = 4 * groups + tail ----
 * A column c is 2 * groups words (+ the widened tail group); the second column of the 2-wide
 * kernels is c + COL_WORDS. Loops run a pointer to an end: the 2x2 kernel's 4 accumulators,
 * 4 weight pairs, one column word and 4 pointers (2 rows, the column, its end) take 13 of the
 * 14 registers gcc may use. */

static inline void dot_2x2(const int8_t *w0, const int8_t *w1, const int32_t *c, int32_t groups, int32_t tail,
                           int32_t acc[4])
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    const int32_t *end = c + 2 * groups;
    while (c < end) {
        const int32_t wa = ld_s8x4(w0);
        const int32_t wb = ld_s8x4(w1);
        const int32_t wa02 = __sxtb16(wa), wa13 = sxtb16_ror8(wa);
        const int32_t wb02 = __sxtb16(wb), wb13 = sxtb16_ror8(wb);
        int32_t x = c[0];
        a00 = __smlad(wa02, x, a00);
        a10 = __smlad(wb02, x, a10);
        FV_LOAD_ORDER();
        x = c[1];
        a00 = __smlad(wa13, x, a00);
        a10 = __smlad(wb13, x, a10);
        FV_LOAD_ORDER();
        x = c[COL_WORDS];
        a01 = __smlad(wa02, x, a01);
        a11 = __smlad(wb02, x, a11);
        FV_LOAD_ORDER();
        x = c[COL_WORDS + 1];
        a01 = __smlad(wa13, x, a01);
        a11 = __smlad(wb13, x, a11);
        w0 += 4;
        w1 += 4;
        c += 2;
    }
    if (tail != 0) {
        const int32_t wa = ld_s8_tail(w0, tail), wb = ld_s8_tail(w1, tail);
        const int32_t wa02 = __sxtb16(wa), wa13 = sxtb16_ror8(wa);
        const int32_t wb02 = __sxtb16(wb), wb13 = sxtb16_ror8(wb);
        a00 = __smlad(wa13, c[1], __smlad(wa02, c[0], a00));
        a10 = __smlad(wb13, c[1], __smlad(wb02, c[0], a10));
        a01 = __smlad(wa13, c[COL_WORDS + 1], __smlad(wa02, c[COL_WORDS], a01));
        a11 = __smlad(wb13, c[COL_WORDS + 1], __smlad(wb02, c[COL_WORDS], a11));
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

static inline void dot_2x1(const int8_t *w0, const int8_t *w1, const int32_t *c, int32_t groups, int32_t tail,
                           int32_t acc[2])
{
    int32_t a0 = acc[0], a1 = acc[1];
    const int32_t *end = c + 2 * groups;
    while (c < end) {
        const int32_t wa = ld_s8x4(w0);
        const int32_t wb = ld_s8x4(w1);
        const int32_t xa = c[0], xb = c[1];
        a0 = __smlad(__sxtb16(wa), xa, a0);
        a0 = __smlad(sxtb16_ror8(wa), xb, a0);
        a1 = __smlad(__sxtb16(wb), xa, a1);
        a1 = __smlad(sxtb16_ror8(wb), xb, a1);
        w0 += 4;
        w1 += 4;
        c += 2;
    }
    if (tail != 0) {
        const int32_t wa = ld_s8_tail(w0, tail), wb = ld_s8_tail(w1, tail);
        a0 = __smlad(sxtb16_ror8(wa), c[1], __smlad(__sxtb16(wa), c[0], a0));
        a1 = __smlad(sxtb16_ror8(wb), c[1], __smlad(__sxtb16(wb), c[0], a1));
    }
    acc[0] = a0;
    acc[1] = a1;
}

static inline void dot_1x2(const int8_t *w0, const int32_t *c, int32_t groups, int32_t tail, int32_t acc[2])
{
    int32_t a0 = acc[0], a1 = acc[1];
    const int32_t *end = c + 2 * groups;
    while (c < end) {
        const int32_t wa = ld_s8x4(w0);
        const int32_t w02 = __sxtb16(wa), w13 = sxtb16_ror8(wa);
        a0 = __smlad(w02, c[0], a0);
        a0 = __smlad(w13, c[1], a0);
        a1 = __smlad(w02, c[COL_WORDS], a1);
        a1 = __smlad(w13, c[COL_WORDS + 1], a1);
        w0 += 4;
        c += 2;
    }
    if (tail != 0) {
        const int32_t wa = ld_s8_tail(w0, tail);
        const int32_t w02 = __sxtb16(wa), w13 = sxtb16_ror8(wa);
        a0 = __smlad(w13, c[1], __smlad(w02, c[0], a0));
        a1 = __smlad(w13, c[COL_WORDS + 1], __smlad(w02, c[COL_WORDS], a1));
    }
    acc[0] = a0;
    acc[1] = a1;
}

static inline int32_t dot_1x1(const int8_t *w0, const int32_t *c, int32_t groups, int32_t tail, int32_t a0)
{
    const int32_t *end = c + 2 * groups;
    while (c < end) {
        const int32_t wa = ld_s8x4(w0);
        a0 = __smlad(__sxtb16(wa), c[0], a0);
        a0 = __smlad(sxtb16_ror8(wa), c[1], a0);
        w0 += 4;
        c += 2;
    }
    if (tail != 0) {
        const int32_t wa = ld_s8_tail(w0, tail);
        a0 = __smlad(sxtb16_ror8(wa), c[1], __smlad(__sxtb16(wa), c[0], a0));
    }
    return a0;
}

/* ---- CONV_2D ------------------------------------------------------------------------------ */

/* Small copies and fills of the gather stage, a word at a time: the library's memcpy and memset
 * cost a call and a dispatch each, more than the few bytes of a tap (3 for an RGB input). */
static inline void copy_i8(int8_t *d, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4) {
        const int32_t v = ld_s8x4(src);
        __builtin_memcpy(d, &v, 4);
        d += 4;
        src += 4;
    }
    for (; n > 0; --n) {
        *d++ = *src++;
    }
}

static inline void fill_i8(int8_t *d, int8_t value, int32_t n)
{
    const uint32_t v = (uint32_t)(uint8_t)value * 0x01010101u;
    for (; n >= 4; n -= 4) {
        __builtin_memcpy(d, &v, 4);
        d += 4;
    }
    for (; n > 0; --n) {
        *d++ = value;
    }
}

/* The receptive field of output pixel px as a widened column: taps in the padding get the
 * centred value 0, the same as the reference skipping them. With in_c a multiple of 4 every tap
 * is whole groups, widened straight from the input; otherwise the bytes are gathered first (the
 * padding as the input zero point, whose centred value is 0) and widened in one pass. */
static void im2col(const fv_conv_params *p, const int8_t *in, int32_t px, int32_t *col, int32_t k, int32_t off2)
{
    const int32_t oy = px / p->out_w;
    const int32_t ox = px - oy * p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    const int32_t in_c = p->in_c;
    if ((in_c & 3) == 0) {
        const int32_t tap_groups = in_c >> 2;
        int32_t *d = col;
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            const int32_t y = y0 + p->dil_h * ky;
            const int row_ok = y >= 0 && y < p->in_h;
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                const int32_t x = x0 + p->dil_w * kx;
                if (row_ok && x >= 0 && x < p->in_w) {
                    const int8_t *src = in + ((size_t)y * (size_t)p->in_w + (size_t)x) * (size_t)in_c;
                    for (int32_t g = 0; g < tap_groups; g++) {
                        const int32_t v = ld_s8x4(src);
                        d[0] = __sxtab16(off2, v);
                        d[1] = sxtab16_ror8(off2, v);
                        src += 4;
                        d += 2;
                    }
                } else {
                    for (int32_t g = 0; g < tap_groups; g++) {
                        d[0] = 0;
                        d[1] = 0;
                        d += 2;
                    }
                }
            }
        }
        return;
    }
    {
        const int8_t zp = (int8_t)(-p->input_offset); /* input_offset is -zp, zp in [-128, 127] */
        const int32_t row_bytes = p->k_w * in_c;
        int8_t *s = stage;
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            const int32_t y = y0 + p->dil_h * ky;
            const int row_ok = y >= 0 && y < p->in_h;
            if (row_ok && p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
                /* the whole kernel row inside the image: k_w * in_c contiguous input bytes */
                copy_i8(s, in + ((size_t)y * (size_t)p->in_w + (size_t)x0) * (size_t)in_c, row_bytes);
                s += row_bytes;
                continue;
            }
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                const int32_t x = x0 + p->dil_w * kx;
                if (row_ok && x >= 0 && x < p->in_w) {
                    copy_i8(s, in + ((size_t)y * (size_t)p->in_w + (size_t)x) * (size_t)in_c, in_c);
                } else {
                    fill_i8(s, zp, in_c);
                }
                s += in_c;
            }
        }
        fill_i8(stage + k, zp, ((k + 3) & ~3) - k);
        widen(stage, col, (k + 3) >> 2, off2);
    }
}

/* The output stage of one channel, prepared once per channel and used for each pixel. */
typedef struct {
    int32_t multiplier, left, right; /* fv_mbqm's shift split as it splits it */
    int32_t output_offset, act_min, act_max;
} out_stage;

static inline out_stage stage_of(const int32_t *multiplier, const int32_t *shift, int32_t oc, int32_t output_offset,
                                 int32_t act_min, int32_t act_max)
{
    const out_stage o = {multiplier[oc], shift[oc] > 0 ? shift[oc] : 0, shift[oc] > 0 ? 0 : -shift[oc],
                         output_offset, act_min, act_max};
    return o;
}

/* fv_mbqm's body with the split shift, then the zero point and the clamp: requantize(). */
static inline int8_t out_byte(int32_t acc, const out_stage *o)
{
    const int32_t x = (int32_t)((uint32_t)acc << o->left); /* wraps modulo 2^32, as fv_mbqm */
    const int32_t v = fv_rdbpot(fv_srdhm(x, o->multiplier), o->right) + o->output_offset;
    return (int8_t)clamp_i32(v, o->act_min, o->act_max);
}

void fv_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t groups = k >> 2;
    const int32_t tail = k & 3;
    const int32_t n_px = p->out_h * p->out_w;
    const int32_t out_c = p->out_c;
    const int32_t off2 = pack_offset(p->input_offset);
    /* everything the loops read from *p, in locals: the output stores (int8, which may alias
     * anything) would otherwise make the compiler reload them after each byte */
    const int8_t *const weights = p->weights;
    const int32_t *const bias = p->bias;
    const int32_t *const multiplier = p->multiplier;
    const int32_t *const shift = p->shift;
    const int32_t output_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    int32_t px;

    FV_ASSERT(p->in_c > 0 && p->out_c > 0 && p->k_h > 0 && p->k_w > 0);
    if (k > FV_DSP_MAX_K) {
        fv_conv2d_ref(p, in, out);
        return;
    }
    /* pairs of output pixels (consecutive in row-major order, so a pair may span two rows) */
    for (px = 0; px + 1 < n_px; px += 2) {
        int8_t *o0 = out + (size_t)px * (size_t)out_c;
        int8_t *o1 = o0 + out_c;
        int32_t oc;
        im2col(p, in, px, col_a, k, off2);
        im2col(p, in, px + 1, col_b, k, off2);
        for (oc = 0; oc + 1 < out_c; oc += 2) {
            const int8_t *w0 = weights + (size_t)oc * (size_t)k;
            const out_stage s0 = stage_of(multiplier, shift, oc, output_offset, act_min, act_max);
            const out_stage s1 = stage_of(multiplier, shift, oc + 1, output_offset, act_min, act_max);
            const int32_t b0 = bias != NULL ? bias[oc] : 0;
            const int32_t b1 = bias != NULL ? bias[oc + 1] : 0;
            int32_t acc[4] = {b0, b0, b1, b1};
            dot_2x2(w0, w0 + k, col_a, groups, tail, acc);
            o0[oc] = out_byte(acc[0], &s0);
            o1[oc] = out_byte(acc[1], &s0);
            o0[oc + 1] = out_byte(acc[2], &s1);
            o1[oc + 1] = out_byte(acc[3], &s1);
        }
        if (oc < out_c) { /* an odd last channel */
            const out_stage s0 = stage_of(multiplier, shift, oc, output_offset, act_min, act_max);
            const int32_t b0 = bias != NULL ? bias[oc] : 0;
            int32_t acc[2] = {b0, b0};
            dot_1x2(weights + (size_t)oc * (size_t)k, col_a, groups, tail, acc);
            o0[oc] = out_byte(acc[0], &s0);
            o1[oc] = out_byte(acc[1], &s0);
        }
    }
    if (px < n_px) { /* an odd last pixel */
        int8_t *o0 = out + (size_t)px * (size_t)out_c;
        int32_t oc;
        im2col(p, in, px, col_a, k, off2);
        for (oc = 0; oc + 1 < out_c; oc += 2) {
            const int8_t *w0 = weights + (size_t)oc * (size_t)k;
            const out_stage s0 = stage_of(multiplier, shift, oc, output_offset, act_min, act_max);
            const out_stage s1 = stage_of(multiplier, shift, oc + 1, output_offset, act_min, act_max);
            int32_t acc[2] = {bias != NULL ? bias[oc] : 0, bias != NULL ? bias[oc + 1] : 0};
            dot_2x1(w0, w0 + k, col_a, groups, tail, acc);
            o0[oc] = out_byte(acc[0], &s0);
            o0[oc + 1] = out_byte(acc[1], &s1);
        }
        if (oc < out_c) {
            const out_stage s0 = stage_of(multiplier, shift, oc, output_offset, act_min, act_max);
            o0[oc] = out_byte(dot_1x1(weights + (size_t)oc * (size_t)k, col_a, groups, tail,
                                      bias != NULL ? bias[oc] : 0), &s0);
        }
    }
}

/* ---- DEPTHWISE_CONV_2D ---------------------------------------------------------------------- */

/* [*begin, *end): the taps k in [0, taps) with 0 <= origin + dil * k < size. */
static void tap_range(int32_t origin, int32_t dil, int32_t taps, int32_t size, int32_t *begin, int32_t *end)
{
    int32_t b = 0, e = taps;
    if (origin < 0) {
        b = (-origin + dil - 1) / dil; /* first k with origin + dil * k >= 0 */
    }
    if (origin + dil * (taps - 1) >= size) {
        /* last valid k is floor((size - 1 - origin) / dil); none when origin >= size */
        e = origin >= size ? 0 : (size - 1 - origin) / dil + 1;
    }
    *begin = b;
    *end = e > b ? e : b;
}

/*
 * Depth multiplier 1: four channels at a time. SXTAB16/SXTB16 split 4 inputs and 4 weights into
 * (c0, c2) and (c1, c3) pairs; SMLABB/SMLATT multiply the matching halves into four separate
 * accumulators (one per channel: a depthwise sum never mixes channels). The window is clipped
 * to the image once per output pixel, so the tap loops have no tests. Other multipliers and the
 * last in_c % 4 channels take the reference's arithmetic.
 */
void fv_depthwise_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    const int32_t c = p->in_c;
    const int32_t c4 = c & ~3;
    const int32_t off2 = pack_offset(p->input_offset);
    const size_t row = (size_t)p->in_w * (size_t)c;
    int32_t oy, ox;

    FV_ASSERT(p->depth_multiplier > 0 && p->out_c == p->in_c * p->depth_multiplier);
    if (p->depth_multiplier != 1) {
        fv_depthwise_conv2d_ref(p, in, out);
        return;
    }
    for (oy = 0; oy < p->out_h; oy++) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        int32_t ky_b, ky_e;
        tap_range(y0, p->dil_h, p->k_h, p->in_h, &ky_b, &ky_e);
        for (ox = 0; ox < p->out_w; ox++) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int8_t *o = out + ((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)c;
            int32_t kx_b, kx_e, ch;
            tap_range(x0, p->dil_w, p->k_w, p->in_w, &kx_b, &kx_e);
            for (ch = 0; ch < c4; ch += 4) {
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                for (int32_t ky = ky_b; ky < ky_e; ky++) {
                    const int32_t y = y0 + p->dil_h * ky;
                    const int8_t *src = in + (size_t)y * row + (size_t)(x0 + p->dil_w * kx_b) * (size_t)c + (size_t)ch;
                    const int8_t *w = p->weights + ((size_t)ky * (size_t)p->k_w + (size_t)kx_b) * (size_t)c + (size_t)ch;
                    const size_t src_step = (size_t)p->dil_w * (size_t)c;
                    for (int32_t kx = kx_b; kx < kx_e; kx++) {
                        const int32_t xv = ld_s8x4(src);
                        const int32_t wv = ld_s8x4(w);
                        const int32_t x02 = __sxtab16(off2, xv), x13 = sxtab16_ror8(off2, xv);
                        const int32_t w02 = __sxtb16(wv), w13 = sxtb16_ror8(wv);
                        a0 = __smlabb(w02, x02, a0);
                        a2 = __smlatt(w02, x02, a2);
                        a1 = __smlabb(w13, x13, a1);
                        a3 = __smlatt(w13, x13, a3);
                        src += src_step;
                        w += c;
                    }
                }
                if (p->bias != NULL) {
                    a0 += p->bias[ch];
                    a1 += p->bias[ch + 1];
                    a2 += p->bias[ch + 2];
                    a3 += p->bias[ch + 3];
                }
                o[ch] = requantize(a0, p->multiplier[ch], p->shift[ch], p->output_offset, p->act_min, p->act_max);
                o[ch + 1] = requantize(a1, p->multiplier[ch + 1], p->shift[ch + 1], p->output_offset, p->act_min,
                                       p->act_max);
                o[ch + 2] = requantize(a2, p->multiplier[ch + 2], p->shift[ch + 2], p->output_offset, p->act_min,
                                       p->act_max);
                o[ch + 3] = requantize(a3, p->multiplier[ch + 3], p->shift[ch + 3], p->output_offset, p->act_min,
                                       p->act_max);
            }
            for (; ch < c; ch++) {
                int32_t acc = 0;
                for (int32_t ky = ky_b; ky < ky_e; ky++) {
                    const int32_t y = y0 + p->dil_h * ky;
                    for (int32_t kx = kx_b; kx < kx_e; kx++) {
                        const int32_t x = x0 + p->dil_w * kx;
                        const int32_t xv = in[(size_t)y * row + (size_t)x * (size_t)c + (size_t)ch];
                        const int32_t wv = p->weights[((size_t)ky * (size_t)p->k_w + (size_t)kx) * (size_t)c + (size_t)ch];
                        acc += wv * (xv + p->input_offset);
                    }
                }
                if (p->bias != NULL) {
                    acc += p->bias[ch];
                }
                o[ch] = requantize(acc, p->multiplier[ch], p->shift[ch], p->output_offset, p->act_min, p->act_max);
            }
        }
    }
}

/* ---- FULLY_CONNECTED ------------------------------------------------------------------------ */

/* The input widened once into a column, then two weight rows at a time. */
void fv_fully_connected_opt(const fv_fc_params *p, const int8_t *in, int8_t *out)
{
    const int32_t k = p->depth;
    const int32_t groups = k >> 2;
    const int32_t tail = k & 3;
    const int8_t zp = (int8_t)(-p->input_offset);
    int32_t oc, i;

    FV_ASSERT(p->depth > 0);
    if (k > FV_DSP_MAX_K) {
        fv_fully_connected_ref(p, in, out);
        return;
    }
    memcpy(stage, in, (size_t)k);
    for (i = k; (i & 3) != 0; i++) {
        stage[i] = zp;
    }
    widen(stage, col_a, (k + 3) >> 2, pack_offset(p->input_offset));
    for (oc = 0; oc + 1 < p->out_c; oc += 2) {
        const int8_t *w0 = p->weights + (size_t)oc * (size_t)k;
        int32_t acc[2] = {p->bias != NULL ? p->bias[oc] : 0, p->bias != NULL ? p->bias[oc + 1] : 0};
        dot_2x1(w0, w0 + k, col_a, groups, tail, acc);
        out[oc] = requantize(acc[0], p->multiplier[oc], p->shift[oc], p->output_offset, p->act_min, p->act_max);
        out[oc + 1] =
            requantize(acc[1], p->multiplier[oc + 1], p->shift[oc + 1], p->output_offset, p->act_min, p->act_max);
    }
    if (oc < p->out_c) {
        const int32_t a = dot_1x1(p->weights + (size_t)oc * (size_t)k, col_a, groups, tail,
                                  p->bias != NULL ? p->bias[oc] : 0);
        out[oc] = requantize(a, p->multiplier[oc], p->shift[oc], p->output_offset, p->act_min, p->act_max);
    }
}
