/*
 * The STM32F4 port's own interface between its files (port.c, startup.c, main.c, bench.c).
 * The core sees only fv_port.h.
 */
#ifndef FV_STM32F4_PORT_H
#define FV_STM32F4_PORT_H

#include <stdint.h>

/* The reserved flash word (section .fv_config, at FV_CONFIG_OFFSET from the start of flash):
 * a magic marker, the board id of an emulated board, and flags. The emulated fleet
 * (service/fleetvote/fleet/qemu.py) finds it by its marker in a copy of the .bin and patches the
 * id and flags per instance; nothing writes it at run time. */
#define FV_CONFIG_OFFSET 0x200u
#define FV_CONFIG_MAGIC "fvconfig"                   /* 8 bytes, no terminator stored */
#define FV_CONFIG_FLAG_OPTIMISED 0x1u                /* run the DSP kernels */

typedef struct {
    uint8_t magic[8];
    uint8_t board_id[12];
    uint32_t flags;
} fv_flash_config;

/* Clocks, cycle counter, link USART and (real boards) the watchdog. */
void fv_port_init(void);

/* Moves up to `cap` received bytes out of the ring buffer; returns how many. */
uint32_t fv_port_rx_take(uint8_t *dst, uint32_t cap);

/* Sleeps (WFI) until an interrupt, unless received bytes are already waiting. */
void fv_port_idle(void);

void fv_port_watchdog_kick(void);

uint32_t fv_port_config_flags(void);

/* 64-bit count of core clock ticks since boot, from SysTick (extended by its wraps). */
uint64_t fv_port_ticks(void);

/* 1 when DWT CYCCNT was seen to advance at boot (real silicon), 0 under QEMU 7.2. */
int fv_port_dwt_works(void);

/* Interrupt handlers, wired in startup.c's vector table. */
void fv_systick_isr(void);
void fv_link_isr(void);

#endif /* FV_STM32F4_PORT_H */
