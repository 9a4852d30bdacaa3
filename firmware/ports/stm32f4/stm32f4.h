/*
 * The few STM32F4 and Cortex-M4 registers the port touches, as addresses. Each group cites the
 * section of the reference manual it implements: RM0090 (F405/F407, the QEMU netduinoplus2),
 * RM0383 (F411), RM0390 (F446) for the peripherals, which sit at the same addresses on all
 * three; the ARMv7-M Architecture Reference Manual (ARM DDI 0403E) for the core's.
 *
 * Only this port includes it: the core never sees a register (STYLE habit 5).
 */
#ifndef FV_STM32F4_H
#define FV_STM32F4_H

#include <stdint.h>

#define FV_REG(addr) (*(volatile uint32_t *)(addr))

/* ---- Cortex-M4 core (ARMv7-M ARM) -------------------------------------------------------- */

/* SysTick, B3.3.2: a 24-bit down-counter; CTRL bit 16 COUNTFLAG, bit 2 CLKSOURCE (1 = the
 * processor clock), bit 1 TICKINT, bit 0 ENABLE. */
#define SYST_CSR FV_REG(0xE000E010u)
#define SYST_RVR FV_REG(0xE000E014u)
#define SYST_CVR FV_REG(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)
#define SYST_MAX 0x00FFFFFFu

/* System control block, B3.2.2 */
#define SCB_ICSR FV_REG(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26) /* a SysTick exception is pending */
#define SCB_VTOR FV_REG(0xE000ED08u)
#define SCB_AIRCR FV_REG(0xE000ED0Cu)
#define SCB_AIRCR_RESET (0x05FAu << 16 | 1u << 2) /* VECTKEY | SYSRESETREQ, B3.2.6 */
#define SCB_SHPR3 FV_REG(0xE000ED20u)             /* bits 31:24 SysTick priority, B3.2.12 */
#define SCB_CPACR FV_REG(0xE000ED88u)             /* CP10/CP11 = the FPU, B3.2.20 */
#define SCB_DEMCR FV_REG(0xE000EDFCu)             /* bit 24 TRCENA enables the DWT, C1.6.5 */
#define SCB_DEMCR_TRCENA (1u << 24)

/* Data watchpoint and trace unit, C1.8: CTRL bit 0 CYCCNTENA. */
#define DWT_CTRL FV_REG(0xE0001000u)
#define DWT_CYCCNT FV_REG(0xE0001004u)

/* NVIC, B3.4: one enable bit per interrupt, 8-bit priorities (the F4 implements the top 4). */
#define NVIC_ISER(n) FV_REG(0xE000E100u + 4u * (n))
#define NVIC_ICER(n) FV_REG(0xE000E180u + 4u * (n))
#define NVIC_IPR_BYTE(irq) (*(volatile uint8_t *)(0xE000E400u + (irq)))

/* ---- STM32F4 peripherals ----------------------------------------------------------------- */

/* RCC, RM0383 6.3 / RM0390 6.3 / RM0090 7.3 */
#define RCC_BASE 0x40023800u
#define RCC_CR FV_REG(RCC_BASE + 0x00u)
#define RCC_CR_HSION (1u << 0)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_PLLCFGR FV_REG(RCC_BASE + 0x04u)
#define RCC_CFGR FV_REG(RCC_BASE + 0x08u)
#define RCC_CFGR_SW_PLL 2u        /* bits 1:0 */
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL (2u << 2)
#define RCC_CFGR_PPRE1_SHIFT 10u  /* APB1 prescaler, bits 12:10: 0xx = 1, 100 = 2, 101 = 4 */
#define RCC_CFGR_PPRE2_SHIFT 13u  /* APB2 prescaler, bits 15:13 */
#define RCC_AHB1ENR FV_REG(RCC_BASE + 0x30u)
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_APB1ENR FV_REG(RCC_BASE + 0x40u)
#define RCC_APB1ENR_USART2EN (1u << 17)
#define RCC_APB1ENR_PWREN (1u << 28)
#define RCC_APB2ENR FV_REG(RCC_BASE + 0x44u)
#define RCC_APB2ENR_USART1EN (1u << 4)

/* PWR, RM0383 5.4 / RM0390 5.4: CR bits 15:14 VOS (11 = scale 1), 16 ODEN, 17 ODSWEN (F446
 * over-drive); CSR bits 16 ODRDY, 17 ODSWRDY. */
#define PWR_CR FV_REG(0x40007000u)
#define PWR_CSR FV_REG(0x40007004u)
#define PWR_CR_VOS_SCALE1 (3u << 14)
#define PWR_CR_ODEN (1u << 16)
#define PWR_CR_ODSWEN (1u << 17)
#define PWR_CSR_ODRDY (1u << 16)
#define PWR_CSR_ODSWRDY (1u << 17)

/* Flash interface, RM0383 3.8.1: ACR bits 3:0 LATENCY, 8 PRFTEN, 9 ICEN, 10 DCEN. */
#define FLASH_ACR FV_REG(0x40023C00u)
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* GPIO port A, RM0383 8.4: 2 bits per pin in MODER (10 = alternate function), OSPEEDR, PUPDR;
 * 4 bits per pin in AFRL (pins 0-7). */
#define GPIOA_BASE 0x40020000u
#define GPIOA_MODER FV_REG(GPIOA_BASE + 0x00u)
#define GPIOA_OSPEEDR FV_REG(GPIOA_BASE + 0x08u)
#define GPIOA_PUPDR FV_REG(GPIOA_BASE + 0x0Cu)
#define GPIOA_AFRL FV_REG(GPIOA_BASE + 0x20u)

/* USART, RM0383 19.6 / RM0090 30.6 */
#define USART1_BASE 0x40011000u
#define USART2_BASE 0x40004400u
#define USART1_IRQ 37u
#define USART2_IRQ 38u
#define USART_SR(base) FV_REG((base) + 0x00u)
#define USART_DR(base) FV_REG((base) + 0x04u)
#define USART_BRR(base) FV_REG((base) + 0x08u)
#define USART_CR1(base) FV_REG((base) + 0x0Cu)
#define USART_CR2(base) FV_REG((base) + 0x10u)
#define USART_CR3(base) FV_REG((base) + 0x14u)
#define USART_SR_ORE (1u << 3)  /* overrun: a byte arrived while RXNE was still set */
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TXE (1u << 7)
#define USART_SR_TC (1u << 6)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5) /* also raises the interrupt on ORE */
#define USART_CR1_UE (1u << 13)

/* Independent watchdog, RM0383 15.4: write KR 0x5555 to unlock PR/RLR, 0xCCCC to start,
 * 0xAAAA to reload. Clocked by the LSI, about 32 kHz (17-47 kHz over temperature). */
#define IWDG_KR FV_REG(0x40003000u)
#define IWDG_PR FV_REG(0x40003004u)
#define IWDG_RLR FV_REG(0x40003008u)
#define IWDG_SR FV_REG(0x4000300Cu)

/* Debug MCU freeze, RM0383 23.16.4: APB1_FZ bit 12 stops the IWDG while the core is halted by
 * a debugger, so a breakpoint does not reset the board. */
#define DBGMCU_APB1_FZ FV_REG(0xE0042008u)
#define DBGMCU_APB1_FZ_IWDG (1u << 12)

/* 96-bit unique device id, RM0383 24.2 / RM0390 34.2 / RM0090 39.1. Reading it faults under
 * QEMU 7.2 (a HardFault, measured on this project's machine with Debian's QEMU 7.2.22): the
 * emulated board takes its id from flash instead. */
#define UID_BASE 0x1FFF7A10u

#endif /* FV_STM32F4_H */
