/*
 * The bench's port on QEMU's MPS2 AN386 (Cortex-M4; qemu-system-arm -M mps2-an386), for a model
 * whose bench image does not fit the emulated STM32F405 (netduinoplus2: 1 MiB of flash), such
 * as the int8 baseline with its 1.35 MB of weights: the AN386's SSRAM holds it
 * (tests/mps2_an386/memory.ld).
 *
 * The image is the netduinoplus2's bench (ports/stm32f4/bench.c, startup.c and stm32f4.ld, the
 * same core and model sources, the same flags) with this file in place of the STM32F4 port:
 * between the bench's two readings of fv_port_ticks the same instructions run on both machines,
 * so a model that fits both is counted the same on either, to a reading's resolution (below;
 * tests/test_qemu.py compares the two). Only what bench.c and startup.c call is here.
 *
 *  - Time: SysTick on the processor clock, which QEMU's MPS2 runs at 25 MHz (SYSCLK_FRQ, hw/arm/
 *    mps2.c). Under -icount shift=0 an instruction is 1 ns of virtual time: 0.025 ticks per
 *    instruction, one tick per 40 instructions, the resolution of a reading (the netduinoplus2's
 *    168 MHz gives one per 6). Its interrupt counts the wraps (every 2^24 ticks, 671 M
 *    instructions) into a 64-bit count, with the STM32F4 port's code (ports/stm32f4/systick.c).
 *  - Link: UART0, a CMSDK APB UART at 0x40004000 (QEMU's first -serial), transmit only, polled.
 *
 * The SysTick and SCB registers come from stm32f4.h's Cortex-M4 section: they are the core's
 * (ARMv7-M ARM B3.2, B3.3), at the same addresses on any M4.
 */
#include <stdint.h>

#include "fv_port.h"
#include "port.h"
#include "stm32f4.h"
#include "systick.h"

#define AN386_SYSCLK_HZ 25000000u

/* CMSDK APB UART (Cortex-M System Design Kit TRM, ARM DDI 0479, "APB UART"): DATA; STATE bit 0
 * TX buffer full; CTRL bit 0 TX enable; BAUDDIV = PCLK / baud, at least 16. QEMU passes bytes on
 * at once whatever the divider. */
#define UART0_BASE 0x40004000u
#define UART_DATA FV_REG(UART0_BASE + 0x00u)
#define UART_STATE FV_REG(UART0_BASE + 0x04u)
#define UART_CTRL FV_REG(UART0_BASE + 0x08u)
#define UART_BAUDDIV FV_REG(UART0_BASE + 0x10u)
#define UART_STATE_TXFULL (1u << 0)
#define UART_CTRL_TXEN (1u << 0)

void fv_link_isr(void)
{
    /* startup.c's table names it; nothing enables a receive interrupt here */
}

void fv_port_init(void)
{
    UART_BAUDDIV = AN386_SYSCLK_HZ / 115200u; /* 217 */
    UART_CTRL = UART_CTRL_TXEN;
    fv_systick_start();
    __asm__ volatile("cpsie i" ::: "memory");
}

void fv_port_write(const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i) {
        while ((UART_STATE & UART_STATE_TXFULL) != 0u) {
        }
        UART_DATA = data[i];
    }
}

uint64_t fv_port_ticks(void)
{
    return fv_systick_ticks();
}

uint32_t fv_port_clock_hz(void)
{
    return AN386_SYSCLK_HZ;
}

int fv_port_dwt_works(void)
{
    return 0; /* QEMU 7.2 models no DWT cycle counter */
}

void fv_port_watchdog_kick(void)
{
}

void fv_port_idle(void)
{
    __asm__ volatile("dsb\n\twfi" ::: "memory");
}
