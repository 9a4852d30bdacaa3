/*
 * NUCLEO-F446RE: STM32F446RE, 180 MHz, USART2 to the ST-LINK/V2-1 virtual COM port.
 * HSI 16 MHz / 8 = 2 MHz -> x180 = 360 MHz VCO -> /2 = 180 MHz core, which needs the
 * over-drive mode (RM0390 5.1.4); APB1 at most 45 MHz (/4), APB2 90 MHz (/2); 5 wait states
 * for 150-180 MHz at 2.7-3.6 V (RM0390 Table 5).
 */
#include "board.h"
#include "nucleo_usart2.h"
#include "stm32f4.h"

#define PLL_M 8u
#define PLL_N 180u
#define PLL_P 2u
#if 16000000u / PLL_M * PLL_N / PLL_P != FV_BOARD_CLOCK_HZ
#error "nucleo-f446re: the PLL recipe does not give the catalogue's clock_hz"
#endif
#if FV_BOARD_USART != 2
#error "nucleo-f446re: the ST-LINK virtual COM port is USART2"
#endif

const fv_board_desc fv_board = {USART2_BASE, USART2_IRQ, 0u, 1u, 1u};

fv_clocks fv_board_clock_init(void)
{
    static const fv_pll_recipe r = {PLL_M, PLL_N, PLL_P, 7u, 5u, 4u, 2u, 1u};
    return fv_clock_hsi_pll(&r);
}

void fv_board_usart_pins(void)
{
    fv_nucleo_usart2_pins();
}
