/*
 * The fused convolution + max pool (core/fv_kernels_dsp.c, fv_conv_pool_ok and
 * fv_conv2d_pool_opt; the runner's plan_fusion) against the reference convolution then the
 * reference max pool, byte for byte, under QEMU's MPS2 AN386 (make -C firmware test-kernels-dsp).
 * Built with a model's scratch sizes (FV_DSP_PW_WORDS=4096, FV_DSP_MAX_K=1152, the baseline's
 * longest column; FV_DSP_POOL_WORDS=128), so that both of the kernel's paths run: the
 * pre-widened records (small layers, the whole int8 range) and the 2x2 blocks (the rest):
 *
 *  - the zoo's pairs at their real sizes (every 3x3 convolution that feeds a 2x2 pool: the first
 *    layers over RGB into 11, 12, 16 and 18 channels, 16, 22, 24, 44, 48, 32, 64 and 128 channels),
 *    each of which must qualify (fv_conv_pool_ok): a pair that silently stopped fusing fails;
 *  - random pairs: even and odd sizes 2-17 (odd: must be refused, and the unfused optimised
 *    kernels must still give the reference's bytes), 1x1 and 3x3 convolutions (stride 1 or 2,
 *    SAME or VALID, dilation 1 or 2), 1-48 input
 *    channels, 1-64 output channels with 11, 16, 18, 22 and 48 drawn often, any input and output
 *    offset, activation ranges the whole int8 range, a ReLU's (from the zero point) or narrower,
 *    biases random, zero, negative or absent, shifts -14..-1;
 *  - pairs that must not fuse (a negative multiplier, a left shift, a pool narrower than the
 *    convolution's range, 3x3 or stride-1 pools, padding, odd sizes, more channels than
 *    FV_DSP_POOL_WORDS);
 *  - the runner: a model of two (convolution, pool) pairs, the first pool's output apart from
 *    the convolution's input (written in place), the second's over it (written beside, then
 *    copied: pool_copy); the same with a layer that reads the first convolution's output again
 *    (that pair must not fuse; the second pair's output, fused and copied, compared too); with odd
 *    sizes (nothing fuses); and with the second pool's output over both its convolution's input
 *    and output (an in-place pool the copy could not serve: that pair must not fuse);
 *  - a 1x1 convolution over 16x16x128 into 128 and 127 channels: the pre-widened path in chunks.
 * Every output buffer is followed by guard bytes that must stay intact. The last line is
 * "N passed, M failed"; exit status 0 only when all passed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fv_kernels.h"
#include "fv_kernels_dsp.h"
#include "fv_runner.h"
#include "test_pair.h"
#include "test_rng.h"

#define GUARD 32
#define IN_MAX 32768                  /* 32x32x32, the baseline's second layer's input */
#define W_MAX (128 * 9 * 128)         /* the baseline's 3x3 over 128 channels */
#define CONV_MAX 32768
#define OUT_MAX 8192

static int8_t in_buf[IN_MAX] __attribute__((aligned(4)));
static int8_t w_conv[W_MAX] __attribute__((aligned(4)));
static int32_t b_conv[256], m_conv[256], s_conv[256];
static int8_t conv_out[CONV_MAX] __attribute__((aligned(4)));
static int8_t out_ref[OUT_MAX + GUARD] __attribute__((aligned(4)));
static int8_t out_opt[OUT_MAX + GUARD] __attribute__((aligned(4)));

/* conv: k x k, stride 1, SAME (padding k / 2), in_c -> c over h x w; pool: 2x2, stride 2, VALID,
 * the whole int8 range */
