// floor: the physical floor of this transport — a minimal single-threaded epoll
// server on a Unix socket answering every request with fixed bytes.
//
//   floor PATH RESPONSE_FILE [--http]
//
// NDJSON (default): each '\n'-terminated line in gets the file's bytes (which must
// end in '\n') out. --http: each request head ("\r\n\r\n"-terminated, no body) gets
// "HTTP/1.1 200 OK" with Content-Type/Content-Length and the file's bytes (its
// trailing newline dropped) as the body. Stops on SIGTERM/SIGINT.
//
// Build: gcc -O2 -o floor floor.c
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct {
    int fd;
    char rbuf[65536];
    size_t rlen;
    char *wbuf;
    size_t wlen, wcap;
} conn_t;

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static char *reply;
static size_t reply_len;
static int http;

static void drop(int ep, conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->wbuf);
    free(c);
}

static int flush_out(conn_t *c) {
    while (c->wlen) {
        ssize_t n = write(c->fd, c->wbuf, c->wlen);
        if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        memmove(c->wbuf, c->wbuf + n, c->wlen - (size_t)n);
        c->wlen -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: floor PATH RESPONSE_FILE [--http]\n");
        return 2;
    }
    http = argc > 3 && !strcmp(argv[3], "--http");
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror("floor: response file"); return 1; }
    char body[65536];
    size_t blen = fread(body, 1, sizeof body, f);
    fclose(f);
    if (http) {
        while (blen && (body[blen - 1] == '\n' || body[blen - 1] == '\r')) blen--;
        reply = malloc(blen + 256);
        reply_len = (size_t)sprintf(reply, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", blen);
        memcpy(reply + reply_len, body, blen);
        reply_len += blen;
    } else {
        if (!blen || body[blen - 1] != '\n') body[blen++] = '\n';
        reply = malloc(blen);
        memcpy(reply, body, blen);
        reply_len = blen;
    }

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", argv[1]);
    unlink(argv[1]);
    if (bind(lfd, (struct sockaddr *)&un, sizeof un) < 0 || listen(lfd, 4096) < 0) { perror("floor: bind/listen"); return 1; }

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    const char *delim = http ? "\r\n\r\n" : "\n";
    size_t dlen = strlen(delim);

    while (!stop) {
        int n = epoll_wait(ep, events, 256, 200);
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    conn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if ((events[i].events & EPOLLOUT) && flush_out(c) < 0) { drop(ep, c); continue; }
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            int dead = 0;
            for (;;) {
                if (c->rlen == sizeof c->rbuf) { dead = 1; break; }
                ssize_t r = read(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
                if (r <= 0) { dead = 1; break; }
                c->rlen += (size_t)r;
                size_t off = 0;
                int answers = 0;
                char *hit;
                while ((hit = memmem(c->rbuf + off, c->rlen - off, delim, dlen))) {
                    off = (size_t)(hit - c->rbuf) + dlen;
                    answers++;
                }
                if (off) {
                    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
                    c->rlen -= off;
                }
                if (answers) {
                    size_t need = c->wlen + reply_len * (size_t)answers;
                    if (need > c->wcap) { c->wcap = need * 2; c->wbuf = realloc(c->wbuf, c->wcap); }
                    for (int k = 0; k < answers; k++) { memcpy(c->wbuf + c->wlen, reply, reply_len); c->wlen += reply_len; }
                    if (flush_out(c) < 0) { dead = 1; break; }
                }
            }
            if (dead) drop(ep, c);
        }
    }
    close(lfd);
    unlink(argv[1]);
    return 0;
}
