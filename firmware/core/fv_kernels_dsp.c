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

/* SMMLAR: the high word of a * b + (acc << 32), rounded. */
static inline int32_t smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* rq_byte of acc given 2 * acc (acc2), in 3 arithmetic instructions and a saturation: SMMLAR adds
 * round_zp to smmulr(acc2, m) for free, and the sign correction (t < 0) may be taken from acc2
 * instead: t < 0 implies acc2 < 0 (m >= 0), and when acc2 < 0 but t = 0 the shift gives zp either
 * way (round_zp - 1 and round_zp = zp 2^e + 2^(e-1) have the same quotient by 2^e for e >= 1). */
static inline int32_t rq2_raw(int32_t acc2, const rq_chan *r)
{
    const int32_t t = smmlar(acc2, r->m, r->round_zp);
    return (t - (int32_t)((uint32_t)acc2 >> 31)) >> r->e; /* arithmetic shift */
}

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
    if (p->k_h == 1 && p->k_w == 1 && y0 >= 0 && y0 < p->in_h && x0 >= 0 && x0 < p->in_w) {
        /* a 1x1 tap inside the image (every pixel of an unpadded 1x1 layer, strided or not):
         * one straight widening; a partial last group read byte by byte (never past the pixel)
         * with the input zero point above it, whose centred value is 0 */
        const int8_t *const src = in + ((size_t)y0 * (size_t)p->in_w + (size_t)x0) * (size_t)in_c;
        const int32_t groups = in_c >> 2, tail = in_c & 3;
        widen(src, col, groups, off2);
        if (tail != 0) {
            const uint32_t above = 0xFFFFFFFFu << (8 * tail);
            const uint32_t zp4 = (uint32_t)(uint8_t)(-p->input_offset) * 0x01010101u;
            const int32_t v = (int32_t)(((uint32_t)ld_s8_tail(src + 4 * groups, tail) & ~above) | (zp4 & above));
            col[COL_STRIDE * groups] = __sxtab16(off2, v);
            col[COL_STRIDE * groups + 1] = sxtab16_ror8(off2, v);
        }
        return;
    }
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
/* ---- convolutions with weights widened once per call -------------------------------------------
 * A layer whose weights fit FV_DSP_PW_WORDS words once widened (the first layer, 3x3 over RGB;
 * dsconv26's 1x1 over 26 and 52 channels; resnet's strided 1x1 projections; the small 3x3
 * layers), or a 1x1 layer in chunks of channel pairs (conv2d_prewidened), has them widened and
 * doubled (SADD16) once per call, per channel pair with its doubled biases and its rq_chan, into
 * one record the assembly walks with a single pointer:
 *     [2 b_a, 2 b_b] [per group of 4 values: wa(0,2) wa(1,3) wb(0,2) wb(1,3)] [m, round_zp, e]_a [..]_b
 * The inner loop then has no extends: per group 4 LDRD, 8 SMLAD, compare and branch, 14
 * instructions for 16 MACs (the 2x2 loop above takes 18), and the sums come out doubled, as the
 * SMMLAR requantisation (rq2_raw) wants: 4 instructions per output and its store. A partial last
 * group has zero weights above k, which meet the column's centred zeros. Per channel pair: 14
 * per group and 32 around them (the first layer's 7 groups: 130 instructions for 108 MACs).
 * Only for the whole int8 range as the activation range (the assembly saturates with SSAT #8);
 * an odd last channel and an odd last pixel take the C kernels with the layer's own weights. */
#ifndef FV_DSP_PW_WORDS
#define FV_DSP_PW_WORDS 2048 /* 8 KB, without a model's fv_dsp_limits.h (tools/dsp_limits.py) */
#endif
#define PW_REC_EXTRA 8 /* words per channel pair besides the weights: 2 biases, 2 rq_chan */
static int32_t pw[FV_DSP_PW_WORDS] __attribute__((aligned(8)));

typedef struct {
    int8_t *o0, *o1;          /* the pixel pair's outputs, channel 0 */
    const int32_t *cols;      /* the pair's interleaved columns */
    const int32_t *cols_end;  /* cols + 4 * groups */
    int32_t pairs;            /* channel pairs, >= 1 */
} pw_job;

/* SAT: SSAT (the int8 output byte) or USAT (that byte minus the zero point -128, the next
 * depthwise layer's input with its offset included: planes_job below) */
#define PW_RQ_SAT(A, B, SAT)                                                                         \
    "ldrd %[wa02], %[wa13], [%[wp]], #8\n\t"                                                         \
    "ldr %[wb02], [%[wp]], #4\n\t"                                                                   \
    "smmlar %[x0], %[" A "], %[wa02], %[wa13]\n\t"                                                   \
    "sub %[" A "], %[x0], %[" A "], lsr #31\n\t"                                                     \
    "asr %[" A "], %[" A "], %[wb02]\n\t"                                                            \
    SAT " %[" A "], #8, %[" A "]\n\t"                                                                \
    "smmlar %[x0], %[" B "], %[wa02], %[wa13]\n\t"                                                   \
    "sub %[" B "], %[x0], %[" B "], lsr #31\n\t"                                                     \
    "asr %[" B "], %[" B "], %[wb02]\n\t"                                                            \
    SAT " %[" B "], #8, %[" B "]\n\t"
#define PW_RQ(A, B) PW_RQ_SAT(A, B, "ssat")

/* The loop over the job's channel pairs, its requantisation and stores (STORE) in between. */
#define PW_PAIRS_ASM(STORE)                                                                          \
    "ldr %[x0], [%[ce], #0]\n\t"                                                                     \
    "ldr %[x1], [%[ce], #4]\n\t"                                                                     \
    "ldr %[wa02], [%[ce], #8]\n\t"                                                                   \
    "ldr %[wa13], [%[ce], #12]\n\t"                                                                  \
    "ldr %[n], [%[ce], #16]\n\t"                                                                     \
    "sub sp, sp, #16\n\t"                                                                            \
    "str %[x0], [sp, #0]\n\t"                                                                        \
    "str %[x1], [sp, #4]\n\t"                                                                        \
    "str %[wa02], [sp, #8]\n\t"                                                                      \
    "str %[wa13], [sp, #12]\n\t"                                                                     \
    "2:\n\t"                                                                                         \
    "ldrd %[a00], %[a10], [%[wp]], #8\n\t"                                                           \
    "mov %[a01], %[a00]\n\t"                                                                         \
    "mov %[a11], %[a10]\n\t"                                                                         \
    "ldrd %[cp], %[ce], [sp, #8]\n\t"                                                                \
    "1:\n\t"                                                                                         \
    "ldrd %[wa02], %[wa13], [%[wp]], #8\n\t"                                                         \
    "ldrd %[wb02], %[wb13], [%[wp]], #8\n\t"                                                         \
    "ldrd %[x0], %[x1], [%[cp]], #16\n\t"                                                            \
    "smlad %[a00], %[wa02], %[x0], %[a00]\n\t"                                                       \
    "smlad %[a00], %[wa13], %[x1], %[a00]\n\t"                                                       \
    "smlad %[a10], %[wb02], %[x0], %[a10]\n\t"                                                       \
    "smlad %[a10], %[wb13], %[x1], %[a10]\n\t"                                                       \
    "ldrd %[x0], %[x1], [%[cp], #-8]\n\t"                                                            \
    "smlad %[a01], %[wa02], %[x0], %[a01]\n\t"                                                       \
    "smlad %[a01], %[wa13], %[x1], %[a01]\n\t"                                                       \
    "smlad %[a11], %[wb02], %[x0], %[a11]\n\t"                                                       \
    "smlad %[a11], %[wb13], %[x1], %[a11]\n\t"                                                       \
    "cmp %[cp], %[ce]\n\t"                                                                           \
    "bne 1b\n\t"                                                                                     \
    STORE                                                                                            \
    "subs %[n], %[n], #1\n\t"                                                                        \
    "bne 2b\n\t"                                                                                     \
    "add sp, sp, #16\n\t"
#define PW_PAIRS_OPERANDS                                                                            \
    : [a00] "=&r"(a00), [a01] "=&r"(a01), [a10] "=&r"(a10), [a11] "=&r"(a11), [wa02] "=&r"(wa02),   \
      [wa13] "=&r"(wa13), [wb02] "=&r"(wb02), [wb13] "=&r"(wb13), [x0] "=&r"(x0), [x1] "=&r"(x1),   \
      [cp] "=&r"(cp), [ce] "+&r"(ce), [wp] "+&r"(wp), [n] "=&r"(n)                                   \
    :                                                                                                \
    : "cc", "memory"

static void pw_pairs(const pw_job *job)
{
    int32_t a00, a01, a10, a11, wa02, wa13, wb02, wb13, x0, x1, n;
    const int32_t *cp;
    const void *ce = job; /* the job's pointer, then the columns' end */
    const int32_t *wp = pw;
    __asm__ volatile(PW_PAIRS_ASM(PW_RQ("a00", "a01") PW_RQ("a10", "a11")
                                  "ldrd %[x0], %[x1], [sp, #0]\n\t"
                                  "strb %[a00], [%[x0]], #1\n\t"
                                  "strb %[a10], [%[x0]], #1\n\t"
                                  "strb %[a01], [%[x1]], #1\n\t"
                                  "strb %[a11], [%[x1]], #1\n\t"
                                  "strd %[x0], %[x1], [sp, #0]\n\t") PW_PAIRS_OPERANDS);
}

#if FV_DSP_FUSED_PAIRS > 0 /* the fused kernels (fv_kernels_dsp.h) */
/* The same pixel pair (x, x + 1 of one row, x even) written into the next depthwise layer's
 * channel planes (dwf_* below) instead of NHWC bytes: the records' requantisation without the
 * zero point (-128), so that USAT #8 leaves q + 128, the byte with the depthwise's input offset
 * (128) included, as int16; the pair's two values of a channel are one word of its plane row
 * (PKHBT), channel b's word cs bytes after channel a's. Per channel pair 8 instructions instead
 * of the 6 of the byte stores (a load of cs, one store less, two PKHBT). */
typedef struct {
    int16_t *o;               /* channel 2 p0's plane word of the pixel pair */
    int32_t cs;               /* bytes from one channel's plane to the next */
    const int32_t *cols;
    const int32_t *cols_end;
    int32_t pairs;
} planes_job;
_Static_assert(offsetof(planes_job, cs) == offsetof(pw_job, o1) &&
                   offsetof(planes_job, pairs) == offsetof(pw_job, pairs),
               "pw_pairs and pw_pairs_planes read their jobs at the same offsets");

/* The loop of both planes kernels: each channel pair's two pixels requantised by USAT, then
 * packed by PKHBT into one plane word per channel (a00: the pair's first channel, a10: its
 * second); x0 = the first channel's plane word (the job's o, kept at sp + 0), x1 = cs. STORE
 * writes the two words and puts the next channel pair's x0 back at sp + 0. */
#define PW_PLANES_ASM(STORE)                                                                         \
    PW_PAIRS_ASM(PW_RQ_SAT("a00", "a01", "usat") PW_RQ_SAT("a10", "a11", "usat")                     \
                 "ldrd %[x0], %[x1], [sp, #0]\n\t"                                                   \
                 "pkhbt %[a00], %[a00], %[a01], lsl #16\n\t"                                         \
                 "pkhbt %[a10], %[a10], %[a11], lsl #16\n\t"                                         \
                 STORE)

static void pw_pairs_planes(const planes_job *job)
{
    int32_t a00, a01, a10, a11, wa02, wa13, wb02, wb13, x0, x1, n;
    const int32_t *cp;
    const void *ce = job;
    const int32_t *wp = pw;
    __asm__ volatile(PW_PLANES_ASM("str %[a00], [%[x0]]\n\t"
                                   "str %[a10], [%[x0], %[x1]]\n\t"
                                   "add %[x0], %[x0], %[x1], lsl #1\n\t"
                                   "str %[x0], [sp, #0]\n\t") PW_PAIRS_OPERANDS);
}

/* The same for a row's first pixel pair (x = 0), which also writes the row's first word, the
 * left padding (0, 0), by STRD: the depthwise layer then zeroes only its padding rows
 * (dwf_pad). One instruction more per channel pair and row (c / 2 x in_h per producer, 2,500
 * over dsconv26's six), where zeroing the word on the depthwise side took 2.5 per channel and
 * row: its depthwise layers counted 15,300 instructions fewer. */
static void pw_pairs_planes_row(const planes_job *job)
{
    int32_t a00, a01, a10, a11, wa02, wa13, wb02, wb13, x0, x1, n;
    const int32_t *cp;
    const void *ce = job;
    const int32_t *wp = pw;
    __asm__ volatile(PW_PLANES_ASM("mov %[a01], #0\n\t"
                                   "strd %[a01], %[a00], [%[x0], #-4]\n\t"
                                   "add %[x0], %[x0], %[x1]\n\t"
                                   "strd %[a01], %[a10], [%[x0], #-4]\n\t"
                                   "add %[x0], %[x0], %[x1]\n\t"
                                   "str %[x0], [sp, #0]\n\t") PW_PAIRS_OPERANDS);
}

#endif /* FV_DSP_FUSED_PAIRS > 0 */

/* One weight row's group g (k values, row at w) as two doubled int16 pair words. */
static inline void pw_widen(const int8_t *w, int32_t k, int32_t g, int32_t *d)
{
    const int32_t n = k - 4 * g;
    const int32_t v = n >= 4 ? ld_s8x4(w + 4 * g) : ld_s8_tail(w + 4 * g, n);
    const int32_t v02 = __sxtb16(v), v13 = sxtb16_ror8(v);
    d[0] = __sadd16(v02, v02);
    d[1] = __sadd16(v13, v13);
}

/* A chunk of channel pairs [p0, p0 + np) as records in pw; zp21 = 2 * the zero point the
 * requantisation adds + 1 (pw_build: the layer's own). */
static void pw_build_zp(const fv_conv_params *p, int32_t k, int32_t p0, int32_t np, int32_t zp21)
{
    const int32_t groups = (k + 3) >> 2;
    const int32_t *const bias = p->bias;
    int32_t *d = pw;
    for (int32_t i = p0; i < p0 + np; i++) {
        const int32_t a = 2 * i, b = a + 1;
        const int8_t *const wa = p->weights + (size_t)a * (size_t)k;
        const int8_t *const wb = wa + k;
        const rq_chan ra = rq_of(p->multiplier, p->shift, a, zp21);
        const rq_chan rb = rq_of(p->multiplier, p->shift, b, zp21);
        d[0] = bias != NULL ? 2 * bias[a] : 0;
        d[1] = bias != NULL ? 2 * bias[b] : 0;
        d += 2;
        for (int32_t g = 0; g < groups; g++) {
            pw_widen(wa, k, g, d);
            pw_widen(wb, k, g, d + 2);
            d += 4;
        }
        d[0] = ra.m;
        d[1] = ra.round_zp;
        d[2] = ra.e;
        d[3] = rb.m;
        d[4] = rb.round_zp;
        d[5] = rb.e;
        d += 6;
    }
}