static void make_pair(fv_conv_params *conv, fv_pool_params *pool, int32_t h, int32_t w, int32_t in_c, int32_t c,
                      int32_t k)
{
    same_conv(conv, h, w, in_c, c, k, w_conv, b_conv, m_conv, s_conv);
    memset(pool, 0, sizeof *pool);
    pool->in_h = h;
    pool->in_w = w;
    pool->c = c;
    pool->out_h = h / 2;
    pool->out_w = w / 2;
    pool->f_h = pool->f_w = 2;
    pool->stride_h = pool->stride_w = 2;
    pool->act_min = -128;
    pool->act_max = 127;
    fill_i8(in_buf, h * w * in_c);
    fill_i8(w_conv, c * k * k * in_c);
    fill_quant(b_conv, m_conv, s_conv, c, -14, -1, BIAS_RANDOM);
}

static void describe(const fv_conv_params *conv)
{
    printf("  %ldx%ldx%ld k%ld -> %ld, offsets %ld %ld, range [%ld, %ld], bias %s\n", (long)conv->in_h,
           (long)conv->in_w, (long)conv->in_c, (long)conv->k_h, (long)conv->out_c, (long)conv->input_offset,
           (long)conv->output_offset, (long)conv->act_min, (long)conv->act_max,
           conv->bias == NULL ? "none" : "some");
}

static int compare(const char *what, int32_t case_no, int32_t n)
{
    return compare_bytes(what, "opt", case_no, out_ref, out_opt, n, GUARD);
}

/* The pair against the two references: fused when expect_fuse (and it must qualify), else it
 * must be refused and the unfused optimised kernels (the runner's fallback) run instead. */
static long n_fused, n_unfused; /* the pairs run each way */

static int run_pair(const fv_conv_params *conv, const fv_pool_params *pool, int expect_fuse, int32_t case_no)
{
    const int32_t n_out = pool->out_h * pool->out_w * pool->c;
    const int fuses = fv_conv_pool_ok(conv, pool);
    n_fused += fuses;
    n_unfused += !fuses;
    if (fuses != expect_fuse) {
        printf("FAIL pair case %ld: %s\n", (long)case_no, expect_fuse ? "does not fuse" : "fuses");
        describe(conv);
        return 0;
    }
    memset(out_ref, 0x5A, sizeof out_ref);
    memset(out_opt, 0x5A, sizeof out_opt);
    fv_conv2d_ref(conv, in_buf, conv_out);
    fv_max_pool_ref(pool, conv_out, out_ref);
    if (fuses) {
        fv_conv2d_pool_opt(conv, pool, in_buf, out_opt);
    } else {
        memset(conv_out, 0x33, sizeof conv_out);
        fv_conv2d_opt(conv, in_buf, conv_out);
        fv_max_pool_opt(pool, conv_out, out_opt);
    }
    if (!compare(fuses ? "fused pair" : "unfused pair", case_no, n_out)) {
        describe(conv);
        return 0;
    }
    return 1;
}

typedef struct {
    int16_t hw, in_c, c;
} pair_shape;

/* the zoo's (3x3 convolution, 2x2 pool) pairs (models/zoo/: vgg11-s5-co, vgg12-s31, vggw12-16-48-112-s43,
 * the resnetw members' first layer, the baseline's four), and the first layer of resnet:18, whose members left the zoo on 2026-12-02
 * (docs/history.md): its shape stays a case */
static const pair_shape ZOO_PAIRS[] = {
    {32, 3, 11}, {32, 3, 12}, {32, 3, 16}, {32, 3, 18}, {16, 22, 22}, {16, 24, 24}, {16, 16, 16}, {8, 44, 44},
    {8, 48, 48}, {32, 32, 32}, {16, 64, 64}, {8, 64, 128}, {4, 128, 128},
};
#define ZOO_PAIRS_N ((int32_t)(sizeof ZOO_PAIRS / sizeof ZOO_PAIRS[0]))
#define RANDOM_CASES 600

/* zoo pair i, which must fuse */
static int zoo_case(int32_t i)
{
    const pair_shape *z = &ZOO_PAIRS[i];
    fv_conv_params conv;
    fv_pool_params pool;
    make_pair(&conv, &pool, z->hw, z->hw, z->in_c, z->c, 3);
    return run_pair(&conv, &pool, 1, i);
}

