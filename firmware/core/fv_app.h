/*
 * The board application: protocol messages in, inference, replies out. Called from the main
 * loop with the bytes the port's receive interrupt has queued; it never runs in an interrupt.
 */
#ifndef FV_APP_H
#define FV_APP_H

#include <stdint.h>

#include "fv_proto.h"
#include "fv_runner.h"

#define FV_FIRMWARE_MAJOR 0u
#define FV_FIRMWARE_MINOR 1u
#define FV_FIRMWARE_PATCH 0u

typedef struct {
    fv_decoder dec;
    fv_runner runner;      /* the model and its kernel table, prepared once */
    int model_ok;          /* fv_runner_prepare succeeded; else CLASSIFY gets ERROR(INTERNAL) */
    int8_t *arena;
    uint32_t frames_ok;
    uint32_t frames_bad;
} fv_app;

/* Prepares `model` with the board's kernel set (its config flag; the reference on the host) and
 * resets the decoder and counters; in a test image, also disarms any armed fault. `arena` must
 * hold model->arena_bytes. */
void fv_app_init(fv_app *app, const fv_model *model, int8_t *arena, fv_kernel_set kernels);
void fv_app_rx(fv_app *app, const uint8_t *data, uint32_t n);

/* 1 in test builds (FV_TEST_BUILD defined): the fault-injection messages are served
 * (core/fv_fault.c is linked in); 0 in a release image, which answers them ERROR(TEST_ONLY). */
extern const int fv_test_build;

#endif /* FV_APP_H */
