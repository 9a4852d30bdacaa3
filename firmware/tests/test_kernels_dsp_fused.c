/*
 * The fused convolution + depthwise pair (core/fv_kernels_dsp.c, fv_conv2d_to_planes_opt and
 * fv_depthwise_conv2d_from_planes_opt; the runner's plan_fusion) against the two reference
 * kernels run one after the other, byte for byte, under QEMU's MPS2 AN386 (make -C firmware
 * test-kernels-dsp). Built with a model's scratch sizes (FV_DSP_DW_WORDS=16384, room for
 * dsconv26's largest planes, 14,620 words; FV_DSP_PW_WORDS=4096), not the small ones of
 * test_kernels_dsp.c, so that the pairs fuse:
 *
 *  - the zoo's pairs at their real sizes (dsconv26: the first layer 3x3 over RGB into a stride-2
 *    depthwise at 32x32x26, the 1x1 layers into the stride-1 and stride-2 depthwise layers at
 *    16x16x52, 8x8x104, 4x4x208), each of which must qualify (fv_dw_planes_ok): a pair that
 *    silently stopped fusing fails here;
 *  - random pairs: widths 4, 8, 16, 32 (8-32 at stride 2), heights 1-12, strides 1 and 2, 2-64 channels (a partial
 *    group of 2 among them), 1x1 and 3x3 producers over 1-40 channels, any input offset of the
 *    producer and output offset of the depthwise;
 *  - pairs that must not fuse (a producer zero point other than -128, a width without passes,
 *    out_w 2, a shift the passes have no function for, another activation range, pad_top !=
 *    pad_left, dilation 2, out_c != in_c, planes larger than the buffer);
 *  - the runner: a model of the first four dsconv26 layers, run with the optimised kernels (the
 *    two pairs fused) and the reference, the same model with an ADD that reads the second
 *    convolution's output again (that pair must not fuse), and with the model's output in the
 *    second convolution's output (that pair must not fuse; the first, overwritten before, does).
 * Every output buffer is followed by guard bytes that must stay intact; the plane buffer is
 * filled with nonzero bytes before each case, so that unzeroed padding shows. The last line is
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
#define IN_MAX 16384
#define W_MAX 32768
#define MID_MAX 32768
#define OUT_MAX 16384

static int8_t in_buf[IN_MAX] __attribute__((aligned(4)));
static int8_t w_conv[W_MAX] __attribute__((aligned(4)));
static int8_t w_dw[9 * 256] __attribute__((aligned(4)));
static int32_t b_conv[256], m_conv[256], s_conv[256];
static int32_t b_dw[256], m_dw[256], s_dw[256];
static int8_t mid[MID_MAX] __attribute__((aligned(4)));
static int8_t out_ref[OUT_MAX + GUARD] __attribute__((aligned(4)));
static int8_t out_opt[OUT_MAX + GUARD] __attribute__((aligned(4)));

/* The pair: conv (k x k, stride 1, SAME, in_c -> c over h x w) then a 3x3 depthwise of stride s
 * (SAME: padding 1 before at stride 1, none at stride 2 on an even size). */
static void make_pair(fv_conv_params *conv, fv_conv_params *dw, int32_t h, int32_t w, int32_t in_c, int32_t c,
                      int32_t k, int32_t s)
{
    same_conv(conv, h, w, in_c, c, k, w_conv, b_conv, m_conv, s_conv);
    memset(dw, 0, sizeof *dw);
    dw->in_h = h;
    dw->in_w = w;
    dw->in_c = dw->out_c = c;
    dw->out_h = h / s;
    dw->out_w = w / s;
    dw->k_h = dw->k_w = 3;
    dw->stride_h = dw->stride_w = s;
    dw->dil_h = dw->dil_w = 1;
    dw->pad_top = dw->pad_left = s == 1 ? 1 : 0;
    dw->depth_multiplier = 1;
    dw->input_offset = 128; /* -(the convolution's zero point) */
    dw->output_offset = between(-128, 127);
    dw->act_min = -128;
    dw->act_max = 127;
    dw->weights = w_dw;
    dw->bias = (rnd() % 4u) == 0u ? NULL : b_dw;
    dw->multiplier = m_dw;
    dw->shift = s_dw;
    fill_i8(in_buf, h * w * in_c);
    fill_i8(w_conv, c * k * k * in_c);
    fill_i8(w_dw, 9 * c);
    fill_quant(b_conv, m_conv, s_conv, c, -14, -1, BIAS_RANDOM);
    fill_quant(b_dw, m_dw, s_dw, c, -13, -5, BIAS_RANDOM); /* the shifts the passes have functions for */
}

