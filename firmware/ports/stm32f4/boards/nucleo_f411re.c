/*
 * NUCLEO-F411RE: STM32F411RE, 100 MHz, USART2 to the ST-LINK/V2-1 virtual COM port.
 * HSI 16 MHz / 8 = 2 MHz -> x100 = 200 MHz VCO -> /2 = 100 MHz core; APB1 at most 50 MHz
 * (/2), APB2 100 MHz; 3 wait states for 90-100 MHz at 2.7-3.6 V (RM0383 Table 6).
 */
#include "board.h"
#include "nucleo_usart2.h"
#include "stm32f4.h"

#define PLL_M 8u
#define PLL_N 100u
#define PLL_P 2u
#if 16000000u / PLL_M * PLL_N / PLL_P != FV_BOARD_CLOCK_HZ
#error "nucleo-f411re: the PLL recipe does not give the catalogue's clock_hz"
#endif
#if FV_BOARD_USART != 2
#error "nucleo-f411re: the ST-LINK virtual COM port is USART2"
#endif

const fv_board_desc fv_board = {USART2_BASE, USART2_IRQ, 0u, 1u, 1u};

fv_clocks fv_board_clock_init(void)
{
    static const fv_pll_recipe r = {PLL_M, PLL_N, PLL_P, 5u, 3u, 2u, 1u, 0u};
    return fv_clock_hsi_pll(&r);
}

void fv_board_usart_pins(void)
{
    fv_nucleo_usart2_pins();
}
