/*
 * Reset and the vector table of the STM32F4 (RM0090 12.2 / RM0383 10.2 / RM0390 11.2; the
 * first 16 entries are the core's, ARMv7-M ARM B1.5.2). The table has room for the F446's 97
 * interrupts, the most of the three chips; the linker script puts it at the start of flash,
 * which the boot alias maps at address 0 where the core fetches SP and PC.
 *
 * Only the handlers the port uses are wired: SysTick (cycle counting) and the link USART's
 * interrupt (both USART1 and USART2 slots point at it; only the enabled one ever fires).
 * Faults spin in fv_default_handler: an impossible state, which the watchdog turns into a
 * reset on a real board and a silent board under QEMU (a test sees it). The other interrupt
 * slots stay 0: no interrupt but these two is ever enabled.
 */
#include <stdint.h>

#include "port.h"
#include "stm32f4.h"

/* Linker script symbols (stm32f4.ld) */
extern uint32_t _estack;
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;

int main(void);
void fv_reset_handler(void);
void fv_default_handler(void);

#define FV_N_IRQ 97u
#define FV_N_VECTORS (16u + FV_N_IRQ)

typedef void (*fv_vector)(void);

void fv_default_handler(void)
{
    for (;;) {
        __asm__ volatile("" ::: "memory");
    }
}

void fv_reset_handler(void)
{
    /* .data from its load address in flash, .bss zeroed: word copies, both are 4-aligned */
    const uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
    /* Full access to CP10/CP11 (the FPU) before any code of the hard-float ABI may use it,
     * B3.2.20; DSB/ISB so that the next instruction sees it. */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    main();
    fv_default_handler();
}

__attribute__((section(".vectors"), used)) const fv_vector fv_vectors[FV_N_VECTORS] = {
    [0] = (fv_vector)(uintptr_t)&_estack,
    [1] = fv_reset_handler,
    [2] = fv_default_handler,  /* NMI */
    [3] = fv_default_handler,  /* HardFault */
    [4] = fv_default_handler,  /* MemManage */
    [5] = fv_default_handler,  /* BusFault */
    [6] = fv_default_handler,  /* UsageFault (UDF of an FV_ASSERT ends in HardFault) */
    [11] = fv_default_handler, /* SVCall */
    [12] = fv_default_handler, /* DebugMonitor */
    [14] = fv_default_handler, /* PendSV */
    [15] = fv_systick_isr,
    [16 + USART1_IRQ] = fv_link_isr,
    [16 + USART2_IRQ] = fv_link_isr,
};
