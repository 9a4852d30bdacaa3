/*
 * The virtual board: the firmware core built for the host, speaking protocol v1 over a
 * pseudo-terminal (raw mode, like a USB CDC port) or a TCP socket (for socket:// URLs).
 *
 *   board --model ID [--id BOARD_ID] [--latency-ms MS] (--pty [--link PATH] | --tcp PORT [--bind ADDR])
 *   board --list
 *
 * --latency-ms makes each classification take at least MS milliseconds, as a real board's
 * compute does: a virtual fleet can then stand for boards of a given speed.
 *
 * It prints one line with its port ("pty /dev/pts/7" or "tcp 127.0.0.1:7001") and then serves
 * until SIGINT or SIGTERM, which remove the --link and exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "fv_app.h"
#include "fv_arena.h"
#include "fv_models.h"
#include "fv_port.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

/* 16-byte alignment, as the plan assumes (analyze and TFLM use the same) */
static int8_t arena[FV_ARENA_BYTES + 16u] __attribute__((aligned(16)));

static int link_fd = -1;      /* the fd we read requests from and write replies to */
static int listen_fd = -1;    /* --tcp: the listening socket */
static int slave_fd = -1;     /* --pty: our own handle on the slave side, see open_pty */
static const char *link_path; /* --link symlink, removed at exit */
static uint8_t board_id[12];
static volatile sig_atomic_t stop_requested;
static jmp_buf reset_point;
static fv_app app;
static uint32_t min_latency_ms;

static void cleanup(void)
{
    if (link_path != NULL) {
        unlink(link_path);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ---- port functions (fv_port.h) ---------------------------------------------------------- */

void fv_port_write(const uint8_t *data, uint32_t n)
{
    uint32_t done = 0;
    while (done < n && link_fd >= 0) {
        ssize_t w = write(link_fd, data + done, n - done);
        if (w > 0) {
            done += (uint32_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* nobody draining the other end: like a UART with no listener, give up after
             * 200 ms rather than blocking the board forever */
            struct pollfd p = {link_fd, POLLOUT, 0};
            if (poll(&p, 1, 200) <= 0) {
                return;
            }
            continue;
        }
        return; /* peer gone: the main loop notices on its next read */
    }
}

/* Called by the app between inference and reply (fv_app.c): pads the compute time up to
 * --latency-ms. */
void fv_port_after_inference(uint32_t elapsed_us)
{
    if (min_latency_ms != 0u && elapsed_us < min_latency_ms * 1000u) {
        uint32_t us = min_latency_ms * 1000u - elapsed_us;
        struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested) {
        }
    }
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
const char *fv_port_board_name(void) { return "host"; }
void fv_port_board_id(uint8_t id[12]) { memcpy(id, board_id, sizeof board_id); }
int fv_port_rx_overrun(void) { return 0; } /* the kernel's pty and socket buffers apply back-pressure */

void fv_port_delay_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested) {
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
    longjmp(reset_point, 1);
}

void fv_port_hang(uint32_t ms)
{
    /* a hung board hears nothing; the host board's "watchdog" resets it after ms (0: never) */
    uint32_t t0 = fv_port_time_us();
    static uint8_t sink[4096];
    while (!stop_requested && (ms == 0 || fv_port_time_us() - t0 < ms * 1000u)) {
        struct pollfd p = {link_fd, POLLIN, 0};
        if (poll(&p, 1, 50) > 0 && read(link_fd, sink, sizeof sink) == 0 && listen_fd >= 0) {
            break; /* the TCP client closed the link */
        }
    }
    if (stop_requested) {
        exit(0);
    }
    longjmp(reset_point, 1);
}

void fv_port_unplug(void)
{
    cleanup();
    _exit(0); /* the pty or socket disappears with the process, as a pulled USB cable */
}

/* ---- links ------------------------------------------------------------------------------- */

static int open_pty(void)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) {
        perror("board: posix_openpt");
        return -1;
    }
    const char *name = ptsname(m);
    /* Keep the slave open ourselves: otherwise every close by a client makes reads on the master
     * fail with EIO until the next open. And set it raw: no echo, no newline translation, no
     * signals from 0x03 or 0x1A bytes in an image. */
    slave_fd = open(name, O_RDWR | O_NOCTTY);
    struct termios t;
    if (slave_fd < 0 || tcgetattr(slave_fd, &t) != 0) {
        perror("board: slave pty");
        return -1;
    }
    cfmakeraw(&t);
    tcsetattr(slave_fd, TCSANOW, &t);
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    if (link_path != NULL) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp%d", link_path, (int)getpid());
        unlink(tmp);
        if (symlink(name, tmp) != 0 || rename(tmp, link_path) != 0) { /* atomic replace */
            perror("board: --link");
            return -1;
        }
    }
    printf("pty %s\n", name);
    fflush(stdout);
    return m;
}