static void pw_build(const fv_conv_params *p, int32_t k, int32_t p0, int32_t np)
{
    pw_build_zp(p, k, p0, np, 2 * p->output_offset + 1);
}

/* The most channel pairs a chunk may hold and still repay the columns it widens again: a chunk
 * after the first rebuilds every pixel's column (1x1 only, where that is a straight widening of
 * k values, about 1.3 instructions per value per pixel pair, against 2 k MACs per channel pair). */
#define PW_MIN_CHUNK_PAIRS 12

#if FV_DSP_FUSED_PAIRS > 0 || FV_DSP_POOL_PAIRS > 0
/* 1 when conv2d_prewidened takes the layer (the same conditions as there) */
static int pw_fits(const fv_conv_params *p, int32_t k)
{
    const int32_t pairs = p->out_c >> 1;
    const int32_t cap = FV_DSP_PW_WORDS / (4 * ((k + 3) >> 2) + PW_REC_EXTRA); /* channel pairs per chunk */
    const int cheap_cols = p->k_h == 1 && p->k_w == 1 && (p->in_c & 3) == 0;
    return p->act_min == -128 && p->act_max == 127 && pairs > 0 && p->out_h * p->out_w >= 2 &&
           (pairs <= cap || (cheap_cols && cap >= PW_MIN_CHUNK_PAIRS));
}
#endif

#if FV_DSP_FUSED_PAIRS > 0

/* The layer with pre-widened weights written into the next depthwise layer's channel planes
 * (dwf_* below; pitch halfwords per plane row, cs per channel) instead of out: the same chunks
 * and pixel pairs as conv2d_prewidened, apart so that that function's loop keeps its registers.
 * The caller (fv_conv2d_to_planes_opt) has checked pw_fits, that out_c and out_w are even and
 * the zero point -128; the records' requantisation leaves the zero point out (USAT,
 * pw_pairs_planes). */
static __attribute__((noinline)) void conv2d_prewidened_planes(const fv_conv_params *p, const int8_t *in,
                                                               int32_t k, int32_t off2, int16_t *planes,
                                                               int32_t pitch, int32_t cs)
{
    const int32_t groups = (k + 3) >> 2;
    const int32_t pairs = p->out_c >> 1;
    const int32_t n_px = p->out_h * p->out_w;
    const int32_t cap = FV_DSP_PW_WORDS / (4 * groups + PW_REC_EXTRA); /* channel pairs per chunk */
    for (int32_t p0 = 0; p0 < pairs; p0 += cap) {
        const int32_t np = pairs - p0 < cap ? pairs - p0 : cap;
        pw_build_zp(p, k, p0, np, 1); /* without the zero point: the USAT */
        for (int32_t px = 0; px < n_px; px += 2) {
            const int32_t y = px / p->out_w, x = px - y * p->out_w;
            const planes_job job = {planes + (size_t)(2 * p0) * (size_t)cs + (size_t)((y + 1) * pitch + x + 2),
                                    2 * cs, cols, cols + COL_STRIDE * groups, np};
            im2col(p, in, px, col_a, k, off2);
            im2col(p, in, px + 1, col_b, k, off2);
            if (x == 0) {
                pw_pairs_planes_row(&job);
            } else {
                pw_pairs_planes(&job);
            }
        }
    }
}

#endif /* FV_DSP_FUSED_PAIRS > 0 */

/*
 * The layer with pre-widened weights; 0 (nothing written) when it does not qualify. Weights that
 * do not fit pw at once go in chunks of channel pairs, each chunk over every pixel pair, when
 * the columns are cheap to build again (a 1x1 convolution over whole groups) and a chunk holds
 * PW_MIN_CHUNK_PAIRS pairs or more: dsconv26's 1x1 layers over 104 and 208 channels.
 */
static int conv2d_prewidened(const fv_conv_params *p, const int8_t *in, int8_t *out, int32_t k, int32_t off2)
{
    const int32_t groups = (k + 3) >> 2;
    const int32_t out_c = p->out_c;
    const int32_t pairs = out_c >> 1;
    const int32_t rec = 4 * groups + PW_REC_EXTRA;
    const int32_t n_px = p->out_h * p->out_w;
    const int32_t zp21 = 2 * p->output_offset + 1;
    const int32_t *const bias = p->bias;
    const int32_t cap = FV_DSP_PW_WORDS / rec; /* channel pairs per chunk */
    const int cheap_cols = p->k_h == 1 && p->k_w == 1 && (p->in_c & 3) == 0;
    int32_t px;

    /* pw_fits, written out: the compiler then keeps this function's code as it was */
    if (p->act_min != -128 || p->act_max != 127 || pairs == 0 || n_px < 2 ||
        (pairs > cap && !(cheap_cols && cap >= PW_MIN_CHUNK_PAIRS))) {
        return 0;
    }
    for (int32_t p0 = 0; p0 < pairs; p0 += cap) {
        const int32_t np = pairs - p0 < cap ? pairs - p0 : cap;
        const int last = p0 + np == pairs;
        pw_build(p, k, p0, np);
        for (px = 0; px + 1 < n_px; px += 2) {
            int8_t *const o0 = out + (size_t)px * (size_t)out_c;
            const pw_job job = {o0 + 2 * p0, o0 + out_c + 2 * p0, cols, cols + COL_STRIDE * groups, np};
            im2col(p, in, px, col_a, k, off2);
            im2col(p, in, px + 1, col_b, k, off2);
            pw_pairs(&job);
            if (last && (out_c & 1)) { /* an odd last channel */
                const int32_t oc = out_c - 1;
                const rq_chan r = rq_of(p->multiplier, p->shift, oc, zp21);
                int32_t acc[2];
                acc[0] = acc[1] = bias != NULL ? bias[oc] : 0;
                dot_1x2(p->weights + (size_t)oc * (size_t)k, cols, k >> 2, k & 3, acc);
                o0[oc] = rq_byte_full(acc[0], &r);
                o0[out_c + oc] = rq_byte_full(acc[1], &r);
            }
        }
    }
    if (px < n_px) { /* an odd last pixel */
        int8_t *const o0 = out + (size_t)px * (size_t)out_c;
        im2col(p, in, px, col_a, k, off2);
        for (int32_t oc = 0; oc < out_c; oc++) {
            const rq_chan r = rq_of(p->multiplier, p->shift, oc, zp21);
            o0[oc] = rq_byte_full(dot_1x1(p->weights + (size_t)oc * (size_t)k, col_a, k >> 2, k & 3,
                                          bias != NULL ? bias[oc] : 0), &r);
        }
    }
    return 1;
}

/* Weights whose rows are not whole groups (k % 4 != 0: the first layer's 27, a 1x1 over 26
 * channels) or whose channel count is odd (the first layer's 11), copied once per call into rows
 * of whole groups, zero-padded, and an even number of rows (a zero row, zero bias, last): then
 * every channel pair takes the assembly loop with no tail, and the zeros meet the column's
 * centred zeros above k. 2 KB and 64 channels: every zoo layer that needs it (dsconv26's 1x1
 * over 26 channels, 52 x 28 bytes, is the largest); larger layers keep the tail code. */
#define WPAD_BYTES 2048
#define WPAD_OC 64
static int8_t wpad[WPAD_BYTES] __attribute__((aligned(4)));
static int32_t bpad[WPAD_OC];

/* The layer's weights into wpad as out_cp rows of kp bytes, zero-padded, its biases into bpad
 * (zero for the padding row). */
static inline void pad_weights(const fv_conv_params *p, int32_t k, int32_t kp, int32_t out_cp)
{
    for (int32_t oc = 0; oc < out_cp; oc++) {
        int8_t *const d = wpad + (size_t)oc * (size_t)kp;
        if (oc < p->out_c) {
            memcpy(d, p->weights + (size_t)oc * (size_t)k, (size_t)k);
            memset(d + k, 0, (size_t)(kp - k));
            bpad[oc] = p->bias != NULL ? p->bias[oc] : 0;
        } else {
            memset(d, 0, (size_t)kp);
            bpad[oc] = 0;
        }
    }
}

/* The sums of channels oc0 .. oc0 + n - 1 for the pixel pair in cols, biases included, into accs
 * (per channel pixel 0 then pixel 1, as dot_2x2 leaves them), with the layer's values as
 * fv_conv2d_opt derives them (kr, the row length; last_pair, the first pair that may not read its
 * last group whole): the channel chunk of fv_conv2d_opt and of the fused pool's conv2d_pool_blocks.
 * A macro, not a function: an always_inline function with these arguments changed both kernels'
 * register allocation and stack slots (the bench then counted 30 instructions fewer for
 * vgg11-s5-co and -r2 and the same for the other zoo models: ties broken otherwise, not a better
 * loop), as did the arguments in another order or in a struct, and one called with the chunk's
 * output step as a function pointer changed fv_conv2d_opt's more (GCC 12.2, -O2); expanded in
 * place, the object code is the one the kernels had before (arm-none-eabi-objdump -d, every zoo
 * model's bench build). Pass plain names: some are read more than once. Beside its arguments it
 * reads the file's cols and zero_bias and writes accs; its own names (before_last, fast_pairs, j,
 * job, oc, w0, acc) live in its block. #undef after its last use, in conv2d_pool_blocks. */
#define CONV_CHUNK_SUMS(weights, bias, kr, groups, tail, whole_groups, last_pair, oc0, n)                  \
    do {                                                                                                   \
        /* the pairs before the layer's last (which may read its tail byte by byte) */                     \
        const int32_t before_last = ((last_pair) - (oc0)) / 2;                                             \
        const int32_t fast_pairs =                                                                         \
            before_last < 0 ? 0 : (before_last < (n) / 2 ? before_last : (n) / 2);                         \
        int32_t j = 0;                                                                                     \
        if (fast_pairs > 0) {                                                                              \
            const pairs_job job = {(weights) + (size_t)(oc0) * (size_t)(kr), (kr), cols,                   \
                                   16 * (whole_groups), 2 * (kr) - 4 * (whole_groups),                     \
                                   (bias) != NULL ? (bias) + (oc0) : zero_bias, accs, fast_pairs};         \
            dot_2x2_pairs(&job);                                                                           \
            j = 2 * fast_pairs;                                                                            \
        }                                                                                                  \
        for (; j + 1 < (n); j += 2) {                                                                      \
            const int32_t oc = (oc0) + j;                                                                  \
            const int8_t *w0 = (weights) + (size_t)oc * (size_t)(kr);                                      \
            int32_t *const acc = &accs[2 * j];                                                             \
            acc[0] = acc[1] = (bias) != NULL ? (bias)[oc] : 0;                                             \
            acc[2] = acc[3] = (bias) != NULL ? (bias)[oc + 1] : 0;                                         \
            if (oc < (last_pair)) {                                                                        \
                dot_2x2_groups(w0, (kr), cols, (whole_groups), acc);                                       \
            } else {                                                                                       \
                dot_2x2(w0, (kr), cols, (groups), (tail), acc);                                            \
            }                                                                                              \
        }                                                                                                  \
        if (j < (n)) { /* an odd last channel */                                                           \
            const int32_t oc = (oc0) + j;                                                                  \
            accs[2 * j] = accs[2 * j + 1] = (bias) != NULL ? (bias)[oc] : 0;                               \
            dot_1x2((weights) + (size_t)oc * (size_t)(kr), cols, (groups), (tail), &accs[2 * j]);          \
        }                                                                                                  \
    } while (0)

void fv_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t n_px = p->out_h * p->out_w;
    const int32_t out_c = p->out_c;
    const int32_t off2 = pack_offset(p->input_offset);
    const int32_t kp = (k + 3) & ~3;            /* a padded row */
    const int32_t out_cp = (out_c + 1) & ~1;    /* padded rows */
    const int pad = ((k & 3) != 0 || (out_c & 1) != 0) && out_cp * kp <= WPAD_BYTES && out_cp <= WPAD_OC;
    /* the row length the loops step by: k, or kp when padded (then no partial group) */
    const int32_t kr = pad ? kp : k;
    const int32_t groups = kr >> 2;
    const int32_t tail = kr & 3;
    /* the channels computed: out_c, or out_cp when padded (the last one not stored) */
    const int32_t out_cc = pad ? out_cp : out_c;
    /* everything the loops read from *p, in locals: the output stores (int8, which may alias
     * anything) would otherwise make the compiler reload them after each byte */
    const int8_t *const weights = pad ? wpad : p->weights;
    const int32_t *const bias = pad ? bpad : p->bias;
    const int32_t *const multiplier = p->multiplier;
    const int32_t *const shift = p->shift;
    const int32_t zp21 = 2 * p->output_offset + 1, act_min = p->act_min, act_max = p->act_max;
    /* the channel pairs that may read a partial last group whole: all but the last pair, whose
     * overread stays inside the following rows; with k < 4 it would run more than a row ahead,
     * past the last weight (k = 1: pair 0 of out_c = 4 reads weights[4]), so then no pair does.
     * Without a partial group every pair takes the assembly loop. */
    const int32_t whole_groups = tail != 0 ? groups + 1 : groups;
    const int32_t last_pair = tail == 0 ? out_cc : (k < 4 ? -2 : (out_cc & ~1) - 2);
    const int full_range = act_min == -128 && act_max == 127;
    int32_t px;

    FV_ASSERT(p->in_c > 0 && p->out_c > 0 && p->k_h > 0 && p->k_w > 0);
    if (k > FV_DSP_MAX_K || !rq_fast_ok(p->bias, multiplier, shift, out_c, k, p->output_offset)) {
        fv_conv2d_ref(p, in, out);
        return;
    }
    if (conv2d_prewidened(p, in, out, k, off2)) {
        return;
    }
    if (pad) {
        pad_weights(p, k, kp, out_cp);
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
            const int32_t n = out_cc - oc0 < OC_CHUNK ? out_cc - oc0 : OC_CHUNK;
            const int32_t n_out = out_c - oc0 < OC_CHUNK ? out_c - oc0 : OC_CHUNK; /* stored */
            CONV_CHUNK_SUMS(weights, bias, kr, groups, tail, whole_groups, last_pair, oc0, n);
            if (full_range) {
                for (int32_t j = 0; j < n_out; j++) {
                    const int32_t oc = oc0 + j;
                    const rq_chan r = rq_of(multiplier, shift, oc, zp21);
                    o0[oc] = rq_byte_full(accs[2 * j], &r);
                    o1[oc] = rq_byte_full(accs[2 * j + 1], &r);
                }
            } else {
                for (int32_t j = 0; j < n_out; j++) {
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
            const int8_t *w0 = weights + (size_t)oc * (size_t)kr;
            const rq_chan r0 = rq_of(multiplier, shift, oc, zp21);
            const rq_chan r1 = rq_of(multiplier, shift, oc + 1, zp21);
            int32_t acc[2] = {bias != NULL ? bias[oc] : 0, bias != NULL ? bias[oc + 1] : 0};
            dot_2x1(w0, w0 + kr, col_a, groups, tail, acc);
            o0[oc] = rq_byte(acc[0], &r0, act_min, act_max);
            o0[oc + 1] = rq_byte(acc[1], &r1, act_min, act_max);
        }
        if (oc < out_c) {
            const rq_chan r0 = rq_of(multiplier, shift, oc, zp21);
            o0[oc] = rq_byte(dot_1x1(weights + (size_t)oc * (size_t)kr, col_a, groups, tail,
                                     bias != NULL ? bias[oc] : 0), &r0, act_min, act_max);
        }
    }
}

