/*
 * The host board's command line: options into a host_options (--chaos into faults_control.c),
 * --list, the usage text, and the board id of --id.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_app.h"
#include "fv_models.h"
#include "host.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: board --model ID [--id BOARD_ID] [--name BOARD] [--latency-ms MS] (--pty [--link PATH] | --tcp PORT [--bind ADDR])\n"
            "             [--control FIFO] [--chaos SEED:RATE[:KINDS]]\n"
            "       board --list\n"
            "A virtual fleetvote board: the firmware core on the host, protocol v1 over a raw pty\n"
            "or a TCP socket. Prints its port, serves until SIGINT/SIGTERM.\n"
            "  --name BOARD     the board name HELLO reports (default host, at most 15 characters): a\n"
            "                   virtual board standing in for a catalogue board, as fleetvote flash's tests do\n"
            "  --control FIFO   lines \"KIND [ARG]\" arm a fault for the next CLASSIFY reply (KIND: DROP,\n"
            "                   DELAY ms, GARBAGE n, BAD_CRC, RESET, HANG ms (0: until the host closes\n"
            "                   the link), UNPLUG; or CLEAR)\n"
            "  --chaos S:R[:K]  a random fault of kinds K (default all but UNPLUG) on a share R of the\n"
            "                   CLASSIFY replies, seeded by S\n");
}

int host_parse_args(int argc, char **argv, host_options *o)
{
    memset(o, 0, sizeof *o);
    o->bind_addr = "127.0.0.1";
    o->tcp_port = -1;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--list")) {
            for (uint32_t k = 0; k < fv_n_models; ++k) {
                printf("%s\n", fv_models[k]->id);
            }
            return 0;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            o->model_id = argv[++i];
        } else if (!strcmp(argv[i], "--id") && i + 1 < argc) {
            o->id = argv[++i];
        } else if (!strcmp(argv[i], "--name") && i + 1 < argc && strlen(argv[i + 1]) <= 15u) {
            o->name = argv[++i]; /* HELLO's board name field holds 15 characters and a NUL */
        } else if (!strcmp(argv[i], "--pty")) {
            o->use_pty = 1;
        } else if (!strcmp(argv[i], "--link") && i + 1 < argc) {
            o->link_path = argv[++i];
        } else if (!strcmp(argv[i], "--tcp") && i + 1 < argc) {
            o->tcp_port = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--latency-ms") && i + 1 < argc) {
            o->latency_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
            o->bind_addr = argv[++i];
        } else if (!strcmp(argv[i], "--control") && i + 1 < argc && fv_test_build) {
            o->control_path = argv[++i];
        } else if (!strcmp(argv[i], "--chaos") && i + 1 < argc && fv_test_build) {
            if (host_chaos_parse(argv[++i]) != 0) {
                fprintf(stderr, "board: --chaos %s: want SEED:RATE[:KINDS], RATE in 0..1, KINDS like DROP,DELAY\n",
                        argv[i]);
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }
    if (o->model_id == NULL || o->use_pty == (o->tcp_port >= 0)) {
        usage();
        return 2;
    }
    return -1;
}

void host_parse_id(const char *s, uint8_t id[12])
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
            id[i] = (uint8_t)v;
        }
        return;
    }
    uint32_t h = 2166136261u;
    for (int i = 0; i < 12; ++i) {
        for (size_t k = 0; k < n; ++k) {
            h = (h ^ (uint8_t)s[k]) * 16777619u;
        }
        h = (h ^ (uint32_t)i) * 16777619u;
        id[i] = (uint8_t)(h >> 24);
    }
}
