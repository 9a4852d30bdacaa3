/*
 * The optimised kernels (core/fv_kernels_dsp.c) against the reference (core/fv_kernels_ref.c),
 * byte for byte, on random shapes and values: the oracle test of STYLE habit 2. Built for the
 * Cortex-M4 with FV_DSP_MAX_K=512, so that the layers whose columns do not fit the scratch (the
 * reference fallback) are exercised too, FV_DSP_DW_WORDS=256, so that the depthwise kernel's
 * plane is split into bands or does not fit, FV_DSP_PW_WORDS=1024, so that pre-widened 1x1 weights
 * go in chunks, and so is the ADD's table (512 words of the scratch); run under QEMU's MPS2 AN386 with semihosting
 * (make -C firmware test-kernels-dsp).
 *
 * Shapes cover what the fast paths special-case: channel counts that are and are not multiples
 * of 4 (the SXTB16 groups and their tails), odd output channel and pixel counts (the 2x2 blocks'
 * edges), strides, dilation, asymmetric padding, depth multipliers above 1, missing biases, and
 * every input offset sign. Each output buffer is followed by guard bytes that must stay intact.
 * Exit status 0 only when all passed; the last line is "N passed, M failed".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fv_kernels.h"
#include "test_rng.h"

#define CASES 300
#define MAX_BUF 8192
#define GUARD 32

static int8_t in_buf[MAX_BUF] __attribute__((aligned(4))); /* the skews below start from a word */
static int8_t w_buf[MAX_BUF] __attribute__((aligned(4)));
static int32_t bias_buf[256];
static int32_t mult_buf[256];
static int32_t shift_buf[256];
static int8_t out_ref[MAX_BUF + GUARD] __attribute__((aligned(4)));
static int8_t out_opt[MAX_BUF + GUARD] __attribute__((aligned(4)));

/* per-channel requantisation in the range the code generator produces: multiplier in [2^30, 2^31),
 * shift negative (downscaling; the zoo's are -12..-6), an activation range inside [-128, 127].
 * One layer in 8 has a shift of 0 or 1 somewhere, or a bias near 2^30: the optimised kernels'
 * fast requantisation does not cover those and must hand the layer to the reference. */
static void fill_quant(int32_t n, int with_bias)
{
    const int odd = (rnd() % 8u) == 0u;
    for (int32_t i = 0; i < n; i++) {
        mult_buf[i] = (int32_t)(0x40000000u + (rnd() & 0x3FFFFFFFu));
        shift_buf[i] = between(-14, -1);
        bias_buf[i] = with_bias ? between(-60000, 60000) : 0;
    }
    if (odd && n > 0) {
        const int32_t i = between(0, n - 1);
        if (rnd() % 2u) {
            shift_buf[i] = between(0, 1);
        } else if (with_bias) {
            bias_buf[i] = (rnd() % 2u) ? 1073000000 : -1073000000;
        }
    }
}

static void act_range(int32_t *lo, int32_t *hi, int32_t out_zp)
{
    switch (rnd() % 3u) {
    case 0:
        *lo = -128;
        *hi = 127;
        break;
    case 1: /* ReLU */
        *lo = out_zp;
        *hi = 127;
        break;
    default: /* ReLU6-like */
        *lo = out_zp;
        *hi = out_zp + between(0, 127 - out_zp);
        break;
    }
}

static int compare(const char *what, int32_t case_no, int32_t n)
{
    for (int32_t i = 0; i < n + GUARD; i++) {
        if (out_ref[i] != out_opt[i]) {
            printf("FAIL %s case %ld: byte %ld: ref %d opt %d%s\n", what, (long)case_no, (long)i, out_ref[i],
                   out_opt[i], i >= n ? " (guard)" : "");
            return 0;
        }
    }
    return 1;
}

/* output size for a padded, dilated window; 0 when it does not fit */
static int32_t out_size(int32_t in, int32_t pad_before, int32_t pad_after, int32_t k, int32_t dil, int32_t stride)
{
    const int32_t span = dil * (k - 1) + 1;
    const int32_t padded = in + pad_before + pad_after;
    return padded < span ? 0 : (padded - span) / stride + 1;
}

