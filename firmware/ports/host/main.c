/*
 * The virtual board: the firmware core built for the host, speaking protocol v1 over a
 * pseudo-terminal (raw mode, like a USB CDC port) or a TCP socket (for socket:// URLs).
 *
 *   board --model ID [--id BOARD_ID] [--name BOARD] [--latency-ms MS] (--pty [--link PATH] | --tcp PORT [--bind ADDR])
 *         [--control FIFO] [--chaos SEED:RATE[:KINDS]]
 *   board --list
 *
 * --latency-ms makes each classification take at least MS milliseconds, as a real board's
 * compute does: a virtual fleet can then stand for boards of a given speed.
 *
 * It prints one line with its port ("pty /dev/pts/7" or "tcp 127.0.0.1:7001") and then serves
 * until SIGINT or SIGTERM, which remove the --link and exit 0.
 *
 * It is a test image (FV_TEST_BUILD): FAULT frames are served (core/fv_fault.c, acted out by
 * faults.c), and --control and --chaos inject faults while another process holds the link
 * (faults_control.c describes them). The files of the port are listed in host.h.
 *
 * This file: the serve loop. One client at a time; a TCP client that leaves makes room for the
 * next; a RESET (or the end of a HANG) comes back here through host_reset_point, as a board
 * restarts, and forgets everything received so far.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "fv_app.h"
#include "fv_arena.h"
#include "fv_models.h"
#include "host.h"

/* 16-byte alignment, as the plan assumes (analyze and TFLM use the same) */
static int8_t arena[FV_ARENA_BYTES + 16u] __attribute__((aligned(16)));
static fv_app app;
static const fv_model *model; /* --model's; outside main, so that a longjmp cannot clobber it */

volatile sig_atomic_t host_stop_requested;
jmp_buf host_reset_point;

void host_cleanup(void)
{
    host_pty_remove_link();
    host_control_remove();
    host_faults_report();
}

static void on_signal(int sig)
{
    (void)sig;
    host_stop_requested = 1;
}

static const fv_model *find_model(const char *id)
{
    const fv_model *found = NULL;
    for (uint32_t k = 0; k < fv_n_models; ++k) {
        if (!strcmp(fv_models[k]->id, id)) {
            found = fv_models[k];
        }
    }
    return found;
}

int main(int argc, char **argv)
{
    host_options opt;
    int status = host_parse_args(argc, argv, &opt);
    if (status >= 0) {
        return status;
    }
    model = find_model(opt.model_id);
    if (model == NULL) {
        fprintf(stderr, "board: unknown model %s (board --list shows the models built in)\n", opt.model_id);
        return 2;
    }
    host_parse_id(opt.id != NULL ? opt.id : opt.model_id, host_board_id);
    host_latency_ms = opt.latency_ms;
    if (opt.name != NULL) {
        host_board_name = opt.name;
    }
    host_link_path = opt.link_path;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR and the loop sees the flag */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that vanished mid-reply is an error return, not death */
    atexit(host_cleanup);
    if (opt.control_path != NULL && host_control_open(opt.control_path) != 0) {
        return 1;
    }

    if (opt.use_pty) {
        host_link_fd = host_pty_open();
    } else {
        host_listen_fd = host_tcp_listen(opt.bind_addr, opt.tcp_port);
        if (host_listen_fd >= 0) {
            host_link_fd = host_tcp_accept();
        }
    }
    if (host_link_fd < 0 && !host_stop_requested) {
        return 1;
    }

    if (setjmp(host_reset_point) != 0) {
        /* FAULT RESET: like a watchdog reset, everything received so far is forgotten */
        tcflush(host_slave_fd >= 0 ? host_slave_fd : host_link_fd, TCIOFLUSH);
    }
    /* the host board runs the reference kernels (HELLO's flags bit 1 clear) */
    fv_app_init(&app, model, arena, FV_KERNELS_REF);
    static uint8_t buf[4096];
    while (!host_stop_requested) {
        struct pollfd p[2] = {{host_link_fd, POLLIN, 0}, {host_control_fd, POLLIN, 0}}; /* fd -1: ignored */
        int r = poll(p, 2, 1000);
        if (r < 0 && errno != EINTR) {
            break;
        }
        if (r > 0 && p[1].revents != 0) {
            host_control_read();
        }
        if (r <= 0 || p[0].revents == 0) {
            continue;
        }
        ssize_t n = read(host_link_fd, buf, sizeof buf);
        if (n > 0) {
            fv_app_rx(&app, buf, (uint32_t)n);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            if (host_listen_fd < 0) {
                break; /* the pty itself failed */
            }
            close(host_link_fd); /* TCP client left: serve the next one */
            fv_app_init(&app, model, arena, FV_KERNELS_REF);
            host_link_fd = host_tcp_accept();
            if (host_link_fd < 0) {
                break;
            }
        }
    }
    return 0;
}
