/*
 * The 64-bit tick count both Cortex-M4 ports keep (the STM32F4 boards, port.c, and the bench on
 * QEMU's MPS2 AN386, tests/bench_mps2_an386.c): SysTick on the processor clock, free-running over
 * its 24-bit range, its interrupt counting the wraps. The registers are the core's (ARMv7-M ARM
 * B3.3 SysTick, B3.2.4 ICSR), at the same addresses on any M4.
 */
#ifndef FV_SYSTICK_H
#define FV_SYSTICK_H

#include <stdint.h>

/* SysTick at its full 24-bit reload, on the processor clock, interrupt at the lowest-but-one
 * priority (0x80): start counting. Call once, interrupts still masked. */
void fv_systick_start(void);

/* Ticks since fv_systick_start: (wraps << 24) + the count-down so far, consistent even when a
 * wrap's interrupt is pending while it is read. */
uint64_t fv_systick_ticks(void);

#endif
