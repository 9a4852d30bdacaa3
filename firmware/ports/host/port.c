/*
 * The host board's fv_port.h: replies written to the link (a pty or a TCP client), time from
 * CLOCK_MONOTONIC, cycles from the TSC, the board id of --id, and --latency-ms, padded after each
 * inference. The fault hooks of a test image are in faults.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fv_port.h"
#include "host.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

uint8_t host_board_id[12];
uint32_t host_latency_ms;
const char *host_board_name = "host";

void fv_port_write(const uint8_t *data, uint32_t n)
{
    uint32_t done = 0;
    while (done < n && host_link_fd >= 0) {
        ssize_t w = write(host_link_fd, data + done, n - done);
        if (w > 0) {
            done += (uint32_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* nobody draining the other end: like a UART with no listener, give up after
             * 200 ms rather than blocking the board forever */
            struct pollfd p = {host_link_fd, POLLOUT, 0};
            if (poll(&p, 1, 200) <= 0) {
                return;
            }
            continue;
        }
        return; /* peer gone: the main loop notices on its next read */
    }
}

/* Called by the app between inference and reply (fv_app.c): pads the compute time up to
 * --latency-ms, then arms an outside fault for the reply, if any (faults_control.c). */
void fv_port_after_inference(uint32_t elapsed_us)
{
    if (host_latency_ms != 0u && elapsed_us < host_latency_ms * 1000u) {
        uint32_t us = host_latency_ms * 1000u - elapsed_us;
        struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !host_stop_requested) {
        }
    }
    host_faults_before_reply();
}

uint32_t fv_port_time_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

uint32_t fv_port_cycles(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return (uint32_t)__rdtsc(); /* the host's time-stamp counter, not core cycles of a board */
#else
    return 0;
#endif
}

uint32_t fv_port_clock_hz(void) { return 0; }
uint32_t fv_port_baud(void) { return 0; }
const char *fv_port_board_name(void) { return host_board_name; }
void fv_port_board_id(uint8_t id[12]) { memcpy(id, host_board_id, sizeof host_board_id); }
int fv_port_rx_overrun(void) { return 0; } /* the kernel's pty and socket buffers apply back-pressure */
