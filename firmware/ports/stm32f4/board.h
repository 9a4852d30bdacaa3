/*
 * What a board file tells the STM32F4 port: which USART is the link, whether the chip has a
 * readable unique id and a watchdog, and how to bring its clocks up. One small file per board
 * (boards/<name>.c); everything numeric (clock, baud, flash, RAM) comes from the catalogue
 * through the generated fv_board.h, so the board files only hold what the catalogue cannot say.
 */
#ifndef FV_STM32F4_BOARD_H
#define FV_STM32F4_BOARD_H

#include <stdint.h>

#include "fv_board.h"

typedef struct {
    uint32_t core_hz; /* the core clock reached: the catalogue's, or 16 MHz (HSI) on a failure */
    uint32_t apb1_hz;
    uint32_t apb2_hz;
} fv_clocks;

typedef struct {
    uint32_t usart;        /* base address of the link USART */
    uint32_t usart_irq;    /* its NVIC interrupt number */
    uint8_t usart_on_apb2; /* USART1/6 sit on APB2, USART2/3 on APB1 */
    uint8_t has_unique_id; /* 0: the id comes from the flash config word (QEMU faults on the UID) */
    uint8_t has_watchdog;  /* 0: no IWDG (QEMU 7.2 does not model it) */
} fv_board_desc;

extern const fv_board_desc fv_board;

/* Brings up the clock tree. Never hangs: every "ready" poll is bounded, and a board whose PLL
 * does not lock stays on the 16 MHz HSI and says so in the result. */
fv_clocks fv_board_clock_init(void);

/* Clocks and pins of the link USART (the USART registers themselves are the port's). */
void fv_board_usart_pins(void);

/* The HSI -> PLL recipe shared by the Nucleo boards (clock.c). VCO input = 16 MHz / m (keep it
 * at 2 MHz, RM0383 6.3.2), VCO = input * n (100-432 MHz), core = VCO / p. */
typedef struct {
    uint32_t m, n, p, q;
    uint32_t flash_latency; /* wait states for the core clock at 2.7-3.6 V */
    uint32_t apb1_div, apb2_div; /* 1, 2 or 4 */
    uint8_t overdrive;      /* F446 above 168 MHz, RM0390 5.1.4 */
} fv_pll_recipe;

fv_clocks fv_clock_hsi_pll(const fv_pll_recipe *r);

#define FV_HSI_HZ 16000000u

#endif /* FV_STM32F4_BOARD_H */
