/*
 * The TCP link (--tcp PORT [--bind ADDR]), for socket:// URLs: one client at a time, with
 * TCP_NODELAY (a reply is one small write the client waits for).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "host.h"

int host_listen_fd = -1;

int host_tcp_listen(const char *bind_addr, int port)
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

int host_tcp_accept(void)
{
    for (;;) {
        int c = accept(host_listen_fd, NULL, NULL);
        if (c >= 0) {
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
            return c;
        }
        if (host_stop_requested || errno != EINTR) {
            return -1;
        }
    }
}