/* The convolution of make_pair re-shaped: stride s, padding pad (0: VALID) and dilation d on an
 * in_h x in_w input (its output, and the pool's input and output, follow). */
static void reshape_conv(fv_conv_params *conv, fv_pool_params *pool, int32_t in_h, int32_t in_w, int32_t s,
                         int32_t pad, int32_t d)
{
    const int32_t span = d * (conv->k_h - 1) + 1;
    conv->in_h = in_h;
    conv->in_w = in_w;
    conv->stride_h = conv->stride_w = s;
    conv->dil_h = conv->dil_w = d;
    conv->pad_top = conv->pad_left = pad;
    conv->out_h = (in_h + 2 * pad - span) / s + 1;
    conv->out_w = (in_w + 2 * pad - span) / s + 1;
    pool->in_h = conv->out_h;
    pool->in_w = conv->out_w;
    pool->out_h = conv->out_h / 2;
    pool->out_w = conv->out_w / 2;
}

static int random_case(int32_t case_no)
{
    static const int32_t often[5] = {11, 16, 18, 22, 48};
    fv_conv_params conv;
    fv_pool_params pool;
    int32_t h, w, in_c, c, k, even, s, d, pad;
    for (;;) {
        h = between(2, 17);
        w = between(2, 17);
        if (rnd() % 3u != 0u) { /* mostly even sizes, which fuse (at stride 1, SAME) */
            h &= ~1;
            w &= ~1;
        }
        k = (rnd() % 4u) == 0u ? 1 : 3;
        in_c = (rnd() % 3u) == 0u ? 3 : between(1, 48);
        c = (rnd() % 2u) == 0u ? often[between(0, 4)] : between(1, 64);
        /* mostly the zoo's stride 1, SAME; sometimes stride 2, VALID or dilation 2 */
        s = (rnd() % 5u) == 0u ? 2 : 1;
        d = k == 3 && (rnd() % 6u) == 0u ? 2 : 1;
        pad = (rnd() % 5u) == 0u ? 0 : d * (k / 2);
        if (h * w * in_c <= IN_MAX && h * w * c <= CONV_MAX && c * k * k * in_c <= W_MAX && k * k * in_c <= 1152 &&
            (h + 2 * pad - d * (k - 1) - 1) / s + 1 >= 2 && (w + 2 * pad - d * (k - 1) - 1) / s + 1 >= 2) {
            break;
        }
    }
    make_pair(&conv, &pool, h, w, in_c, c, k);
    reshape_conv(&conv, &pool, h, w, s, pad, d);
    even = (conv.out_h & 1) == 0 && (conv.out_w & 1) == 0;
    conv.output_offset = (rnd() % 2u) == 0u ? -128 : between(-128, 127);
    switch (rnd() % 4u) {
    case 0: /* the whole int8 range */
        break;
    case 1: /* a ReLU: from the zero point up */
        conv.act_min = conv.output_offset;
        break;
    case 2: /* a ReLU6-like range */
        conv.act_min = conv.output_offset;
        conv.act_max = conv.output_offset + between(0, 127 - conv.output_offset);
        break;
    default: /* any range, and the pool's wider than or equal to it */
        conv.act_min = between(-128, 0);
        conv.act_max = between(conv.act_min, 127);
        pool.act_min = between(-128, conv.act_min);
        pool.act_max = between(conv.act_max, 127);
        break;
    }
    switch (rnd() % 4u) {
    case 0:
        fill_quant(b_conv, m_conv, s_conv, c, -14, -1, BIAS_ZERO);
        break;
    case 1:
        fill_quant(b_conv, m_conv, s_conv, c, -14, -1, BIAS_NEGATIVE);
        break;
    case 2:
        conv.bias = NULL;
        break;
    default:
        break;
    }
    return run_pair(&conv, &pool, even, case_no);
}