static int conv_run(fv_conv_params *pp, int32_t case_no, int depthwise, int32_t k_elems, int32_t n_out);

static int conv_case(int32_t case_no, int depthwise)
{
    fv_conv_params p;
    int32_t k_elems, n_out;
    memset(&p, 0, sizeof p);
    for (;;) {
        const int rgb = !depthwise && (rnd() % 6u) == 0u;
        p.k_h = rgb ? 3 : between(1, 5);
        p.k_w = rgb ? 3 : between(1, 5);
        p.in_h = between(1, 9);
        p.in_w = between(1, 9);
        p.stride_h = between(1, 3);
        p.stride_w = between(1, 3);
        p.dil_h = !rgb && (rnd() % 4u) == 0u ? 2 : 1;
        p.dil_w = !rgb && (rnd() % 4u) == 0u ? 2 : 1;
        p.pad_top = between(0, p.k_h - 1);
        p.pad_left = between(0, p.k_w - 1);
        p.out_h = out_size(p.in_h, p.pad_top, between(0, p.k_h - 1), p.k_h, p.dil_h, p.stride_h);
        p.out_w = out_size(p.in_w, p.pad_left, between(0, p.k_w - 1), p.k_w, p.dil_w, p.stride_w);
        if (depthwise) {
            p.in_c = (rnd() % 3u) == 0u ? 4 * between(1, 6) : between(1, 13);
            p.depth_multiplier = (rnd() % 3u) == 0u ? between(2, 3) : 1;
            p.out_c = p.in_c * p.depth_multiplier;
            k_elems = p.k_h * p.k_w * p.out_c;
        } else {
            /* some columns longer than FV_DSP_MAX_K (512): the reference fallback */
            p.in_c = (rnd() % 4u) == 0u ? between(14, 60) : between(1, 13);
            p.depth_multiplier = 1;
            p.out_c = between(1, 9);
            if (rgb) { /* the first layer's shape, which has its own gather: 3x3 over RGB */
                p.in_c = 3;
                p.out_c = between(1, 17);
            }
            k_elems = p.out_c * p.k_h * p.k_w * p.in_c;
        }
        n_out = p.out_h * p.out_w * p.out_c;
        if (p.out_h > 0 && p.out_w > 0 && p.out_c <= 256 && k_elems <= MAX_BUF && n_out <= MAX_BUF &&
            p.in_h * p.in_w * p.in_c <= MAX_BUF) {
            break;
        }
    }
    p.input_offset = between(-127, 128);
    p.output_offset = between(-128, 127);
    act_range(&p.act_min, &p.act_max, p.output_offset);
    return conv_run(&p, case_no, depthwise, k_elems, n_out);
}

/* The optimised kernels against the reference on one shape, values and parameters drawn here:
 * 1 when every output byte (and the guard bytes after them) agree. */
static int conv_run(fv_conv_params *pp, int32_t case_no, int depthwise, int32_t k_elems, int32_t n_out)
{
    fv_conv_params p = *pp;
    fill_i8(in_buf, p.in_h * p.in_w * p.in_c);
    fill_i8(w_buf, k_elems);
    fill_quant(p.out_c, 1);
    p.weights = w_buf;
    p.bias = (rnd() % 4u) == 0u ? NULL : bias_buf;
    p.multiplier = mult_buf;
    p.shift = shift_buf;
    memset(out_ref, 0x5A, sizeof out_ref);
    memset(out_opt, 0x5A, sizeof out_opt);
    if (depthwise) {
        fv_depthwise_conv2d_ref(&p, in_buf, out_ref);
        fv_depthwise_conv2d_opt(&p, in_buf, out_opt);
    } else {
        fv_conv2d_ref(&p, in_buf, out_ref);
        fv_conv2d_opt(&p, in_buf, out_opt);
    }
    if (!compare(depthwise ? "depthwise" : "conv", case_no, n_out)) {
        printf("  in %ldx%ldx%ld k %ldx%ld s %ld,%ld d %ld,%ld pad %ld,%ld out %ldx%ldx%ld dm %ld\n", (long)p.in_h,
               (long)p.in_w, (long)p.in_c, (long)p.k_h, (long)p.k_w, (long)p.stride_h, (long)p.stride_w,
               (long)p.dil_h, (long)p.dil_w, (long)p.pad_top, (long)p.pad_left, (long)p.out_h, (long)p.out_w,
               (long)p.out_c, (long)p.depth_multiplier);
        return 0;
    }
    return 1;
}

