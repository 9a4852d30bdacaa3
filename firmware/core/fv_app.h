/*
 * The board application: protocol messages in, inference, replies out. Called from the main
 * loop with the bytes the port's receive interrupt has queued; it never runs in an interrupt.
 */
#ifndef FV_APP_H
#define FV_APP_H

#include <stdint.h>

#include "fv_model.h"
#include "fv_proto.h"

#define FV_FIRMWARE_MAJOR 0u
#define FV_FIRMWARE_MINOR 1u
#define FV_FIRMWARE_PATCH 0u

typedef struct {
    fv_decoder dec;
    const fv_model *model;
    int8_t *arena;
    uint8_t fault_kind;    /* test builds: applied to the next request */
    uint32_t fault_arg;
    uint32_t frames_ok;
    uint32_t frames_bad;
} fv_app;

void fv_app_init(fv_app *app, const fv_model *model, int8_t *arena);
void fv_app_rx(fv_app *app, const uint8_t *data, uint32_t n);

/* 1 in test builds (FV_TEST_BUILD defined): the fault-injection messages are served. */
extern const int fv_test_build;

#endif /* FV_APP_H */
