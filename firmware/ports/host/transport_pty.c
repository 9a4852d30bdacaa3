/*
 * The pty link (--pty [--link PATH]): a raw pseudo-terminal, as a USB CDC port looks to the
 * host, with an optional stable symlink to its slave; and the inotify watch with which a hung
 * board notices the host closing the port (as a board whose USB-serial bridge resets it when the
 * port is reopened).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <termios.h>
#include <unistd.h>

#include "host.h"

int host_link_fd = -1;
int host_slave_fd = -1;
const char *host_link_path;
static char pty_name[128]; /* the slave's path */

int host_pty_open(void)
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
    memcpy(pty_name, name, strlen(name) + 1u); /* for host_pty_close_watch */
    /* Keep the slave open ourselves: otherwise every close by a client makes reads on the master
     * fail with EIO until the next open. And set it raw: no echo, no newline translation, no
     * signals from 0x03 or 0x1A bytes in an image. */
    host_slave_fd = open(name, O_RDWR | O_NOCTTY);
    struct termios t;
    if (host_slave_fd < 0 || tcgetattr(host_slave_fd, &t) != 0) {
        perror("board: slave pty");
        return -1;
    }
    cfmakeraw(&t);
    tcsetattr(host_slave_fd, TCSANOW, &t);
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    if (host_link_path != NULL) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp%d", host_link_path, (int)getpid());
        unlink(tmp);
        if (symlink(name, tmp) != 0 || rename(tmp, host_link_path) != 0) { /* atomic replace */
            perror("board: --link");
            return -1;
        }
    }
    printf("pty %s\n", name);
    fflush(stdout);
    return m;
}

int host_pty_close_watch(void)
{
    /* the host's close of the slave shows as an inotify event on it (our own slave handle stays
     * open, so the master never hangs up); a close followed at once by a reopen still counts */
    if (host_slave_fd < 0) {
        return -1;
    }
    int watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (watch >= 0 && inotify_add_watch(watch, pty_name, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) < 0) {
        close(watch);
        watch = -1;
    }
    return watch;
}

void host_pty_remove_link(void)
{
    if (host_link_path != NULL) {
        unlink(host_link_path);
    }
}
