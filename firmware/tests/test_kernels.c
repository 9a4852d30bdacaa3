/*
 * Byte-exact test of the reference kernels (core/fv_kernels_ref.c) and of the fixed-point
 * primitives (core/fv_fixedpoint.h) against vectors computed by the numpy engine
 * (tests/make_kernel_vectors.py -> build/test/kernel_vectors.h, compiled in: no file I/O, so the
 * same program can run under QEMU or on a board with a printf).
 *
 * Each kernel writes into a buffer pre-filled with a canary byte and followed by guard bytes:
 * the output must equal the expected bytes and the guard must be untouched. Exit status 0 only
 * when everything passed; the last line is "N passed, M failed".
 *
 * Build and run: make -C firmware -f tests/kernels.mk test-kernels (see tests/kernels.mk).
 * Built with -DFV_TEST_OPT, the conv, depthwise, fully connected, max pool and ADD vectors go through the
 * optimised kernels (fv_*_opt) instead: `make -C firmware test-kernels-dsp` runs that build
 * with the Cortex-M4 DSP kernels under QEMU (ports/stm32f4/port.mk).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fv_fixedpoint.h"
#include "fv_kernels.h"

enum kv_op {
    KV_OP_CONV,
    KV_OP_DEPTHWISE,
    KV_OP_FC,
    KV_OP_MAXPOOL,
    KV_OP_AVGPOOL,
    KV_OP_ADD,
    KV_OP_MEAN,
    KV_OP_PAD,
    KV_OP_SOFTMAX
};

typedef struct {
    const char *name;
    enum kv_op op;
    const void *params; /* the fv_*_params struct of op */
    const int8_t *in1;
    const int8_t *in2; /* ADD only */
    const int8_t *expected;
    int32_t out_size;
} fv_kernel_vector;

enum kv_prim {
    KV_PRIM_SRDHM,   /* a0, a1 -> fv_srdhm(a0, a1) */
    KV_PRIM_RDBPOT,  /* a0, a1 -> fv_rdbpot(a0, a1) */
    KV_PRIM_MBQM,    /* a0, a1, a2 -> fv_mbqm(a0, a1, a2) */
    KV_PRIM_SAT_SHL, /* a0, a1 -> fv_sat_shl(a0, a1) */
    KV_PRIM_CLZ,     /* a0 (as uint32) -> fv_clz32(a0) */
    KV_PRIM_EXP,     /* a0 (Q5.26, <= 0) -> exp in Q0.31 */
    KV_PRIM_RECIP    /* a0 (Q0.31, >= 0) -> 1 / (1 + a0) in Q0.31 */
};

typedef struct {
    const char *name;
    enum kv_prim fn;
    const int32_t *a0, *a1, *a2;
    const int32_t *expected;
    int32_t n;
} fv_prim_vector;

#include "kernel_vectors.h"

#ifdef FV_TEST_OPT
#define FV_CONV2D fv_conv2d_opt
#define FV_DEPTHWISE fv_depthwise_conv2d_opt
#define FV_FC fv_fully_connected_opt
#define FV_MAXPOOL fv_max_pool_opt
#define FV_ADD fv_add_opt
#else
#define FV_CONV2D fv_conv2d_ref
#define FV_DEPTHWISE fv_depthwise_conv2d_ref
#define FV_FC fv_fully_connected_ref
#define FV_MAXPOOL fv_max_pool_ref
#define FV_ADD fv_add_ref
#endif

#define GUARD 64
#define CANARY ((int8_t)0x5A)

static int8_t out_buf[FV_VECTORS_MAX_OUT + GUARD];

static void run_kernel(const fv_kernel_vector *v, int8_t *out)
{
    switch (v->op) {
    case KV_OP_CONV:
        FV_CONV2D((const fv_conv_params *)v->params, v->in1, out);
        break;
    case KV_OP_DEPTHWISE:
        FV_DEPTHWISE((const fv_conv_params *)v->params, v->in1, out);
        break;
    case KV_OP_FC:
        FV_FC((const fv_fc_params *)v->params, v->in1, out);
        break;
    case KV_OP_MAXPOOL:
        FV_MAXPOOL((const fv_pool_params *)v->params, v->in1, out);
        break;
    case KV_OP_AVGPOOL:
        fv_avg_pool_ref((const fv_pool_params *)v->params, v->in1, out);
        break;
    case KV_OP_ADD:
        FV_ADD((const fv_add_params *)v->params, v->in1, v->in2, out);
        break;
    case KV_OP_MEAN:
        fv_mean_ref((const fv_mean_params *)v->params, v->in1, out);
        break;
    case KV_OP_PAD:
        fv_pad_ref((const fv_pad_params *)v->params, v->in1, out);
        break;
    case KV_OP_SOFTMAX:
        fv_softmax_ref((const fv_softmax_params *)v->params, v->in1, out);
        break;
    default:
        break;
    }
}