/* The pre-widened path in chunks (conv2d_prewidened_pool's loop over p0, pool_max + 2 * p0, the
 * odd channel only in the last chunk): a 1x1 convolution over 16x16x128 into 128 and 127
 * channels. Its records are 4 * ceil(128 / 4) + PW_REC_EXTRA (8, core/fv_kernels_dsp.c) = 136
 * words, so FV_DSP_PW_WORDS = 4096 holds 30 channel pairs a chunk (offline/dsp_buffers.py,
 * pw_words_of: the same rule); 64 (63) pairs then take chunks of 30, 30 and 4 (3, then the odd
 * channel), and pw_fits takes the layer since it is 1x1 over whole groups of 4 and 30 >= 12
 * (PW_MIN_CHUNK_PAIRS). The case checks that arithmetic before it runs, so that a change of the
 * build's sizes that made the layer fit one chunk, or leave the path, fails here. */
#define PW_REC_EXTRA_WORDS 8 /* core/fv_kernels_dsp.c: PW_REC_EXTRA */
#define PW_MIN_CHUNK_PAIRS_TEST 12 /* core/fv_kernels_dsp.c: PW_MIN_CHUNK_PAIRS */

static int chunked_case(int32_t i)
{
    fv_conv_params conv;
    fv_pool_params pool;
    const int32_t c = i == 0 ? 128 : 127;
    const int32_t case_no = ZOO_PAIRS_N + RANDOM_CASES + i; /* numbered on */
    const int32_t k = 128;
    const int32_t cap = FV_DSP_PW_WORDS / (4 * ((k + 3) / 4) + PW_REC_EXTRA_WORDS);
    make_pair(&conv, &pool, 16, 16, 128, c, 1);
    if (!(c / 2 > cap && cap >= PW_MIN_CHUNK_PAIRS_TEST && (c / 2 + cap - 1) / cap >= 3)) {
        printf("FAIL chunked case %ld: %ld channel pairs in chunks of %ld: not the chunked path\n", (long)case_no,
               (long)(c / 2), (long)cap);
        return 0;
    }
    return run_pair(&conv, &pool, 1, case_no);
}

/* Pairs fv_conv_pool_ok must refuse, each beside a control that differs only where said: the
 * pair make_pair draws (3x3), or the case before's again (`again`: drawn once, as the test drew
 * them before it was a table, so that the cases after it keep their draws), then one edit. */
typedef enum {
    EDIT_NONE,
    EDIT_NEGATE_MULTIPLIER_5, /* the order of the sums turned around: max is not max */
    EDIT_LEFT_SHIFT_2,        /* s << 1 may wrap: not monotone */
    EDIT_POOL_FIELD           /* the pool's int32_t at `field` (offsetof) set to `value` */
} refusal_edit;

typedef struct {
    const char *what;
    int expect_fuse;
    int again;
    int32_t h, w, in_c, c;
    refusal_edit edit;
    size_t field;
    int32_t value;
} refusal_case;

#define POOL_FIELD(f, v) EDIT_POOL_FIELD, offsetof(fv_pool_params, f), (v)

/* each case differs from the accepted pair above it (the control, or the channel count the
 * scratch holds) in the one thing named, so only that thing's check can refuse it */
