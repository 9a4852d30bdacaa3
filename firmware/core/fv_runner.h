/*
 * The runner: executes a generated layer list (fv_model.h) over one arena, dispatching each
 * layer through a table of kernels indexed by its op kind.
 *
 * Prepare once, evaluate fast (STYLE habit 1): fv_runner_prepare picks the kernel table (the
 * reference kernels or the optimised ones) and checks that every layer of the model has a kernel
 * in it, once, when the board starts; fv_run then only indexes the chosen table per layer. Every
 * kernel of both tables has the one signature fv_op_fn, and an optimised kernel writes the same
 * bytes as the reference it replaces (tests/test_kernels_dsp.c, make test-kernels-dsp).
 */
#ifndef FV_RUNNER_H
#define FV_RUNNER_H

#include <stdint.h>

#include "fv_model.h"

/* Which kernels a runner dispatches to. Chosen once per board: the STM32F4 image reads it from
 * its config word (ports/stm32f4/port.h, FV_CONFIG_FLAG_OPTIMISED; KERNELS=ref builds the
 * reference default), the host board runs the reference. HELLO's flags bit 1 reports it. */
typedef enum {
    FV_KERNELS_REF = 0, /* the reference kernels: the oracle */
    FV_KERNELS_OPT = 1  /* the optimised kernels where the image has them (fv_kernels_dsp.c on a
                         * Cortex-M4), the reference for the op kinds and builds without one */
} fv_kernel_set;

#define FV_KERNEL_SETS 2u

/* One entry per op kind, indexed by fv_op_kind (FV_OP_LAST is its last member, fv_ops.h); index
 * 0 and any kind without a kernel hold NULL. */
#define FV_OP_TABLE_SIZE ((uint32_t)FV_OP_LAST + 1u)

/* A kernel as the runner calls it: the layer (its params and arena offsets) and the arena. */
typedef void (*fv_op_fn)(const fv_layer *layer, int8_t *arena);

typedef struct {
    const fv_model *model;
    const fv_op_fn *ops;   /* the chosen table, FV_OP_TABLE_SIZE entries; NULL: not prepared */
    fv_kernel_set kernels;
    /* Fused pairs (optimised kernels only, fv_kernels.h: fv_dw_planes_ok): bit k of to_planes,
     * layer k (a CONV_2D) writes the channel planes of layer k + 1 (a DEPTHWISE_CONV_2D, bit
     * k + 1 of from_planes) instead of its output tensor, which no other layer reads. Layers
     * from 64 on are never fused. */
    uint64_t to_planes, from_planes;
    /* Fused (CONV_2D, MAX_POOL_2D) pairs (optimised kernels only, fv_kernels.h: fv_conv_pool_ok):
     * bit k of to_pool, layer k (a CONV_2D) writes the pooled output of layer k + 1 (a
     * MAX_POOL_2D, bit k + 1 of from_pool) instead of its own, which no other layer reads; the
     * pool layer then does nothing, or, where its bit of pool_copy is set (its output's slot
     * overlaps the convolution's input, which the convolution still reads while it writes),
     * copies the pooled bytes that the convolution wrote at the start of its own output's slot. */
    uint64_t to_pool, from_pool, pool_copy;
} fv_runner;

/* Chooses the table of `kernels` for `model` and checks every layer against it. Returns 0, or -1
 * when a layer's kind has no kernel (a bad model: the board answers CLASSIFY with an ERROR);
 * r->kernels is set either way. */
int fv_runner_prepare(fv_runner *r, const fv_model *model, fv_kernel_set kernels);

/* Layer timing hook for benchmarks (NULL in production): called after each layer. Under fusion
 * (to_planes, to_pool) the producer's NHWC output is never written: a hook that reads it sees
 * stale bytes (or, under pool_copy, the pooled ones). */
typedef void (*fv_layer_hook)(uint32_t layer_index, const fv_layer *layer, void *ctx);

/* Pixels (uint8 HWC RGB, 3072 bytes) -> int8 outputs (model->num_classes bytes). The input byte
 * is pixel - 128: every zoo model is exported with input scale 1/255 and zero point -128.
 * `arena` must hold model->arena_bytes. `r` must have been prepared successfully (asserted). */
void fv_run(const fv_runner *r, int8_t *arena, const uint8_t *pixels, int8_t *out,
            fv_layer_hook hook, void *hook_ctx);

#endif /* FV_RUNNER_H */
