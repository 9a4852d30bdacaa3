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
 *
 * Fault injection while another process holds the link (the service opens a tty exclusively, so
 * a test cannot send FAULT frames on it), test build only:
 *
 *   --control PATH          a FIFO (created if missing, removed at exit); each line "KIND [ARG]",
 *                           KIND a name of docs/protocol.md's fault table (DROP, DELAY, GARBAGE,
 *                           BAD_CRC, RESET, HANG, UNPLUG) or its number, arms that fault for the
 *                           reply to the next CLASSIFY, as a FAULT frame would, with no byte on
 *                           the link. "CLEAR" disarms.
 *   --chaos SEED:RATE[:KINDS]  each CLASSIFY reply gets a random fault with probability RATE
 *                           (0..1), drawn from KINDS (comma list; default all but UNPLUG) with a
 *                           random argument: DELAY 1-1000 ms, GARBAGE 1-512 bytes, HANG 500-3000
 *                           ms. Deterministic for a given SEED and request sequence.
 *
 * With either option, each fault is logged on stderr as it fires ("board: fault DELAY 500"), and
 * counted there at exit ("board: faults fired 3: DROP 1 ..."): read stderr or send it to a file.
 * A hang ends at its watchdog (ARG ms, 0: never) or when the host closes the link: TCP, the client
 * leaves; pty, an inotify watch sees the host close the slave (as a board whose USB-serial bridge
 * resets it when the port is reopened).
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
#include <strings.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
static char pty_name[128]; /* --pty: the slave's path */

/* outside fault injection (--control, --chaos), see the top of the file */
static const char *const fault_names[] = {"NONE", "DROP", "DELAY", "GARBAGE", "BAD_CRC", "RESET", "HANG", "UNPLUG"};
#define N_FAULT_KINDS (sizeof fault_names / sizeof fault_names[0])
static const char *control_path;
static int control_fd = -1;      /* read end of the FIFO */
static int control_keep_fd = -1; /* our own write end: no hang-up when a writer leaves */
static char control_line[128];
static size_t control_len;
static uint8_t armed_kind;      /* for the next CLASSIFY reply */
static uint32_t armed_arg;
static uint32_t chaos_state;     /* xorshift32, seeded by --chaos */
static uint32_t chaos_threshold; /* RATE as a fraction of 2^32 - 1; 0: off */
static uint32_t chaos_kinds;     /* bit k: fault kind k may be drawn */
static uint32_t faults_fired[N_FAULT_KINDS];

static void report_faults(void)
{
    if (control_path == NULL && chaos_threshold == 0u) {
        return;
    }
    uint32_t total = 0;
    for (size_t k = 1; k < N_FAULT_KINDS; ++k) {
        total += faults_fired[k];
    }
    fprintf(stderr, "board: faults fired %u:", (unsigned)total);
    for (size_t k = 1; k < N_FAULT_KINDS; ++k) {
        fprintf(stderr, " %s %u", fault_names[k], (unsigned)faults_fired[k]);
    }
    fprintf(stderr, "\n");
    fflush(stderr);
}

