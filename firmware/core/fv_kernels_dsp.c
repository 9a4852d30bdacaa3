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
#include "fv_kernels_dsp.h"

#if !defined(__ARM_FEATURE_DSP)
#error "fv_kernels_dsp.c needs the DSP extension (-mcpu=cortex-m4 or cortex-m7)"
#endif
/* The 2x2 inner loops' inline assembly holds 14 values in registers, every one the compiler can
 * give (lr included): at -O0, or with a frame pointer kept (-fno-omit-frame-pointer takes r7),
 * gcc cannot allocate them and stops with "impossible constraints". Say so plainly instead. */
#if !defined(__OPTIMIZE__)
#error "fv_kernels_dsp.c needs optimisation (-Og, -O1 or more; the release and test builds use -O2)"
#endif

/* The longest column (k_h * k_w * in_c of a convolution, depth of a fully connected layer) the
 * scratch holds, FV_DSP_MAX_K, and the scratch's RAM: fv_kernels_dsp.h. Longer layers run the
 * reference kernel. */

/* The widened columns of two output pixels, interleaved per group of 4 values: words
 * [a(0,2) a(1,3) b(0,2) b(1,3)], so the 2x2 loop reads each pixel's pair with one LDRD from one
 * pointer (the layout CMSIS-NN's im2col buffer gets from its two-column kernel, here packed
 * per group). A single column (the odd last pixel, a fully connected input) uses the a words. */
#define COL_STRIDE 4 /* words per group of 4 values */
static int32_t cols[FV_DSP_PAD_K] __attribute__((aligned(8)));
/* +4: a gathered row is copied a word at a time, up to 3 bytes past its end (the next row's
 * copy, or the zero-point fill of the tail, writes over them) */
static int8_t stage[FV_DSP_PAD_K + 4] __attribute__((aligned(4)));
/* the same words for the ADD's tables (fv_kernels_dsp_elementwise.c) */
int32_t *const fv_dsp_scratch = cols;
#define col_a (&cols[0])
#define col_b (&cols[2])

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

/* groups of 4 int8 from src (padded to a multiple of 4) -> int16 pairs in pair order, +offset,
 * one group every COL_STRIDE words */
static void widen(const int8_t *src, int32_t *dst, int32_t groups, int32_t off2)
{
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t v = ld_s8x4(src);
        dst[0] = __sxtab16(off2, v);
        dst[1] = sxtab16_ror8(off2, v);
        src += 4;
        dst += COL_STRIDE;
    }
}

/* ---- requantisation ---------------------------------------------------------------------------
 * fv_mbqm + zero point + clamp in 5 instructions and a clamp, exactly, when the layer allows it
 * (rq_fast_ok, checked once per call; every zoo layer does: shifts -12..-6, |bias| < 2^18):
 *  - the high multiply: srdhm(x, m) is trunc((x*m + nudge) / 2^31) with a sign-dependent nudge,
 *    which equals floor((x*m + 2^30) / 2^31) for either sign (for x*m < 0: trunc of a negative n
 *    is floor(n + 2^31 - 1), and (1 - 2^30) + (2^31 - 1) = 2^30). With |x| < 2^30, y = 2x does
 *    not wrap and SMMULR(y, m) = floor((2xm + 2^31) / 2^32) is that value; the saturating case
 *    (x = m = INT32_MIN) cannot occur with m >= 0.
 *  - the rounding shift by e >= 1: (t >> e) + ((t & mask) > mask/2 + (t < 0)) equals
 *    (t + 2^(e-1) - (t < 0)) >> e (write t = q 2^e + r: the added term carries into q exactly
 *    when r > 2^(e-1) - 1 + (t < 0)), and adding zp 2^e before the shift adds zp after it. So
 *    per channel one constant, (2 zp + 1) << (e - 1); |t| <= 2^30, 2^(e-1) <= 2^21 and
 *    |zp 2^e| <= 2^29 keep the sum inside int32.
 * |x| < 2^30 holds when |bias| + k * 32640 < 2^30 (each product is at most 128 * 255). */
typedef struct {
    int32_t m, round_zp, e;
} rq_chan;

static inline int32_t smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* zp21 = 2 * output zero point + 1 */
static inline rq_chan rq_of(const int32_t *multiplier, const int32_t *shift, int32_t oc, int32_t zp21)
{
    const int32_t e = -shift[oc];
    const rq_chan r = {multiplier[oc], (int32_t)((uint32_t)zp21 << (e - 1)), e};
    return r;
}

static inline int8_t rq_byte(int32_t acc, const rq_chan *r, int32_t act_min, int32_t act_max)
{
    const int32_t t = smmulr((int32_t)((uint32_t)acc << 1), r->m);
    const int32_t v = (t + r->round_zp - (int32_t)((uint32_t)t >> 31)) >> r->e; /* arithmetic shift */
    return (int8_t)clamp_i32(v, act_min, act_max);
}

