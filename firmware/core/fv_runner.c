/*
 * The runner: the kernel tables, their preparation, and the per-image loop. It holds no state of
 * its own; everything the loop needs is in the const layer list and the table chosen at prepare.
 */
#include "fv_runner.h"

#include <stddef.h>
#include <string.h>

#include "fv_assert.h"

/* Optimised kernels are provided by images that have them (the Cortex-M4 DSP build links
 * fv_kernels_dsp.c); elsewhere these weak definitions fall back to the reference, so the
 * optimised table exists in every build and equals the reference where there is nothing faster. */
__attribute__((weak)) void fv_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    fv_conv2d_ref(p, in, out);
}

__attribute__((weak)) void fv_fully_connected_opt(const fv_fc_params *p, const int8_t *in, int8_t *out)
{
    fv_fully_connected_ref(p, in, out);
}

__attribute__((weak)) void fv_depthwise_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out)
{
    fv_depthwise_conv2d_ref(p, in, out);
}

__attribute__((weak)) void fv_max_pool_opt(const fv_pool_params *p, const int8_t *in, int8_t *out)
{
    fv_max_pool_ref(p, in, out);
}

__attribute__((weak)) void fv_add_opt(const fv_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    fv_add_ref(p, in1, in2, out);
}

/* Builds without the optimised kernels fuse nothing: the two run functions are then never
 * called. */
__attribute__((weak)) int fv_dw_planes_ok(const fv_conv_params *conv, const fv_conv_params *dw)
{
    (void)conv;
    (void)dw;
    return 0;
}

__attribute__((weak)) void fv_conv2d_to_planes_opt(const fv_conv_params *conv, const fv_conv_params *dw,
                                                   const int8_t *in)
{
    (void)conv;
    (void)dw;
    (void)in;
    FV_ASSERT(0);
}

__attribute__((weak)) void fv_depthwise_conv2d_from_planes_opt(const fv_conv_params *dw, int8_t *out)
{
    (void)dw;
    (void)out;
    FV_ASSERT(0);
}

__attribute__((weak)) int fv_conv_pool_ok(const fv_conv_params *conv, const fv_pool_params *pool)
{
    (void)conv;
    (void)pool;
    return 0;
}

__attribute__((weak)) void fv_conv2d_pool_opt(const fv_conv_params *conv, const fv_pool_params *pool,
                                              const int8_t *in, int8_t *out)
{
    (void)conv;
    (void)pool;
    (void)in;
    (void)out;
    FV_ASSERT(0);
}

/* ---- the kernels behind one signature ------------------------------------------------------
 * Each takes its params struct and buffers out of the layer; the kernel itself is unchanged. */