/* The zoo's shapes on smaller images, with the whole int8 range as the activation range (the
 * zoo's, and the only one the assembly paths take): the first layer (3x3 over RGB, 11, 12, 16 and
 * 26 channels out, SAME padding), 1x1 convolutions with a partial group (26 in) and strided
 * projections (16 -> 32, stride 2), a 3x3 with pre-widened weights, and 3x3 depthwise layers at
 * stride 1 and 2 (SAME: at stride 2 on an even input the padding is after, not before) over 26
 * (a partial group), 52 and 104 channels, on images whose plane is split into bands by the test
 * build's small FV_DSP_DW_WORDS (256) and on ones it holds whole; 1x1 layers whose pre-widened
 * weights the test build's FV_DSP_PW_WORDS (1024) holds only in chunks of channel pairs (36 -> 72,
 * 64 -> 64). Each shape 4 times, fresh values. */
typedef struct {
    int8_t depthwise, k, stride;
    int16_t in_hw, in_c, out_c;
} zoo_shape;

static const zoo_shape ZOO_SHAPES[] = {
    {0, 3, 1, 8, 3, 11},   {0, 3, 1, 9, 3, 12},   {0, 3, 1, 8, 3, 16},  {0, 3, 1, 7, 3, 26},
    {0, 1, 1, 8, 26, 52},  {0, 1, 2, 8, 16, 32},  {0, 1, 2, 4, 36, 72}, {0, 3, 1, 6, 11, 22},
    {1, 3, 1, 16, 26, 26}, {1, 3, 2, 16, 26, 26}, {1, 3, 1, 8, 52, 52}, {1, 3, 2, 8, 52, 52},
    {1, 3, 1, 4, 104, 104}, {1, 3, 2, 7, 104, 104}, {1, 3, 1, 7, 12, 12}, {1, 3, 2, 5, 8, 8},
    {0, 1, 1, 6, 64, 64},
};
#define ZOO_REPEATS 4
#define ZOO_CASES ((int32_t)(sizeof ZOO_SHAPES / sizeof ZOO_SHAPES[0]) * ZOO_REPEATS)

static int zoo_case(int32_t case_no)
{
    const zoo_shape *z = &ZOO_SHAPES[case_no / ZOO_REPEATS];
    fv_conv_params p;
    int32_t k_elems;
    memset(&p, 0, sizeof p);
    p.k_h = p.k_w = z->k;
    p.stride_h = p.stride_w = z->stride;
    p.dil_h = p.dil_w = 1;
    p.in_h = p.in_w = z->in_hw;
    p.in_c = z->in_c;
    p.out_c = z->out_c;
    p.depth_multiplier = z->depthwise ? 1 : 0;
    /* SAME: out = ceil(in / stride), the padding split with the odd one after */
    p.out_h = p.out_w = (z->in_hw + z->stride - 1) / z->stride;
    {
        const int32_t total = (p.out_h - 1) * z->stride + z->k - z->in_hw;
        p.pad_top = p.pad_left = total > 0 ? total / 2 : 0;
    }
    p.input_offset = between(-127, 128);
    p.output_offset = between(-128, 127);
    p.act_min = -128;
    p.act_max = 127;
    k_elems = z->depthwise ? z->k * z->k * p.out_c : p.out_c * z->k * z->k * p.in_c;
    if (p.in_h * p.in_w * p.in_c > MAX_BUF || k_elems > MAX_BUF || p.out_h * p.out_w * p.out_c > MAX_BUF) {
        printf("zoo shape %ld does not fit the test's buffers\n", (long)(case_no / ZOO_REPEATS));
        return 0;
    }
    return conv_run(&p, case_no, z->depthwise, k_elems, p.out_h * p.out_w * p.out_c);
}