#if FV_DSP_POOL_PAIRS > 0 /* the fused kernels (fv_kernels_dsp.h) */
/* ---- CONV_2D fused with the MAX_POOL_2D after it ---------------------------------------------
 * The zoo's pools (the VGG members' three, the resnetw members' first layer's and the baseline's four)
 * take every 2x2 window, stride 2, no padding, of a 3x3 convolution's output, which nothing else
 * reads. Fused, the convolution computes the four sums of a window, keeps the largest and
 * requantises it once: it writes the pooled tensor and never its own output, and the pool layer
 * has nothing left to do (the runner, fv_runner.c).
 *
 * Why exact. The convolution's output byte is q(s) = clamp(zp + MBQM(s, m, shift)) of its sum
 * s = bias + sum w (x + offset); the pool's byte is the maximum of q(s_i) over the window, then
 * clamped to the pool's activation range, which fv_conv_pool_ok requires to contain the
 * convolution's (so that clamp changes nothing). q is monotone non-decreasing in s when the
 * multiplier m >= 0: SaturatingRoundingDoublingHighMul(s, m) is floor((s m + 2^30) / 2^31) for
 * either sign (the comment on rq_byte above), non-decreasing in s for m >= 0, and it saturates
 * only for s = m = INT32_MIN; RoundingDivideByPOT(t, e) is (t + 2^(e-1) - [t < 0]) >> e, and
 * t - [t < 0] and the floor shift are non-decreasing; adding zp and clamping are too. For any
 * non-decreasing q, max q(s_i) = q(max s_i). The bias is per channel, so a window's four sums of
 * one channel share it: the largest sum is the bias plus the largest dot product, and the max
 * may be taken on the sums with the bias in. The one condition is m >= 0 (a negative multiplier
 * would turn the order around; tflite's are in [2^30, 2^31)); rq_fast_ok checks it with the
 * rest of the fast requantisation's conditions, among them right shifts only (a left shift could
 * wrap s << shift in int32, which is not monotone), and fv_conv_pool_ok fuses no layer that
 * fails them. The forms used here, rq_byte, rq_byte_full and the records' SMMLAR (rq2_raw on the
 * doubled sum 2 s, itself monotone), equal MBQM on every sum the layer's bounds allow, and the
 * window's maximum is one of its sums, so each requantises it as the reference would.
 *
 * Order: per window its top pixel pair (row 2 qy, columns 2 qx and 2 qx + 1, the 2x2 block's
 * two horizontally adjacent pixels), then its bottom pair (row 2 qy + 1): the columns are built
 * as often as unfused, and pool_max holds the top pair's larger sum per channel (int32, one word
 * per output channel; FV_DSP_POOL_WORDS, from tools/dsp_limits.py) until the bottom pair's
 * requantisation. On the pre-widened path, per channel pair and window, the top pair's loop ends
 * in 2 maxima (CMP, IT, MOV) and a STRD (about 10 instructions), the bottom pair's in 4 maxima, 2
 * requantisations and 2 byte stores (about 28), where unfused the two pairs requantised and
 * stored 8 bytes (2 x 26) and the pool then took 2.0-4.4 instructions per byte it wrote.
 */
static int32_t pool_max[FV_DSP_POOL_WORDS] __attribute__((aligned(8)));

static inline int32_t max_i32(int32_t a, int32_t b)
{
    return a > b ? a : b;
}

/* A = max(A, B), signed */
#define PW_MAX(A, B) "cmp %[" A "], %[" B "]\n\tit lt\n\tmovlt %[" A "], %[" B "]\n\t"
/* the record's next channel (m, round_zp, e) applied to the one doubled sum A, then SSAT */
#define PW_RQ1(A)                                                                                    \
    "ldrd %[wa02], %[wa13], [%[wp]], #8\n\t"                                                         \
    "ldr %[wb02], [%[wp]], #4\n\t"                                                                   \
    "smmlar %[x0], %[" A "], %[wa02], %[wa13]\n\t"                                                   \
    "sub %[" A "], %[x0], %[" A "], lsr #31\n\t"                                                     \
    "asr %[" A "], %[" A "], %[wb02]\n\t"                                                            \
    "ssat %[" A "], #8, %[" A "]\n\t"

/* The pool kernels' job: pw_job's with the second output an int32 pool_max word instead of a
 * byte (PW_PAIRS_ASM reads the job by offset: the same offsets, checked below). */
typedef struct {
    int8_t *o;                /* the window's pooled byte, channel 2 p0 */
    int32_t *max;             /* pool_max + 2 p0: the top pair's larger sum per channel */
    const int32_t *cols;
    const int32_t *cols_end;
    int32_t pairs;
} pool_job;
_Static_assert(offsetof(pool_job, o) == offsetof(pw_job, o0) && offsetof(pool_job, max) == offsetof(pw_job, o1) &&
                   offsetof(pool_job, cols) == offsetof(pw_job, cols) &&
                   offsetof(pool_job, cols_end) == offsetof(pw_job, cols_end) &&
                   offsetof(pool_job, pairs) == offsetof(pw_job, pairs),
               "pw_pairs and the pool kernels read their jobs at the same offsets");

/* The top pixel pair of a window: per channel pair the larger of each channel's two (doubled)
 * sums into the job's max (2 words, STRD); the records' requantisation words skipped. */
static void pw_pairs_pool_top(const pool_job *job)
{
    int32_t a00, a01, a10, a11, wa02, wa13, wb02, wb13, x0, x1, n;
    const int32_t *cp;
    const void *ce = job;
    const int32_t *wp = pw;
    __asm__ volatile(PW_PAIRS_ASM(PW_MAX("a00", "a01") PW_MAX("a10", "a11")
                                  "ldr %[x1], [sp, #4]\n\t"
                                  "strd %[a00], %[a10], [%[x1]], #8\n\t"
                                  "str %[x1], [sp, #4]\n\t"
                                  "add %[wp], %[wp], #24\n\t") PW_PAIRS_OPERANDS);
}

/* The bottom pixel pair: the larger of each channel's two sums, the larger of that and the top
 * pair's (the job's max), requantised once, the pooled byte stored at the job's o. */
static void pw_pairs_pool_bottom(const pool_job *job)
{
    int32_t a00, a01, a10, a11, wa02, wa13, wb02, wb13, x0, x1, n;
    const int32_t *cp;
    const void *ce = job;
    const int32_t *wp = pw;
    __asm__ volatile(PW_PAIRS_ASM(PW_MAX("a00", "a01") PW_MAX("a10", "a11")
                                  "ldr %[x1], [sp, #4]\n\t"
                                  "ldrd %[a01], %[a11], [%[x1]], #8\n\t"
                                  "str %[x1], [sp, #4]\n\t"
                                  PW_MAX("a00", "a01") PW_MAX("a10", "a11")
                                  PW_RQ1("a00") PW_RQ1("a10")
                                  "ldr %[x0], [sp, #0]\n\t"
                                  "strb %[a00], [%[x0]], #1\n\t"
                                  "strb %[a10], [%[x0]], #1\n\t"
                                  "str %[x0], [sp, #0]\n\t") PW_PAIRS_OPERANDS);
}

/* The pre-widened path (conv2d_prewidened's chunks and records; the caller checked pw_fits):
 * windows in row-major order, each as its top then its bottom pixel pair. An odd last channel
 * (the first layer's 11) takes dot_1x2 with the layer's own weights, its sums not doubled (its
 * own pool_max word: the pairs' end at out_c - 1). */
static __attribute__((noinline)) void conv2d_prewidened_pool(const fv_conv_params *p, const int8_t *in,
                                                             int8_t *out, int32_t k, int32_t off2)
{
    const int32_t groups = (k + 3) >> 2;
    const int32_t out_c = p->out_c, out_w = p->out_w;
    const int32_t pairs = out_c >> 1;
    const int32_t cap = FV_DSP_PW_WORDS / (4 * groups + PW_REC_EXTRA); /* channel pairs per chunk */
    const int32_t q_h = p->out_h >> 1, q_w = out_w >> 1;
    const int32_t zp21 = 2 * p->output_offset + 1;
    for (int32_t p0 = 0; p0 < pairs; p0 += cap) {
        const int32_t np = pairs - p0 < cap ? pairs - p0 : cap;
        const int odd = p0 + np == pairs && (out_c & 1) != 0;
        pw_build(p, k, p0, np);
        for (int32_t qy = 0; qy < q_h; qy++) {
            for (int32_t qx = 0; qx < q_w; qx++) {
                int8_t *const o = out + ((size_t)qy * (size_t)q_w + (size_t)qx) * (size_t)out_c;
                const pool_job job = {o + 2 * p0, pool_max + 2 * p0, cols, cols + COL_STRIDE * groups, np};
                for (int32_t r = 0; r < 2; r++) {
                    const int32_t px = (2 * qy + r) * out_w + 2 * qx;
                    im2col(p, in, px, col_a, k, off2);
                    im2col(p, in, px + 1, col_b, k, off2);
                    if (r == 0) {
                        pw_pairs_pool_top(&job);
                    } else {
                        pw_pairs_pool_bottom(&job);
                    }
                    if (odd) {
                        const int32_t oc = out_c - 1;
                        int32_t acc[2], m;
                        acc[0] = acc[1] = p->bias != NULL ? p->bias[oc] : 0;
                        dot_1x2(p->weights + (size_t)oc * (size_t)k, cols, k >> 2, k & 3, acc);
                        m = max_i32(acc[0], acc[1]);
                        if (r == 0) {
                            pool_max[oc] = m;
                        } else {
                            const rq_chan rc = rq_of(p->multiplier, p->shift, oc, zp21);
                            o[oc] = rq_byte_full(max_i32(m, pool_max[oc]), &rc);
                        }
                    }
                }
            }
        }
    }
}

/* The other layers: fv_conv2d_opt's 2x2 blocks (dot_2x2_pairs, channel chunks of OC_CHUNK, the
 * padded weights), windows in row-major order, each as its top then its bottom pixel pair; the
 * top pair's larger sums go to pool_max, the bottom pair's, with those, are requantised. */
static __attribute__((noinline)) void conv2d_pool_blocks(const fv_conv_params *p, const int8_t *in, int8_t *out,
                                                         int32_t k, int32_t off2)
{
    const int32_t out_c = p->out_c, out_w = p->out_w;
    const int32_t kp = (k + 3) & ~3;
    const int32_t out_cp = (out_c + 1) & ~1;
    const int pad = ((k & 3) != 0 || (out_c & 1) != 0) && out_cp * kp <= WPAD_BYTES && out_cp <= WPAD_OC;
    const int32_t kr = pad ? kp : k;
    const int32_t groups = kr >> 2;
    const int32_t tail = kr & 3;
    const int32_t out_cc = pad ? out_cp : out_c;
    const int8_t *const weights = pad ? wpad : p->weights;
    const int32_t *const bias = pad ? bpad : p->bias;
    const int32_t *const multiplier = p->multiplier;
    const int32_t *const shift = p->shift;
    const int32_t zp21 = 2 * p->output_offset + 1, act_min = p->act_min, act_max = p->act_max;
    /* as in fv_conv2d_opt: the pairs that may read a partial last group whole */
    const int32_t whole_groups = tail != 0 ? groups + 1 : groups;
    const int32_t last_pair = tail == 0 ? out_cc : (k < 4 ? -2 : (out_cc & ~1) - 2);
    const int full_range = act_min == -128 && act_max == 127;
    const int32_t q_h = p->out_h >> 1, q_w = out_w >> 1;
    if (pad) {
        pad_weights(p, k, kp, out_cp);
    }
    for (int32_t qy = 0; qy < q_h; qy++) {
        for (int32_t qx = 0; qx < q_w; qx++) {
            int8_t *const o = out + ((size_t)qy * (size_t)q_w + (size_t)qx) * (size_t)out_c;
            for (int32_t r = 0; r < 2; r++) {
                const int32_t px = (2 * qy + r) * out_w + 2 * qx;
                im2col(p, in, px, col_a, k, off2);
                im2col(p, in, px + 1, col_b, k, off2);
                for (int32_t oc0 = 0; oc0 < out_c; oc0 += OC_CHUNK) {
                    const int32_t n = out_cc - oc0 < OC_CHUNK ? out_cc - oc0 : OC_CHUNK;
                    const int32_t n_out = out_c - oc0 < OC_CHUNK ? out_c - oc0 : OC_CHUNK;
                    CONV_CHUNK_SUMS(weights, bias, kr, groups, tail, whole_groups, last_pair, oc0, n);
                    if (r == 0) {
                        for (int32_t j = 0; j < n_out; j++) {
                            pool_max[oc0 + j] = max_i32(accs[2 * j], accs[2 * j + 1]);
                        }
                    } else if (full_range) {
                        for (int32_t j = 0; j < n_out; j++) {
                            const int32_t oc = oc0 + j;
                            const rq_chan rc = rq_of(multiplier, shift, oc, zp21);
                            const int32_t m = max_i32(max_i32(accs[2 * j], accs[2 * j + 1]), pool_max[oc]);
                            o[oc] = rq_byte_full(m, &rc);
                        }
                    } else {
                        for (int32_t j = 0; j < n_out; j++) {
                            const int32_t oc = oc0 + j;
                            const rq_chan rc = rq_of(multiplier, shift, oc, zp21);
                            const int32_t m = max_i32(max_i32(accs[2 * j], accs[2 * j + 1]), pool_max[oc]);
                            o[oc] = rq_byte(m, &rc, act_min, act_max);
                        }
                    }
                }
            }
        }
    }
}
#undef CONV_CHUNK_SUMS