static int open_tcp(const char *bind_addr, int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &a.sin_addr) != 1 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s, 1) != 0) {
        perror("board: --tcp");
        return -1;
    }
    socklen_t len = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &len);
    printf("tcp %s:%d\n", bind_addr, (int)ntohs(a.sin_port));
    fflush(stdout);
    return s;
}

static int accept_one(void)
{
    for (;;) {
        int c = accept(listen_fd, NULL, NULL);
        if (c >= 0) {
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
            return c;
        }
        if (stop_requested || errno != EINTR) {
            return -1;
        }
    }
}

static void parse_id(const char *s)
{
    /* 24 hex digits are taken as the 96-bit id; anything else is hashed into it (FNV-1a) so
     * that names like "virt-1" give distinct, stable ids */
    size_t n = strlen(s);
    int hex = n == 24;
    for (size_t i = 0; hex && i < n; ++i) {
        hex = strchr("0123456789abcdefABCDEF", s[i]) != NULL;
    }
    if (hex) {
        for (int i = 0; i < 12; ++i) {
            unsigned v;
            sscanf(s + 2 * i, "%2x", &v);
            board_id[i] = (uint8_t)v;
        }
        return;
    }
    uint32_t h = 2166136261u;
    for (int i = 0; i < 12; ++i) {
        for (size_t k = 0; k < n; ++k) {
            h = (h ^ (uint8_t)s[k]) * 16777619u;
        }
        h = (h ^ (uint32_t)i) * 16777619u;
        board_id[i] = (uint8_t)(h >> 24);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: board --model ID [--id BOARD_ID] [--latency-ms MS] (--pty [--link PATH] | --tcp PORT [--bind ADDR])\n"
            "       board --list\n"
            "A virtual fleetvote board: the firmware core on the host, protocol v1 over a raw pty\n"
            "or a TCP socket. Prints its port, serves until SIGINT/SIGTERM.\n");
}

int main(int argc, char **argv)
{
    const char *model_id = NULL, *id = NULL, *bind_addr = "127.0.0.1";
    int use_pty = 0, tcp_port = -1;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--list")) {
            for (uint32_t k = 0; k < fv_n_models; ++k) {
                printf("%s\n", fv_models[k]->id);
            }
            return 0;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model_id = argv[++i];
        } else if (!strcmp(argv[i], "--id") && i + 1 < argc) {
            id = argv[++i];
        } else if (!strcmp(argv[i], "--pty")) {
            use_pty = 1;
        } else if (!strcmp(argv[i], "--link") && i + 1 < argc) {
            link_path = argv[++i];
        } else if (!strcmp(argv[i], "--tcp") && i + 1 < argc) {
            tcp_port = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--latency-ms") && i + 1 < argc) {
            min_latency_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
            bind_addr = argv[++i];
        } else {
            usage();
            return 2;
        }
    }
    if (model_id == NULL || use_pty == (tcp_port >= 0)) {
        usage();
        return 2;
    }
    const fv_model *model = NULL;
    for (uint32_t k = 0; k < fv_n_models; ++k) {
        if (!strcmp(fv_models[k]->id, model_id)) {
            model = fv_models[k];
        }
    }
    if (model == NULL) {
        fprintf(stderr, "board: unknown model %s (board --list shows the models built in)\n", model_id);
        return 2;
    }
    parse_id(id != NULL ? id : model_id);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR and the loop sees the flag */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that vanished mid-reply is an error return, not death */
    atexit(cleanup);

    if (use_pty) {
        link_fd = open_pty();
    } else {
        listen_fd = open_tcp(bind_addr, tcp_port);
        if (listen_fd >= 0) {
            link_fd = accept_one();
        }
    }
    if (link_fd < 0 && !stop_requested) {
        return 1;
    }

    if (setjmp(reset_point) != 0) {
        /* FAULT RESET: like a watchdog reset, everything received so far is forgotten */
        tcflush(slave_fd >= 0 ? slave_fd : link_fd, TCIOFLUSH);
    }
    fv_app_init(&app, model, arena);
    static uint8_t buf[4096];
    while (!stop_requested) {
        struct pollfd p = {link_fd, POLLIN, 0};
        int r = poll(&p, 1, 1000);
        if (r < 0 && errno != EINTR) {
            break;
        }
        if (r <= 0) {
            continue;
        }
        ssize_t n = read(link_fd, buf, sizeof buf);
        if (n > 0) {
            fv_app_rx(&app, buf, (uint32_t)n);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            if (listen_fd < 0) {
                break; /* the pty itself failed */
            }
            close(link_fd); /* TCP client left: serve the next one */
            fv_app_init(&app, model, arena);
            link_fd = accept_one();
            if (link_fd < 0) {
                break;
            }
        }
    }
    return 0;
}