/* 3x3 depthwise layers of the channel-plane path (core/fv_kernels_dsp.c, dw_planar): stride 1
 * with a padding of 1 before, stride 2 with none (the zoo's SAME layers), one case in 6 the other
 * padding (the 4-channel path), images 1-32 pixels wide and 1-12 high, so that out_w % 4 leaves
 * 0-3 outputs for the C tail and odd widths leave a last pixel alone in its word, channel counts
 * with a partial group of 1-3, any padding above, the whole int8 range (the only one it takes). */
static int dw3x3_case(int32_t case_no)
{
    fv_conv_params p;
    memset(&p, 0, sizeof p);
    for (;;) {
        const int32_t s = between(1, 2);
        const int other = (rnd() % 6u) == 0u;
        p.k_h = p.k_w = 3;
        p.dil_h = p.dil_w = 1;
        p.stride_h = between(1, 2);
        p.stride_w = s;
        p.in_w = between(1, 32);
        p.in_h = between(1, 12);
        p.in_c = (rnd() % 2u) == 0u ? 4 * between(1, 8) : between(1, 30);
        p.depth_multiplier = 1;
        p.out_c = p.in_c;
        p.pad_left = (s == 1) != other ? 1 : 0;
        p.pad_top = between(0, 2);
        p.out_h = out_size(p.in_h, p.pad_top, between(0, 2), 3, 1, p.stride_h);
        p.out_w = out_size(p.in_w, p.pad_left, between(0, 2), 3, 1, s);
        if (p.out_h > 0 && p.out_w > 0 && p.in_h * p.in_w * p.in_c <= MAX_BUF &&
            p.out_h * p.out_w * p.out_c <= MAX_BUF) {
            break;
        }
    }
    p.input_offset = between(-127, 128);
    p.output_offset = between(-128, 127);
    p.act_min = -128;
    p.act_max = 127;
    return conv_run(&p, case_no, 1, 9 * p.out_c, p.out_h * p.out_w * p.out_c);
}

static int fc_case(int32_t case_no)
{
    fv_fc_params p;
    memset(&p, 0, sizeof p);
    p.depth = (rnd() % 4u) == 0u ? between(513, 800) : between(1, 512);
    p.out_c = between(1, MAX_BUF / p.depth < 17 ? MAX_BUF / p.depth : 17); /* the weights fit w_buf */
    p.input_offset = between(-127, 128);
    p.output_offset = between(-128, 127);
    act_range(&p.act_min, &p.act_max, p.output_offset);
    fill_i8(in_buf, p.depth);
    fill_i8(w_buf, p.depth * p.out_c);
    fill_quant(p.out_c, 1);
    p.weights = w_buf;
    p.bias = (rnd() % 4u) == 0u ? NULL : bias_buf;
    p.multiplier = mult_buf;
    p.shift = shift_buf;
    memset(out_ref, 0x5A, sizeof out_ref);
    memset(out_opt, 0x5A, sizeof out_opt);
    fv_fully_connected_ref(&p, in_buf, out_ref);
    fv_fully_connected_opt(&p, in_buf, out_opt);
    if (!compare("fully_connected", case_no, p.out_c)) {
        printf("  depth %ld out_c %ld\n", (long)p.depth, (long)p.out_c);
        return 0;
    }
    return 1;
}

/* Max pooling: the 2x2 stride-2 windows of the zoo in about 3 cases in 4 (every zoo case, which
 * main asks for every other case, and half the others), with the channel counts that have their
 * own image kernels (12, 16, 24; 32, 44, 48, 64, 128 when out_w is even) or take the word-overlap
 * path (c >= 4, not a multiple of 4) often; other windows, strides and padding; one case in 8
 * with a padding of up to f + 1, so that whole windows lie in the padding (the reference's -128,
 * clamped). Input and output start 0-3 bytes past a word boundary (the row kernels need alignment
 * and must be refused without).
 * With zoo set: the zoo's case, a 2x2 stride-2 window, no padding, the whole int8 range, aligned
 * data, channel counts with a row kernel or not, images of odd and even sizes. */