static const refusal_case REFUSALS[] = {
    {"the control pair", 1, 0, 8, 8, 16, 16, EDIT_NONE, 0, 0},
    {"a negative multiplier", 0, 1, 8, 8, 16, 16, EDIT_NEGATE_MULTIPLIER_5, 0, 0},
    {"a left shift", 0, 0, 8, 8, 16, 16, EDIT_LEFT_SHIFT_2, 0, 0},
    /* the pool's clamp would change bytes the fused kernel does not clamp */
    {"a pool range narrower than the convolution's", 0, 0, 8, 8, 16, 16, POOL_FIELD(act_max, 100)},
    /* the pool's shape: the pool's output still 4x4 (the convolution's 8x8 halved) */
    {"a 2x2 pool of row stride 1", 0, 0, 8, 8, 16, 16, POOL_FIELD(stride_h, 1)},
    {"a 2x2 pool of column stride 1", 0, 0, 8, 8, 16, 16, POOL_FIELD(stride_w, 1)},
    {"a pool padded at the top", 0, 0, 8, 8, 16, 16, POOL_FIELD(pad_top, 1)},
    {"a pool padded at the left", 0, 0, 8, 8, 16, 16, POOL_FIELD(pad_left, 1)},
    {"a pool 3 rows high", 0, 0, 8, 8, 16, 16, POOL_FIELD(f_h, 3)},
    {"a pool 3 columns wide", 0, 0, 8, 8, 16, 16, POOL_FIELD(f_w, 3)},
    /* the convolution's output: odd, or as many channels as the scratch's pool_max words and one pair more */
    {"an odd width", 0, 0, 8, 7, 16, 16, EDIT_NONE, 0, 0},
    {"an odd height", 0, 0, 7, 8, 16, 16, EDIT_NONE, 0, 0},
    {"FV_DSP_POOL_WORDS channels", 1, 0, 4, 4, 8, FV_DSP_POOL_WORDS, EDIT_NONE, 0, 0},
    {"more channels than FV_DSP_POOL_WORDS", 0, 0, 4, 4, 8, FV_DSP_POOL_WORDS + 2, EDIT_NONE, 0, 0},
};
#define REFUSALS_N ((int32_t)(sizeof REFUSALS / sizeof REFUSALS[0]))

static int refusals(void)
{
    fv_conv_params conv;
    fv_pool_params pool;
    int ok = 1;
    for (int32_t i = 0; i < REFUSALS_N; i++) {
        const refusal_case *r = &REFUSALS[i];
        if (!r->again) {
            make_pair(&conv, &pool, r->h, r->w, r->in_c, r->c, 3);
        }
        switch (r->edit) {
        case EDIT_NEGATE_MULTIPLIER_5:
            m_conv[5] = -m_conv[5];
            break;
        case EDIT_LEFT_SHIFT_2:
            s_conv[2] = 1;
            break;
        case EDIT_POOL_FIELD: {
            int32_t *const f = (int32_t *)(void *)((char *)&pool + r->field);
            *f = r->value;
            break;
        }
        default:
            break;
        }
        if (fv_conv_pool_ok(&conv, &pool) != r->expect_fuse) {
            printf("FAIL refusals: %s %s\n", r->what, r->expect_fuse ? "does not fuse" : "fuses");
            ok = 0;
        }
    }
    return ok;
}

/* ---- through the runner ------------------------------------------------------------------------
 * Layers: 0 conv 32x32x3 -> 18 (at A), 1 pool -> 16x16x18 (at P), 2 conv -> 22 (at Q), 3 pool ->
 * 8x8x22 (at R, over P: the second convolution's input), and in variant 1 a 1x1 convolution that
 * reads layer 0's output again (at X). Variant 2: a 2x2 first convolution without padding, 31x31,
 * whose pools drop a row and a column: nothing fuses. Variant 3: layer 3's output at R3_OFF, over
 * the end of P (layer 2's input) and the start of Q (its output), and a layer 4 that reads it
 * (a 1x1 convolution into 2 channels at X, the model's output, so that Q is not the model's
 * output's bytes, which only_next_reads would refuse on its own): only the first pair fuses. The
 * pool in place is still exact: output pixel i (22 bytes at R3_OFF + 22 i) overwrites only Q's
 * bytes of pixels that output pixels before it have read (Q's first 32 bytes: output pixel 0's). */
#define IN_OFF 0u
#define A_OFF 4096u
#define P_OFF 22528u
#define Q_OFF 27136u
#define R_OFF 22528u
#define R3_OFF 25760u /* variant 3: 1408 bytes over P's last 1376 and Q's first 32 */
#define X_OFF 32768u
#define ARENA (X_OFF + 2048u)
static int8_t arena_ref[ARENA] __attribute__((aligned(4)));
static int8_t arena_opt[ARENA] __attribute__((aligned(4)));
static int8_t w0[18 * 27], w2[22 * 9 * 18], w4[2 * 22];
static int32_t q0[3][22], q2[3][22], q4[3][22]; /* bias, multiplier, shift */
static uint8_t pixels[3072];

