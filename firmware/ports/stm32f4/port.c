/*
 * The STM32F4 port: fv_port.h on the registers of stm32f4.h.
 *
 *  - Link: the board's USART at the catalogue's baud, 8N1. Receive is interrupt driven: the
 *    handler only moves bytes into a ring buffer (STYLE habit 6) and notes losses; the main loop
 *    takes them out. Transmit polls TXE: a reply is at most 106 bytes.
 *  - Time: SysTick counts processor clocks from the reload 0xFFFFFF down; its interrupt counts
 *    the wraps, giving a 64-bit tick count (fv_port_ticks). DWT CYCCNT is used for
 *    fv_port_cycles where it is seen to advance at boot; QEMU 7.2 reads it as zero, so there
 *    the SysTick count stands in (at 168 MHz of virtual time, which `-icount shift=0` ties to
 *    the instruction count: 0.168 ticks per instruction).
 *  - Watchdog: the IWDG on boards that have one (not QEMU), about 4 s, kicked by the main loop.
 *  - Fault injection: a test image adds faults.c (core/fv_fault.h's hooks); a release image has
 *    none of it.
 */
#include <string.h>

#include "board.h"
#include "fv_port.h"
#include "port.h"
#include "stm32f4.h"
#include "systick.h"

#ifndef FV_CONFIG_DEFAULT_FLAGS
#define FV_CONFIG_DEFAULT_FLAGS FV_CONFIG_FLAG_OPTIMISED
#endif

/* volatile: the compiler must read the bytes from flash, never fold the defaults, since the
 * emulated fleet patches them in the image after the link. */
__attribute__((section(".fv_config"), used)) static const volatile fv_flash_config fv_config = {
    {'f', 'v', 'c', 'o', 'n', 'f', 'i', 'g'},
    {0xFFu, 0xFFu, 0xFFu, 0xFFu, 0xFFu, 0xFFu, 0xFFu, 0xFFu, 0xFFu, 0xFFu, 0xFFu, 0xFFu},
    FV_CONFIG_DEFAULT_FLAGS,
};

static fv_clocks clocks;
static uint32_t core_mhz; /* integer MHz: 16, 100, 168, 180 */
static int dwt_works;

/* ---- receive ring buffer ------------------------------------------------------------------
 * One producer (the USART interrupt writes rx_head) and one consumer (the main loop writes
 * rx_tail); a power-of-two size, one slot kept free to tell full from empty. 1 KiB holds a third
 * of a CLASSIFY frame: the main loop decodes bytes as they come (92 bytes per ms at 921,600
 * baud), and the host sends nothing while the board computes. */
#define RX_SIZE 1024u
static uint8_t rx_buf[RX_SIZE];
static volatile uint32_t rx_head;
static volatile uint32_t rx_tail;
static volatile uint32_t rx_lost; /* bytes were dropped: ring full, or a hardware overrun */

static inline void irq_disable(void)
{
    __asm__ volatile("cpsid i" ::: "memory");
}

static inline void irq_enable(void)
{
    __asm__ volatile("cpsie i" ::: "memory");
}

void fv_link_isr(void)
{
    const uint32_t base = fv_board.usart;
    const uint32_t sr = USART_SR(base);
    if ((sr & (USART_SR_RXNE | USART_SR_ORE)) != 0u) {
        /* reading SR then DR clears RXNE and ORE (RM0383 19.6.1) */
        const uint8_t b = (uint8_t)(USART_DR(base) & 0xFFu);
        const uint32_t head = rx_head;
        const uint32_t next = (head + 1u) & (RX_SIZE - 1u);
        if ((sr & USART_SR_ORE) != 0u) {
            rx_lost = 1u;
        }
        if (next == rx_tail) {
            rx_lost = 1u;
        } else {
            rx_buf[head] = b;
            rx_head = next;
        }
    }
}

uint32_t fv_port_rx_take(uint8_t *dst, uint32_t cap)
{
    uint32_t n = 0;
    uint32_t tail = rx_tail;
    const uint32_t head = rx_head;
    while (tail != head && n < cap) {
        dst[n++] = rx_buf[tail];
        tail = (tail + 1u) & (RX_SIZE - 1u);
    }
    rx_tail = tail;
    return n;
}

int fv_port_rx_overrun(void)
{
    uint32_t lost;
    irq_disable();
    lost = rx_lost;
    rx_lost = 0u;
    irq_enable();
    return lost != 0u;
}

void fv_port_idle(void)
{
    /* WFI with interrupts masked still wakes on a pending interrupt, which is then taken when
     * they are unmasked: a byte that arrives between the test and the WFI is not slept through
     * (ARMv7-M ARM B1.5.19). */
    irq_disable();
    if (rx_head == rx_tail) {
        __asm__ volatile("dsb\n\twfi" ::: "memory");
    }
    irq_enable();
}

