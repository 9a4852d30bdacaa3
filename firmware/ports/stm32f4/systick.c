/* The ports' SysTick tick count (systick.h). */
#include "systick.h"

#include "port.h"
#include "stm32f4.h"

static volatile uint32_t systick_wraps;

/* startup.c's vector table names it: one wrap every 2^24 ticks (100 ms at 168 MHz) */
void fv_systick_isr(void)
{
    systick_wraps = systick_wraps + 1u;
}

void fv_systick_start(void)
{
    SYST_RVR = SYST_MAX;
    SYST_CVR = 0u;
    SCB_SHPR3 = (SCB_SHPR3 & 0x00FFFFFFu) | (0x80u << 24);
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

uint64_t fv_systick_ticks(void)
{
    uint32_t hi, lo, pending;
    do {
        hi = systick_wraps;
        lo = SYST_CVR;
        pending = SCB_ICSR & SCB_ICSR_PENDSTSET;
    } while (hi != systick_wraps);
    /* A wrap whose interrupt has not been taken yet: the count read is from the new period
     * (near the reload value) but the wrap is not counted. */
    if (pending != 0u && lo > SYST_MAX / 2u) {
        hi++;
    }
    return ((uint64_t)hi << 24) | (uint64_t)(SYST_MAX - lo);
}
