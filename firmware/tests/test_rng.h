/*
 * The random shapes and values of the DSP kernel tests (test_kernels_dsp.c,
 * test_kernels_dsp_fused.c, test_kernels_dsp_pool.c): Marsaglia's 32-bit xorshift (shifts 13,
 * 17, 5; "Xorshift RNGs", Journal of Statistical Software 8(14), 2003), the same sequence on
 * the host and the Cortex-M4,
 * so a failing case is reproduced by its index alone.
 *
 * One generator per test program: each includes this header once and calls test_rng_seed() with
 * its own seed before the first draw (the seed fixes every case the program generates; change it
 * and the cases change). A state of 0 would stay 0 (xorshift's one fixed point), so the seed must
 * not be 0; the state starts at 1 only so that a program that forgot to seed still varies.
 */
#ifndef FV_TEST_RNG_H
#define FV_TEST_RNG_H

#include <stdint.h>

static uint32_t test_rng_state = 1u;

static inline void test_rng_seed(uint32_t seed)
{
    test_rng_state = seed;
}

static inline uint32_t rnd(void)
{
    test_rng_state ^= test_rng_state << 13;
    test_rng_state ^= test_rng_state >> 17;
    test_rng_state ^= test_rng_state << 5;
    return test_rng_state;
}

/* uniform in [lo, hi] (hi - lo + 1 far below 2^32: the modulo's bias is negligible for a test) */
static inline int32_t between(int32_t lo, int32_t hi)
{
    return lo + (int32_t)(rnd() % (uint32_t)(hi - lo + 1));
}

static inline void fill_i8(int8_t *p, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        p[i] = (int8_t)between(-128, 127);
    }
}

#endif