int fv_conv_pool_ok(const fv_conv_params *conv, const fv_pool_params *pool)
{
    /* the column (k, in 64 bits: any int32 a model gives) within the scratch */
    if (conv->in_c <= 0 || conv->out_c <= 0 || conv->k_h <= 0 || conv->k_w <= 0 ||
        (int64_t)conv->k_h * conv->k_w * conv->in_c > FV_DSP_MAX_K) {
        return 0;
    }
    /* the pool the kernel does: 2x2 windows, stride 2, no padding, over the convolution's whole
     * output, of even height and width (the reference pool drops an odd last row or column;
     * those layers run unfused) */
    if (pool->f_h != 2 || pool->f_w != 2 || pool->stride_h != 2 || pool->stride_w != 2 || pool->pad_top != 0 ||
        pool->pad_left != 0 || pool->c != conv->out_c || pool->in_h != conv->out_h || pool->in_w != conv->out_w ||
        conv->out_h < 2 || conv->out_w < 2 || (conv->out_h & 1) != 0 || (conv->out_w & 1) != 0 ||
        pool->out_h != conv->out_h / 2 || pool->out_w != conv->out_w / 2) {
        return 0;
    }
    /* the pool's clamp a no-op on the convolution's bytes */
    if (pool->act_min > conv->act_min || pool->act_max < conv->act_max || conv->act_min > conv->act_max) {
        return 0;
    }
    /* the running maximum's words; the fast requantisation, whose multiplier >= 0 is the fusion's
     * condition (above) */
    return conv->out_c <= FV_DSP_POOL_WORDS &&
           rq_fast_ok(conv->bias, conv->multiplier, conv->shift, conv->out_c, conv->k_h * conv->k_w * conv->in_c,
                      conv->output_offset);
}

void fv_conv2d_pool_opt(const fv_conv_params *conv, const fv_pool_params *pool, const int8_t *in, int8_t *out)
{
    const int32_t k = conv->k_h * conv->k_w * conv->in_c;
    /* fv_conv_pool_ok held at prepare (its shape conditions again: cheap) */
    FV_ASSERT(pool->in_h == conv->out_h && pool->in_w == conv->out_w && pool->c == conv->out_c &&
              (conv->out_h & 1) == 0 && (conv->out_w & 1) == 0 && conv->out_c <= FV_DSP_POOL_WORDS &&
              k <= FV_DSP_MAX_K);
    if (pw_fits(conv, k)) {
        conv2d_prewidened_pool(conv, in, out, k, pack_offset(conv->input_offset));
    } else {
        conv2d_pool_blocks(conv, in, out, k, pack_offset(conv->input_offset));
    }
}
#endif /* FV_DSP_POOL_PAIRS > 0 */

/* ---- DEPTHWISE_CONV_2D ---------------------------------------------------------------------- */

/*
 * Depth multiplier 1, four channels at a time (the last c % 4 channels as a partial group whose
 * missing lanes have zero weights and are never stored). Per group of 4 channels:
 *
 *  - the input rows the output rows need are widened once into a plane (dw_plane), 2 words per
 *    pixel, (c0, c2) and (c1, c3) as int16 pairs with the input offset included (SXTAB16), and
 *    the padding around the image written as 0: the centred value of a padding tap, so that a tap
 *    outside the image adds w * 0 where the reference skips it. Every output pixel, border or
 *    not, then runs the same loop with no clipping; the plane has an extra column when out_w is
 *    odd, so pixels go in pairs (the extra pixel is computed and not stored).
 *  - the group's weights are widened into its record (dw_rec) with its biases and requantisation,
 *    doubled (SADD16; 2w fits int16): the sums come out as 2 * acc, the doubled input rq2 wants,
 *    at no cost.
 *  - two horizontally adjacent output pixels (stride 1 or 2) are one block: per tap one LDRD of
 *    the tap's weights, per pixel one LDRD of the plane and four SMLABB/SMLATT (a depthwise sum
 *    never mixes channels, so each product keeps its own accumulator): 11 instructions per 8
 *    MACs, the 3x3 kernel (every zoo depthwise layer) unrolled in assembly with immediate
 *    offsets, requantisation and stores included (165 instructions per block of 72 MACs), other
 *    shapes and activation ranges in C with the same arithmetic.
 *
 * The zoo's layers (3x3, stride 1 with a padding of 1, stride 2 with none before, the whole int8
 * range) take the channel-plane path below (dw_planar) instead; this one runs the other shapes,
 * activation ranges and phases, and layers too wide for that path's plane (it counted 3.2
 * instructions per MAC on dsconv26's layers: the blocks about 2.3, widening 0.1 at stride 1 and
 * 0.5-0.8 at stride 2, the per-group record and small images' borders the rest).
 *
 * CMSIS-NN's arm_depthwise_conv_s8_opt takes the same SMLABB/SMLATT route on an im2col copy of
 * each window (2 loads, 4 extends and 4 multiplies per tap and pixel); here the window is not
 * copied, the widening is shared by every window that reads a pixel (9 for a 3x3 stride 1 layer,
 * about 2 at stride 2) and the weights by the two pixels of a block.
 *
 * RAM: the plane holds at least the rows of one output row (k_h rows of (2 * ceil(out_w / 2) - 1)
 * * stride + k_w pixels, 8 bytes each); FV_DSP_DW_WORDS (fv_dsp_limits.h, from
 * tools/dsp_limits.py: the model's largest whole plane, 8.7 KB for dsconv26) sizes it, and output
 * rows go in bands of as many as fit. Layers whose plane does not fit, kernels above 7x7, other
 * depth multipliers, and layers rq_fast_ok refuses run the reference.
 */
#ifndef FV_DSP_DW_WORDS
#define FV_DSP_DW_WORDS 1024 /* 4 KB: a 3x3 layer up to 61 columns wide (tests: FV_DSP_MAX_K=512) */
#endif
static int32_t dw_plane[FV_DSP_DW_WORDS] __attribute__((aligned(8)));
/* for the tests, which dirty it before a case (fv_kernels_dsp.h) */
int32_t *const fv_dsp_dw_plane = dw_plane;
const uint32_t fv_dsp_dw_plane_words = FV_DSP_DW_WORDS;

/* The group's record (dw_rec, rebuilt per group): everything the row loop reads, at fixed offsets:
 * words 0-3 the 4 channels' biases doubled, 4-15 their rq_chan (m, round_zp, e), 16 the plane's
 * pitch in bytes, 17 unused, from 18 (byte 72) the widened doubled weights, 2 words per tap. */
#define DW_REC_BIAS 0
#define DW_REC_RQ 4
#define DW_REC_PITCH 16
#define DW_REC_W 18
#define DW_MAX_TAPS 49 /* 7x7; larger kernels run the reference */
static int32_t dw_rec[DW_REC_W + 2 * DW_MAX_TAPS] __attribute__((aligned(8)));

/* One tap of the 2-pixel block: the weights' LDRD at W (bytes from the record), the pixels' at X0
 * and X1 (bytes from the plane row). Accumulators: a = the first pixel's channels 0-3, b = the
 * second's; the plane's and the weights' words are (c0, c2) and (c1, c3). */
#define DW_TAP(W, X0, X1)                                                                            \
    "ldrd %[w0], %[w1], [%[wp], #" W "]\n\t"                                                         \
    "ldrd %[x0], %[x1], [%[xp], #" X0 "]\n\t"                                                        \
    "smlabb %[a0], %[w0], %[x0], %[a0]\n\t"                                                          \
    "smlatt %[a2], %[w0], %[x0], %[a2]\n\t"                                                          \
    "smlabb %[a1], %[w1], %[x1], %[a1]\n\t"                                                          \
    "smlatt %[a3], %[w1], %[x1], %[a3]\n\t"                                                          \
    "ldrd %[x0], %[x1], [%[xp], #" X1 "]\n\t"                                                        \
    "smlabb %[b0], %[w0], %[x0], %[b0]\n\t"                                                          \
    "smlatt %[b2], %[w0], %[x0], %[b2]\n\t"                                                          \
    "smlabb %[b1], %[w1], %[x1], %[b1]\n\t"                                                          \
    "smlatt %[b3], %[w1], %[x1], %[b3]\n\t"
/* The first tap: the second pixel's sums start from the first's, still the biases, so that no
 * MOV copies them. */
#define DW_TAP_FIRST(W, X0, X1)                                                                      \
    "ldrd %[w0], %[w1], [%[wp], #" W "]\n\t"                                                         \
    "ldrd %[x0], %[x1], [%[xp], #" X1 "]\n\t"                                                        \
    "smlabb %[b0], %[w0], %[x0], %[a0]\n\t"                                                          \
    "smlatt %[b2], %[w0], %[x0], %[a2]\n\t"                                                          \
    "smlabb %[b1], %[w1], %[x1], %[a1]\n\t"                                                          \
    "smlatt %[b3], %[w1], %[x1], %[a3]\n\t"                                                          \
    "ldrd %[x0], %[x1], [%[xp], #" X0 "]\n\t"                                                        \
    "smlabb %[a0], %[w0], %[x0], %[a0]\n\t"                                                          \
    "smlatt %[a2], %[w0], %[x0], %[a2]\n\t"                                                          \
    "smlabb %[a1], %[w1], %[x1], %[a1]\n\t"                                                          \
    "smlatt %[a3], %[w1], %[x1], %[a3]\n\t"
/* the next plane row: the record's pitch */
#define DW_NEXT_ROW "ldr %[x0], [%[wp], #64]\n\tadd %[xp], %[xp], %[x0]\n\t"
/* channel J's two sums requantised in place (rq2_raw, then SSAT): m and round_zp by LDRD, e */
#define DW_RQ(J, MOFF, EOFF)                                                                         \
    "ldrd %[w0], %[w1], [%[wp], #" MOFF "]\n\t"                                                      \
    "ldr %[x0], [%[wp], #" EOFF "]\n\t"                                                              \
    "smmlar %[x1], %[a" J "], %[w0], %[w1]\n\t"                                                      \
    "sub %[a" J "], %[x1], %[a" J "], lsr #31\n\t"                                                   \
    "asr %[a" J "], %[a" J "], %[x0]\n\t"                                                            \
    "ssat %[a" J "], #8, %[a" J "]\n\t"                                                              \
    "smmlar %[x1], %[b" J "], %[w0], %[w1]\n\t"                                                      \
    "sub %[b" J "], %[x1], %[b" J "], lsr #31\n\t"                                                   \
    "asr %[b" J "], %[b" J "], %[x0]\n\t"                                                            \
    "ssat %[b" J "], #8, %[b" J "]\n\t"

/* Every output row of a band, pixel pairs of one group of 4 channels, 3x3 dilation 1, the whole
 * int8 range as the activation range, in one assembly loop (in C, gcc spilled and reloaded about
 * 150 instructions' worth per pair around the 14-register block). The loop's own values live in
 * 40 bytes of stack, a copy of the job. Per pair: the sums started at the biases (2 LDRD), 9
 * taps (99), 2 row steps, 8 requantisations (44), 8 byte stores, the loop's 12: 165 instructions
 * for 72 MACs; per row 13 more. S is the second pixel's offset in the plane, 8
 * (stride 1) or 16 (stride 2) bytes; P1/P2/P3 the offsets of its taps. */
typedef struct {
    const int32_t *xp;  /* +0: the next pair's top-left tap in the plane */
    int8_t *o;          /* +4: its first output byte (channel 4g of the first pixel) */
    int32_t c;          /* +8: bytes from one output pixel to the next */
    int32_t left;       /* +12: pairs left in the row, >= 1 */
    int32_t rows;       /* +16: rows left, >= 1 */
    int32_t pairs;      /* +20: pairs per row */
    const int32_t *xr;  /* +24: the row's first tap */
    int32_t xr_step;    /* +28: bytes from one output row's plane row to the next's */
    int8_t *orow;       /* +32: the row's first output byte */
    int32_t orow_step;  /* +36: bytes from one output row to the next */
} dw_rows_job;