static void cleanup(void)
{
    if (link_path != NULL) {
        unlink(link_path);
    }
    if (control_path != NULL) {
        unlink(control_path);
    }
    report_faults();
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

static uint32_t chaos_next(void)
{
    chaos_state ^= chaos_state << 13;
    chaos_state ^= chaos_state >> 17;
    chaos_state ^= chaos_state << 5;
    return chaos_state;
}

/* The fault for this CLASSIFY's reply: one armed through --control, else a --chaos draw. Set in
 * the app as a FAULT frame would have, so fv_app.c's send() applies it to the reply. */
static void arm_outside_fault(void)
{
    uint8_t kind = armed_kind;
    uint32_t arg = armed_arg;
    armed_kind = FV_FAULT_NONE;
    if (kind == FV_FAULT_NONE && chaos_threshold != 0u && chaos_next() <= chaos_threshold) {
        uint8_t allowed[N_FAULT_KINDS];
        uint32_t n = 0;
        for (uint8_t k = 1; k < N_FAULT_KINDS; ++k) {
            if (chaos_kinds & (1u << k)) {
                allowed[n++] = k;
            }
        }
        kind = allowed[chaos_next() % n]; /* n >= 1: checked when --chaos was parsed */
        uint32_t r = chaos_next();
        arg = kind == FV_FAULT_DELAY ? 1u + r % 1000u : kind == FV_FAULT_GARBAGE ? 1u + r % 512u
            : kind == FV_FAULT_HANG ? 500u + r % 2501u : 0u;
    }
    if (kind != FV_FAULT_NONE) {
        app.fault_kind = kind;
        app.fault_arg = arg;
        faults_fired[kind]++;
        fprintf(stderr, "board: fault %s %u\n", fault_names[kind], (unsigned)arg); /* before it acts */
    }
}

/* Called by the app between inference and reply (fv_app.c): pads the compute time up to
 * --latency-ms, then arms an outside fault for the reply, if any. */
void fv_port_after_inference(uint32_t elapsed_us)
{
    if (min_latency_ms != 0u && elapsed_us < min_latency_ms * 1000u) {
        uint32_t us = min_latency_ms * 1000u - elapsed_us;
        struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested) {
        }
    }
    arm_outside_fault();
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
    /* a hung board hears nothing; the host board's "watchdog" resets it after ms (0: never), and
     * so does the host closing the link (see the top of the file) */
    uint32_t t0 = fv_port_time_us();
    static uint8_t sink[4096];
    /* pty: the host's close of the slave shows as an inotify event on it (our own slave handle
     * stays open, so the master never hangs up); a close followed at once by a reopen still counts */
    int watch = slave_fd >= 0 ? inotify_init1(IN_NONBLOCK | IN_CLOEXEC) : -1;
    if (watch >= 0 && inotify_add_watch(watch, pty_name, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) < 0) {
        close(watch);
        watch = -1;
    }
    while (!stop_requested && (ms == 0 || fv_port_time_us() - t0 < ms * 1000u)) {
        struct pollfd p[2] = {{link_fd, POLLIN, 0}, {watch, POLLIN, 0}};
        if (poll(p, 2, 50) <= 0) {
            continue;
        }
        if (p[1].revents != 0) {
            break; /* the host closed the pty */
        }
        if (p[0].revents != 0 && read(link_fd, sink, sizeof sink) == 0 && listen_fd >= 0) {
            break; /* the TCP client closed the link */
        }
    }
    if (watch >= 0) {
        close(watch);
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
    if (name == NULL || strlen(name) >= sizeof pty_name) {
        perror("board: ptsname");
        return -1;
    }
    memcpy(pty_name, name, strlen(name) + 1u); /* for fv_port_hang's inotify watch */
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

/* ---- outside fault injection: --control FIFO and --chaos ----------------------------------- */

/* A fault kind by name (case-insensitive) or number; 0 when it is neither. */
static uint8_t fault_kind(const char *s, size_t n)
{
    for (uint8_t k = 1; k < N_FAULT_KINDS; ++k) {
        if (strlen(fault_names[k]) == n && strncasecmp(s, fault_names[k], n) == 0) {
            return k;
        }
    }
    if (n == 1 && s[0] >= '1' && s[0] <= '7') {
        return (uint8_t)(s[0] - '0');
    }
    return FV_FAULT_NONE;
}

static int open_control(void)
{
    if (mkfifo(control_path, 0600) != 0 && errno != EEXIST) {
        perror("board: --control");
        return -1;
    }
    struct stat st;
    if (stat(control_path, &st) != 0 || !S_ISFIFO(st.st_mode)) {
        fprintf(stderr, "board: --control %s exists and is not a FIFO\n", control_path);
        control_path = NULL; /* not ours: leave it at exit */
        return -1;
    }
    control_fd = open(control_path, O_RDONLY | O_NONBLOCK);
    control_keep_fd = control_fd >= 0 ? open(control_path, O_WRONLY | O_NONBLOCK) : -1;
    if (control_keep_fd < 0) {
        perror("board: --control");
        return -1;
    }
    return 0;
}

static void control_command(char *line)
{
    char *end = line + strlen(line);
    while (end > line && (end[-1] == '\r' || end[-1] == ' ')) {
        *--end = '\0';
    }
    size_t n = strcspn(line, " ");
    if (n == 0) {
        return;
    }
    if (n == 5 && strncasecmp(line, "CLEAR", 5) == 0) {
        armed_kind = FV_FAULT_NONE;
        return;
    }
    uint8_t kind = fault_kind(line, n);
    char *rest = NULL;
    unsigned long arg = line[n] != '\0' ? strtoul(line + n, &rest, 10) : 0ul;
    if (kind == FV_FAULT_NONE || (rest != NULL && *rest != '\0') || arg > 0xFFFFFFFFul) {
        fprintf(stderr, "board: --control: ignored \"%s\" (KIND [ARG], KIND one of DROP DELAY GARBAGE "
                        "BAD_CRC RESET HANG UNPLUG or CLEAR)\n", line);
        return;
    }
    armed_kind = kind;
    armed_arg = (uint32_t)arg;
}

static void read_control(void)
{
    char buf[256];
    ssize_t n = read(control_fd, buf, sizeof buf);
    for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == '\n') {
            control_line[control_len] = '\0';
            control_command(control_line);
            control_len = 0;
        } else if (control_len + 1u < sizeof control_line) {
            control_line[control_len++] = buf[i];
        } /* an overlong line is cut, then ignored as malformed */
    }
}