static void conv_layer(fv_conv_params *p, int32_t hw, int32_t in_c, int32_t c, int32_t k, int32_t pad,
                       const int8_t *w, int32_t q[3][22])
{
    memset(p, 0, sizeof *p);
    p->in_h = p->in_w = hw;
    p->out_h = p->out_w = hw + 2 * pad - k + 1;
    p->in_c = in_c;
    p->out_c = c;
    p->k_h = p->k_w = k;
    p->stride_h = p->stride_w = 1;
    p->dil_h = p->dil_w = 1;
    p->pad_top = p->pad_left = pad;
    p->input_offset = 128; /* every tensor's zero point -128 */
    p->output_offset = -128;
    p->act_min = -128;
    p->act_max = 127;
    p->weights = w;
    p->bias = q[0];
    p->multiplier = q[1];
    p->shift = q[2];
}

static void pool_layer(fv_pool_params *p, const fv_conv_params *conv)
{
    memset(p, 0, sizeof *p);
    p->in_h = conv->out_h;
    p->in_w = conv->out_w;
    p->c = conv->out_c;
    p->out_h = conv->out_h / 2;
    p->out_w = conv->out_w / 2;
    p->f_h = p->f_w = 2;
    p->stride_h = p->stride_w = 2;
    p->act_min = -128;
    p->act_max = 127;
}