#define DW_COPY(OFF) "ldr %[x0], [%[xp], #" OFF "]\n\tstr %[x0], [sp, #" OFF "]\n\t"
#define DW_ROW_ASM(NEXT, P1, P2, P3)                                                                 \
    "sub sp, sp, #40\n\t"                                                                            \
    DW_COPY("0") DW_COPY("4") DW_COPY("8") DW_COPY("12") DW_COPY("16") DW_COPY("20") DW_COPY("24")   \
    DW_COPY("28") DW_COPY("32") DW_COPY("36")                                                        \
    "2:\n\t"                                                                                         \
    "ldr %[xp], [sp, #0]\n\t"                                                                        \
    "ldrd %[a0], %[a1], [%[wp], #0]\n\t"                                                             \
    "ldrd %[a2], %[a3], [%[wp], #8]\n\t"                                                             \
    "add %[x0], %[xp], #" NEXT "\n\t"                                                                \
    "str %[x0], [sp, #0]\n\t"                                                                        \
    DW_TAP_FIRST("72", "0", P1) DW_TAP("80", "8", P2) DW_TAP("88", "16", P3) DW_NEXT_ROW                   \
    DW_TAP("96", "0", P1) DW_TAP("104", "8", P2) DW_TAP("112", "16", P3) DW_NEXT_ROW                 \
    DW_TAP("120", "0", P1) DW_TAP("128", "8", P2) DW_TAP("136", "16", P3)                            \
    DW_RQ("0", "16", "24") DW_RQ("1", "28", "36") DW_RQ("2", "40", "48") DW_RQ("3", "52", "60")      \
    "ldrd %[xp], %[x0], [sp, #4]\n\t"                                                                \
    "strb %[a0], [%[xp], #0]\n\t"                                                                    \
    "strb %[a1], [%[xp], #1]\n\t"                                                                    \
    "strb %[a2], [%[xp], #2]\n\t"                                                                    \
    "strb %[a3], [%[xp], #3]\n\t"                                                                    \
    "add %[xp], %[xp], %[x0]\n\t"                                                                    \
    "strb %[b0], [%[xp], #0]\n\t"                                                                    \
    "strb %[b1], [%[xp], #1]\n\t"                                                                    \
    "strb %[b2], [%[xp], #2]\n\t"                                                                    \
    "strb %[b3], [%[xp], #3]\n\t"                                                                    \
    "add %[xp], %[xp], %[x0]\n\t"                                                                    \
    "str %[xp], [sp, #4]\n\t"                                                                        \
    "ldr %[x0], [sp, #12]\n\t"                                                                       \
    "subs %[x0], %[x0], #1\n\t"                                                                      \
    "str %[x0], [sp, #12]\n\t"                                                                       \
    "bne 2b\n\t"                                                                                     \
    "ldr %[x0], [sp, #16]\n\t"                                                                       \
    "subs %[x0], %[x0], #1\n\t"                                                                      \
    "beq 3f\n\t"                                                                                     \
    "str %[x0], [sp, #16]\n\t"                                                                       \
    "ldrd %[x0], %[x1], [sp, #20]\n\t"                                                               \
    "str %[x0], [sp, #12]\n\t"                                                                       \
    "ldr %[w0], [sp, #28]\n\t"                                                                       \
    "add %[x1], %[x1], %[w0]\n\t"                                                                    \
    "str %[x1], [sp, #24]\n\t"                                                                       \
    "str %[x1], [sp, #0]\n\t"                                                                        \
    "ldrd %[x0], %[x1], [sp, #32]\n\t"                                                               \
    "add %[x0], %[x0], %[x1]\n\t"                                                                    \
    "str %[x0], [sp, #32]\n\t"                                                                       \
    "str %[x0], [sp, #4]\n\t"                                                                        \
    "b 2b\n\t"                                                                                       \
    "3:\n\t"                                                                                         \
    "add sp, sp, #40\n\t"

#define DW_ROW_OPERANDS                                                                              \
    : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [b0] "=&r"(b0), [b1] "=&r"(b1), \
      [b2] "=&r"(b2), [b3] "=&r"(b3), [xp] "+&r"(xp), [w0] "=&r"(w0), [w1] "=&r"(w1), [x0] "=&r"(x0),  \
      [x1] "=&r"(x1)                                                                                 \
    : [wp] "r"(wp)                                                                                   \
    : "cc", "memory"

/* the job's pointer comes in as xp, whose register the loop then uses for the plane */
static void dw_rows_s1(const dw_rows_job *job)
{
    int32_t a0, a1, a2, a3, b0, b1, b2, b3, w0, w1, x0, x1;
    const void *xp = job;
    const int32_t *const wp = dw_rec;
    __asm__ volatile(DW_ROW_ASM("16", "8", "16", "24") DW_ROW_OPERANDS);
}

static void dw_rows_s2(const dw_rows_job *job)
{
    int32_t a0, a1, a2, a3, b0, b1, b2, b3, w0, w1, x0, x1;
    const void *xp = job;
    const int32_t *const wp = dw_rec;
    __asm__ volatile(DW_ROW_ASM("32", "16", "24", "32") DW_ROW_OPERANDS);
}

/* Any kernel size, dilation and stride: the same sums in C. */
static void dw_block(const int32_t *xp, const int32_t *wp, int32_t k_h, int32_t k_w, int32_t row_step,
                     int32_t col_step, int32_t px_step, int32_t a[8])
{
    for (int32_t ky = 0; ky < k_h; ky++) {
        for (int32_t kx = 0; kx < k_w; kx++) {
            const int32_t *x = xp + ky * row_step + kx * col_step;
            const int32_t *y = x + px_step;
            a[0] = __smlabb(wp[0], x[0], a[0]);
            a[2] = __smlatt(wp[0], x[0], a[2]);
            a[1] = __smlabb(wp[1], x[1], a[1]);
            a[3] = __smlatt(wp[1], x[1], a[3]);
            a[4] = __smlabb(wp[0], y[0], a[4]);
            a[6] = __smlatt(wp[0], y[0], a[6]);
            a[5] = __smlabb(wp[1], y[1], a[5]);
            a[7] = __smlatt(wp[1], y[1], a[7]);
            wp += 2;
        }
    }
}

/* n pixels of 4 channels, c bytes apart, widened into d (2 words each): two pixels per pass of
 * the assembly loop, 11 instructions (gcc's loop took 9 per pixel). */
static inline void dw_widen_run(const int8_t *src, int32_t c, int32_t *d, int32_t n, int32_t off2)
{
    int32_t v0, v1, t0, t1;
    if (n & 1) {
        const int32_t v = ld_s8x4(src);
        d[0] = __sxtab16(off2, v);
        d[1] = sxtab16_ror8(off2, v);
        src += c;
        d += 2;
    }
    n >>= 1;
    if (n > 0) {
        __asm__ volatile("1:\n\t"
                         "ldr %[v0], [%[src]]\n\t"
                         "ldr %[v1], [%[src], %[c]]\n\t"
                         "add %[src], %[src], %[c], lsl #1\n\t"
                         "sxtab16 %[t0], %[off2], %[v0]\n\t"
                         "sxtab16 %[t1], %[off2], %[v0], ror #8\n\t"
                         "strd %[t0], %[t1], [%[d]], #8\n\t"
                         "sxtab16 %[t0], %[off2], %[v1]\n\t"
                         "sxtab16 %[t1], %[off2], %[v1], ror #8\n\t"
                         "strd %[t0], %[t1], [%[d]], #8\n\t"
                         "subs %[n], %[n], #1\n\t"
                         "bne 1b\n\t"
                         : [src] "+&r"(src), [d] "+&r"(d), [n] "+&r"(n), [v0] "=&r"(v0), [v1] "=&r"(v1),
                           [t0] "=&r"(t0), [t1] "=&r"(t1)
                         : [c] "r"(c), [off2] "r"(off2)
                         : "cc", "memory");
    }
}

/* The input rows [y_start, y_start + rows) of the group's n channels (from channel g4), columns
 * [x_start, x_start + ncols), widened into the plane; outside the image 0. */
static void dw_widen(const fv_conv_params *p, const int8_t *in, int32_t g4, int32_t n, int32_t y_start, int32_t rows,
                     int32_t x_start, int32_t ncols, int32_t off2)
{
    const int32_t c = p->in_c;
    const int32_t i_b = x_start < 0 ? (-x_start < ncols ? -x_start : ncols) : 0; /* first column in the image */
    int32_t i_e = p->in_w - x_start;                                              /* one past the last */
    i_e = i_e < i_b ? i_b : (i_e > ncols ? ncols : i_e);
    for (int32_t r = 0; r < rows; r++) {
        const int32_t y = y_start + r;
        int32_t *d = dw_plane + 2 * r * ncols;
        int32_t i = 0;
        if (y < 0 || y >= p->in_h) {
            memset(d, 0, (size_t)ncols * 8u);
            continue;
        }
        for (; i < i_b; i++) {
            d[2 * i] = 0;
            d[2 * i + 1] = 0;
        }
        {
            const int8_t *src = in + ((size_t)y * (size_t)p->in_w + (size_t)(x_start + i_b)) * (size_t)c + (size_t)g4;
            int32_t *e = d + 2 * i_b;
            int32_t *const e_end = d + 2 * i_e;
            if (n == 4) {
                dw_widen_run(src, c, e, i_e - i_b, off2);
            } else { /* the last, partial group: the missing lanes get the offset, and weight 0 */
                for (; e < e_end; e += 2) {
                    const int32_t v = ld_s8_tail(src, n);
                    e[0] = __sxtab16(off2, v);
                    e[1] = sxtab16_ror8(off2, v);
                    src += c;
                }
            }
        }
        for (i = i_e; i < ncols; i++) {
            d[2 * i] = 0;
            d[2 * i + 1] = 0;
        }
    }
}

/* ---- 3x3 depthwise on channel planes, SMLAD on horizontally adjacent pixels ----------------------
 * The layers every zoo member has (3x3, dilation 1, stride 1 or 2, the whole int8 range): each
 * channel's input rows are widened once into a plane of its own (dwp_* below), int16 with the
 * input offset included, so that one word holds two horizontally adjacent pixels (x_2u, x_2u+1)
 * of one channel. With the kernel row's weights paired as W01 = (w0, w1) and W12 = (w1, w2)
 * (doubled, as above), a window starting at an even column 2u takes SMLAD(W01, P[u]) +
 * SMLATB(W12, P[u + 1]) (w0 x_2u + w1 x_2u+1, then w2 x_2u+2), one starting at an odd column
 * 2u + 1 SMLABT(W01, P[u]) + SMLAD(W12, P[u + 1]) (w0 x_2u+1, then w1 x_2u+2 + w2 x_2u+3):
 * 2 instructions per 3 MACs, 6 per output instead of the 9 SMLABB/SMLATT of the 4-channel block,
 * and neighbouring outputs share the loaded words. Four outputs of one channel per pass.
 *
 * Where the instructions went on this path alone (dsconv26-s3, make bench-firmware, 722,000
 * instructions, 2.30 per MAC over its depthwise layers; stride 1: 1.82 at 16x16, 2.06 at 8x8,
 * 2.87 at 4x4; stride 2: 2.63, 2.76, 3.60 at 16, 8, 4 output columns), measured by leaving one
 * part out at a time:
 *   passes, their calls and row steps  516 k  1.64 per MAC (the passes alone 480 k, 1.53: 54
 *                                             (stride 1) or 57 (stride 2) per 36 MACs; the 24
 *                                             multiplies 0.67, loads 0.25-0.33, the
 *                                             requantisation 13 and the stores 6, 0.53)
 *   widening                           130 k  0.41 (73 k input values: 1.56 each in the quads'
 *                                             loop, 1.8 with the per-row and per-group costs;
 *                                             0.2 per MAC at stride 1, 0.7-1.0 at stride 2,
 *                                             where every output has 4 input values; 166 k
 *                                             before dwp_widen stopped after the quads)
 *   weight records                      21 k  0.07 (about 145 per group of 4 channels and band)
 *   per-channel dispatch, per layer     55 k  0.17 (about 50 per channel; 13 k of memset, which
 *                                             zeroing only the padding words in C did not beat)
 * The gate of 2.0 (629 k) is below what this design can reach: the passes alone and the
 * widening at its loop's 1.56 per value make 1.89 per MAC with no overhead at all (stride 1
 * 1.67, stride 2 2.28), so 2.0 would leave 0.11 per MAC for the records, dispatch, calls, row
 * steps and the small images (0.41 now). The passes are near their floor (SMLAD's 1.5 MACs per
 * multiply, an exact requantisation of 3 per output, a byte store per output: NHWC puts a
 * channel's outputs c bytes apart); widening 8 channels per LDRD (c % 8 == 0) would take about
 * 1.4 per value. What reaches it is not widening at all: the preceding 1x1 convolution (every
 * depthwise layer of the zoo follows one or the first layer) writing its outputs straight into
 * the planes, int16 with the offset. The runner now fuses such pairs (fv_conv2d_to_planes_opt,
 * fv_depthwise_conv2d_from_planes_opt below: a plane per channel for the whole layer, no bands),
 * and dsconv26's depthwise layers count 568,600 instructions, 1.81 per MAC (stride 1: 1.61 at
 * 16x16, 1.79 at 8x8, 2.41 at 4x4; stride 2: 1.70, 1.90, 2.53 at 16, 8, 4 output columns): the
 * passes and row steps as above, the padding rows 10,800 (counted by leaving dwf_pad out), the
 * per-channel records, weights and calls the rest (about 100 per channel, which the 4x4 layers
 * feel most). This path still runs the layers that do not fuse (another producer, a tensor read
 * twice, a width without pass functions, a plane too large for FV_DSP_DW_WORDS).
 *
 * Plane layout: per plane row, the group's 4 channels one after the other, DWP_PITCH halfwords
 * each; input column x at halfword x + 2 (so that a word holds an even column and the next
 * whatever the padding: the 2 halfwords before column 0 and everything after the last are 0, the
 * centred value of a padding tap, as in dw_plane above). Rows outside the image are 0. The pitch
 * is fixed so that the row offsets are constants: rows up to 34 pixels wide (dsconv26's widest
 * depthwise input is 32); wider layers take the path above.
 */
#define DWP_PITCH 36 /* halfwords per channel row: 2 + 32 pixels + 2 */
#define DWP_WPR (DWP_PITCH / 2) /* words per channel row */
#define DWP_ROW (4 * DWP_WPR)   /* words per plane row (4 channels) */

static inline int32_t pkhbt16(int32_t lo, int32_t hi)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}

static inline int32_t pkhtb16(int32_t hi, int32_t lo)
{
    int32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
    return r;
}

/* One channel's record: per kernel row W01 and W12, doubled; the doubled bias and the
 * requantisation. */
typedef struct {
    int32_t w[6];        /* +0: W01, W12 of kernel rows 0, 1, 2 */
    int32_t bias2;       /* +24 */
    rq_chan rq;          /* +28: m, round_zp, e */
    const int32_t *xr;   /* +40: the first output row's first plane word */
    int32_t xr_delta;    /* +44: bytes from the plane word after a row's last pass to the next row's first */
    int32_t orow_delta;  /* +48: bytes from the output byte after a row's last pass to the next row's first */
    int8_t *orow;        /* +52: the first output row's first byte */
    const int8_t *oend;  /* +56: where orow would be after the last row */
    int32_t row_bytes;   /* +60: bytes the passes of one row advance in the plane, >= 1 pass */
    int32_t c;           /* +64: bytes from one output pixel to the next */
} dwp_chan;

/* The sum of one kernel row for a window starting at plane column c (halfwords), row words p. */
static inline __attribute__((always_inline)) int32_t dwp_row(int32_t acc, const int32_t *p, int32_t c, int32_t w01,
                                                             int32_t w12)
{
    const int32_t *const q = p + (c >> 1);
    if ((c & 1) == 0) {
        return __smlatb(w12, q[1], __smlad(w01, q[0], acc)); /* w0 x_c + w1 x_c+1, w2 x_c+2 */
    }
    return __smlad(w12, q[1], __smlabt(w01, q[0], acc)); /* w0 x_c, w1 x_c+1 + w2 x_c+2 */
}

