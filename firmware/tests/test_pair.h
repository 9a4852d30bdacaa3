/*
 * What the tests of the fused pairs (test_kernels_dsp_fused.c: convolution then depthwise;
 * test_kernels_dsp_pool.c: convolution then 2x2 max pool) share: the random quantisation of a
 * layer's channels, the producing convolution's parameters, the byte comparison of the
 * reference's output against the optimised one's with a guard past its end, and the count of
 * passed and failed cases with the summary line that ends each program.
 *
 * Each helper draws from test_rng.h's one generator in the order the tests drew before they
 * shared it, so the cases a test's seed generates did not change. Included once per test program.
 */
#ifndef FV_TEST_PAIR_H
#define FV_TEST_PAIR_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fv_kernels.h"
#include "test_rng.h"

/* the biases fill_quant draws */
enum {
    BIAS_RANDOM = 0,  /* random within the fast requantisation's bound (|bias| <= 60000) */
    BIAS_ZERO = 1,    /* all zero (draws nothing for them) */
    BIAS_NEGATIVE = 2 /* in [-200000, -1000]: the sums then mostly below zero */
};

/* multipliers in [2^30, 2^31) (tflite's), shifts in [lo, hi]; biases by `kind` (BIAS_*) */
static inline void fill_quant(int32_t *b, int32_t *m, int32_t *s, int32_t n, int32_t lo, int32_t hi, int kind)
{
    for (int32_t i = 0; i < n; i++) {
        m[i] = (int32_t)(0x40000000u + (rnd() & 0x3FFFFFFFu));
        s[i] = between(lo, hi);
        b[i] = kind == BIAS_ZERO ? 0 : kind == BIAS_NEGATIVE ? -between(1000, 200000) : between(-60000, 60000);
    }
}

/* the pair's producer: k x k, stride 1, SAME (padding k / 2), in_c -> c over h x w, a random
 * input offset, the output of a ReLU with the zoo's zero point -128 */
static inline void same_conv(fv_conv_params *conv, int32_t h, int32_t w, int32_t in_c, int32_t c, int32_t k,
                             const int8_t *weights, const int32_t *bias, const int32_t *multiplier,
                             const int32_t *shift)
{
    memset(conv, 0, sizeof *conv);
    conv->in_h = conv->out_h = h;
    conv->in_w = conv->out_w = w;
    conv->in_c = in_c;
    conv->out_c = c;
    conv->k_h = conv->k_w = k;
    conv->stride_h = conv->stride_w = 1;
    conv->dil_h = conv->dil_w = 1;
    conv->pad_top = conv->pad_left = k / 2;
    conv->input_offset = between(-127, 128);
    conv->output_offset = -128; /* a ReLU's zero point: the zoo's */
    conv->act_min = -128;
    conv->act_max = 127;
    conv->weights = weights;
    conv->bias = bias;
    conv->multiplier = multiplier;
    conv->shift = shift;
}

/* 1 when the n bytes and the `guard` bytes after them agree; else prints the first difference
 * (`opt_name`: what the tested output is called) and gives 0 */
static inline int compare_bytes(const char *what, const char *opt_name, int32_t case_no, const int8_t *ref,
                                const int8_t *opt, int32_t n, int32_t guard)
{
    for (int32_t i = 0; i < n + guard; i++) {
        if (ref[i] != opt[i]) {
            printf("FAIL %s case %ld: byte %ld of %ld: ref %d %s %d%s\n", what, (long)case_no, (long)i, (long)n,
                   ref[i], opt_name, opt[i], i >= n ? " (guard)" : "");
            return 0;
        }
    }
    return 1;
}

/* a test program's count of cases */
typedef struct {
    long passed, failed;
} case_tally;

static inline void count_case(case_tally *t, int ok)
{
    t->passed += ok;
    t->failed += !ok;
}

/* case_fn(0) .. case_fn(n - 1), in that order (the cases draw their shapes as they run: the
 * order fixes them), each counted */
static inline void run_cases(case_tally *t, int32_t n, int (*case_fn)(int32_t case_no))
{
    for (int32_t i = 0; i < n; i++) {
        count_case(t, case_fn(i));
    }
}

/* the program's last line, "N passed, M failed", and its exit status: 0 only when all passed */
static inline int summary(const case_tally *t)
{
    printf("%ld passed, %ld failed\n", t->passed, t->failed);
    return t->failed == 0 ? 0 : 1;
}

#endif
