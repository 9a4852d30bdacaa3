/*
 * Just enough of a Cortex-M4 image to run test_kernels under QEMU's MPS2 AN386 machine
 * (qemu-system-arm -M mps2-an386 -semihosting): the kernels and tests compiled exactly as for a
 * board (Thumb-2, hard-float ABI), printf and exit over semihosting (newlib's rdimon.specs).
 * Not a port: the real boards' startup code lives in ports/.
 *
 * Linked with -Wl,--section-start=.vectors=0x0 -Wl,-u,fv_qemu_vectors: the core fetches the
 * initial SP and the reset vector from address 0 (VTOR resets to 0; ARMv7-M ARM B1.5.3).
 */
#include <stdint.h>

typedef void (*fv_vector)(void);

extern void _start(void); /* newlib's rdimon crt0: stack and heap from semihosting, then main */

static void fv_qemu_reset(void)
{
    /* CPACR (0xE000ED88) bits 20-23: full access to CP10/CP11, the FPU; the hard-float ABI may
     * use it anywhere (ARMv7-M ARM B3.2.20). DSB/ISB so that the next instruction sees it. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    _start();
}

static void fv_qemu_fault(void)
{
    for (;;) {
    }
}

/* initial SP: top of the 4 MiB SSRAM2/3 at 0x20000000 (crt0 moves it where semihosting says) */
__attribute__((section(".vectors"), used)) const fv_vector fv_qemu_vectors[7] = {
    (fv_vector)0x20400000u, fv_qemu_reset, fv_qemu_fault, fv_qemu_fault,
    fv_qemu_fault, fv_qemu_fault, fv_qemu_fault,
};
