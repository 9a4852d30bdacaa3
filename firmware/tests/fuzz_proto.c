/*
 * libFuzzer target: arbitrary bytes into the board's receive path (COBS decoder, frame checks,
 * message handling). Any out-of-bounds access or undefined behaviour is a crash under ASan and
 * UBSan; every byte the board writes back must decode as well-formed frames.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fv_app.h"
#include "fv_proto.h"
#include "port_fake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fv_app app;
    static fv_decoder d;
    fv_app_init(&app, &fake_model, fake_arena, FV_KERNELS_REF);
    fake_reset_output();
    if (size > 0 && data[0] == 0xA5) {
        fake_overrun = 1; /* exercise the overrun path too */
    }
    /* feed in two pieces, as interrupts deliver bytes in bursts */
    size_t half = size / 2;
    fv_app_rx(&app, data, (uint32_t)half);
    fv_app_rx(&app, data + half, (uint32_t)(size - half));
    /* replies: complete frames, each with a valid CRC */
    fv_decoder_init(&d);
    for (uint32_t i = 0; i < fake_out_len; ++i) {
        uint8_t err = 0;
        fv_rx_status st = fv_decoder_push(&d, fake_out[i], &err);
        if (st == FV_RX_ERROR) {
            __builtin_trap();
        }
        if (st == FV_RX_FRAME) {
            fv_msg m;
            if (fv_parse(d.buf, d.len, &m) != FV_ERR_NONE) {
                __builtin_trap();
            }
        }
    }
    return 0;
}
