/*
 * The board/host boundary: the handful of functions a port implements (STYLE habit 5). The
 * protocol and inference code call only these; they never touch a register or a file descriptor.
 * A test image's port adds the fault-injection hooks of fv_fault.h.
 */
#ifndef FV_PORT_H
#define FV_PORT_H

#include <stdint.h>

/* Send bytes to the host (blocking until queued). */
void fv_port_write(const uint8_t *data, uint32_t n);

/* Monotonic time in microseconds, and a free-running core cycle counter (DWT CYCCNT where it
 * advances, SysTick with wrap counting otherwise; the TSC or 0 on the host). */
uint32_t fv_port_time_us(void);
uint32_t fv_port_cycles(void);

uint32_t fv_port_clock_hz(void);       /* core clock; 0 on the host */
uint32_t fv_port_baud(void);           /* link baud; 0 when the link is not a UART */
const char *fv_port_board_name(void);  /* catalogue name, at most 15 characters */
void fv_port_board_id(uint8_t id[12]); /* 96-bit unique id */

/* Returns 1 once if received bytes were lost (ring buffer overrun) since the last call. */
int fv_port_rx_overrun(void);

/* Called after each inference with its duration; ports with nothing to do define it empty
 * (the host board pads to its --latency-ms here). */
void fv_port_after_inference(uint32_t elapsed_us);

#endif /* FV_PORT_H */