static void link_init(void)
{
    const uint32_t base = fv_board.usart;
    const uint32_t pclk = fv_board.usart_on_apb2 ? clocks.apb2_hz : clocks.apb1_hz;
    fv_board_usart_pins();
    USART_CR1(base) = 0u;
    USART_CR2(base) = 0u; /* 1 stop bit */
    USART_CR3(base) = 0u; /* no flow control */
    /* Oversampling by 16: BRR holds USARTDIV in 12.4 fixed point, i.e. pclk / baud rounded
     * (RM0383 19.3.4). 50 MHz / 921,600 = 54.25 -> 54: 925,926 baud, 0.47 % fast. */
    USART_BRR(base) = (pclk + FV_BOARD_BAUD / 2u) / FV_BOARD_BAUD;
    USART_CR1(base) = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;
    NVIC_IPR_BYTE(fv_board.usart_irq) = 0x40u; /* above SysTick (0x80): bytes before ticks */
    NVIC_ISER(fv_board.usart_irq / 32u) = 1u << (fv_board.usart_irq % 32u);
}

void fv_port_write(const uint8_t *data, uint32_t n)
{
    const uint32_t base = fv_board.usart;
    for (uint32_t i = 0; i < n; ++i) {
        while ((USART_SR(base) & USART_SR_TXE) == 0u) {
        }
        USART_DR(base) = data[i];
    }
}

/* ---- time ---------------------------------------------------------------------------------- */

static void timer_init(void)
{
    fv_systick_start();

    /* DWT CYCCNT: enable, then check it moves over a short spin. On QEMU 7.2 it reads as zero
     * and never moves (measured on this project's machine with Debian's QEMU 7.2.22). */
    SCB_DEMCR |= SCB_DEMCR_TRCENA;
    DWT_CYCCNT = 0u;
    DWT_CTRL |= 1u;
    {
        const uint32_t c0 = DWT_CYCCNT;
        for (uint32_t i = 0; i < 64u; ++i) {
            __asm__ volatile("nop");
        }
        dwt_works = DWT_CYCCNT != c0;
    }
}

uint64_t fv_port_ticks(void)
{
    return fv_systick_ticks();
}

int fv_port_dwt_works(void)
{
    return dwt_works;
}

uint32_t fv_port_cycles(void)
{
    return dwt_works ? DWT_CYCCNT : (uint32_t)fv_port_ticks();
}

uint32_t fv_port_time_us(void)
{
    return (uint32_t)(fv_port_ticks() / core_mhz);
}

void fv_port_after_inference(uint32_t elapsed_us)
{
    (void)elapsed_us; /* a real board's compute time is its own: nothing to pad */
}

/* ---- board facts ------------------------------------------------------------------------- */

uint32_t fv_port_clock_hz(void)
{
    return clocks.core_hz;
}

uint32_t fv_port_baud(void)
{
    return FV_BOARD_BAUD;
}

const char *fv_port_board_name(void)
{
    return FV_BOARD_NAME;
}

void fv_port_board_id(uint8_t id[12])
{
    if (fv_board.has_unique_id) {
        /* three words, little-endian, as ST's tools print them (RM0383 24.2) */
        for (uint32_t w = 0; w < 3u; ++w) {
            const uint32_t v = FV_REG(UID_BASE + 4u * w);
            id[4u * w + 0u] = (uint8_t)(v & 0xFFu);
            id[4u * w + 1u] = (uint8_t)((v >> 8) & 0xFFu);
            id[4u * w + 2u] = (uint8_t)((v >> 16) & 0xFFu);
            id[4u * w + 3u] = (uint8_t)(v >> 24);
        }
        return;
    }
    for (uint32_t i = 0; i < 12u; ++i) {
        id[i] = fv_config.board_id[i];
    }
}

uint32_t fv_port_config_flags(void)
{
    return fv_config.flags;
}

/* ---- watchdog ------------------------------------------------------------------------------ */

static void watchdog_init(void)
{
    if (!fv_board.has_watchdog) {
        return;
    }
    DBGMCU_APB1_FZ |= DBGMCU_APB1_FZ_IWDG; /* a debugger's breakpoint does not reset the board */
    IWDG_KR = 0xCCCCu;                     /* start (and the LSI with it) */
    IWDG_KR = 0x5555u;                     /* unlock PR and RLR */
    IWDG_PR = 4u;                          /* LSI / 64: 500 Hz at the nominal 32 kHz */
    IWDG_RLR = 2000u;                      /* 4 s nominal; 2.7-7.5 s over the LSI's spread */
    for (uint32_t i = 0; i < 100000u && IWDG_SR != 0u; ++i) {
    }
    IWDG_KR = 0xAAAAu;
}

void fv_port_watchdog_kick(void)
{
    if (fv_board.has_watchdog) {
        IWDG_KR = 0xAAAAu;
    }
}

/* ---- bring-up ------------------------------------------------------------------------------ */

void fv_port_init(void)
{
    clocks = fv_board_clock_init();
    core_mhz = clocks.core_hz / 1000000u;
    timer_init();
    link_init();
    watchdog_init();
    irq_enable();
}
