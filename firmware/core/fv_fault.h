/*
 * Fault injection, for test images only (FV_TEST_BUILD): the host board, the C tests and the
 * emulated STM32F4 boards' test images link core/fv_fault.c and implement the port hooks below.
 * A release image links neither, and its app answers every test-only message with
 * ERROR(TEST_ONLY) (docs/protocol.md, "Test-only messages").
 *
 * A FAULT request (or, on the host board, its --control FIFO and --chaos option) arms one fault;
 * the next reply the board sends goes through fv_fault_send, which applies it and disarms.
 */
#ifndef FV_FAULT_H
#define FV_FAULT_H

#ifndef FV_TEST_BUILD
#error "fv_fault.h is for test images only: build with -DFV_TEST_BUILD"
#endif

#include <stdint.h>

/* Arms `kind` (FV_FAULT_DROP..FV_FAULT_UNPLUG of fv_proto.h, with its argument) for the next
 * reply; FV_FAULT_NONE disarms. The caller has checked the kind (asserted). */
void fv_fault_arm(uint8_t kind, uint32_t arg);

/* Sends one encoded reply frame[0..n), its 0x00 delimiter included, through the armed fault and
 * disarms it; with none armed, it is fv_port_write(frame, n). */
void fv_fault_send(uint8_t *frame, uint32_t n);

/* ---- what a test image's port adds to fv_port.h ------------------------------------------ */

void fv_port_delay_ms(uint32_t ms);    /* DELAY: wait, keeping the watchdog fed */
uint32_t fv_port_random(void);         /* GARBAGE: reproducible noise (xorshift32) */
void fv_port_reset(void);              /* RESET: restart the board, state and buffers cleared */
void fv_port_hang(uint32_t ms);        /* HANG: stop answering until the watchdog resets the
                                        * board (the host board and QEMU: after ms, 0 = never) */
void fv_port_unplug(void);             /* UNPLUG: make the link disappear */

#endif /* FV_FAULT_H */
