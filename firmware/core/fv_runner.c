/*
 * The runner: executes a generated layer list over one arena. It holds no state of its own and
 * derives nothing per image: everything it needs is in the const layer list.
 */
#include "fv_model.h"

#include <string.h>

int fv_use_optimised_kernels = 0;

/* Optimised kernels are provided by ports that have them (the Cortex-M4 DSP build); elsewhere
 * these weak definitions fall back to the reference. */
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

int fv_run(const fv_model *model, int8_t *arena, const uint8_t *pixels, int8_t *out,
           fv_layer_hook hook, void *hook_ctx)
{
    int8_t *input = arena + model->input_offset;
    /* input quantisation: scale 1/255, zero point -128, so q = pixel - 128 exactly */
    for (uint32_t i = 0; i < 32u * 32u * 3u; ++i) {
        input[i] = (int8_t)((int32_t)pixels[i] - 128);
    }
    for (uint32_t k = 0; k < model->n_layers; ++k) {
        const fv_layer *l = &model->layers[k];
        const int8_t *in0 = arena + l->in0;
        int8_t *dst = arena + l->out;
        switch (l->kind) {
        case FV_OP_CONV_2D:
            if (fv_use_optimised_kernels) {
                fv_conv2d_opt((const fv_conv_params *)l->params, in0, dst);
            } else {
                fv_conv2d_ref((const fv_conv_params *)l->params, in0, dst);
            }
            break;
        case FV_OP_DEPTHWISE_CONV_2D:
            if (fv_use_optimised_kernels) {
                fv_depthwise_conv2d_opt((const fv_conv_params *)l->params, in0, dst);
            } else {
                fv_depthwise_conv2d_ref((const fv_conv_params *)l->params, in0, dst);
            }
            break;
        case FV_OP_FULLY_CONNECTED:
            if (fv_use_optimised_kernels) {
                fv_fully_connected_opt((const fv_fc_params *)l->params, in0, dst);
            } else {
                fv_fully_connected_ref((const fv_fc_params *)l->params, in0, dst);
            }
            break;
        case FV_OP_MAX_POOL_2D:
            fv_max_pool_ref((const fv_pool_params *)l->params, in0, dst);
            break;
        case FV_OP_AVERAGE_POOL_2D:
            fv_avg_pool_ref((const fv_pool_params *)l->params, in0, dst);
            break;
        case FV_OP_ADD:
            fv_add_ref((const fv_add_params *)l->params, in0, arena + l->in1, dst);
            break;
        case FV_OP_MEAN:
            fv_mean_ref((const fv_mean_params *)l->params, in0, dst);
            break;
        case FV_OP_PAD:
            fv_pad_ref((const fv_pad_params *)l->params, in0, dst);
            break;
        case FV_OP_RESHAPE:
            /* the plan gives a reshape its own buffer, live at the same time as its input, so
             * the two never overlap and memcpy is safe */
            memcpy(dst, in0, l->in_bytes);
            break;
        case FV_OP_SOFTMAX:
            fv_softmax_ref((const fv_softmax_params *)l->params, in0, dst);
            break;
        default:
            return -1;
        }
        if (hook != NULL) {
            hook(k, l, hook_ctx);
        }
    }
    memcpy(out, arena + model->output_offset, model->num_classes);
    return 0;
}
