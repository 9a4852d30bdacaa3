/*
 * What the two files of the Cortex-M4 DSP kernels share (core/fv_kernels_dsp.c: convolutions,
 * depthwise, fully connected; core/fv_kernels_dsp_elementwise.c: max pooling and ADD): the size of
 * the scratch RAM and the scratch itself. Internal to those files; the runner sees only
 * fv_kernels.h.
 *
 * The scratch: FV_DSP_PAD_K int32 words (the widened columns, two int16 columns of FV_DSP_MAX_K
 * elements side by side) and FV_DSP_PAD_K + 4 bytes (a staging copy of one int8 column): 5 bytes
 * per element. It is free between layers, so the ADD keeps its two 256-word tables of scaled
 * inputs in the words (FV_DSP_ADD_TABLE_WORDS of them). A firmware build sizes it to its model
 * (fv_dsp_limits.h, written by firmware/tools/dsp_limits.py: the longest column, and at least
 * FV_DSP_ADD_TABLE_WORDS when the model has an ADD); elsewhere 1152 = 3 x 3 x 128 elements,
 * 5.6 KB, unless -D says otherwise.
 */
#ifndef FV_KERNELS_DSP_H
#define FV_KERNELS_DSP_H

#include <stdint.h>

#if !defined(FV_DSP_MAX_K) && defined(__has_include)
#if __has_include("fv_dsp_limits.h")
#include "fv_dsp_limits.h"
#endif
#endif
#ifndef FV_DSP_MAX_K
#define FV_DSP_MAX_K 1152
#endif
#define FV_DSP_PAD_K ((FV_DSP_MAX_K + 3) & ~3)

/* the fused convolution + depthwise kernels (fv_kernels_dsp.c, fv_dw_planes_ok) and their pass
 * functions, about 19 KB of flash, are built when the model has a pair that may fuse
 * (FV_DSP_FUSED_PAIRS > 0, from tools/dsp_limits.py) or no fv_dsp_limits.h says otherwise;
 * without them the runner's weak fallbacks fuse nothing */
#ifndef FV_DSP_FUSED_PAIRS
#define FV_DSP_FUSED_PAIRS 1
#endif

/* the fused convolution + max pool kernels (fv_kernels_dsp.c, fv_conv_pool_ok) are built when
 * the model has such a pair that may fuse (FV_DSP_POOL_PAIRS > 0, tools/dsp_limits.py) or no
 * fv_dsp_limits.h says otherwise; FV_DSP_POOL_WORDS sizes their running maximum, one int32 per
 * output channel of the widest fused convolution (dsp_limits.py: the model's; 128 channels, 512
 * bytes, elsewhere); a wider convolution runs unfused */
#ifndef FV_DSP_POOL_PAIRS
#define FV_DSP_POOL_PAIRS 1
#endif
#ifndef FV_DSP_POOL_WORDS
#define FV_DSP_POOL_WORDS 128
#endif

/* the ADD's tables: 256 scaled values of each input (firmware/tools/dsp_limits.py reserves as
 * many words; tests/test_firmware.py checks the two agree) */
#define FV_DSP_ADD_TABLE_WORDS 512

/* the words of the scratch (FV_DSP_PAD_K of them, 8-byte aligned), defined in fv_kernels_dsp.c */
extern int32_t *const fv_dsp_scratch;

/* the depthwise kernels' widened plane and its words (FV_DSP_DW_WORDS), which hold a fused pair's
 * channel planes between its two layers; the kernels zero what they read and did not write, so
 * the tests fill it with other bytes first (tests/test_kernels_dsp_fused.c) */
extern int32_t *const fv_dsp_dw_plane;
extern const uint32_t fv_dsp_dw_plane_words;

#endif /* FV_KERNELS_DSP_H */