/* The same with the whole int8 range as the activation range (every zoo layer: the ReLU's floor
 * is the output zero point -128): one SSAT instead of two compares and moves. */
static inline int8_t rq_byte_full(int32_t acc, const rq_chan *r)
{
    const int32_t t = smmulr((int32_t)((uint32_t)acc << 1), r->m);
    const int32_t v = (t + r->round_zp - (int32_t)((uint32_t)t >> 31)) >> r->e;
    int32_t sat;
    __asm__("ssat %0, #8, %1" : "=r"(sat) : "r"(v)); /* ACLE's __ssat trips -Wsign-conversion */
    return (int8_t)sat;
}

#define RQ_ACC_LIMIT (1 << 30)
#define RQ_MAX_TERMS 32768 /* k * 32640 < 2^30 */

/* 1 when every channel of a layer of `terms` products per output meets rq_byte's conditions:
 * shift in [-22, -1], multiplier >= 0, |bias| + terms * 32640 < 2^30, zero point in int8.
 * Otherwise the kernel runs the reference (no zoo layer does). */
static int rq_fast_ok(const int32_t *bias, const int32_t *multiplier, const int32_t *shift, int32_t n,
                      int32_t terms, int32_t zp)
{
    int32_t bound, i;
    if (terms <= 0 || terms >= RQ_MAX_TERMS || zp < -128 || zp > 127) {
        return 0;
    }
    bound = RQ_ACC_LIMIT - terms * 32640;
    for (i = 0; i < n; i++) {
        const int32_t b = bias != NULL ? bias[i] : 0;
        if (shift[i] > -1 || shift[i] < -22 || multiplier[i] < 0 || b >= bound || b <= -bound) {
            return 0;
        }
    }
    return 1;
}

/* ---- dot products of int8 weight rows with widened columns, over k = 4 * groups + tail ----
 * Rows w0 and w0 + k; column words at c[COL_STRIDE * g + 0..1] (and + 2..3 for the second
 * pixel). */

/* The 2x2 block's inner loop, in assembly because it needs 14 registers (4 accumulators, the
 * two rows' 4 widened weight pairs, a column pair from LDRD, the row pointer, the row length,
 * the column pointer and its end) and gcc 12 spills one: per group of 4 values, 2 weight loads,
 * 4 SXTB16, 2 LDRD, 8 SMLAD, compare and branch, 18 instructions for 16 MACs (1.125/MAC;
 * CMSIS-NN's C kernel takes 20-21). */