static int compare(const char *what, int32_t case_no, int32_t n)
{
    return compare_bytes(what, "fused", case_no, out_ref, out_opt, n, GUARD);
}

/* Every byte of the plane buffer nonzero and different per case, so that a padding word the
 * kernels should zero and do not changes the output whatever ran before. */
static void dirty_planes(void)
{
    const uint32_t fill = (rnd() | 0x01010101u) & 0x7F7F7F7Fu; /* no zero byte: 1..127 each */
    for (uint32_t i = 0; i < fv_dsp_dw_plane_words; i++) {
        fv_dsp_dw_plane[i] = (int32_t)fill;
    }
}

/* The pair fused against the two references: 1 when it qualified and every byte agrees. */
static int run_pair(const fv_conv_params *conv, const fv_conv_params *dw, int32_t case_no)
{
    const int32_t n_out = dw->out_h * dw->out_w * dw->out_c;
    if (!fv_dw_planes_ok(conv, dw)) {
        printf("FAIL pair case %ld: %ldx%ldx%ld k%ld -> %ld s%ld does not fuse\n", (long)case_no, (long)conv->in_h,
               (long)conv->in_w, (long)conv->in_c, (long)conv->k_h, (long)conv->out_c, (long)dw->stride_w);
        return 0;
    }
    memset(out_ref, 0x5A, sizeof out_ref);
    memset(out_opt, 0x5A, sizeof out_opt);
    dirty_planes();
    fv_conv2d_ref(conv, in_buf, mid);
    fv_depthwise_conv2d_ref(dw, mid, out_ref);
    fv_conv2d_to_planes_opt(conv, dw, in_buf);
    fv_depthwise_conv2d_from_planes_opt(dw, out_opt);
    if (!compare("pair", case_no, n_out)) {
        printf("  %ldx%ldx%ld k%ld -> %ld, depthwise s%ld\n", (long)conv->in_h, (long)conv->in_w, (long)conv->in_c,
               (long)conv->k_h, (long)conv->out_c, (long)dw->stride_w);
        return 0;
    }
    return 1;
}

typedef struct {
    int16_t hw, in_c, c;
    int8_t k, s;
} pair_shape;

/* dsconv26's pairs (models/zoo/dsconv26-*): the first layer into depthwise 1, 1x1 layers 2, 4,
 * 6, 8, 10 into depthwise layers 3, 5, 7, 9, 11 */
static const pair_shape ZOO_PAIRS[] = {
    {32, 3, 26, 3, 2}, {16, 26, 52, 1, 1}, {16, 52, 52, 1, 2},
    {8, 52, 104, 1, 1}, {8, 104, 104, 1, 2}, {4, 104, 208, 1, 1},
};
#define ZOO_PAIRS_N ((int32_t)(sizeof ZOO_PAIRS / sizeof ZOO_PAIRS[0]))
#define ZOO_REPEATS 3
#define RANDOM_CASES 120

/* case i: zoo pair i / ZOO_REPEATS, drawn again each repeat */
static int zoo_case(int32_t i)
{
    const pair_shape *z = &ZOO_PAIRS[i / ZOO_REPEATS];
    fv_conv_params conv, dw;
    make_pair(&conv, &dw, z->hw, z->hw, z->in_c, z->c, z->k, z->s);
    return run_pair(&conv, &dw, i);
}

static int random_case(int32_t case_no)
{
    fv_conv_params conv, dw;
    static const int32_t widths[4] = {4, 8, 16, 32};
    for (;;) {
        const int32_t s = between(1, 2);
        const int32_t w = widths[between(s - 1, 3)]; /* out_w a multiple of 4: the passes' */
        const int32_t h = s * between(1, 12 / s);
        const int32_t c = 2 * between(1, 32);
        const int32_t k = (rnd() % 3u) == 0u ? 3 : 1;
        const int32_t in_c = between(1, 40);
        if (h * w * in_c <= IN_MAX && h * w * c <= MID_MAX && c * k * k * in_c <= 1152 &&
            (h / s) * (w / s) * c <= OUT_MAX) {
            make_pair(&conv, &dw, h, w, in_c, c, k, s);
            break;
        }
    }
    return run_pair(&conv, &dw, case_no);
}

/* Pairs fv_dw_planes_ok must refuse (the runner then runs the layers apart), each beside a
 * control that differs only where said and must fuse. */
static int refused(const char *what, int expect_fuse, const fv_conv_params *conv, const fv_conv_params *dw)
{
    if (fv_dw_planes_ok(conv, dw) != expect_fuse) {
        printf("FAIL refusals: %s %s\n", what, expect_fuse ? "does not fuse" : "fuses");
        return 0;
    }
    return 1;
}