static int pool_case(int32_t case_no, int zoo)
{
    /* the whole-pixel kernels (12, 16, 24) and the chunked ones (32, 44, 48, 64, 128) */
    static const int32_t row_kernel_c[] = {12, 16, 24, 32, 44, 48, 64, 128};
    fv_pool_params p;
    int32_t n_out, in_skew, out_skew;
    memset(&p, 0, sizeof p);
    for (;;) {
        const int two = zoo || (rnd() % 2u) == 0u; /* the unrolled 2x2 window, the zoo's */
        const int far = !two && (rnd() % 8u) == 0u;
        p.f_h = two ? 2 : between(1, 4);
        p.f_w = two ? 2 : between(1, 4);
        p.stride_h = two ? 2 : between(1, 3);
        p.stride_w = two ? 2 : between(1, 3);
        p.in_h = between(1, 12);
        p.in_w = between(1, 12);
        switch (rnd() % 4u) {
        case 0:
            p.c = between(1, 13);
            break;
        case 1:
            p.c = row_kernel_c[rnd() % 8u];
            break;
        default:
            p.c = 4 * between(1, 8);
            break;
        }
        if (zoo) {
            p.c = (rnd() % 4u) != 0u ? row_kernel_c[rnd() % 8u] : between(4, 50);
        }
        p.pad_top = zoo ? 0 : between(0, far ? p.f_h + 1 : p.f_h - 1);
        p.pad_left = zoo ? 0 : between(0, far ? p.f_w + 1 : p.f_w - 1);
        p.out_h = out_size(p.in_h, p.pad_top, between(0, far ? p.f_h + 1 : p.f_h - 1), p.f_h, 1, p.stride_h);
        p.out_w = out_size(p.in_w, p.pad_left, between(0, far ? p.f_w + 1 : p.f_w - 1), p.f_w, 1, p.stride_w);
        n_out = p.out_h * p.out_w * p.c;
        if (p.out_h > 0 && p.out_w > 0 && n_out + 4 <= MAX_BUF && p.in_h * p.in_w * p.c + 4 <= MAX_BUF) {
            break;
        }
    }
    in_skew = zoo || (rnd() % 2u) ? 0 : between(1, 3);
    out_skew = zoo || (rnd() % 2u) ? 0 : between(1, 3);
    act_range(&p.act_min, &p.act_max, between(-128, 127));
    if (zoo) {
        p.act_min = -128;
        p.act_max = 127;
    }
    fill_i8(in_buf, p.in_h * p.in_w * p.c + 4);
    memset(out_ref, 0x5A, sizeof out_ref);
    memset(out_opt, 0x5A, sizeof out_opt);
    fv_max_pool_ref(&p, in_buf + in_skew, out_ref + out_skew);
    fv_max_pool_opt(&p, in_buf + in_skew, out_opt + out_skew);
    if (!compare("max_pool", case_no, n_out + out_skew)) {
        printf("  in %ldx%ldx%ld f %ldx%ld s %ld,%ld pad %ld,%ld out %ldx%ld act %ld..%ld skew %ld,%ld\n",
               (long)p.in_h, (long)p.in_w, (long)p.c, (long)p.f_h, (long)p.f_w, (long)p.stride_h, (long)p.stride_w,
               (long)p.pad_top, (long)p.pad_left, (long)p.out_h, (long)p.out_w, (long)p.act_min, (long)p.act_max,
               (long)in_skew, (long)out_skew);
        return 0;
    }
    return 1;
}

/* ADD with the parameters' ranges of prepared models (input multipliers at most 1/2: shifts 0..-3;
 * the output's 2 max(s1, s2) / (2^20 s_out): shifts -22..-15, here -22..-10) and, one case in 8, an output shift
 * outside the fast requantisation's range. Three cases in four give one input TFLite's exact 1/2
 * (multiplier 2^30, shift 0: the larger scale's, taken without a table), either input; one in
 * eight an output multiplier of exactly 2^30. Sizes on both sides of the tables' threshold (64),
 * multiples of 4 and not (the 4-element loop's tail); inputs and output 0-3 bytes off a word. */