static void op_conv2d_ref(const fv_layer *l, int8_t *arena)
{
    fv_conv2d_ref((const fv_conv_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_conv2d_opt(const fv_layer *l, int8_t *arena)
{
    fv_conv2d_opt((const fv_conv_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_depthwise_conv2d_ref(const fv_layer *l, int8_t *arena)
{
    fv_depthwise_conv2d_ref((const fv_conv_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_depthwise_conv2d_opt(const fv_layer *l, int8_t *arena)
{
    fv_depthwise_conv2d_opt((const fv_conv_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_fully_connected_ref(const fv_layer *l, int8_t *arena)
{
    fv_fully_connected_ref((const fv_fc_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_fully_connected_opt(const fv_layer *l, int8_t *arena)
{
    fv_fully_connected_opt((const fv_fc_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_max_pool(const fv_layer *l, int8_t *arena)
{
    fv_max_pool_ref((const fv_pool_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_max_pool_opt(const fv_layer *l, int8_t *arena)
{
    fv_max_pool_opt((const fv_pool_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_avg_pool(const fv_layer *l, int8_t *arena)
{
    fv_avg_pool_ref((const fv_pool_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_add(const fv_layer *l, int8_t *arena)
{
    fv_add_ref((const fv_add_params *)l->params, arena + l->in0, arena + l->in1, arena + l->out);
}

static void op_add_opt(const fv_layer *l, int8_t *arena)
{
    fv_add_opt((const fv_add_params *)l->params, arena + l->in0, arena + l->in1, arena + l->out);
}

static void op_mean(const fv_layer *l, int8_t *arena)
{
    fv_mean_ref((const fv_mean_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_pad(const fv_layer *l, int8_t *arena)
{
    fv_pad_ref((const fv_pad_params *)l->params, arena + l->in0, arena + l->out);
}

static void op_reshape(const fv_layer *l, int8_t *arena)
{
    /* the plan gives a reshape its own buffer, live at the same time as its input, so the two
     * never overlap and memcpy is safe */
    memcpy(arena + l->out, arena + l->in0, l->in_bytes);
}

static void op_softmax(const fv_layer *l, int8_t *arena)
{
    fv_softmax_ref((const fv_softmax_params *)l->params, arena + l->in0, arena + l->out);
}

/* ---- the tables: one row per op kind, a column per kernel set ------------------------------
 * An op kind without an optimised kernel runs its reference in both sets. */
static const fv_op_fn op_tables[FV_KERNEL_SETS][FV_OP_TABLE_SIZE] = {
    [FV_KERNELS_REF] = {
        [FV_OP_CONV_2D] = op_conv2d_ref,
        [FV_OP_DEPTHWISE_CONV_2D] = op_depthwise_conv2d_ref,
        [FV_OP_FULLY_CONNECTED] = op_fully_connected_ref,
        [FV_OP_MAX_POOL_2D] = op_max_pool,
        [FV_OP_AVERAGE_POOL_2D] = op_avg_pool,
        [FV_OP_ADD] = op_add,
        [FV_OP_MEAN] = op_mean,
        [FV_OP_PAD] = op_pad,
        [FV_OP_RESHAPE] = op_reshape,
        [FV_OP_SOFTMAX] = op_softmax,
    },
    [FV_KERNELS_OPT] = {
        [FV_OP_CONV_2D] = op_conv2d_opt,
        [FV_OP_DEPTHWISE_CONV_2D] = op_depthwise_conv2d_opt,
        [FV_OP_FULLY_CONNECTED] = op_fully_connected_opt,
        [FV_OP_MAX_POOL_2D] = op_max_pool_opt,
        [FV_OP_AVERAGE_POOL_2D] = op_avg_pool,
        [FV_OP_ADD] = op_add_opt,
        [FV_OP_MEAN] = op_mean,
        [FV_OP_PAD] = op_pad,
        [FV_OP_RESHAPE] = op_reshape,
        [FV_OP_SOFTMAX] = op_softmax,
    },
};

/* 1 when no layer after `k + 1` reads layer k's output before a layer overwrites its bytes (the
 * plan reuses arena offsets, so a later layer reading the same offset may read another tensor),
 * nor does fv_run's copy of the model's output after the last layer, when no layer overwrote
 * them before: a fused producer never writes its NHWC output. */
static int only_next_reads(const fv_model *model, uint32_t k)
{
    const fv_layer *const l = &model->layers[k];
    const uint32_t lo = l->out, hi = l->out + l->out_bytes;
    const uint32_t o = model->output_offset;
    for (uint32_t j = k + 2; j < model->n_layers; ++j) {
        const fv_layer *const m = &model->layers[j];
        if (m->in0 == lo || (m->kind == FV_OP_ADD && m->in1 == lo)) {
            return 0;
        }
        if (m->out < hi && m->out + m->out_bytes > lo) {
            return 1; /* overwritten: dead from here on */
        }
    }
    return !(o < hi && o + model->num_classes > lo); /* still live at the end: the output's? */
}

/* 1 when the byte ranges [a, a + na) and [b, b + nb) of the arena overlap */
static int overlap(uint32_t a, uint32_t na, uint32_t b, uint32_t nb)
{
    return a < b + nb && b < a + na;
}

/* The fused pairs of `model` (fv_runner.h: to_planes, from_planes, to_pool, from_pool,
 * pool_copy). */
static void plan_fusion(fv_runner *r, const fv_model *model)
{
    r->to_planes = r->from_planes = r->to_pool = r->from_pool = r->pool_copy = 0;
    for (uint32_t k = 0; k + 1 < model->n_layers && k + 1 < 64u; ++k) {
        const fv_layer *const a = &model->layers[k], *const b = &model->layers[k + 1];
        if (a->kind != FV_OP_CONV_2D || b->in0 != a->out || !only_next_reads(model, k)) {
            continue;
        }
        if (b->kind == FV_OP_DEPTHWISE_CONV_2D &&
            fv_dw_planes_ok((const fv_conv_params *)a->params, (const fv_conv_params *)b->params)) {
            r->to_planes |= (uint64_t)1 << k;
            r->from_planes |= (uint64_t)1 << (k + 1);
            ++k;
        } else if (b->kind == FV_OP_MAX_POOL_2D &&
                   fv_conv_pool_ok((const fv_conv_params *)a->params, (const fv_pool_params *)b->params)) {
            /* The plan may give the pool's output the bytes of the convolution's input, dead once
             * the convolution has run (every zoo pair: the greedy plan reuses the freed slot),
             * but the fused convolution writes the pooled bytes while it still reads its input.
             * Then it writes them at the start of its own output's slot (never overlapping its
             * input; only the pool reads it), and the pool layer copies them into place: the
             * plan keeps the pool's input and output apart (both live at the pool), and a plan
             * that did not (an in-place pool) is not fused. */
            const int copy = overlap(b->out, b->out_bytes, a->in0, a->in_bytes);
            if (copy && overlap(b->out, b->out_bytes, a->out, a->out_bytes)) {
                continue;
            }
            r->to_pool |= (uint64_t)1 << k;
            r->from_pool |= (uint64_t)1 << (k + 1);
            r->pool_copy |= (uint64_t)copy << (k + 1);
            ++k;
        }
    }
}

int fv_runner_prepare(fv_runner *r, const fv_model *model, fv_kernel_set kernels)
{
    /* the set is the board's own choice (its config word, a build flag), never the wire's */
    FV_ASSERT((uint32_t)kernels < FV_KERNEL_SETS);
    const fv_op_fn *ops = op_tables[kernels];
    r->model = model;
    r->kernels = kernels;
    r->ops = NULL;
    r->to_planes = r->from_planes = r->to_pool = r->from_pool = r->pool_copy = 0;
    for (uint32_t k = 0; k < model->n_layers; ++k) {
        const uint32_t kind = (uint32_t)model->layers[k].kind;
        if (kind >= FV_OP_TABLE_SIZE || ops[kind] == NULL) {
            return -1;
        }
    }
    r->ops = ops;
    if (kernels == FV_KERNELS_OPT) {
        plan_fusion(r, model);
    }
    return 0;
}

void fv_run(const fv_runner *r, int8_t *arena, const uint8_t *pixels, int8_t *out,
            fv_layer_hook hook, void *hook_ctx)
{
    const fv_model *model = r->model;
    const uint64_t fused = r->to_planes | r->from_planes | r->to_pool | r->from_pool;
    /* prepare checked every layer's kind against this table; the caller checked prepare */
    FV_ASSERT(r->ops != NULL);
    int8_t *input = arena + model->input_offset;
    /* input quantisation: scale 1/255, zero point -128, so q = pixel - 128 exactly */
    for (uint32_t i = 0; i < 32u * 32u * 3u; ++i) {
        input[i] = (int8_t)((int32_t)pixels[i] - 128);
    }
    for (uint32_t k = 0; k < model->n_layers; ++k) {
        const fv_layer *l = &model->layers[k];
        if (fused != 0 && k < 64u && ((fused >> k) & 1u) != 0) { /* a model without pairs: one test */
            if (((r->to_planes >> k) & 1u) != 0) {
                fv_conv2d_to_planes_opt((const fv_conv_params *)l->params,
                                        (const fv_conv_params *)model->layers[k + 1].params, arena + l->in0);
            } else if (((r->from_planes >> k) & 1u) != 0) {
                fv_depthwise_conv2d_from_planes_opt((const fv_conv_params *)l->params, arena + l->out);
            } else if (((r->to_pool >> k) & 1u) != 0) {
                const fv_layer *const pool = &model->layers[k + 1];
                const int copy = ((r->pool_copy >> (k + 1)) & 1u) != 0;
                fv_conv2d_pool_opt((const fv_conv_params *)l->params, (const fv_pool_params *)pool->params,
                                   arena + l->in0, arena + (copy ? l->out : pool->out));
            } else if (((r->pool_copy >> k) & 1u) != 0) {
                /* the pooled bytes at the start of the input's slot (plan_fusion); the two slots
                 * are both live here, so they do not overlap */
                memcpy(arena + l->out, arena + l->in0, l->out_bytes);
            } /* else a pool whose convolution wrote its output in place: nothing left to do */
        } else {
            r->ops[l->kind](l, arena);
        }
        if (hook != NULL) {
            hook(k, l, hook_ctx);
        }
    }
    memcpy(out, arena + model->output_offset, model->num_classes);
}
