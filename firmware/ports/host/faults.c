/*
 * The host board's fault hooks (core/fv_fault.h), acted out on a process: DELAY sleeps, GARBAGE
 * draws reproducible noise, RESET jumps back to the serve loop's reset point (as a watchdog
 * reset forgets everything received), HANG stops reading the link, UNPLUG exits so that the pty
 * or socket disappears.
 *
 * A hang ends at its "watchdog" (ARG ms, 0: never) or when the host closes the link: TCP, the
 * client leaves; pty, an inotify watch sees the host close the slave.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fv_fault.h"
#include "fv_port.h"
#include "host.h"

void fv_port_delay_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !host_stop_requested) {
    }
}

uint32_t fv_port_random(void)
{
    static uint32_t state = 0x2545F491u; /* xorshift32: deterministic garbage is easier to debug */
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

void fv_port_reset(void)
{
    longjmp(host_reset_point, 1);
}

void fv_port_hang(uint32_t ms)
{
    /* a hung board hears nothing; the host board's "watchdog" resets it after ms (0: never), and
     * so does the host closing the link (see the top of the file) */
    uint32_t t0 = fv_port_time_us();
    static uint8_t sink[4096];
    int watch = host_pty_close_watch(); /* -1 on TCP */
    while (!host_stop_requested && (ms == 0 || fv_port_time_us() - t0 < ms * 1000u)) {
        struct pollfd p[2] = {{host_link_fd, POLLIN, 0}, {watch, POLLIN, 0}};
        if (poll(p, 2, 50) <= 0) {
            continue;
        }
        if (p[1].revents != 0) {
            break; /* the host closed the pty */
        }
        if (p[0].revents != 0 && read(host_link_fd, sink, sizeof sink) == 0 && host_listen_fd >= 0) {
            break; /* the TCP client closed the link */
        }
    }
    if (watch >= 0) {
        close(watch);
    }
    if (host_stop_requested) {
        exit(0);
    }
    longjmp(host_reset_point, 1);
}

void fv_port_unplug(void)
{
    host_cleanup();
    _exit(0); /* the pty or socket disappears with the process, as a pulled USB cable */
}