static int runner_case(int32_t variant)
{
    static const char *const names[4] = {"runner", "runner with a second reader", "runner with odd sizes",
                                         "runner with an in-place pool"};
    static const uint64_t to[4] = {0x5u, 0x4u, 0x0u, 0x1u}, from[4] = {0xAu, 0x8u, 0x0u, 0x2u},
                          copy[4] = {0x8u, 0x8u, 0x0u, 0x0u};
    const uint32_t r_off = variant == 3 ? R3_OFF : R_OFF;
    fv_conv_params c0, c2, c4;
    fv_pool_params p1, p3;
    fv_layer layers[5];
    fv_model model;
    fv_runner r_ref, r_opt;
    uint32_t n_out, r = 0;
    int ok = 1;
    fill_i8(w0, (int32_t)sizeof w0);
    fill_i8(w2, (int32_t)sizeof w2);
    fill_i8(w4, (int32_t)sizeof w4);
    fill_quant(q0[0], q0[1], q0[2], 22, -12, -6, BIAS_RANDOM);
    fill_quant(q2[0], q2[1], q2[2], 22, -12, -6, BIAS_RANDOM);
    fill_quant(q4[0], q4[1], q4[2], 22, -12, -6, BIAS_RANDOM);
    if (variant == 2) {
        conv_layer(&c0, 32, 3, 18, 2, 0, w0, q0); /* 31x31 */
    } else {
        conv_layer(&c0, 32, 3, 18, 3, 1, w0, q0);
    }
    pool_layer(&p1, &c0);
    conv_layer(&c2, p1.out_w, 18, 22, 3, 1, w2, q2);
    pool_layer(&p3, &c2);
    if (variant == 3) {
        conv_layer(&c4, 8, 22, 2, 1, 0, w4, q4); /* reads layer 3's output: the model's output is not Q */
    } else {
        conv_layer(&c4, 32, 18, 2, 1, 0, w4, q4);
    }
    /* {kind, params, in0, in1, out, in_bytes, out_bytes, macc} */
    {
        const uint32_t a = (uint32_t)(c0.out_h * c0.out_w * 18), p = (uint32_t)(p1.out_h * p1.out_w * 18);
        const uint32_t q = (uint32_t)(c2.out_h * c2.out_w * 22);
        r = (uint32_t)(p3.out_h * p3.out_w * 22);
        layers[0] = (fv_layer){FV_OP_CONV_2D, &c0, IN_OFF, 0u, A_OFF, 3072u, a, 0u};
        layers[1] = (fv_layer){FV_OP_MAX_POOL_2D, &p1, A_OFF, 0u, P_OFF, a, p, 0u};
        layers[2] = (fv_layer){FV_OP_CONV_2D, &c2, P_OFF, 0u, Q_OFF, p, q, 0u};
        layers[3] = (fv_layer){FV_OP_MAX_POOL_2D, &p3, Q_OFF, 0u, r_off, q, r, 0u};
        if (variant == 3) {
            layers[4] = (fv_layer){FV_OP_CONV_2D, &c4, r_off, 0u, X_OFF, r, 128u, 0u};
        } else {
            layers[4] = (fv_layer){FV_OP_CONV_2D, &c4, A_OFF, 0u, X_OFF, a, 2048u, 0u};
        }
        n_out = variant == 1 ? 2048u : variant == 3 ? 128u : r;
    }
    memset(&model, 0, sizeof model);
    model.id = "pool-test";
    model.n_layers = variant == 1 || variant == 3 ? 5u : 4u;
    model.layers = layers;
    model.input_offset = IN_OFF;
    model.output_offset = variant == 1 || variant == 3 ? X_OFF : r_off;
    model.num_classes = n_out;
    for (uint32_t i = 0; i < sizeof pixels; i++) {
        pixels[i] = (uint8_t)rnd();
    }
    memset(out_ref, 0x5A, sizeof out_ref);
    memset(out_opt, 0x5A, sizeof out_opt);
    memset(arena_ref, 0x11, sizeof arena_ref);
    memset(arena_opt, 0x22, sizeof arena_opt);
    if (fv_runner_prepare(&r_ref, &model, FV_KERNELS_REF) != 0 ||
        fv_runner_prepare(&r_opt, &model, FV_KERNELS_OPT) != 0) {
        printf("FAIL runner: prepare\n");
        return 0;
    }
    if (r_ref.to_pool != 0 || r_ref.from_pool != 0 || r_opt.to_pool != to[variant] ||
        r_opt.from_pool != from[variant] || r_opt.pool_copy != copy[variant] || r_opt.to_planes != 0) {
        printf("FAIL %s: fused pairs to %lx from %lx copy %lx\n", names[variant], (unsigned long)r_opt.to_pool,
               (unsigned long)r_opt.from_pool, (unsigned long)r_opt.pool_copy);
        ok = 0;
    }
    fv_run(&r_ref, arena_ref, pixels, out_ref, NULL, NULL);
    fv_run(&r_opt, arena_opt, pixels, out_opt, NULL, NULL);
    if ((variant == 1 || variant == 3) && memcmp(arena_ref + r_off, arena_opt + r_off, r) != 0) {
        /* the model's output is layer 4's: the second pool's output (variant 1: fused and
         * copied; variant 3: unfused, in place) is in the arena */
        printf("FAIL %s: the second pool's output differs from the reference's\n", names[variant]);
        ok = 0;
    }
    return compare(names[variant], 0, (int32_t)n_out) && ok;
}

int main(void)
{
    case_tally t = {0, 0};
    test_rng_seed(0x1D872B41u);
    run_cases(&t, ZOO_PAIRS_N, zoo_case);
    run_cases(&t, RANDOM_CASES, random_case);
    run_cases(&t, 2, chunked_case);
    count_case(&t, refusals());
    run_cases(&t, 4, runner_case);
    printf("fused conv + max pool vs reference: %ld zoo pairs, %d random pairs (%ld fused, %ld refused and run "
           "unfused; 2 chunked pre-widened among the fused), refusals, 4 runner models\n", (long)ZOO_PAIRS_N,
           RANDOM_CASES, n_fused, n_unfused);
    return summary(&t);
}
