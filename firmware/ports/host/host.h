/*
 * The host board's own interface between its files; the core sees only fv_port.h (and, this
 * being a test image, fv_fault.h).
 *
 *   main.c            the serve loop, signals, reset point, clean-up at exit
 *   args.c            the command line (usage below, in args.c) and the board id
 *   port.c            fv_port.h: the link's writes, time, board facts, --latency-ms
 *   transport_pty.c   the raw pseudo-terminal (--pty [--link PATH])
 *   transport_tcp.c   the TCP socket (--tcp PORT [--bind ADDR]), one client at a time
 *   faults.c          fv_fault.h's hooks: delay, noise, reset, hang, unplug acted out on a process
 *   faults_control.c  fault injection from outside the link: --control FIFO and --chaos
 *
 * These files use POSIX and GNU extensions (ptys, sockets, inotify): each defines _GNU_SOURCE
 * before its first include; the core never sees those headers.
 */
#ifndef FV_HOST_H
#define FV_HOST_H

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>

/* ---- main.c -------------------------------------------------------------------------------- */

extern volatile sig_atomic_t host_stop_requested; /* SIGINT or SIGTERM arrived */
extern jmp_buf host_reset_point;                  /* a RESET or the end of a HANG lands here */

/* Removes the --link and the --control FIFO, prints the fault count (atexit, and UNPLUG). */
void host_cleanup(void);

/* ---- args.c -------------------------------------------------------------------------------- */

typedef struct {
    const char *model_id;
    const char *id;           /* --id, or NULL: the model id stands in */
    int use_pty;
    const char *link_path;    /* --link */
    int tcp_port;             /* -1: no --tcp */
    const char *bind_addr;
    uint32_t latency_ms;
    const char *control_path; /* --control */
    const char *name;         /* --name, or NULL: "host" */
} host_options;

/* Fills *o from argv (--chaos goes straight to faults_control.c). Returns -1 to go on and
 * serve, else the exit status: 0 after --list, 2 after a usage error. */
int host_parse_args(int argc, char **argv, host_options *o);

/* The 96-bit board id of --id (24 hex digits, or any name, hashed). */
void host_parse_id(const char *s, uint8_t id[12]);

/* ---- port.c -------------------------------------------------------------------------------- */

extern uint8_t host_board_id[12];
extern uint32_t host_latency_ms; /* --latency-ms: the least time a classification takes */
extern const char *host_board_name; /* --name: the catalogue name HELLO reports ("host") */

/* ---- the link: transport_pty.c, transport_tcp.c ----------------------------------------------- */

extern int host_link_fd;   /* requests are read from it, replies written to it; -1: none */
extern int host_listen_fd; /* --tcp: the listening socket; -1 on a pty */
extern int host_slave_fd;  /* --pty: our own handle on the slave side; -1 on TCP */
extern const char *host_link_path; /* --link: a symlink to the pty's slave, removed at exit */

/* Opens the pty (and the host_link_path symlink to it, when set) and prints "pty NAME".
 * Returns the master's fd, or -1 after a message. */
int host_pty_open(void);

/* An inotify fd that turns readable when the host closes the slave, or -1 (not on a pty, or
 * inotify failed). */
int host_pty_close_watch(void);

/* Removes the --link symlink, if one was given. */
void host_pty_remove_link(void);

/* Listens on bind_addr:port (0: any free port) and prints "tcp ADDR:PORT". Returns the
 * listening socket, or -1 after a message. */
int host_tcp_listen(const char *bind_addr, int port);

/* Waits for the next client on host_listen_fd; returns its fd (non-blocking, TCP_NODELAY), or
 * -1 on a stop request or an error. */
int host_tcp_accept(void);

/* ---- faults_control.c ---------------------------------------------------------------------- */

extern int host_control_fd; /* the --control FIFO's read end; -1: none */

/* Creates (if missing) and opens the FIFO; returns 0, or -1 after a message. */
int host_control_open(const char *path);

/* Reads what is waiting on the FIFO and acts on each complete line. */
void host_control_read(void);

/* Takes --chaos SEED:RATE[:KINDS]; returns 0, or -1 when malformed. */
int host_chaos_parse(const char *spec);

/* Called by fv_port_after_inference, between a classification and its reply: arms the fault of
 * the --control FIFO, or a --chaos draw, for that reply. */
void host_faults_before_reply(void);

/* Removes the FIFO, if ours. */
void host_control_remove(void);

/* With --control or --chaos: "board: faults fired N: DROP n ..." on stderr. */
void host_faults_report(void);

#endif /* FV_HOST_H */