static int refusals(void)
{
    fv_conv_params conv, dw;
    int ok = 1;
    make_pair(&conv, &dw, 8, 8, 16, 16, 1, 1);
    ok &= refused("the control pair", 1, &conv, &dw);
    conv.output_offset = -100; /* no USAT: the offset would cost an instruction per value */
    dw.input_offset = 100;
    ok &= refused("a producer zero point -100", 0, &conv, &dw);
    make_pair(&conv, &dw, 6, 6, 16, 16, 1, 1);
    ok &= refused("width 6 (no pass functions)", 0, &conv, &dw);
    make_pair(&conv, &dw, 4, 4, 16, 16, 1, 2);
    ok &= refused("width 4 at stride 2 (out_w 2, not a multiple of 4)", 0, &conv, &dw);
    make_pair(&conv, &dw, 8, 8, 16, 16, 1, 1);
    s_dw[3] = -4;
    ok &= refused("a shift without pass functions", 0, &conv, &dw);
    make_pair(&conv, &dw, 8, 8, 16, 16, 1, 1);
    dw.act_min = -100;
    ok &= refused("an activation range the passes' SSAT does not give", 0, &conv, &dw);
    make_pair(&conv, &dw, 8, 8, 16, 16, 1, 1);
    dw.pad_top = 0;
    ok &= refused("pad_top 0 with pad_left 1", 0, &conv, &dw);
    make_pair(&conv, &dw, 8, 8, 16, 16, 1, 1);
    dw.dil_h = dw.dil_w = 2;
    dw.pad_top = dw.pad_left = 2; /* SAME at dilation 2 */
    ok &= refused("dilation 2", 0, &conv, &dw);
    make_pair(&conv, &dw, 8, 8, 16, 16, 1, 1);
    dw.out_c = 32; /* the depth multiplier left at 1: out_c alone must refuse */
    ok &= refused("out_c 32 of 16 channels", 0, &conv, &dw);
    dw.depth_multiplier = 2;
    ok &= refused("depth multiplier 2", 0, &conv, &dw);
    /* the planes of 32x32 and c channels: (33 c + 2) x 34 halfwords, 31,484 for 28 (fits the
     * test's 16,384 words), 33,728 for 30 (does not) */
    make_pair(&conv, &dw, 32, 32, 16, 28, 1, 1);
    ok &= refused("32x32x28 planes (31,484 halfwords)", 1, &conv, &dw);
    make_pair(&conv, &dw, 32, 32, 16, 30, 1, 1);
    ok &= refused("32x32x30 planes (33,728 halfwords, more than the buffer)", 0, &conv, &dw);
    return ok;
}

/* ---- through the runner: a model of dsconv26's first four layers ---------------------------- */
#define A_OFF 0u       /* the arena's two ping-pong tensors, as the plan lays them out */
#define B_OFF 26624u
#define X_OFF 40000u   /* the ADD's output */
#define ARENA (X_OFF + 13312u)
static int8_t arena_ref[ARENA] __attribute__((aligned(4)));
static int8_t arena_opt[ARENA] __attribute__((aligned(4)));
static int8_t w0[26 * 27], w1[9 * 26], w2[52 * 26], w3[9 * 52];
static int32_t q0[3][52], q1[3][52], q2[3][52], q3[3][52]; /* bias, multiplier, shift */
static uint8_t pixels[3072];

static void quant(int32_t q[3][52], int32_t n, int32_t lo, int32_t hi)
{
    fill_quant(q[0], q[1], q[2], n, lo, hi, BIAS_RANDOM);
}

/* variant 0: the four layers; 1: and an ADD that reads layer 2's output again; 2: the four
 * layers with the model's output at A, where both producers write: layer 2's output is the
 * model's (its NHWC bytes must be written, so that pair must not fuse), layer 0's is overwritten
 * by layer 2 before (that pair fuses) */