static int add_case(int32_t case_no)
{
    fv_add_params p;
    int8_t *in2 = w_buf;
    int32_t skew1, skew2, skew_o;
    memset(&p, 0, sizeof p);
    p.size = (rnd() % 4u) == 0u ? between(1, 100) : between(64, MAX_BUF - 4);
    p.in1_offset = between(-127, 128);
    p.in2_offset = between(-127, 128);
    p.left_shift = 20;
    p.in1_multiplier = (int32_t)(0x40000000u + (rnd() & 0x3FFFFFFFu));
    p.in2_multiplier = (int32_t)(0x40000000u + (rnd() & 0x3FFFFFFFu));
    p.in1_shift = between(-3, 0); /* 0 with another multiplier: the tables take fv_mbqm's general path */
    p.in2_shift = between(-3, -1);
    switch (rnd() % 4u) {
    case 0:
        break;
    case 1:
        p.in2_multiplier = 1 << 30;
        p.in2_shift = 0;
        break;
    default:
        p.in1_multiplier = 1 << 30;
        p.in1_shift = 0;
        break;
    }
    p.out_multiplier = (rnd() % 8u) == 0u ? (1 << 30) : (int32_t)(0x40000000u + (rnd() & 0x3FFFFFFFu));
    p.out_shift = (rnd() % 8u) == 0u ? between(-1, 1) : between(-22, -10);
    p.output_offset = between(-128, 127);
    act_range(&p.act_min, &p.act_max, p.output_offset);
    skew1 = between(0, 3);
    skew2 = between(0, 3);
    skew_o = between(0, 3);
    fill_i8(in_buf, p.size + 4);
    fill_i8(in2, p.size + 4);
    memset(out_ref, 0x5A, sizeof out_ref);
    memset(out_opt, 0x5A, sizeof out_opt);
    fv_add_ref(&p, in_buf + skew1, in2 + skew2, out_ref + skew_o);
    fv_add_opt(&p, in_buf + skew1, in2 + skew2, out_opt + skew_o);
    if (!compare("add", case_no, p.size + skew_o)) {
        printf("  size %ld offsets %ld %ld multipliers %ld %ld %ld shifts %ld %ld %ld act %ld..%ld\n", (long)p.size,
               (long)p.in1_offset, (long)p.in2_offset, (long)p.in1_multiplier, (long)p.in2_multiplier,
               (long)p.out_multiplier, (long)p.in1_shift, (long)p.in2_shift, (long)p.out_shift, (long)p.act_min,
               (long)p.act_max);
        return 0;
    }
    return 1;
}

int main(void)
{
    long passed = 0, failed = 0;
    test_rng_seed(0x9E3779B9u); /* the seed of every random case below */
    for (int32_t i = 0; i < CASES; i++) {
        const int ok = conv_case(i, 0);
        passed += ok;
        failed += !ok;
    }
    for (int32_t i = 0; i < CASES; i++) {
        const int ok = conv_case(i, 1);
        passed += ok;
        failed += !ok;
    }
    for (int32_t i = 0; i < ZOO_CASES; i++) {
        const int ok = zoo_case(i);
        passed += ok;
        failed += !ok;
    }
    for (int32_t i = 0; i < CASES; i++) {
        const int ok = dw3x3_case(i);
        passed += ok;
        failed += !ok;
    }
    for (int32_t i = 0; i < CASES; i++) {
        const int ok = fc_case(i);
        passed += ok;
        failed += !ok;
    }
    for (int32_t i = 0; i < 3 * CASES; i++) {
        const int ok = pool_case(i, i % 2 == 0);
        passed += ok;
        failed += !ok;
    }
    for (int32_t i = 0; i < 2 * CASES; i++) {
        const int ok = add_case(i);
        passed += ok;
        failed += !ok;
    }
    printf("dsp vs reference: %d conv, %d depthwise, %d 3x3 depthwise, %d fully connected, %d max pool, %d add random "
           "cases\n", CASES, CASES, CASES, CASES, 3 * CASES, 2 * CASES);
    printf("dsp vs reference: %ld cases of the zoo's convolution and depthwise shapes\n", (long)ZOO_CASES);
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
