/*
 * netduinoplus2: the STM32F405 board QEMU 7.2 emulates (machine netduinoplus2). The link is
 * USART1 (the first -serial). QEMU runs the core at its 168 MHz model clock whatever the RCC
 * says, leaves the RCC unimplemented (a ready bit never sets), does not model the IWDG or the
 * baud rate, and faults on the unique-id read: so no clock setup, no watchdog, and the id
 * comes from the flash config word the emulated fleet patches per instance.
 */
#include "board.h"
#include "stm32f4.h"

#if FV_BOARD_USART != 1
#error "netduinoplus2: QEMU's first -serial is USART1; the catalogue says otherwise"
#endif

const fv_board_desc fv_board = {USART1_BASE, USART1_IRQ, 1u, 0u, 0u};

fv_clocks fv_board_clock_init(void)
{
    /* the F405's APB2 runs at core / 2 at 168 MHz (RM0090 6.2); QEMU ignores BRR anyway */
    const fv_clocks c = {FV_BOARD_CLOCK_HZ, FV_BOARD_CLOCK_HZ / 4u, FV_BOARD_CLOCK_HZ / 2u};
    return c;
}

void fv_board_usart_pins(void)
{
    /* A real Netduino Plus 2 routes USART1 elsewhere; QEMU needs only the clock bit, which it
     * ignores. */
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
}
