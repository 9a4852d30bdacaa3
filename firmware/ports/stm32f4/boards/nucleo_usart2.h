/*
 * USART2 on PA2 (TX) / PA3 (RX), alternate function 7: the pins every Nucleo-64 board wires to
 * the ST-LINK's virtual COM port (UM1724 6.9, "USART communication"). Included by the board
 * files of the Nucleo-64 boards.
 */
#ifndef FV_NUCLEO_USART2_H
#define FV_NUCLEO_USART2_H

#include "stm32f4.h"

static inline void fv_nucleo_usart2_pins(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
    RCC_APB1ENR |= RCC_APB1ENR_USART2EN;
    (void)RCC_APB1ENR; /* two bus cycles before the peripheral may be touched, RM0383 6.3.x */
    /* RM0383 8.4: MODER 10 = alternate function, OSPEEDR 10 = fast, PUPDR 01 = pull-up on RX
     * (the line idles high if the ST-LINK is unpowered), AFRL 4 bits per pin */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4);
    GPIOA_OSPEEDR = (GPIOA_OSPEEDR & ~(0xFu << 4)) | (0xAu << 4);
    GPIOA_PUPDR = (GPIOA_PUPDR & ~(0xFu << 4)) | (0x4u << 4);
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8);
}

#endif /* FV_NUCLEO_USART2_H */
