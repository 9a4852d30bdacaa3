/*
 * A model as the code generator emits it: a static list of layers over one arena.
 *
 * Every buffer is an offset into the arena, planned ahead of time by the same greedy plan as
 * `fleetvote analyze` (service/fleetvote/engine/plan.py), so the arena size the board needs is
 * known at build time and nothing is allocated at run time. The runner (fv_runner.h) executes it.
 */
#ifndef FV_MODEL_H
#define FV_MODEL_H

#include <stdint.h>

#include "fv_kernels.h"
#include "fv_ops.h" /* fv_op_kind: generated from the operator registry (service/fleetvote/engine/ops.py) */

typedef struct {
    fv_op_kind kind;
    const void *params;   /* the fv_*_params struct of the kind; NULL for RESHAPE */
    uint32_t in0;         /* arena offsets of the inputs and the output */
    uint32_t in1;         /* ADD only */
    uint32_t out;
    uint32_t in_bytes;    /* bytes of in0 (RESHAPE copies this many) */
    uint32_t out_bytes;
    uint32_t macc;
} fv_layer;

typedef struct {
    const char *id;               /* zoo id, e.g. "vgg12-s31" */
    uint8_t sha256[32];           /* of the .tflite the code was generated from */
    uint32_t macc;
    uint32_t arena_bytes;
    uint32_t weight_bytes;
    uint32_t n_layers;
    const fv_layer *layers;
    uint32_t input_offset;        /* arena offset of the 32x32x3 int8 input */
    uint32_t output_offset;       /* arena offset of the int8 softmax output */
    uint32_t num_classes;
} fv_model;

#endif /* FV_MODEL_H */
