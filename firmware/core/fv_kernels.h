/*
 * int8 kernels, bit-exact with TensorFlow Lite Micro's reference kernels (and so with the numpy
 * engine in service/fleetvote/engine/kernels.py, which is tested against them).
 *
 * Conventions shared by every kernel:
 *  - activations are int8, NHWC, batch 1, contiguous;
 *  - "offsets" follow TFLite: input_offset = -input_zero_point (added to every input byte),
 *    output_offset = +output_zero_point;
 *  - requantisation is MultiplyByQuantizedMultiplier (double rounding: a saturating rounding
 *    doubling high multiply, then a rounding divide by a power of two); shift > 0 is a left shift;
 *  - every multiplier, shift, padding and range is computed once, by the code generator, from
 *    the .tflite file: the per-image path derives nothing and allocates nothing.
 *
 * The *_ref functions are the oracle for any faster variant (*_opt), byte for byte.
 */
#ifndef FV_KERNELS_H
#define FV_KERNELS_H

#include <stdint.h>

typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t dil_h, dil_w;
    int32_t pad_top, pad_left;      /* bottom/right padding is implied by the output size */
    int32_t depth_multiplier;       /* depthwise only: out_c = in_c * depth_multiplier */
    int32_t input_offset;           /* -input zero point */
    int32_t output_offset;          /* +output zero point */
    int32_t act_min, act_max;       /* fused activation range, in output bytes */
    const int8_t *weights;          /* conv: [out_c][k_h][k_w][in_c]; depthwise: [k_h][k_w][out_c] */
    const int32_t *bias;            /* out_c entries, or NULL */
    const int32_t *multiplier;      /* out_c entries, Q31 */
    const int32_t *shift;           /* out_c entries */
} fv_conv_params;

typedef struct {
    int32_t depth;                  /* K: input elements per output */
    int32_t out_c;
    int32_t input_offset, output_offset;
    int32_t act_min, act_max;
    const int8_t *weights;          /* [out_c][depth] */
    const int32_t *bias;            /* out_c entries, or NULL */
    const int32_t *multiplier;      /* out_c entries (the same value repeated for per-tensor) */
    const int32_t *shift;
} fv_fc_params;

typedef struct {
    int32_t in_h, in_w, c;
    int32_t out_h, out_w;
    int32_t f_h, f_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;
} fv_pool_params;

typedef struct {
    int32_t size;                   /* elements */
    int32_t in1_offset, in2_offset; /* -zero points */
    int32_t left_shift;             /* 20 in TFLite */
    int32_t in1_multiplier, in1_shift;
    int32_t in2_multiplier, in2_shift;
    int32_t out_multiplier, out_shift;
    int32_t output_offset;
    int32_t act_min, act_max;
} fv_add_params;

typedef struct {
    int32_t h, w, c;                /* mean over h and w, per channel */
    int32_t input_zero_point;
    int32_t multiplier, shift;      /* already divided by h*w, see the numpy engine's Mean */
    int32_t output_offset;
} fv_mean_params;

typedef struct {
    int32_t in_h, in_w, c;
    int32_t pad_top, pad_bottom, pad_left, pad_right;
    int8_t value;                   /* the output zero point */
} fv_pad_params;

typedef struct {
    int32_t size;                   /* classes */
    int32_t input_multiplier;       /* beta * input scale in Q5.26, see PreprocessSoftmaxScaling */
    int32_t input_left_shift;
    int32_t diff_min;
} fv_softmax_params;

void fv_conv2d_ref(const fv_conv_params *p, const int8_t *in, int8_t *out);
void fv_depthwise_conv2d_ref(const fv_conv_params *p, const int8_t *in, int8_t *out);
void fv_fully_connected_ref(const fv_fc_params *p, const int8_t *in, int8_t *out);
void fv_max_pool_ref(const fv_pool_params *p, const int8_t *in, int8_t *out);
void fv_avg_pool_ref(const fv_pool_params *p, const int8_t *in, int8_t *out);
void fv_add_ref(const fv_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void fv_mean_ref(const fv_mean_params *p, const int8_t *in, int8_t *out);
void fv_pad_ref(const fv_pad_params *p, const int8_t *in, int8_t *out);
void fv_softmax_ref(const fv_softmax_params *p, const int8_t *in, int8_t *out);

/* Optimised variants, byte-for-byte equal to the reference (tested against it). The runner
 * defines weak fallbacks to the reference; a port with DSP instructions overrides them. */
void fv_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out);
void fv_depthwise_conv2d_opt(const fv_conv_params *p, const int8_t *in, int8_t *out);
void fv_fully_connected_opt(const fv_fc_params *p, const int8_t *in, int8_t *out);
void fv_max_pool_opt(const fv_pool_params *p, const int8_t *in, int8_t *out);
void fv_add_opt(const fv_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* A CONV_2D and the DEPTHWISE_CONV_2D that is the only reader of its output, fused (the runner
 * decides, fv_runner_prepare): the convolution writes its outputs into the depthwise layer's
 * widened channel planes (the optimised kernels' scratch) instead of NHWC bytes, and the
 * depthwise layer reads them there; the bytes the depthwise layer writes are the reference's.
 * fv_dw_planes_ok is 1 when the pair qualifies (a build without the optimised kernels: never);
 * then fv_conv2d_to_planes_opt(conv, dw, in) and fv_depthwise_conv2d_from_planes_opt(dw, out)
 * run the two layers, in this order, with nothing in between that uses the scratch. */
int fv_dw_planes_ok(const fv_conv_params *conv, const fv_conv_params *dw);
void fv_conv2d_to_planes_opt(const fv_conv_params *conv, const fv_conv_params *dw, const int8_t *in);
void fv_depthwise_conv2d_from_planes_opt(const fv_conv_params *dw, int8_t *out);

/* A CONV_2D and the MAX_POOL_2D that is the only reader of its output, fused (the runner
 * decides, fv_runner_prepare): the convolution writes the pooled tensor, never its own output.
 * Exact because the convolution's requantisation is monotone non-decreasing in its sum (the
 * kernel's comment, fv_kernels_dsp.c, gives the argument and its one condition, a multiplier
 * >= 0): the maximum of the requantised bytes is the requantisation of the maximum sum.
 * fv_conv_pool_ok is 1 when the pair qualifies (2x2 windows of stride 2 without padding over an
 * even output, the pool's activation range no narrower than the convolution's; a build without
 * the optimised kernels: never); then fv_conv2d_pool_opt(conv, pool, in, out) writes the pool's
 * out_h x out_w x c bytes to out, which must not overlap in. */
int fv_conv_pool_ok(const fv_conv_params *conv, const fv_pool_params *pool);
void fv_conv2d_pool_opt(const fv_conv_params *conv, const fv_pool_params *pool, const int8_t *in, int8_t *out);

#endif /* FV_KERNELS_H */