static inline void dot_2x2_groups(const int8_t *w0, int32_t k, const int32_t *c, int32_t groups, int32_t acc[4])
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    const int32_t *const end = c + COL_STRIDE * groups;
    int32_t wa, wb, wa02, wb02, x0, x1;
    __asm__ volatile(
        "1:\n\t"
        "ldr %[wb], [%[w0], %[k]]\n\t"
        "ldr %[wa], [%[w0]], #4\n\t"
        "ldrd %[x0], %[x1], [%[c]], #16\n\t"
        "sxtb16 %[wa02], %[wa]\n\t"
        "sxtb16 %[wb02], %[wb]\n\t"
        "sxtb16 %[wa], %[wa], ror #8\n\t"
        "sxtb16 %[wb], %[wb], ror #8\n\t"
        "smlad %[a00], %[wa02], %[x0], %[a00]\n\t"
        "smlad %[a10], %[wb02], %[x0], %[a10]\n\t"
        "smlad %[a00], %[wa], %[x1], %[a00]\n\t"
        "smlad %[a10], %[wb], %[x1], %[a10]\n\t"
        "ldrd %[x0], %[x1], [%[c], #-8]\n\t"
        "smlad %[a01], %[wa02], %[x0], %[a01]\n\t"
        "smlad %[a11], %[wb02], %[x0], %[a11]\n\t"
        "smlad %[a01], %[wa], %[x1], %[a01]\n\t"
        "smlad %[a11], %[wb], %[x1], %[a11]\n\t"
        "cmp %[c], %[end]\n\t"
        "bne 1b\n\t"
        : [a00] "+&r"(a00), [a01] "+&r"(a01), [a10] "+&r"(a10), [a11] "+&r"(a11), [w0] "+&r"(w0), [c] "+&r"(c),
          [wa] "=&r"(wa), [wb] "=&r"(wb), [wa02] "=&r"(wa02), [wb02] "=&r"(wb02), [x0] "=&r"(x0), [x1] "=&r"(x1)
        : [k] "r"(k), [end] "r"(end)
        : "cc", "memory");
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* Many channel pairs of one pixel pair in one assembly loop, so that nothing the C code keeps
 * in registers has to be saved and restored around every pair (gcc spilled and reloaded about
 * 70 instructions' worth per pair around dot_2x2_groups). The outer loop's own values live in 24
 * bytes of stack; per pair: both biases (LDRD), the inner loop, the 4 sums stored (2 STRD), 18
 * instructions besides the inner loop. */
typedef struct {
    const int8_t *w;      /* the first pair's first weight row */
    int32_t k;            /* row length in bytes: the second row of a pair is k further */
    const int32_t *cols;  /* the interleaved columns of the pixel pair */
    int32_t col_bytes;    /* 16 bytes per group */
    int32_t w_step;       /* 2k - 4 groups: from where a pair's loop ends to the next pair's rows */
    const int32_t *bias;  /* 2 per pair */
    int32_t *acc;         /* 4 per pair: channel 0 pixels 0 and 1, channel 1 pixels 0 and 1 */
    int32_t pairs;        /* >= 1 */
} pairs_job;

static void dot_2x2_pairs(const pairs_job *job)
{
    int32_t a00, a01, a10, a11, wb, wa02, wb02, x0, x1, end, k;
    const int8_t *w0;
    const int32_t *c;
    const pairs_job *ctx = job; /* once its fields are on the stack, the register is the first row's
                                 * weights (wa) */
    __asm__ volatile(
        "ldr %[k], [%[ctx], #4]\n\t"
        "ldr %[w0], [%[ctx], #0]\n\t"
        "ldr %[x0], [%[ctx], #8]\n\t"
        "ldr %[x1], [%[ctx], #12]\n\t"
        "ldr %[wb], [%[ctx], #16]\n\t"
        "ldr %[wa02], [%[ctx], #20]\n\t"
        "ldr %[wb02], [%[ctx], #24]\n\t"
        "ldr %[end], [%[ctx], #28]\n\t"
        "sub sp, sp, #24\n\t"
        "str %[x0], [sp, #0]\n\t"
        "str %[x1], [sp, #4]\n\t"
        "str %[wb], [sp, #8]\n\t"
        "str %[wa02], [sp, #12]\n\t"
        "str %[wb02], [sp, #16]\n\t"
        "str %[end], [sp, #20]\n\t"
        "2:\n\t"
        "ldr %[ctx], [sp, #12]\n\t"
        "ldrd %[a00], %[a10], [%[ctx]], #8\n\t"
        "str %[ctx], [sp, #12]\n\t"
        "mov %[a01], %[a00]\n\t"
        "mov %[a11], %[a10]\n\t"
        "ldr %[c], [sp, #0]\n\t"
        "ldr %[end], [sp, #4]\n\t"
        "add %[end], %[end], %[c]\n\t"
        "1:\n\t"
        "ldr %[wb], [%[w0], %[k]]\n\t"
        "ldr %[ctx], [%[w0]], #4\n\t"
        "ldrd %[x0], %[x1], [%[c]], #16\n\t"
        "sxtb16 %[wa02], %[ctx]\n\t"
        "sxtb16 %[wb02], %[wb]\n\t"
        "sxtb16 %[ctx], %[ctx], ror #8\n\t"
        "sxtb16 %[wb], %[wb], ror #8\n\t"
        "smlad %[a00], %[wa02], %[x0], %[a00]\n\t"
        "smlad %[a10], %[wb02], %[x0], %[a10]\n\t"
        "smlad %[a00], %[ctx], %[x1], %[a00]\n\t"
        "smlad %[a10], %[wb], %[x1], %[a10]\n\t"
        "ldrd %[x0], %[x1], [%[c], #-8]\n\t"
        "smlad %[a01], %[wa02], %[x0], %[a01]\n\t"
        "smlad %[a11], %[wb02], %[x0], %[a11]\n\t"
        "smlad %[a01], %[ctx], %[x1], %[a01]\n\t"
        "smlad %[a11], %[wb], %[x1], %[a11]\n\t"
        "cmp %[c], %[end]\n\t"
        "bne 1b\n\t"
        "ldr %[ctx], [sp, #8]\n\t"
        "add %[w0], %[w0], %[ctx]\n\t"
        "ldr %[ctx], [sp, #16]\n\t"
        "strd %[a00], %[a01], [%[ctx]], #8\n\t"
        "strd %[a10], %[a11], [%[ctx]], #8\n\t"
        "str %[ctx], [sp, #16]\n\t"
        "ldr %[ctx], [sp, #20]\n\t"
        "subs %[ctx], %[ctx], #1\n\t"
        "str %[ctx], [sp, #20]\n\t"
        "bne 2b\n\t"
        "add sp, sp, #24\n\t"
        : [a00] "=&r"(a00), [a01] "=&r"(a01), [a10] "=&r"(a10), [a11] "=&r"(a11), [w0] "=&r"(w0), [c] "=&r"(c),
          [wb] "=&r"(wb), [wa02] "=&r"(wa02), [wb02] "=&r"(wb02), [x0] "=&r"(x0), [x1] "=&r"(x1),
          [end] "=&r"(end), [ctx] "+&r"(ctx), [k] "=&r"(k)
        :
        : "cc", "memory");
}

/* groups full groups, then a tail of 1-3 values read byte by byte (tail 0: none). */
static inline void dot_2x2(const int8_t *w0, int32_t k, const int32_t *c, int32_t groups, int32_t tail,
                           int32_t acc[4])
{
    if (groups > 0) {
        dot_2x2_groups(w0, k, c, groups, acc);
    }
    if (tail != 0) {
        const int8_t *const t0 = w0 + 4 * groups;
        const int32_t *const ct = c + COL_STRIDE * groups;
        const int32_t wa = ld_s8_tail(t0, tail), wb = ld_s8_tail(t0 + k, tail);
        const int32_t wa02 = __sxtb16(wa), wa13 = sxtb16_ror8(wa);
        const int32_t wb02 = __sxtb16(wb), wb13 = sxtb16_ror8(wb);
        acc[0] = __smlad(wa13, ct[1], __smlad(wa02, ct[0], acc[0]));
        acc[2] = __smlad(wb13, ct[1], __smlad(wb02, ct[0], acc[2]));
        acc[1] = __smlad(wa13, ct[3], __smlad(wa02, ct[2], acc[1]));
        acc[3] = __smlad(wb13, ct[3], __smlad(wb02, ct[2], acc[3]));
    }
}

static inline void dot_2x1(const int8_t *w0, const int8_t *w1, const int32_t *c, int32_t groups, int32_t tail,
                           int32_t acc[2])
{
    int32_t a0 = acc[0], a1 = acc[1];
    const int32_t *end = c + COL_STRIDE * groups;
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
        c += COL_STRIDE;
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
    const int32_t *end = c + COL_STRIDE * groups;
    while (c < end) {
        const int32_t wa = ld_s8x4(w0);
        const int32_t w02 = __sxtb16(wa), w13 = sxtb16_ror8(wa);
        a0 = __smlad(w02, c[0], a0);
        a0 = __smlad(w13, c[1], a0);
        a1 = __smlad(w02, c[2], a1);
        a1 = __smlad(w13, c[3], a1);
        w0 += 4;
        c += COL_STRIDE;
    }
    if (tail != 0) {
        const int32_t wa = ld_s8_tail(w0, tail);
        const int32_t w02 = __sxtb16(wa), w13 = sxtb16_ror8(wa);
        a0 = __smlad(w13, c[1], __smlad(w02, c[0], a0));
        a1 = __smlad(w13, c[3], __smlad(w02, c[2], a1));
    }
    acc[0] = a0;
    acc[1] = a1;
}

static inline int32_t dot_1x1(const int8_t *w0, const int32_t *c, int32_t groups, int32_t tail, int32_t a0)
{
    const int32_t *end = c + COL_STRIDE * groups;
    while (c < end) {
        const int32_t wa = ld_s8x4(w0);
        a0 = __smlad(__sxtb16(wa), c[0], a0);
        a0 = __smlad(sxtb16_ror8(wa), c[1], a0);
        w0 += 4;
        c += COL_STRIDE;
    }
    if (tail != 0) {
        const int32_t wa = ld_s8_tail(w0, tail);
        a0 = __smlad(sxtb16_ror8(wa), c[1], __smlad(__sxtb16(wa), c[0], a0));
    }
    return a0;
}

/* ---- CONV_2D ------------------------------------------------------------------------------ */

/* The sums of a chunk of output channels for a pixel pair, before requantisation: 16 channels,
 * 128 bytes of RAM. */
#define OC_CHUNK 16
static int32_t accs[2 * OC_CHUNK] __attribute__((aligned(8)));
static const int32_t zero_bias[OC_CHUNK]; /* the biases of a layer without any */

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

/* The first layer's window, 3x3 over RGB, inside the image: three rows of 9 bytes, each copied
 * as 3 words (the 3 bytes past a row are overwritten by the next row, or by the zero point after
 * the last, so the caller checks that they are inside the input), then 7 groups widened; all
 * straight-line code. */
static inline void im2col_rgb3x3(const int8_t *src, size_t row_step, int32_t *col, int32_t off2, int8_t zp)
{
    int8_t *s = stage;
    for (int32_t ky = 0; ky < 3; ky++) {
        const int32_t v0 = ld_s8x4(src), v1 = ld_s8x4(src + 4), v2 = ld_s8x4(src + 8);
        __builtin_memcpy(s, &v0, 4);
        __builtin_memcpy(s + 4, &v1, 4);
        __builtin_memcpy(s + 8, &v2, 4);
        s += 9;
        src += row_step;
    }
    stage[27] = zp;
    for (int32_t g = 0; g < 7; g++) {
        const int32_t v = ld_s8x4(stage + 4 * g);
        col[COL_STRIDE * g] = __sxtab16(off2, v);
        col[COL_STRIDE * g + 1] = sxtab16_ror8(off2, v);
    }
}

/* The receptive field of output pixel px as a widened column (col_a or col_b): taps in the
 * padding get the centred value 0, the same as the reference skipping them. With in_c a
 * multiple of 4 every tap is whole groups, widened straight from the input (a 1x1 convolution:
 * one tap, no gather at all); otherwise the bytes are gathered first (the padding as the input
 * zero point, whose centred value is 0) and widened in one pass. */
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
                        d += COL_STRIDE;
                    }
                } else {
                    for (int32_t g = 0; g < tap_groups; g++) {
                        d[0] = 0;
                        d[1] = 0;
                        d += COL_STRIDE;
                    }
                }
            }
        }
        return;
    }
    {
        const int8_t zp = (int8_t)(-p->input_offset); /* input_offset is -zp, zp in [-128, 127] */
        const int32_t row_bytes = p->k_w * in_c;
        const int32_t row_words = (row_bytes + 3) >> 2;
        const int8_t *const in_end = in + (size_t)p->in_h * (size_t)p->in_w * (size_t)in_c;
        int8_t *s = stage;
        if (in_c == 3 && p->k_h == 3 && p->k_w == 3 && p->dil_h == 1 && p->dil_w == 1 && y0 >= 0 &&
            y0 + 3 <= p->in_h && x0 >= 0 && x0 + 3 <= p->in_w) {
            const size_t row_step = (size_t)p->in_w * 3u;
            const int8_t *src = in + ((size_t)y0 * (size_t)p->in_w + (size_t)x0) * 3u;
            if (src + 2 * row_step + 12 <= in_end) {
                im2col_rgb3x3(src, row_step, col, off2, zp);
                return;
            }
        }
        if (p->dil_w == 1 && y0 >= 0 && y0 + p->dil_h * (p->k_h - 1) < p->in_h && x0 >= 0 &&
            x0 + p->k_w <= p->in_w) {
            /* the whole window inside the image (all but the border pixels): k_h rows of
             * k_w * in_c contiguous bytes (9 for the first layer's 3x3 over RGB), copied a word
             * at a time while the last word's extra bytes are still inside the input */
            const size_t row_step = (size_t)p->dil_h * (size_t)p->in_w * (size_t)in_c;
            const int8_t *src = in + ((size_t)y0 * (size_t)p->in_w + (size_t)x0) * (size_t)in_c;
            if (src + (size_t)(p->k_h - 1) * row_step + 4 * (size_t)row_words <= in_end) {
                for (int32_t ky = 0; ky < p->k_h; ky++) {
                    for (int32_t i = 0; i < row_words; i++) {
                        const int32_t v = ld_s8x4(src + 4 * i);
                        __builtin_memcpy(s + 4 * i, &v, 4);
                    }
                    s += row_bytes;
                    src += row_step;
                }
                for (int32_t i = k; (i & 3) != 0; i++) {
                    stage[i] = zp;
                }
                widen(stage, col, (k + 3) >> 2, off2);
                return;
            }
        }
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            const int32_t y = y0 + p->dil_h * ky;
            const int row_ok = y >= 0 && y < p->in_h;
            if (row_ok && p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
                /* the whole kernel row inside the image: k_w * in_c contiguous input bytes (9 for
                 * the first layer's 3x3 over RGB), copied as whole words when the last word's
                 * extra bytes are still inside the input */
                const int8_t *src = in + ((size_t)y * (size_t)p->in_w + (size_t)x0) * (size_t)in_c;
                if (src + 4 * row_words <= in_end) {
                    for (int32_t i = 0; i < row_words; i++) {
                        const int32_t v = ld_s8x4(src + 4 * i);
                        __builtin_memcpy(s + 4 * i, &v, 4);
                    }
                } else {
                    copy_i8(s, src, row_bytes);
                }
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

/*
 * Output pixels in pairs (consecutive in row-major order, so a pair may span two rows), output
 * channels in pairs: the 2x2 block. Per channel pair the weights of both rows are read once for
 * two pixels, per pixel pair the columns once for all channels.
 *
 * A k that is not a multiple of 4 (the first layer's 27, a 1x1 over 18 or 26 channels) ends in
 * a partial group. Its column words are zero above k (widened from the input zero point), so
 * any weight bytes meet zeros there: every channel pair but the last reads the tail as a whole
 * group (the 1-3 bytes past a row are the next row's, inside the weights), the last reads it
 * byte by byte, never past the end of the weights.
 */
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
    const int32_t zp21 = 2 * p->output_offset + 1, act_min = p->act_min, act_max = p->act_max;
    /* the channel pairs that may read a partial last group whole: all but the last pair, whose
     * overread stays inside the following rows; with k < 4 it would run more than a row ahead,
     * past the last weight (k = 1: pair 0 of out_c = 4 reads weights[4]), so then no pair does */
    const int32_t whole_groups = tail != 0 ? groups + 1 : groups;
    const int32_t last_pair = (tail != 0 && k < 4) ? -2 : (out_c & ~1) - 2;
    const int full_range = act_min == -128 && act_max == 127;
    int32_t px;

    FV_ASSERT(p->in_c > 0 && p->out_c > 0 && p->k_h > 0 && p->k_w > 0);
    if (k > FV_DSP_MAX_K || !rq_fast_ok(bias, multiplier, shift, out_c, k, p->output_offset)) {
        fv_conv2d_ref(p, in, out);
        return;
    }
    for (px = 0; px + 1 < n_px; px += 2) {
        int8_t *o0 = out + (size_t)px * (size_t)out_c;
        int8_t *o1 = o0 + out_c;
        im2col(p, in, px, col_a, k, off2);
        im2col(p, in, px + 1, col_b, k, off2);
        /* Channels in chunks: first every sum of the chunk (accs: per channel, pixel 0 then
         * pixel 1, as dot_2x2 leaves them), then every output byte. Two short loops keep their
         * values in registers where one loop doing both spilled a dozen to the stack (about 110
         * instructions more per channel pair: a third of the first layer's time). */
        for (int32_t oc0 = 0; oc0 < out_c; oc0 += OC_CHUNK) {
            const int32_t n = out_c - oc0 < OC_CHUNK ? out_c - oc0 : OC_CHUNK;
            /* the pairs before the layer's last (which may read its tail byte by byte) */
            const int32_t before_last = (last_pair - oc0) / 2;
            const int32_t fast_pairs = before_last < 0 ? 0 : (before_last < n / 2 ? before_last : n / 2);
            int32_t j = 0;
            if (fast_pairs > 0) {
                const pairs_job job = {weights + (size_t)oc0 * (size_t)k, k, cols, 16 * whole_groups,
                                       2 * k - 4 * whole_groups, bias != NULL ? bias + oc0 : zero_bias, accs,
                                       fast_pairs};
                dot_2x2_pairs(&job);
                j = 2 * fast_pairs;
            }
            for (; j + 1 < n; j += 2) {
                const int32_t oc = oc0 + j;
                const int8_t *w0 = weights + (size_t)oc * (size_t)k;
                int32_t *const acc = &accs[2 * j];
                acc[0] = acc[1] = bias != NULL ? bias[oc] : 0;
                acc[2] = acc[3] = bias != NULL ? bias[oc + 1] : 0;
                if (oc < last_pair) {
                    dot_2x2_groups(w0, k, cols, whole_groups, acc);
                } else {
                    dot_2x2(w0, k, cols, groups, tail, acc);
                }
            }
            if (j < n) { /* an odd last channel */
                const int32_t oc = oc0 + j;
                accs[2 * j] = accs[2 * j + 1] = bias != NULL ? bias[oc] : 0;
                dot_1x2(weights + (size_t)oc * (size_t)k, cols, groups, tail, &accs[2 * j]);
            }
            if (full_range) {
                for (j = 0; j < n; j++) {
                    const int32_t oc = oc0 + j;
                    const rq_chan r = rq_of(multiplier, shift, oc, zp21);
                    o0[oc] = rq_byte_full(accs[2 * j], &r);
                    o1[oc] = rq_byte_full(accs[2 * j + 1], &r);
                }
            } else {
                for (j = 0; j < n; j++) {
                    const int32_t oc = oc0 + j;
                    const rq_chan r = rq_of(multiplier, shift, oc, zp21);
                    o0[oc] = rq_byte(accs[2 * j], &r, act_min, act_max);
                    o1[oc] = rq_byte(accs[2 * j + 1], &r, act_min, act_max);
                }
            }
        }
    }
    if (px < n_px) { /* an odd last pixel */
        int8_t *o0 = out + (size_t)px * (size_t)out_c;
        int32_t oc;
        im2col(p, in, px, col_a, k, off2);
        for (oc = 0; oc + 1 < out_c; oc += 2) {
            const int8_t *w0 = weights + (size_t)oc * (size_t)k;
            const rq_chan r0 = rq_of(multiplier, shift, oc, zp21);
            const rq_chan r1 = rq_of(multiplier, shift, oc + 1, zp21);
            int32_t acc[2] = {bias != NULL ? bias[oc] : 0, bias != NULL ? bias[oc + 1] : 0};
            dot_2x1(w0, w0 + k, col_a, groups, tail, acc);
            o0[oc] = rq_byte(acc[0], &r0, act_min, act_max);
            o0[oc + 1] = rq_byte(acc[1], &r1, act_min, act_max);
        }
        if (oc < out_c) {
            const rq_chan r0 = rq_of(multiplier, shift, oc, zp21);
            o0[oc] = rq_byte(dot_1x1(weights + (size_t)oc * (size_t)k, col_a, groups, tail,
                                     bias != NULL ? bias[oc] : 0), &r0, act_min, act_max);
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

/* One tap of four channels: the input word widened into (c0, c2) and (c1, c3) pairs, offset
 * included, against the tap's widened weights; SMLABB/SMLATT keep the four sums apart. */
static inline void dw_tap(const int8_t *s, const int32_t *w, int32_t off2, int32_t acc[4])
{
    const int32_t xv = ld_s8x4(s);
    const int32_t x02 = __sxtab16(off2, xv), x13 = sxtab16_ror8(off2, xv);
    acc[0] = __smlabb(w[0], x02, acc[0]);
    acc[2] = __smlatt(w[0], x02, acc[2]);
    acc[1] = __smlabb(w[1], x13, acc[1]);
    acc[3] = __smlatt(w[1], x13, acc[3]);
}

/*
 * Depth multiplier 1: four channels at a time. The weights are widened once per call into the
 * column scratch, per group of 4 channels and tap, as the two words (w0, w2) (w1, w3) (2 words
 * per tap and group: k_h * k_w * in_c / 2 words, which tools/dsp_limits.py sizes the scratch
 * for); then each tap is a load, two SXTAB16 of the input (offset included) and four
 * SMLABB/SMLATT into four separate accumulators (a depthwise sum never mixes channels), started
 * at the bias. The window is clipped to the image once per output pixel, so the tap loops have
 * no tests; a whole row of 3 taps (3x3 kernels) is unrolled. Other depth multipliers, layers
 * whose weights do not fit the scratch and layers rq_fast_ok refuses run the reference; the
 * last in_c % 4 channels take the reference's arithmetic with rq_byte.
 */
void fv_depthwise_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    const int32_t c = p->in_c;
    const int32_t c4 = c & ~3;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t off2 = pack_offset(p->input_offset);
    const int32_t in_off = p->input_offset;
    const size_t row = (size_t)p->in_w * (size_t)c;
    const int8_t *const weights = p->weights;
    const int32_t *const bias = p->bias;
    const int32_t *const multiplier = p->multiplier;
    const int32_t *const shift = p->shift;
    const int32_t zp21 = 2 * p->output_offset + 1, act_min = p->act_min, act_max = p->act_max;
    const int32_t k_w = p->k_w, dil_h = p->dil_h, dil_w = p->dil_w;
    const size_t src_step = (size_t)dil_w * (size_t)c;      /* the next tap along x */
    const size_t src_row_step = (size_t)dil_h * row;        /* the next tap along y */
    const size_t w_row = (size_t)k_w * (size_t)c;           /* the next kernel row, bytes */
    int32_t *const wq = cols;                               /* the widened weights */
    const int full_range = act_min == -128 && act_max == 127;
    int32_t oy, ox;

    FV_ASSERT(p->depth_multiplier > 0 && p->out_c == p->in_c * p->depth_multiplier);
    if (p->depth_multiplier != 1 || taps * (c4 / 2) > FV_DSP_PAD_K ||
        !rq_fast_ok(bias, multiplier, shift, c, taps, p->output_offset)) {
        fv_depthwise_conv2d_ref(p, in, out);
        return;
    }
    for (int32_t g = 0; g < c4; g += 4) {
        int32_t *d = wq + 2 * (g / 4) * taps;
        for (int32_t t = 0; t < taps; t++) {
            const int32_t wv = ld_s8x4(weights + (size_t)t * (size_t)c + (size_t)g);
            d[0] = __sxtb16(wv);
            d[1] = sxtb16_ror8(wv);
            d += 2;
        }
    }
    for (oy = 0; oy < p->out_h; oy++) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        int32_t ky_b, ky_e;
        tap_range(y0, dil_h, p->k_h, p->in_h, &ky_b, &ky_e);
        for (ox = 0; ox < p->out_w; ox++) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int8_t *o = out + ((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)c;
            int32_t kx_b, kx_e, ch;
            tap_range(x0, dil_w, k_w, p->in_w, &kx_b, &kx_e);
            {
                const int32_t n_ky = ky_e - ky_b, n_kx = kx_e - kx_b;
                /* the window's first in-image tap, its index, and its weights */
                const int8_t *const src0 =
                    in + (size_t)(y0 + dil_h * ky_b) * row + (size_t)(x0 + dil_w * kx_b) * (size_t)c;
                const int32_t t0 = ky_b * k_w + kx_b;
                const int8_t *const w00 = weights + (size_t)t0 * (size_t)c;
                for (ch = 0; ch < c4; ch += 4) {
                    int32_t acc[4] = {0, 0, 0, 0};
                    const int8_t *sr = src0 + ch;
                    const int32_t *wr = wq + 2 * ((ch / 4) * taps + t0);
                    if (bias != NULL) {
                        acc[0] = bias[ch];
                        acc[1] = bias[ch + 1];
                        acc[2] = bias[ch + 2];
                        acc[3] = bias[ch + 3];
                    }
                    if (n_kx == 3) {
                        for (int32_t ky = 0; ky < n_ky; ky++) {
                            dw_tap(sr, wr, off2, acc);
                            dw_tap(sr + src_step, wr + 2, off2, acc);
                            dw_tap(sr + 2 * src_step, wr + 4, off2, acc);
                            sr += src_row_step;
                            wr += 2 * k_w;
                        }
                    } else {
                        for (int32_t ky = 0; ky < n_ky; ky++) {
                            for (int32_t kx = 0; kx < n_kx; kx++) {
                                dw_tap(sr + (size_t)kx * src_step, wr + 2 * kx, off2, acc);
                            }
                            sr += src_row_step;
                            wr += 2 * k_w;
                        }
                    }
                    {
                        const rq_chan r0 = rq_of(multiplier, shift, ch, zp21);
                        const rq_chan r1 = rq_of(multiplier, shift, ch + 1, zp21);
                        const rq_chan r2 = rq_of(multiplier, shift, ch + 2, zp21);
                        const rq_chan r3 = rq_of(multiplier, shift, ch + 3, zp21);
                        if (full_range) {
                            o[ch] = rq_byte_full(acc[0], &r0);
                            o[ch + 1] = rq_byte_full(acc[1], &r1);
                            o[ch + 2] = rq_byte_full(acc[2], &r2);
                            o[ch + 3] = rq_byte_full(acc[3], &r3);
                        } else {
                            o[ch] = rq_byte(acc[0], &r0, act_min, act_max);
                            o[ch + 1] = rq_byte(acc[1], &r1, act_min, act_max);
                            o[ch + 2] = rq_byte(acc[2], &r2, act_min, act_max);
                            o[ch + 3] = rq_byte(acc[3], &r3, act_min, act_max);
                        }
                    }
                }
                for (; ch < c; ch++) {
                    int32_t acc = bias != NULL ? bias[ch] : 0;
                    const int8_t *sr = src0 + ch;
                    const int8_t *wr = w00 + ch;
                    for (int32_t ky = 0; ky < n_ky; ky++) {
                        for (int32_t kx = 0; kx < n_kx; kx++) {
                            acc += (int32_t)wr[(size_t)kx * (size_t)c] *
                                   ((int32_t)sr[(size_t)kx * src_step] + in_off);
                        }
                        sr += src_row_step;
                        wr += w_row;
                    }
                    {
                        const rq_chan r0 = rq_of(multiplier, shift, ch, zp21);
                        o[ch] = rq_byte(acc, &r0, act_min, act_max);
                    }
                }
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
    const int8_t *const weights = p->weights;
    const int32_t *const bias = p->bias;
    const int32_t *const multiplier = p->multiplier;
    const int32_t *const shift = p->shift;
    const int32_t zp21 = 2 * p->output_offset + 1, act_min = p->act_min, act_max = p->act_max;
    const int32_t out_c = p->out_c;
    int32_t oc, i;

    FV_ASSERT(p->depth > 0);
    if (k > FV_DSP_MAX_K || !rq_fast_ok(bias, multiplier, shift, out_c, k, p->output_offset)) {
        fv_fully_connected_ref(p, in, out);
        return;
    }
    memcpy(stage, in, (size_t)k);
    for (i = k; (i & 3) != 0; i++) {
        stage[i] = zp;
    }
    widen(stage, col_a, (k + 3) >> 2, pack_offset(p->input_offset));
    for (oc = 0; oc + 1 < out_c; oc += 2) {
        const int8_t *w0 = weights + (size_t)oc * (size_t)k;
        const rq_chan r0 = rq_of(multiplier, shift, oc, zp21);
        const rq_chan r1 = rq_of(multiplier, shift, oc + 1, zp21);
        int32_t acc[2] = {bias != NULL ? bias[oc] : 0, bias != NULL ? bias[oc + 1] : 0};
        dot_2x1(w0, w0 + k, col_a, groups, tail, acc);
        out[oc] = rq_byte(acc[0], &r0, act_min, act_max);
        out[oc + 1] = rq_byte(acc[1], &r1, act_min, act_max);
    }
    if (oc < out_c) {
        const rq_chan r0 = rq_of(multiplier, shift, oc, zp21);
        const int32_t a = dot_1x1(weights + (size_t)oc * (size_t)k, col_a, groups, tail, bias != NULL ? bias[oc] : 0);
        out[oc] = rq_byte(a, &r0, act_min, act_max);
    }
}