static inline __attribute__((always_inline)) int32_t dwp_one(const int32_t *xr, int32_t c, const dwp_chan *ch)
{
    int32_t a = ch->bias2;
    a = dwp_row(a, xr, c, ch->w[0], ch->w[1]);
    a = dwp_row(a, xr + DWP_ROW, c, ch->w[2], ch->w[3]);
    return dwp_row(a, xr + 2 * DWP_ROW, c, ch->w[4], ch->w[5]);
}

static inline int8_t dwp_rq(int32_t acc2, const rq_chan *r)
{
    int32_t sat;
    __asm__("ssat %0, #8, %1" : "=r"(sat) : "r"(rq2_raw(acc2, r)));
    return (int8_t)sat;
}

/* One pass's sums, 4 outputs of one channel, in assembly (gcc recomputed every word's address and
 * spilled the sums): per kernel row one LDRD of W01/W12 from the record (wp, bytes 0, 8, 16) and
 * the plane words at xp + ROW (a row is DWP_ROW words, 288 bytes). Stride 1, first window at an odd
 * column (3x3 SAME: padding 1): words P0..P3, out 0 odd, 1 even, 2 odd, 3 even, 3 loads and 8
 * multiplies per row. Stride 2, first window at an even column (SAME on an even input: padding
 * 0 before): words P0..P4, every window even, 4 loads and 8 multiplies. The first row starts the
 * sums from the bias. */
#define DWP_S1_ROW(W, X0, R, A0, A1, A2, A3)                                                             \
    "ldrd %[w01], %[w12], [%[rp], #" W "]\n\t"                                                       \
    "ldrd %[ya], %[yb], " X0 "\n\t"                                                                 \
    "smlabt %[a0], %[w01], %[ya], " A0 "\n\t"                                                        \
    "smlad %[a0], %[w12], %[yb], %[a0]\n\t"                                                          \
    "smlad %[a1], %[w01], %[yb], " A1 "\n\t"                                                         \
    "smlabt %[a2], %[w01], %[yb], " A2 "\n\t"                                                        \
    "ldrd %[ya], %[yb], [%[xp], #" R "+8]\n\t"                                                       \
    "smlatb %[a1], %[w12], %[ya], %[a1]\n\t"                                                         \
    "smlad %[a2], %[w12], %[ya], %[a2]\n\t"                                                          \
    "smlad %[a3], %[w01], %[ya], " A3 "\n\t"                                                         \
    "smlatb %[a3], %[w12], %[yb], %[a3]\n\t"
#define DWP_S2_ROW(W, X0, R, A0, A1, A2, A3)                                                             \
    "ldrd %[w01], %[w12], [%[rp], #" W "]\n\t"                                                       \
    "ldrd %[ya], %[yb], " X0 "\n\t"                                                                 \
    "smlad %[a0], %[w01], %[ya], " A0 "\n\t"                                                         \
    "smlatb %[a0], %[w12], %[yb], %[a0]\n\t"                                                         \
    "smlad %[a1], %[w01], %[yb], " A1 "\n\t"                                                         \
    "ldrd %[ya], %[yb], [%[xp], #" R "+8]\n\t"                                                       \
    "smlatb %[a1], %[w12], %[ya], %[a1]\n\t"                                                         \
    "smlad %[a2], %[w01], %[ya], " A2 "\n\t"                                                         \
    "smlatb %[a2], %[w12], %[yb], %[a2]\n\t"                                                         \
    "smlad %[a3], %[w01], %[yb], " A3 "\n\t"                                                         \
    "ldr %[ya], [%[xp], #" R "+16]\n\t"                                                              \
    "smlatb %[a3], %[w12], %[ya], %[a3]\n\t"
/* kernel rows 2 and 1 first (the sums start from the bias), row 0 last: its first load steps xp
 * to the next pass (post-indexed by XSTEP), its other loads reach back by XSTEP */
#define DWP_PASS_R(ROW, XSTEP, R1, R2)                                                               \
    ROW("16", "[%[xp], #" R2 "]", R2, "%[b]", "%[b]", "%[b]", "%[b]")                                \
    ROW("8", "[%[xp], #" R1 "]", R1, "%[a0]", "%[a1]", "%[a2]", "%[a3]")                             \
    ROW("0", "[%[xp]], #" XSTEP, "-" XSTEP, "%[a0]", "%[a1]", "%[a2]", "%[a3]")
/* R1, R2: the bytes from a plane row to the next and the one after (this path's: 288 and 576) */
#define DWP_PASS(ROW, XSTEP) DWP_PASS_R(ROW, XSTEP, "288", "576")
/* sum J requantised in place: rq2_raw, then SSAT (m, round_zp in w01, w12, e in ya) */
#define DWP_RQ(J)                                                                                    \
    "smmlar %[yb], %[a" J "], %[w01], %[w12]\n\t"                                                    \
    "sub %[a" J "], %[yb], %[a" J "], lsr #31\n\t"                                                   \
    "asr %[a" J "], %[a" J "], %[ya]\n\t"                                                            \
    "ssat %[a" J "], #8, %[a" J "]\n\t"
#define DWP_RQ4 DWP_RQ("0") DWP_RQ("1") DWP_RQ("2") DWP_RQ("3")
#define DWP_LOAD_E "ldr %[ya], [%[rp], #36]\n\t"
/* the same with the shift E an immediate of SSAT (the functions per shift below): 3 instructions */
#define DWP_RQ_E(J, E)                                                                               \
    "smmlar %[yb], %[a" J "], %[w01], %[w12]\n\t"                                                    \
    "sub %[a" J "], %[yb], %[a" J "], lsr #31\n\t"                                                   \
    "ssat %[a" J "], #8, %[a" J "], asr #" E "\n\t"
#define DWP_RQ4_E(E) DWP_RQ_E("0", E) DWP_RQ_E("1", E) DWP_RQ_E("2", E) DWP_RQ_E("3", E)
/* Every row's passes for one channel: per pass the 4 sums (DWP_PASS), 4 requantisations (RQ4,
 * after LOAD_E), 4 byte stores c apart; per row the plane and output pointers step over the
 * row's rest, until the output pointer reaches its end. XSTEP: the plane bytes one pass
 * advances, 8 (stride 1) or 16 (stride 2). Per pass 33 (stride 1) or 36 (stride 2) for the sums,
 * 1-2 loads and 12-16 for the requantisation, 6 for the stores, 2 for the loop: 54-60
 * instructions for 36 MACs; per row 6 more. */
#define DWP_ROWS_ASM(ROW, XSTEP, LOAD_E, RQ4) DWP_ROWS_ASM_R(ROW, XSTEP, LOAD_E, RQ4, "288", "576")
#define DWP_ROWS_ASM_R(ROW, XSTEP, LOAD_E, RQ4, R1, R2)                                              \
    "ldr %[b], [%[rp], #24]\n\t"                                                                     \
    "ldr %[c], [%[rp], #64]\n\t"                                                                     \
    "ldr %[xp], [%[rp], #40]\n\t"                                                                    \
    "ldr %[op], [%[rp], #52]\n\t"                                                                    \
    "1:\n\t"                                                                                         \
    "ldr %[ya], [%[rp], #60]\n\t"                                                                    \
    "add %[end], %[xp], %[ya]\n\t"                                                                   \
    "2:\n\t"                                                                                         \
    DWP_PASS_R(ROW, XSTEP, R1, R2)                                                                   \
    "ldrd %[w01], %[w12], [%[rp], #28]\n\t"                                                          \
    LOAD_E RQ4                                                                                       \
    "strb %[a0], [%[op]]\n\t"                                                                        \
    "strb %[a1], [%[op], %[c]]\n\t"                                                                  \
    "add %[op], %[op], %[c], lsl #1\n\t"                                                             \
    "strb %[a2], [%[op]]\n\t"                                                                        \
    "strb %[a3], [%[op], %[c]]\n\t"                                                                  \
    "add %[op], %[op], %[c], lsl #1\n\t"                                                             \
    "cmp %[xp], %[end]\n\t"                                                                          \
    "bne 2b\n\t"                                                                                     \
    "ldrd %[ya], %[yb], [%[rp], #44]\n\t"                                                            \
    "add %[xp], %[xp], %[ya]\n\t"                                                                    \
    "add %[op], %[op], %[yb]\n\t"                                                                    \
    "ldr %[ya], [%[rp], #56]\n\t"                                                                    \
    "cmp %[op], %[ya]\n\t"                                                                           \
    "bne 1b\n\t"
#define DWP_ROWS_OPERANDS                                                                            \
    : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [w01] "=&r"(w01),             \
      [w12] "=&r"(w12), [ya] "=&r"(ya), [yb] "=&r"(yb), [xp] "=&r"(xp), [op] "=&r"(op), [c] "=&r"(c), \
      [end] "=&r"(end), [b] "=&r"(b)                                                                 \
    : [rp] "r"(rp)                                                                                   \
    : "cc", "memory"
#define DWP_ROWS_FN(NAME, ROW, XSTEP, LOAD_E, RQ4) DWP_ROWS_FN_R(NAME, ROW, XSTEP, LOAD_E, RQ4, "288", "576")
#define DWP_ROWS_FN_R(NAME, ROW, XSTEP, LOAD_E, RQ4, R1, R2)                                         \
    static __attribute__((noinline)) void NAME(dwp_chan *rp)                                         \
    {                                                                                                \
        int32_t a0, a1, a2, a3, w01, w12, ya, yb, c, b;                                              \
        const int32_t *xp, *end;                                                                     \
        int8_t *op;                                                                                  \
        __asm__ volatile(DWP_ROWS_ASM_R(ROW, XSTEP, LOAD_E, RQ4, R1, R2) DWP_ROWS_OPERANDS);         \
    }
_Static_assert(DWP_ROW * 4 == 288, "the passes' row offsets are 288 and 576 bytes");
DWP_ROWS_FN(dwp_rows_s1, DWP_S1_ROW, "8", DWP_LOAD_E, DWP_RQ4)
DWP_ROWS_FN(dwp_rows_s2, DWP_S2_ROW, "16", DWP_LOAD_E, DWP_RQ4)
/* One function per shift from 5 to 13 (the zoo's layers shift by 6 to 12; the others take the
 * register shift above): 18 of them, about 4.5 KB of flash, for 5 instructions per pass. */