/* 1 when the kernel's output matches and nothing past it was written */
static int check_kernel(const fv_kernel_vector *v)
{
    const size_t n = (size_t)v->out_size;
    size_t i;
    int32_t mismatches = 0;

    memset(out_buf, CANARY, n + GUARD);
    run_kernel(v, out_buf);
    for (i = 0; i < n; i++) {
        if (out_buf[i] != v->expected[i]) {
            if (mismatches < 5) {
                printf("  %s[%lu]: got %d, expected %d\n", v->name, (unsigned long)i, out_buf[i], v->expected[i]);
            }
            mismatches++;
        }
    }
    for (i = n; i < n + GUARD; i++) {
        if (out_buf[i] != CANARY) {
            printf("  %s: wrote past the output, at offset %lu\n", v->name, (unsigned long)i);
            return 0;
        }
    }
    if (mismatches != 0) {
        printf("FAIL %s: %ld of %lu output bytes differ\n", v->name, (long)mismatches, (unsigned long)n);
        return 0;
    }
    return 1;
}

static int32_t eval_prim(const fv_prim_vector *v, int32_t i)
{
    switch (v->fn) {
    case KV_PRIM_SRDHM:
        return fv_srdhm(v->a0[i], v->a1[i]);
    case KV_PRIM_RDBPOT:
        return fv_rdbpot(v->a0[i], v->a1[i]);
    case KV_PRIM_MBQM:
        return fv_mbqm(v->a0[i], v->a1[i], v->a2[i]);
    case KV_PRIM_SAT_SHL:
        return fv_sat_shl(v->a0[i], v->a1[i]);
    case KV_PRIM_CLZ:
        return fv_clz32((uint32_t)v->a0[i]);
    case KV_PRIM_EXP:
        return fv_exp_on_negative_values_q5_26(v->a0[i]);
    case KV_PRIM_RECIP:
        return fv_one_over_one_plus_x_for_x_in_0_1(v->a0[i]);
    default:
        return 0;
    }
}

static int check_prim(const fv_prim_vector *v)
{
    int32_t i;
    int32_t mismatches = 0;

    for (i = 0; i < v->n; i++) {
        const int32_t got = eval_prim(v, i);
        if (got != v->expected[i]) {
            if (mismatches < 5) {
                printf("  %s[%ld]: args (%ld, %ld, %ld): got %ld, expected %ld\n", v->name, (long)i, (long)v->a0[i],
                       v->a1 != NULL ? (long)v->a1[i] : 0L, v->a2 != NULL ? (long)v->a2[i] : 0L, (long)got,
                       (long)v->expected[i]);
            }
            mismatches++;
        }
    }
    if (mismatches != 0) {
        printf("FAIL %s: %ld of %ld values differ\n", v->name, (long)mismatches, (long)v->n);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    int32_t passed = 0;
    int32_t failed = 0;
    int32_t outputs = 0;
    int32_t values = 0;
    int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    size_t i;

    for (i = 0; i < FV_N_PRIMS; i++) {
        const int ok = check_prim(&fv_prims[i]);
        passed += ok;
        failed += !ok;
        values += fv_prims[i].n;
        if (verbose) {
            printf("%s %s (%ld values)\n", ok ? "ok  " : "FAIL", fv_prims[i].name, (long)fv_prims[i].n);
        }
    }
    for (i = 0; i < FV_N_VECTORS; i++) {
        const int ok = check_kernel(&fv_vectors[i]);
        passed += ok;
        failed += !ok;
        outputs += fv_vectors[i].out_size;
        if (verbose) {
            printf("%s %s (%ld bytes)\n", ok ? "ok  " : "FAIL", fv_vectors[i].name, (long)fv_vectors[i].out_size);
        }
    }
    printf("%d kernel vectors (%ld output bytes), %d primitive tables (%ld values)\n", FV_N_VECTORS, (long)outputs,
           FV_N_PRIMS, (long)values);
    printf("%ld passed, %ld failed\n", (long)passed, (long)failed);
    return failed == 0 ? 0 : 1;
}