static int runner_case(int32_t variant)
{
    static const char *const names[3] = {"runner", "runner with add", "runner with output at A"};
    static const uint64_t to[3] = {0x5u, 0x1u, 0x1u}, from[3] = {0xAu, 0x2u, 0x2u};
    const int with_add = variant == 1;
    fv_conv_params p0, p1, p2, p3;
    fv_add_params add;
    fv_layer layers[5];
    fv_model model;
    fv_runner r_ref, r_opt;
    uint32_t n_out;
    int ok = 1;
    make_pair(&p0, &p1, 32, 32, 3, 26, 3, 2);
    make_pair(&p2, &p3, 16, 16, 26, 52, 1, 1);
    fill_i8(w0, (int32_t)sizeof w0);
    fill_i8(w1, (int32_t)sizeof w1);
    fill_i8(w2, (int32_t)sizeof w2);
    fill_i8(w3, (int32_t)sizeof w3);
    quant(q0, 26, -12, -6);
    quant(q1, 26, -12, -6);
    quant(q2, 52, -12, -6);
    quant(q3, 52, -12, -6);
    p0.input_offset = 128; /* the model's input: pixel - 128 */
    p0.weights = w0;
    p0.bias = q0[0];
    p0.multiplier = q0[1];
    p0.shift = q0[2];
    p1.weights = w1;
    p1.bias = q1[0];
    p1.multiplier = q1[1];
    p1.shift = q1[2];
    p2.weights = w2;
    p2.bias = q2[0];
    p2.multiplier = q2[1];
    p2.shift = q2[2];
    p2.input_offset = -p1.output_offset;
    p3.weights = w3;
    p3.bias = q3[0];
    p3.multiplier = q3[1];
    p3.shift = q3[2];
    p2.output_offset = -128;
    p3.input_offset = 128;
    /* {kind, params, in0, in1, out, in_bytes, out_bytes, macc} */
    layers[0] = (fv_layer){FV_OP_CONV_2D, &p0, B_OFF, 0u, A_OFF, 3072u, 26624u, 0u};
    layers[1] = (fv_layer){FV_OP_DEPTHWISE_CONV_2D, &p1, A_OFF, 0u, B_OFF, 26624u, 6656u, 0u};
    layers[2] = (fv_layer){FV_OP_CONV_2D, &p2, B_OFF, 0u, A_OFF, 6656u, 13312u, 0u};
    layers[3] = (fv_layer){FV_OP_DEPTHWISE_CONV_2D, &p3, A_OFF, 0u, B_OFF, 13312u, 13312u, 0u};
    memset(&add, 0, sizeof add);
    add.size = 13312;
    add.in1_offset = 128;
    add.in2_offset = -p3.output_offset;
    add.left_shift = 20;
    add.in1_multiplier = add.in2_multiplier = add.out_multiplier = 1 << 30;
    add.in1_shift = add.in2_shift = -1;
    add.out_shift = -20;
    add.output_offset = 0;
    add.act_min = -128;
    add.act_max = 127;
    /* the ADD reads layer 2's output (at A) a second time: that pair must not fuse */
    layers[4] = (fv_layer){FV_OP_ADD, &add, A_OFF, B_OFF, X_OFF, 13312u, 13312u, 0u};
    memset(&model, 0, sizeof model);
    model.id = "fused-test";
    model.n_layers = with_add ? 5u : 4u;
    model.layers = layers;
    model.input_offset = B_OFF;
    model.output_offset = with_add ? X_OFF : variant == 2 ? A_OFF : B_OFF;
    n_out = 13312u;
    model.num_classes = n_out;
    for (uint32_t i = 0; i < sizeof pixels; i++) {
        pixels[i] = (uint8_t)rnd();
    }
    memset(out_ref, 0x5A, sizeof out_ref);
    memset(out_opt, 0x5A, sizeof out_opt);
    if (fv_runner_prepare(&r_ref, &model, FV_KERNELS_REF) != 0 ||
        fv_runner_prepare(&r_opt, &model, FV_KERNELS_OPT) != 0) {
        printf("FAIL runner: prepare\n");
        return 0;
    }
    /* fused: both pairs, or only the first where layer 2's output is read again (the ADD, the
     * model's output) */
    if (r_ref.to_planes != 0 || r_opt.to_planes != to[variant] || r_opt.from_planes != from[variant]) {
        printf("FAIL %s: fused pairs to %lx from %lx\n", names[variant], (unsigned long)r_opt.to_planes,
               (unsigned long)r_opt.from_planes);
        ok = 0;
    }
    dirty_planes();
    fv_run(&r_ref, arena_ref, pixels, out_ref, NULL, NULL);
    fv_run(&r_opt, arena_opt, pixels, out_opt, NULL, NULL);
    return compare(names[variant], 0, (int32_t)n_out) && ok;
}

int main(void)
{
    case_tally t = {0, 0};
    test_rng_seed(0x2545F491u); /* the seed of every random case below */
    run_cases(&t, ZOO_PAIRS_N * ZOO_REPEATS, zoo_case);
    run_cases(&t, RANDOM_CASES, random_case);
    count_case(&t, refusals());
    run_cases(&t, 3, runner_case);
    printf("fused conv + depthwise vs reference: %ld zoo pairs, %d random pairs, refusals, 3 runner models\n",
           (long)(ZOO_PAIRS_N * ZOO_REPEATS), RANDOM_CASES);
    return summary(&t);
}
