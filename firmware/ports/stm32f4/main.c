/*
 * The board's main loop: received bytes from the ring buffer into the protocol (fv_app), which
 * runs inference and replies; between requests the core sleeps in WFI until the USART (or the
 * SysTick wrap, every 0.1-0.17 s) wakes it. Parsing and inference never run in an interrupt.
 *
 * One model per image: the first (and only) one of the generated registry, prepared once with
 * the kernel set the config word names (the DSP kernels unless built or patched for the reference).
 */
#include <stdint.h>

#include "fv_app.h"
#include "fv_arena.h"
#include "fv_models.h"
#include "fv_port.h"
#include "port.h"

/* 16-byte alignment, as the buffer plan assumes */
static int8_t arena[FV_ARENA_BYTES] __attribute__((aligned(16)));
static fv_app app;

int main(void)
{
    static uint8_t chunk[64];
    fv_port_init();
    fv_app_init(&app, fv_models[0], arena,
                (fv_port_config_flags() & FV_CONFIG_FLAG_OPTIMISED) != 0u ? FV_KERNELS_OPT : FV_KERNELS_REF);
    for (;;) {
        const uint32_t n = fv_port_rx_take(chunk, sizeof chunk);
        fv_port_watchdog_kick();
        if (n == 0u) {
            fv_port_idle();
            continue;
        }
        fv_app_rx(&app, chunk, n);
    }
}
