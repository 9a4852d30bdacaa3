/*
 * Fault injection from outside the link, while another process holds it (the service opens a
 * tty exclusively, so a test cannot send FAULT frames on it):
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
 * The fault is armed in core/fv_fault.c, which applies it to the reply (faults.c acts it out).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fv_assert.h"
#include "fv_fault.h"
#include "fv_proto.h"
#include "host.h"

static const char *const fault_names[] = {"NONE", "DROP", "DELAY", "GARBAGE", "BAD_CRC", "RESET", "HANG", "UNPLUG"};
#define N_FAULT_KINDS (sizeof fault_names / sizeof fault_names[0])

int host_control_fd = -1;        /* read end of the FIFO */
static const char *control_path;
static int control_keep_fd = -1; /* our own write end: no hang-up when a writer leaves */
static char control_line[128];
static size_t control_len;
static uint8_t armed_kind;       /* for the next CLASSIFY reply */
static uint32_t armed_arg;
static uint32_t chaos_state;     /* xorshift32, seeded by --chaos */
static uint32_t chaos_threshold; /* RATE as a fraction of 2^32 - 1; 0: off */
static uint32_t chaos_kinds;     /* bit k: fault kind k may be drawn */
static uint32_t faults_fired[N_FAULT_KINDS];

void host_faults_report(void)
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

static uint32_t chaos_next(void)
{
    chaos_state ^= chaos_state << 13;
    chaos_state ^= chaos_state >> 17;
    chaos_state ^= chaos_state << 5;
    return chaos_state;
}

/* The fault for this CLASSIFY's reply: one armed through --control, else a --chaos draw, armed
 * in fv_fault.c as a FAULT frame would have been. */
void host_faults_before_reply(void)
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
        FV_ASSERT(n >= 1u); /* host_chaos_parse refuses an empty KINDS */
        kind = allowed[chaos_next() % n];
        uint32_t r = chaos_next();
        arg = kind == FV_FAULT_DELAY ? 1u + r % 1000u : kind == FV_FAULT_GARBAGE ? 1u + r % 512u
            : kind == FV_FAULT_HANG ? 500u + r % 2501u : 0u;
    }
    if (kind != FV_FAULT_NONE) {
        fv_fault_arm(kind, arg);
        faults_fired[kind]++;
        fprintf(stderr, "board: fault %s %u\n", fault_names[kind], (unsigned)arg); /* before it acts */
    }
}

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

int host_control_open(const char *path)
{
    control_path = path;
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
    host_control_fd = open(control_path, O_RDONLY | O_NONBLOCK);
    control_keep_fd = host_control_fd >= 0 ? open(control_path, O_WRONLY | O_NONBLOCK) : -1;
    if (control_keep_fd < 0) {
        perror("board: --control");
        return -1;
    }
    return 0;
}

void host_control_remove(void)
{
    if (control_path != NULL) {
        unlink(control_path);
    }
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

void host_control_read(void)
{
    char buf[256];
    ssize_t n = read(host_control_fd, buf, sizeof buf);
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
int host_chaos_parse(const char *s)
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
