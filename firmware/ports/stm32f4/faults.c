/*
 * The STM32F4 port's fault-injection hooks (core/fv_fault.h), linked into test images only
 * (VARIANT=test, the emulated boards' default): a release image has none of this code.
 */
#include <stdint.h>

#include "board.h"
#include "fv_fault.h"
#include "fv_port.h"
#include "port.h"
#include "stm32f4.h"

/* SysTick ticks in `ms` milliseconds: the port counts time in whole MHz of core clock */
static uint64_t ticks_in_ms(uint32_t ms)
{
    return (uint64_t)ms * 1000u * (fv_port_clock_hz() / 1000000u);
}

void fv_port_delay_ms(uint32_t ms)
{
    const uint64_t t0 = fv_port_ticks();
    const uint64_t span = ticks_in_ms(ms);
    while (fv_port_ticks() - t0 < span) {
        fv_port_watchdog_kick();
    }
}

uint32_t fv_port_random(void)
{
    static uint32_t state = 0x2545F491u; /* xorshift32, the host board's: reproducible noise */
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

void fv_port_reset(void)
{
    /* SYSRESETREQ (B3.2.6): the whole chip restarts from the reset vector; QEMU reloads the
     * image, so everything received so far is forgotten */
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = SCB_AIRCR_RESET;
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
    }
}

void fv_port_hang(uint32_t ms)
{
    /* Deaf: the link interrupt off, the watchdog no longer kicked. A board with a watchdog
     * resets after about 4 s; one without (QEMU) resets after ms, or never for ms = 0. */
    NVIC_ICER(fv_board.usart_irq / 32u) = 1u << (fv_board.usart_irq % 32u);
    if (ms == 0u) {
        for (;;) {
        }
    }
    {
        const uint64_t t0 = fv_port_ticks();
        const uint64_t span = ticks_in_ms(ms);
        while (fv_port_ticks() - t0 < span) {
        }
    }
    fv_port_reset();
}

void fv_port_unplug(void)
{
    /* The USART off: the host hears nothing more until a reset (the watchdog's, on a real
     * board; a restart of the QEMU instance). */
    NVIC_ICER(fv_board.usart_irq / 32u) = 1u << (fv_board.usart_irq % 32u);
    USART_CR1(fv_board.usart) = 0u;
    for (;;) {
    }
}