#define DWP_E_MIN 5
#define DWP_E_MAX 13
#define DWP_ROWS_E(E)                                                                                \
    DWP_ROWS_FN(dwp_rows_s1_e##E, DWP_S1_ROW, "8", "", DWP_RQ4_E(#E))                               \
    DWP_ROWS_FN(dwp_rows_s2_e##E, DWP_S2_ROW, "16", "", DWP_RQ4_E(#E))
DWP_ROWS_E(5)
DWP_ROWS_E(6)
DWP_ROWS_E(7)
DWP_ROWS_E(8)
DWP_ROWS_E(9)
DWP_ROWS_E(10)
DWP_ROWS_E(11)
DWP_ROWS_E(12)
DWP_ROWS_E(13)
typedef void (*dwp_rows_fn)(dwp_chan *);
static const dwp_rows_fn DWP_ROWS_BY_E[2][DWP_E_MAX - DWP_E_MIN + 1] = {
    {dwp_rows_s1_e5, dwp_rows_s1_e6, dwp_rows_s1_e7, dwp_rows_s1_e8, dwp_rows_s1_e9, dwp_rows_s1_e10,
     dwp_rows_s1_e11, dwp_rows_s1_e12, dwp_rows_s1_e13},
    {dwp_rows_s2_e5, dwp_rows_s2_e6, dwp_rows_s2_e7, dwp_rows_s2_e8, dwp_rows_s2_e9, dwp_rows_s2_e10,
     dwp_rows_s2_e11, dwp_rows_s2_e12, dwp_rows_s2_e13},
};

/* The outputs the passes leave, the row's last out_w % 4, one at a time in C. */
static void dwp_tail(const int32_t *xr, int32_t rows, int32_t row_step, int32_t out_w, int8_t *o, int32_t c,
                     const dwp_chan *ch, int32_t s, int32_t c0)
{
    for (int32_t y = 0; y < rows; y++) {
        for (int32_t ox = out_w & ~3; ox < out_w; ox++) {
            o[(size_t)y * (size_t)out_w * (size_t)c + (size_t)ox * (size_t)c] =
                dwp_rq(dwp_one(xr + y * row_step, ox * s + c0, ch), &ch->rq);
        }
    }
}

/* Rows of quads of pixels (4 channels each, c bytes apart) widened into the 4 channel rows of each
 * plane row: per quad 4 loads, 4 PKH, 8 SXTAB16, 4 STRD, 25 instructions for 16 values; per row
 * 7 more (gcc's loop took 2.2-5.3 per value with its row overhead). */
typedef struct {
    const int8_t *s;  /* +0: the first row's first pixel (channel g4) */
    int32_t *d;       /* +4: its plane word */
    int32_t quads;    /* +8: quads per row, >= 1 */
    int32_t s_delta;  /* +12: bytes from the pixel after a row's last quad to the next row's first */
    int32_t d_delta;  /* +16: the same in the plane */
    int32_t rows;     /* +20: rows, >= 1 */
} dwp_widen_job;

static __attribute__((noinline)) void dwp_widen_quads(dwp_widen_job *job, int32_t c, int32_t off2)
{
    const int8_t *s;
    int32_t *d;
    int32_t n, p0, p1, p2, p3, q0, q1;
    __asm__ volatile("ldr %[s], [%[job]]\n\t"
                     "ldr %[d], [%[job], #4]\n\t"
                     "1:\n\t"
                     "ldr %[n], [%[job], #8]\n\t"
                     "2:\n\t"
                     "ldr %[p0], [%[s]]\n\t"
                     "ldr %[p1], [%[s], %[c]]\n\t"
                     "add %[s], %[s], %[c], lsl #1\n\t"
                     "ldr %[p2], [%[s]]\n\t"
                     "ldr %[p3], [%[s], %[c]]\n\t"
                     "add %[s], %[s], %[c], lsl #1\n\t"
                     "pkhbt %[q0], %[p0], %[p1], lsl #16\n\t"
                     "pkhtb %[p1], %[p1], %[p0], asr #16\n\t"
                     "pkhbt %[q1], %[p2], %[p3], lsl #16\n\t"
                     "pkhtb %[p3], %[p3], %[p2], asr #16\n\t"
                     "sxtab16 %[p0], %[off], %[q0]\n\t"
                     "sxtab16 %[p2], %[off], %[q1]\n\t"
                     "strd %[p0], %[p2], [%[d]]\n\t"
                     "sxtab16 %[p0], %[off], %[q0], ror #8\n\t"
                     "sxtab16 %[p2], %[off], %[q1], ror #8\n\t"
                     "strd %[p0], %[p2], [%[d], #72]\n\t"
                     "sxtab16 %[p0], %[off], %[p1]\n\t"
                     "sxtab16 %[p2], %[off], %[p3]\n\t"
                     "strd %[p0], %[p2], [%[d], #144]\n\t"
                     "sxtab16 %[p0], %[off], %[p1], ror #8\n\t"
                     "sxtab16 %[p2], %[off], %[p3], ror #8\n\t"
                     "strd %[p0], %[p2], [%[d], #216]\n\t"
                     "add %[d], %[d], #8\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 2b\n\t"
                     "ldrd %[p0], %[p1], [%[job], #12]\n\t"
                     "add %[s], %[s], %[p0]\n\t"
                     "add %[d], %[d], %[p1]\n\t"
                     "ldr %[n], [%[job], #20]\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "str %[n], [%[job], #20]\n\t"
                     "bne 1b\n\t"
                     : [s] "=&r"(s), [d] "=&r"(d), [n] "=&r"(n), [p0] "=&r"(p0), [p1] "=&r"(p1), [p2] "=&r"(p2),
                       [p3] "=&r"(p3), [q0] "=&r"(q0), [q1] "=&r"(q1)
                     : [job] "r"(job), [c] "r"(c), [off] "r"(off2)
                     : "cc", "memory");
}

/* The group's n channels (from g4) of input rows [y0, y0 + rows) widened into the plane's rows
 * (rows outside the image are already 0); the 2 pixels of a word come from two pixel words by
 * PKHBT/PKHTB (bytes 0-1 of both, bytes 2-3 of both), then SXTAB16 and SXTAB16 ROR 8. */
static void dwp_widen(const fv_conv_params *p, const int8_t *in, int32_t g4, int32_t n, int32_t y0, int32_t rows,
                      int32_t off2)
{
    const int32_t c = p->in_c, w = p->in_w, w4 = w & ~3;
    /* the rows in the image; a partial group's quads read 4 - n bytes of the next pixel into
     * planes no pass reads, except past the tensor's end: the tensor's last row then goes one
     * pixel at a time */
    const int32_t r_lo = y0 < 0 ? -y0 : 0;
    const int32_t r_hi = p->in_h - y0 < rows ? p->in_h - y0 : rows;
    const int32_t q_hi = n == 4 || r_hi < p->in_h - y0 ? r_hi : r_hi - 1;
    if (w4 > 0 && q_hi > r_lo) {
        _Static_assert(DWP_WPR * 4 == 72, "the quads' channel rows are 72 bytes apart");
        dwp_widen_job job = {in + ((size_t)(y0 + r_lo) * (size_t)w) * (size_t)c + (size_t)g4,
                             dw_plane + r_lo * DWP_ROW + 1, w4 >> 2, (w - w4) * c, 4 * DWP_ROW - 2 * w4,
                             q_hi - r_lo};
        dwp_widen_quads(&job, c, off2);
    }
    if (q_hi == r_hi && w4 == w) { /* the quads took every pixel (the zoo's widths): no tail */
        return;
    }
    for (int32_t r = r_lo; r < r_hi; r++) {
        const int32_t x0 = r < q_hi ? w4 : 0; /* the pixels the quads left */
        const int8_t *s = in + ((size_t)(y0 + r) * (size_t)w + (size_t)x0) * (size_t)c + (size_t)g4;
        int32_t *d = dw_plane + r * DWP_ROW + 1 + (x0 >> 1);
        int32_t x = x0;
        for (; x + 1 < w; x += 2) {
            const int32_t v0 = n == 4 ? ld_s8x4(s) : ld_s8_tail(s, n);
            const int32_t v1 = n == 4 ? ld_s8x4(s + c) : ld_s8_tail(s + c, n);
            const int32_t lo = pkhbt16(v0, v1), hi = pkhtb16(v1, v0);
            d[0] = __sxtab16(off2, lo);
            d[DWP_WPR] = sxtab16_ror8(off2, lo);
            d[2 * DWP_WPR] = __sxtab16(off2, hi);
            d[3 * DWP_WPR] = sxtab16_ror8(off2, hi);
            d++;
            s += 2 * c;
        }
        if (x < w) { /* an odd last pixel: its word's high half is the padding after it, 0 */
            const int32_t v0 = n == 4 ? ld_s8x4(s) : ld_s8_tail(s, n);
            d[0] = __sxtab16(off2, v0) & 0xFFFF;
            d[DWP_WPR] = sxtab16_ror8(off2, v0) & 0xFFFF;
            d[2 * DWP_WPR] = __sxtab16(off2, (int32_t)((uint32_t)v0 >> 16)) & 0xFFFF;
            d[3 * DWP_WPR] = sxtab16_ror8(off2, (int32_t)((uint32_t)v0 >> 16)) & 0xFFFF;
        }
    }
}

/* One kernel row's weight pairs of two channels, doubled (SADD16; 2w fits int16), from the taps'
 * widened words t0, t1, t2 (each: channel lo in the bottom half, hi in the top): W01 = (w0, w1)
 * and W12 = (w1, w2) of each by PKHBT (bottom halves) and PKHTB (top halves). */
static inline void dwp_pair_row(int32_t t0, int32_t t1, int32_t t2, int32_t k, dwp_chan *lo, dwp_chan *hi)
{
    const int32_t d0 = __sadd16(t0, t0), d1 = __sadd16(t1, t1), d2 = __sadd16(t2, t2);
    lo->w[2 * k] = pkhbt16(d0, d1);
    lo->w[2 * k + 1] = pkhbt16(d1, d2);
    hi->w[2 * k] = pkhtb16(d1, d0);
    hi->w[2 * k + 1] = pkhtb16(d2, d1);
}

/* The group's weight pairs, doubled, for its 4 records (a partial group's missing lanes 0): per
 * kernel row the 3 taps' words of 4 channels, SXTB16 (channels 0 and 2) and SXTB16 ROR 8 (1 and 3),
 * then dwp_pair_row. */
static void dwp_weights(const int8_t *weights, int32_t c, int32_t g4, int32_t n, dwp_chan rec[4])
{
    const int8_t *wk = weights + g4;
    for (int32_t k = 0; k < 3; k++, wk += 3 * c) {
        int32_t v0, v1, v2;
        if (n == 4) {
            v0 = ld_s8x4(wk);
            v1 = ld_s8x4(wk + c);
            v2 = ld_s8x4(wk + 2 * c);
        } else {
            v0 = ld_s8_tail(wk, n);
            v1 = ld_s8_tail(wk + c, n);
            v2 = ld_s8_tail(wk + 2 * c, n);
        }
        dwp_pair_row(__sxtb16(v0), __sxtb16(v1), __sxtb16(v2), k, &rec[0], &rec[2]);
        dwp_pair_row(sxtb16_ror8(v0), sxtb16_ror8(v1), sxtb16_ror8(v2), k, &rec[1], &rec[3]);
    }
}

/* 1 when the layer ran here, 0 when it does not fit (the caller's path then runs it). */
static int dw_planar(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    const int32_t c = p->in_c, out_w = p->out_w, out_h = p->out_h, s_w = p->stride_w, s_h = p->stride_h;
    const int32_t c0 = 2 - p->pad_left; /* the first window's plane column */
    const int32_t cap_rows = (FV_DSP_DW_WORDS / DWP_ROW);
    const int32_t off2 = pack_offset(p->input_offset), zp21 = 2 * p->output_offset + 1;
    const int32_t w4 = out_w & ~3; /* the outputs of a row the passes take, 4 at a time */
    dwp_chan rec[4];
    int32_t band, oy0;
    if (p->k_h != 3 || p->k_w != 3 || p->dil_h != 1 || p->dil_w != 1 || (s_w != 1 && s_w != 2) ||
        p->act_min != -128 || p->act_max != 127 || p->pad_left != (s_w == 1 ? 1 : 0) ||
        p->in_w + 2 > DWP_PITCH - 2 || cap_rows < 3) {
        return 0;
    }
    /* the last window's last column, and the word after it a pass may read: inside the row */
    if (((out_w - 1) | 3) * s_w + c0 + 3 >= DWP_PITCH) {
        return 0;
    }
    band = (cap_rows - 3) / s_h + 1;
    if (band > out_h) {
        band = out_h;
    }
    for (int32_t j = 0; j < 4; j++) { /* the fields every channel and band share */
        rec[j].row_bytes = (w4 >> 2) * 8 * s_w;
        rec[j].xr_delta = 4 * s_h * DWP_ROW - rec[j].row_bytes;
        rec[j].orow_delta = (out_w - w4) * c;
        rec[j].c = c;
    }
    memset(dw_plane, 0, (size_t)(((band - 1) * s_h + 3) * DWP_ROW) * 4u);
    for (oy0 = 0; oy0 < out_h; oy0 += band) {
        const int32_t oy1 = oy0 + band < out_h ? oy0 + band : out_h;
        const int32_t y0 = oy0 * s_h - p->pad_top;
        const int32_t rows = (oy1 - 1 - oy0) * s_h + 3;
        for (int32_t r = 0; r < rows; r++) { /* rows outside the image: 0 (an earlier band's may not be) */
            if (y0 + r < 0 || y0 + r >= p->in_h) {
                memset(dw_plane + r * DWP_ROW, 0, DWP_ROW * 4u);
            }
        }
        for (int32_t g4 = 0; g4 < c; g4 += 4) {
            const int32_t n = c - g4 < 4 ? c - g4 : 4;
            int8_t *const o = out + (size_t)oy0 * (size_t)out_w * (size_t)c + (size_t)g4;
            const size_t band_bytes = (size_t)(oy1 - oy0) * (size_t)out_w * (size_t)c;
            dwp_widen(p, in, g4, n, y0, rows, off2);
            dwp_weights(p->weights, c, g4, n, rec);
            for (int32_t j = 0; j < n; j++) {
                const int32_t ch = g4 + j;
                dwp_chan *const r = &rec[j];
                r->bias2 = p->bias != NULL ? 2 * p->bias[ch] : 0;
                r->rq = rq_of(p->multiplier, p->shift, ch, zp21);
                if (w4 > 0) {
                    r->xr = dw_plane + j * DWP_WPR + (c0 >> 1);
                    r->orow = o + j;
                    r->oend = o + j + band_bytes;
                    if (r->rq.e >= DWP_E_MIN && r->rq.e <= DWP_E_MAX) {
                        DWP_ROWS_BY_E[s_w - 1][r->rq.e - DWP_E_MIN](r);
                    } else if (s_w == 1) {
                        dwp_rows_s1(r);
                    } else {
                        dwp_rows_s2(r);
                    }
                }
                if (w4 < out_w) {
                    dwp_tail(dw_plane + j * DWP_WPR, oy1 - oy0, s_h * DWP_ROW, out_w, o + j, c, r, s_w, c0);
                }
            }
        }
    }
    return 1;
}

/* ---- a convolution writing straight into the next depthwise layer's channel planes -----------
 * The fusion (the runner's, fv_runner.c): a CONV_2D whose only reader is a 3x3 depthwise layer
 * of the channel-plane path writes its outputs as that layer's planes, int16 with the input
 * offset included (conv2d_prewidened, pw_pairs_planes), and the depthwise reads them there, so
 * that nothing widens the NHWC bytes (dwp_widen: 0.41 instructions per MAC of dsconv26's
 * depthwise layers) and no band is rebuilt. Every zoo depthwise layer follows the first layer or
 * a 1x1 convolution, whose ReLU output has the zero point -128: the producer's requantisation
 * then ends in USAT #8 instead of SSAT #8 (q + 128 = clamp(v, 0, 255) for the value v before the
 * zero point), so the offset costs nothing; its stores take 2 instructions more per 4 outputs
 * (PKHBT pairs the two pixels of a channel, one STR per channel) and 1 more per channel pair at
 * a row's start (its left padding word). Counted on dsconv26-s3-r2 (make bench-firmware): the
 * first layer +5,800 instructions and the 1x1 layers -15,000 (their C paths for odd channels
 * and pixels stay out of the loop), against -153,400 on the depthwise side.
 *
 * Layout (dw_plane, the layer's whole input): one plane per channel, in_h + 1 rows of
 * pitch = in_w + 2 halfwords; channel ch's row y (y = -1 .. in_h) at halfword
 * ch * (in_h + 1) * pitch + (y + 1) * pitch, so that a channel's bottom padding row (y = in_h)
 * is the next channel's top one (y = -1); column x at halfword x + 2 of its row (a word holds an
 * even column and the next), halfwords 0 and 1 of a row are 0: the left padding, and the right
 * padding of the row before (its column in_w and in_w + 1, which a pass may read). Then the last
 * channel's bottom row and one more row: (c * (in_h + 1) + 2) * pitch halfwords. The padding
 * rows are zeroed here (dwf_pad); the producer writes every other word, the data rows' left
 * padding words among them (pw_pairs_planes_row). The passes are dwp_rows'
 * with the row offsets of the pitch (2 pitch and 4 pitch bytes), one function per width the zoo
 * has (4, 8, 16, 32; stride 2 from 8 on), stride and shift: 63 functions, 19 KB of flash with the
 * rest of this block.
 * RAM: dsconv26's largest, the first layer's 32x32x26 output, takes (26 x 33 + 2) x 34
 * halfwords, 58 KB (tools/dsp_limits.py sizes FV_DSP_DW_WORDS to it); the NHWC tensor's arena
 * bytes stay reserved and unused. Flash: this block (FV_DSP_FUSED_PAIRS > 0) is built only for
 * models with a pair that may fuse.
 */
#if FV_DSP_FUSED_PAIRS > 0
#define DWF_ROWS_1(W, R1, R2, E) DWP_ROWS_FN_R(dwf_rows_s1_w##W##_e##E, DWP_S1_ROW, "8", "", DWP_RQ4_E(#E), R1, R2)
#define DWF_ROWS_2(W, R1, R2, E) DWP_ROWS_FN_R(dwf_rows_s2_w##W##_e##E, DWP_S2_ROW, "16", "", DWP_RQ4_E(#E), R1, R2)
#define DWF_ROWS_W(S, W, R1, R2)                                                                     \
    DWF_ROWS_##S(W, R1, R2, 5) DWF_ROWS_##S(W, R1, R2, 6) DWF_ROWS_##S(W, R1, R2, 7)                 \
    DWF_ROWS_##S(W, R1, R2, 8) DWF_ROWS_##S(W, R1, R2, 9) DWF_ROWS_##S(W, R1, R2, 10)                \
    DWF_ROWS_##S(W, R1, R2, 11) DWF_ROWS_##S(W, R1, R2, 12) DWF_ROWS_##S(W, R1, R2, 13)
/* pitch = W + 2 halfwords: 2 pitch and 4 pitch bytes. Stride 2 at width 4 has none: its 2
 * outputs per row are not the passes' 4 (fv_dw_planes_ok refuses it). */
DWF_ROWS_W(1, 4, "12", "24")
DWF_ROWS_W(1, 8, "20", "40")
DWF_ROWS_W(2, 8, "20", "40")
DWF_ROWS_W(1, 16, "36", "72")
DWF_ROWS_W(2, 16, "36", "72")
DWF_ROWS_W(1, 32, "68", "136")
DWF_ROWS_W(2, 32, "68", "136")
#define DWF_FNS(S, W)                                                                                \
    {dwf_rows_s##S##_w##W##_e5, dwf_rows_s##S##_w##W##_e6, dwf_rows_s##S##_w##W##_e7,                \
     dwf_rows_s##S##_w##W##_e8, dwf_rows_s##S##_w##W##_e9, dwf_rows_s##S##_w##W##_e10,               \
     dwf_rows_s##S##_w##W##_e11, dwf_rows_s##S##_w##W##_e12, dwf_rows_s##S##_w##W##_e13}
#define DWF_WIDTHS 4 /* in_w 4, 8, 16, 32: index log2(in_w) - 2 */
static const dwp_rows_fn DWF_ROWS[2][DWF_WIDTHS][DWP_E_MAX - DWP_E_MIN + 1] = {
    {DWF_FNS(1, 4), DWF_FNS(1, 8), DWF_FNS(1, 16), DWF_FNS(1, 32)},
    {{NULL}, DWF_FNS(2, 8), DWF_FNS(2, 16), DWF_FNS(2, 32)},
};

static int32_t dwf_width_index(int32_t w)
{
    return w == 4 ? 0 : w == 8 ? 1 : w == 16 ? 2 : w == 32 ? 3 : -1;
}

int fv_dw_planes_ok(const fv_conv_params *conv, const fv_conv_params *dw)
{
    const int32_t s = dw->stride_w, c = dw->in_c;
    const int32_t k = conv->k_h * conv->k_w * conv->in_c;
    if (dw->depth_multiplier != 1 || dw->out_c != c || c < 2 || dw->k_h != 3 || dw->k_w != 3 || dw->dil_h != 1 ||
        dw->dil_w != 1 || (s != 1 && s != 2) || dw->stride_h != s || dw->pad_left != (s == 1 ? 1 : 0) ||
        dw->pad_top != dw->pad_left || dw->act_min != -128 || dw->act_max != 127 ||
        dwf_width_index(dw->in_w) < 0 || dw->in_h < 1 || (int64_t)dw->out_w * s != dw->in_w ||
        (int64_t)dw->out_h * s != dw->in_h || (dw->out_w & 3) != 0) {
        return 0; /* the pass's shapes: 3x3 SAME on an even width of the table, 4 outputs per pass */
    }
    if (DWF_ROWS[s - 1][dwf_width_index(dw->in_w)][0] == NULL) {
        return 0; /* no passes at this stride and width (the 4 outputs above already rule it out) */
    }
    /* the planes' halfwords in 64 bits: c and in_h are any int32 a model gives, in_w + 2 <= 34 */
    if (((int64_t)c * ((int64_t)dw->in_h + 1) + 2) * (dw->in_w + 2) > 2 * (int64_t)FV_DSP_DW_WORDS) {
        return 0;
    }
    /* the producer: its outputs are the layer's input, in pixel pairs and channel pairs, its
     * zero point -128 (the USAT), on the pre-widened path */
    if (conv->out_c != c || conv->out_h != dw->in_h || conv->out_w != dw->in_w || (c & 1) != 0 ||
        conv->output_offset != -128 || dw->input_offset != 128 || k > FV_DSP_MAX_K || !pw_fits(conv, k) ||
        !rq_fast_ok(conv->bias, conv->multiplier, conv->shift, conv->out_c, k, conv->output_offset)) {
        return 0;
    }
    if (!rq_fast_ok(dw->bias, dw->multiplier, dw->shift, c, 9, dw->output_offset)) {
        return 0;
    }
    for (int32_t ch = 0; ch < c; ch++) {
        if (-dw->shift[ch] < DWP_E_MIN || -dw->shift[ch] > DWP_E_MAX) {
            return 0;
        }
    }
    return 1;
}

void fv_conv2d_to_planes_opt(const fv_conv_params *conv, const fv_conv_params *dw, const int8_t *in)
{
    const int32_t pitch = dw->in_w + 2;
    const int32_t k = conv->k_h * conv->k_w * conv->in_c;
    FV_ASSERT(pw_fits(conv, k)); /* fv_dw_planes_ok held */
    conv2d_prewidened_planes(conv, in, k, pack_offset(conv->input_offset), (int16_t *)(void *)dw_plane, pitch,
                             (dw->in_h + 1) * pitch);
}

/* The padding rows of c channels' planes (h rows, wpr words per row): per channel its top row
 * (the bottom row of the channel before); the producer wrote the data rows' first words
 * (pw_pairs_planes_row). The zero comes through an empty asm, so that the compiler sees no
 * constant and does not turn the short loop into a memset call (about 25 instructions, where a
 * row takes 3-17 stores). */
static void dwf_pad(int32_t *d, int32_t c, int32_t h, int32_t wpr)
{
    int32_t z;
    __asm__("" : "=r"(z) : "0"(0));
    for (int32_t ch = 0; ch < c; ch++) {
        int32_t *const row_end = d + wpr;
        d[0] = z;
        for (int32_t *e = d + 1; e < row_end; e += 2) { /* wpr is odd: in_w is a multiple of 4 */
            e[0] = z;
            e[1] = z;
        }
        d += (h + 1) * wpr;
    }
}

void fv_depthwise_conv2d_from_planes_opt(const fv_conv_params *dw, int8_t *out)
{
    const int32_t c = dw->in_c, s = dw->stride_w, out_w = dw->out_w;
    const int32_t pitch = dw->in_w + 2, wpr = pitch / 2; /* halfwords and words per plane row */
    const int32_t rows = c * (dw->in_h + 1) + 2;         /* plane rows in all */
    const int32_t c0 = 2 - dw->pad_left;                 /* the first window's column */
    const int32_t zp21 = 2 * dw->output_offset + 1;
    const dwp_rows_fn *const fns = DWF_ROWS[s - 1][dwf_width_index(dw->in_w)];
    int8_t *const oend = out + (size_t)dw->out_h * (size_t)out_w * (size_t)c;
    dwp_chan rec[4];
    dwf_pad(dw_plane, c, dw->in_h, wpr);
    memset(dw_plane + (rows - 2) * wpr, 0, (size_t)(2 * wpr) * 4u); /* the last two rows */
    for (int32_t j = 0; j < 4; j++) { /* what every channel shares */
        rec[j].row_bytes = (out_w >> 2) * 8 * s;
        rec[j].xr_delta = s * 2 * pitch - rec[j].row_bytes;
        rec[j].orow_delta = 0;
        rec[j].c = c;
    }
    for (int32_t g4 = 0; g4 < c; g4 += 4) {
        const int32_t n = c - g4 < 4 ? c - g4 : 4;
        dwp_weights(dw->weights, c, g4, n, rec);
        for (int32_t j = 0; j < n; j++) {
            const int32_t ch = g4 + j;
            dwp_chan *const r = &rec[j];
            r->bias2 = dw->bias != NULL ? 2 * dw->bias[ch] : 0;
            r->rq = rq_of(dw->multiplier, dw->shift, ch, zp21);
            /* row -pad_top of the channel, the word of column c0 */
            r->xr = dw_plane + (ch * (dw->in_h + 1) + 1 - dw->pad_top) * wpr + (c0 >> 1);
            r->orow = out + ch;
            r->oend = oend + ch;
            fns[r->rq.e - DWP_E_MIN](r);
        }
    }
}

#endif /* FV_DSP_FUSED_PAIRS > 0 */

void fv_depthwise_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    const int32_t c = p->in_c;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t groups = (c + 3) >> 2;
    const int32_t out_h = p->out_h, out_w = p->out_w, s_h = p->stride_h, s_w = p->stride_w;
    /* plane columns: those of ceil(out_w / 2) pixel pairs */
    const int32_t ncols = (((out_w + 1) & ~1) - 1) * s_w + p->dil_w * (p->k_w - 1) + 1;
    const int32_t span_h = p->dil_h * (p->k_h - 1) + 1; /* plane rows of one output row */
    const int32_t cap_rows = FV_DSP_DW_WORDS / (2 * ncols);
    const int32_t off2 = pack_offset(p->input_offset);
    const int32_t *const bias = p->bias;
    const int32_t zp21 = 2 * p->output_offset + 1, act_min = p->act_min, act_max = p->act_max;
    const int full_range = act_min == -128 && act_max == 127;
    const int fast3 = p->k_h == 3 && p->k_w == 3 && p->dil_h == 1 && p->dil_w == 1 && (s_w == 1 || s_w == 2);
    const int32_t *const wg = dw_rec + DW_REC_W;
    int32_t band, oy0;

    FV_ASSERT(p->depth_multiplier > 0 && p->out_c == p->in_c * p->depth_multiplier);
    if (p->depth_multiplier != 1 || taps > DW_MAX_TAPS || cap_rows < span_h ||
        !rq_fast_ok(bias, p->multiplier, p->shift, c, taps, p->output_offset)) {
        fv_depthwise_conv2d_ref(p, in, out);
        return;
    }
    if (dw_planar(p, in, out)) {
        return;
    }
    band = (cap_rows - span_h) / s_h + 1; /* output rows per band */
    if (band > out_h) {
        band = out_h;
    }
    dw_rec[DW_REC_PITCH] = 8 * ncols;
    dw_rec[DW_REC_PITCH + 1] = 0;
    for (oy0 = 0; oy0 < out_h; oy0 += band) {
        const int32_t oy1 = oy0 + band < out_h ? oy0 + band : out_h;
        const int32_t y_start = oy0 * s_h - p->pad_top;
        const int32_t rows = (oy1 - 1 - oy0) * s_h + span_h;
        /* A partial last group goes first: the assembly loop stores 4 bytes per pixel, and the
         * 4 - n beyond the layer's channels land on the next pixel's first channels, which
         * group 0 writes afterwards (in this band, or the next one for the row's last pixel);
         * only the layer's last output row, whose last pixel has no next one, runs it in C. */
        for (int32_t gi = 0; gi < groups; gi++) {
            const int32_t g = (c & 3) != 0 ? (gi + groups - 1) % groups : gi;
            const int32_t g4 = 4 * g;
            const int32_t n = c - g4 < 4 ? c - g4 : 4; /* channels in the group: 4, or 1-3 in the last */
            const rq_chan *const rq = (const rq_chan *)(const void *)&dw_rec[DW_REC_RQ];
            /* the group's record: biases, requantisation, widened weights */
            for (int32_t j = 0; j < 4; j++) {
                const int32_t ch = g4 + (j < n ? j : n - 1); /* a missing lane copies a real one */
                const rq_chan r = rq_of(p->multiplier, p->shift, ch, zp21);
                dw_rec[DW_REC_BIAS + j] = bias != NULL ? 2 * bias[ch] : 0;
                dw_rec[DW_REC_RQ + 3 * j] = r.m;
                dw_rec[DW_REC_RQ + 3 * j + 1] = r.round_zp;
                dw_rec[DW_REC_RQ + 3 * j + 2] = r.e;
            }
            {
                const int8_t *w = p->weights + g4;
                int32_t *d = dw_rec + DW_REC_W;
                for (int32_t t = 0; t < taps; t++) {
                    const int32_t wv = n == 4 ? ld_s8x4(w) : ld_s8_tail(w, n); /* missing lanes: weight 0 */
                    const int32_t w02 = __sxtb16(wv), w13 = sxtb16_ror8(wv);
                    d[0] = __sadd16(w02, w02);
                    d[1] = __sadd16(w13, w13);
                    d += 2;
                    w += c;
                }
            }
            dw_widen(p, in, g4, n, y_start, rows, -p->pad_left, ncols, off2);
            /* the rows the assembly does: all, but the layer's last one for a partial group */
            int32_t asm_rows = 0;
            if (fast3 && full_range && out_w >= 2) {
                asm_rows = (n < 4 && oy1 == out_h) ? oy1 - oy0 - 1 : oy1 - oy0;
            }
            if (asm_rows > 0) {
                int8_t *const o_first = out + (size_t)oy0 * (size_t)out_w * (size_t)c + (size_t)g4;
                const dw_rows_job job = {dw_plane, o_first, c, out_w >> 1, asm_rows, out_w >> 1, dw_plane,
                                         8 * s_h * ncols, o_first, out_w * c};
                if (s_w == 1) {
                    dw_rows_s1(&job);
                } else {
                    dw_rows_s2(&job);
                }
            }
            for (int32_t oy = oy0; oy < oy1; oy++) {
                const int32_t *const xrow = dw_plane + 2 * (oy - oy0) * s_h * ncols;
                int8_t *const orow = out + (size_t)oy * (size_t)out_w * (size_t)c + (size_t)g4;
                int32_t ox = oy - oy0 < asm_rows ? out_w & ~1 : 0;
                for (; ox < out_w; ox += 2) { /* the rest: other shapes and ranges, the odd last pixel */
                    const int32_t *const xp = xrow + 2 * ox * s_w;
                    int8_t *const o0 = orow + (size_t)ox * (size_t)c;
                    int32_t a[8];
                    for (int32_t j = 0; j < 4; j++) {
                        a[j] = a[4 + j] = dw_rec[DW_REC_BIAS + j];
                    }
                    dw_block(xp, wg, p->k_h, p->k_w, 2 * p->dil_h * ncols, 2 * p->dil_w, 2 * s_w, a);
                    for (int32_t j = 0; j < n; j++) {
                        o0[j] = (int8_t)clamp_i32(rq2_raw(a[j], &rq[j]), act_min, act_max);
                    }
                    if (ox + 1 < out_w) {
                        for (int32_t j = 0; j < n; j++) {
                            o0[c + j] = (int8_t)clamp_i32(rq2_raw(a[4 + j], &rq[j]), act_min, act_max);
                        }
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