/* SEED:RATE[:KINDS] */
static int parse_chaos(const char *s)
{
    char *p;
    unsigned long seed = strtoul(s, &p, 10);
    if (*p != ':') {
        return -1;
    }
    double rate = strtod(p + 1, &p);
    if (!(rate >= 0.0 && rate <= 1.0) || (*p != '\0' && *p != ':')) {
        return -1;
    }
    chaos_state = (uint32_t)seed * 2654435761u + 1u; /* never 0: xorshift would stay there */
    if (chaos_state == 0u) {
        chaos_state = 1u;
    }
    chaos_threshold = (uint32_t)(rate * 4294967295.0);
    if (rate > 0.0 && chaos_threshold == 0u) {
        chaos_threshold = 1u;
    }
    chaos_kinds = 0x7Eu & ~(1u << FV_FAULT_UNPLUG); /* kinds 1..6 */
    if (*p == ':') {
        chaos_kinds = 0;
        for (const char *k = p + 1; *k != '\0';) {
            size_t n = strcspn(k, ",");
            uint8_t kind = fault_kind(k, n);
            if (kind == FV_FAULT_NONE) {
                return -1;
            }
            chaos_kinds |= 1u << kind;
            k += n;
            if (*k == ',' && *++k == '\0') {
                return -1; /* a trailing comma */
            }
        }
    }
    return chaos_kinds != 0u ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: board --model ID [--id BOARD_ID] [--latency-ms MS] (--pty [--link PATH] | --tcp PORT [--bind ADDR])\n"
            "             [--control FIFO] [--chaos SEED:RATE[:KINDS]]\n"
            "       board --list\n"
            "A virtual fleetvote board: the firmware core on the host, protocol v1 over a raw pty\n"
            "or a TCP socket. Prints its port, serves until SIGINT/SIGTERM.\n"
            "  --control FIFO   lines \"KIND [ARG]\" arm a fault for the next CLASSIFY reply (KIND: DROP,\n"
            "                   DELAY ms, GARBAGE n, BAD_CRC, RESET, HANG ms (0: until the host closes\n"
            "                   the link), UNPLUG; or CLEAR)\n"
            "  --chaos S:R[:K]  a random fault of kinds K (default all but UNPLUG) on a share R of the\n"
            "                   CLASSIFY replies, seeded by S\n");
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
        } else if (!strcmp(argv[i], "--control") && i + 1 < argc && fv_test_build) {
            control_path = argv[++i];
        } else if (!strcmp(argv[i], "--chaos") && i + 1 < argc && fv_test_build) {
            if (parse_chaos(argv[++i]) != 0) {
                fprintf(stderr, "board: --chaos %s: want SEED:RATE[:KINDS], RATE in 0..1, KINDS like DROP,DELAY\n",
                        argv[i]);
                return 2;
            }
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
    if (control_path != NULL && open_control() != 0) {
        return 1;
    }

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
        struct pollfd p[2] = {{link_fd, POLLIN, 0}, {control_fd, POLLIN, 0}}; /* fd -1: ignored */
        int r = poll(p, 2, 1000);
        if (r < 0 && errno != EINTR) {
            break;
        }
        if (r > 0 && p[1].revents != 0) {
            read_control();
        }
        if (r <= 0 || p[0].revents == 0) {
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
