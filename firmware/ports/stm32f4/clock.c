/*
 * Clock bring-up shared by the real boards: HSI (16 MHz, always present) into the main PLL.
 * The Nucleo-64 boards have no HSE crystal fitted by default (the ST-LINK's 8 MHz MCO needs
 * solder bridges), so the HSI is the one source every board has.
 *
 * Every wait is a bounded loop (fv_wait): under QEMU the RCC reads as zero and a ready bit
 * never sets; on a faulty board the PLL may never lock. Either way the board stays on the HSI
 * and reports 16 MHz, which the USART's baud divisor then uses: slow, but it answers.
 */
#include "board.h"
#include "stm32f4.h"

/* ~50,000 polls at 16 MHz is several milliseconds: PLL lock takes about 100 us, the over-drive
 * switch under 1 ms (datasheets' tLOCK, tOD_swen). */
#define FV_WAIT_TRIES 50000u

static int fv_wait(volatile uint32_t *reg, uint32_t mask, uint32_t value)
{
    for (uint32_t i = 0; i < FV_WAIT_TRIES; ++i) {
        if ((*reg & mask) == value) {
            return 1;
        }
    }
    return 0;
}

static uint32_t ppre_bits(uint32_t div)
{
    /* RM0383 6.3.3: 0xx = not divided, 100 = /2, 101 = /4, 110 = /8 */
    return div >= 4u ? 5u : (div == 2u ? 4u : 0u);
}

fv_clocks fv_clock_hsi_pll(const fv_pll_recipe *r)
{
    const fv_clocks hsi = {FV_HSI_HZ, FV_HSI_HZ, FV_HSI_HZ};
    const uint32_t core = FV_HSI_HZ / r->m * r->n / r->p;

    /* Voltage scale 1 (the highest clock), RM0383 5.4.1: PWR needs its bus clock first; the
     * read back is the delay RM0383 6.3.x asks for after enabling a peripheral clock. */
    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR;
    PWR_CR = (PWR_CR & ~(3u << 14)) | PWR_CR_VOS_SCALE1;

    RCC_CR |= RCC_CR_HSION;
    if (!fv_wait(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY)) {
        return hsi;
    }
    /* RM0383 6.3.2 PLLCFGR: M 5:0, N 14:6, P 17:16 (00 = 2, 01 = 4, ...), SRC 22 (0 = HSI),
     * Q 27:24; bits 30:28 are R on the F446 and reset-valued (010) on the F411: R = 2. */
    RCC_CR &= ~RCC_CR_PLLON;
    if (!fv_wait(&RCC_CR, RCC_CR_PLLRDY, 0u)) {
        return hsi;
    }
    RCC_PLLCFGR = r->m | (r->n << 6) | ((r->p / 2u - 1u) << 16) | (r->q << 24) | (2u << 28);
    RCC_CR |= RCC_CR_PLLON;
    if (!fv_wait(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY)) {
        RCC_CR &= ~RCC_CR_PLLON;
        return hsi;
    }
    if (r->overdrive) {
        PWR_CR |= PWR_CR_ODEN;
        if (!fv_wait(&PWR_CSR, PWR_CSR_ODRDY, PWR_CSR_ODRDY)) {
            RCC_CR &= ~RCC_CR_PLLON;
            return hsi;
        }
        PWR_CR |= PWR_CR_ODSWEN;
        if (!fv_wait(&PWR_CSR, PWR_CSR_ODSWRDY, PWR_CSR_ODSWRDY)) {
            RCC_CR &= ~RCC_CR_PLLON;
            return hsi;
        }
    }
    /* Wait states before the switch, and read back (RM0383 3.5.1: "check that the new number
     * of wait states is taken into account") */
    FLASH_ACR = r->flash_latency | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    if ((FLASH_ACR & 0xFu) != r->flash_latency) {
        RCC_CR &= ~RCC_CR_PLLON;
        return hsi;
    }
    RCC_CFGR = (ppre_bits(r->apb1_div) << RCC_CFGR_PPRE1_SHIFT) | (ppre_bits(r->apb2_div) << RCC_CFGR_PPRE2_SHIFT) |
               RCC_CFGR_SW_PLL;
    if (!fv_wait(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL)) {
        RCC_CFGR = 0u; /* back to the HSI, buses undivided */
        RCC_CR &= ~RCC_CR_PLLON;
        return hsi;
    }
    {
        const fv_clocks ok = {core, core / r->apb1_div, core / r->apb2_div};
        return ok;
    }
}
