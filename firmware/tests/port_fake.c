/*
 * A port for the C tests and the fuzzer: replies are captured in a buffer, time stands still,
 * faults are recorded instead of acted on. Also a stub model with no layers (its output is the
 * first bytes of the input), so protocol tests do not depend on a zoo model.
 *
 * The fault hooks exist only in a test build (FV_TEST_BUILD): the release build of the protocol
 * test links without them, which shows that a release app needs none.
 */
#include "port_fake.h"

#include <string.h>

#ifdef FV_TEST_BUILD
#include "fv_fault.h"
#endif

uint8_t fake_out[FAKE_OUT_CAP];
uint32_t fake_out_len;
int fake_overrun;
int fake_resets;

void fake_reset_output(void)
{
    fake_out_len = 0;
}

void fv_port_write(const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i) {
        if (fake_out_len < FAKE_OUT_CAP) {
            fake_out[fake_out_len++] = data[i];
        }
    }
}

uint32_t fv_port_time_us(void) { return 0; }
uint32_t fv_port_cycles(void) { return 0; }
uint32_t fv_port_clock_hz(void) { return 0; }
uint32_t fv_port_baud(void) { return 0; }
const char *fv_port_board_name(void) { return "fake"; }
void fv_port_board_id(uint8_t id[12]) { memset(id, 0xAB, 12); }
int fv_port_rx_overrun(void)
{
    int o = fake_overrun;
    fake_overrun = 0;
    return o;
}
void fv_port_after_inference(uint32_t elapsed_us) { (void)elapsed_us; }

#ifdef FV_TEST_BUILD
void fv_port_delay_ms(uint32_t ms) { (void)ms; }
uint32_t fv_port_random(void) { return 0x5Au; }
void fv_port_reset(void) { fake_resets++; }
void fv_port_hang(uint32_t ms) { (void)ms; }
void fv_port_unplug(void) { }
#endif

const fv_model fake_model = {
    .id = "fake",
    .sha256 = {1, 2, 3, 4, 5, 6, 7, 8},
    .macc = 0,
    .arena_bytes = 3072,
    .weight_bytes = 0,
    .n_layers = 0,
    .layers = 0,
    .input_offset = 0,
    .output_offset = 0,
    .num_classes = 10,
};
int8_t fake_arena[3072];
