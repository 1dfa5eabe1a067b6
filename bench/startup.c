// startup: time from exec to sd_notify READY=1, or to the first token.
//
//   startup [-n RUNS] [-t TIMEOUT_S] [--token SOCKET] [--clean DIR] -- COMMAND ARGS...
//
// For each run: binds a datagram socket, points NOTIFY_SOCKET at it, takes the
// monotonic time, posix_spawn()s COMMAND (stdout to /dev/null), waits for a
// datagram containing READY=1, takes the time again, then stops the child with
// SIGTERM (SIGKILL after 5 s) and reaps it, acknowledging its notify barriers as
// systemd does (it stores its token cache behind one at stop). Prints one JSON
// object: every run in ms, min, median, max.
//
// --token SOCKET: instead of READY=1, time until the broker on SOCKET answers
// {"op":"token","scope":"https://storage.azure.com/.default"} with "ok":true
// (connect and ask again every 0.5 ms until it does): `tokenbrokerd --dev`'s
// exec → first token. --clean DIR: remove DIR before each run (a first-ever start).
//
// Build: gcc -O2 -o startup startup.c
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Reads what the child sent to the notify socket and closes any descriptors that came
// with it. A `BARRIER=1` carries one, and systemd acknowledges the barrier by closing it:
// without this the daemon's stop (it stores its token cache behind a barrier) waits 5 s.
static void drain_notify(int fd) {
    for (;;) {
        char buf[4096];
        char control[CMSG_SPACE(16 * sizeof(int))];
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
        if (recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0) return;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int k = 0; k < n; k++) close(((int *)CMSG_DATA(c))[k]);
        }
    }
}

static void stop_child(pid_t pid, int notify_fd) {
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        drain_notify(notify_fd);
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

// One attempt: connect to the broker's socket, ask for a token, 1 if the answer is "ok":true.
static int token_once(const char *socket_path) {
    static const char request[] = "{\"op\":\"token\",\"scope\":\"https://storage.azure.com/.default\"}\n";
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", socket_path);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&un, sizeof un) == 0 && write(fd, request, sizeof request - 1) == (ssize_t)(sizeof request - 1)) {
        char buf[16384];
        size_t used = 0;
        ssize_t n;
        while (used < sizeof buf - 1 && (n = read(fd, buf + used, sizeof buf - 1 - used)) > 0) {
            used += (size_t)n;
            buf[used] = 0;
            if (memchr(buf, '\n', used)) break;
        }
        buf[used] = 0;
        ok = strstr(buf, "\"ok\":true") != NULL;
    }
    close(fd);
    return ok;
}

static void remove_tree(const char *dir) {
    pid_t pid;
    char *rm[] = {"rm", "-rf", "--", (char *)dir, NULL};
    if (posix_spawnp(&pid, "rm", NULL, NULL, rm, environ) == 0) waitpid(pid, NULL, 0);
}

int main(int argc, char **argv) {
    int runs = 5, timeout = 10, i = 1;
    const char *token_socket = NULL, *clean = NULL;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) timeout = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--token") && i + 1 < argc) token_socket = argv[++i];
        else if (!strcmp(argv[i], "--clean") && i + 1 < argc) clean = argv[++i];
        else if (!strcmp(argv[i], "--")) { i++; break; }
        else break;
    }
    if (i >= argc || runs < 1) {
        fprintf(stderr, "usage: startup [-n RUNS] [-t TIMEOUT_S] [--token SOCKET] [--clean DIR] -- COMMAND ARGS...\n");
        return 2;
    }
    char **command = argv + i;
    char path[108];
    snprintf(path, sizeof path, "/tmp/tb-startup-%d.notify", (int)getpid());
    double *ms = calloc((size_t)runs, sizeof *ms);
    int failed = 0;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    for (int r = 0; r < runs; r++) {
        if (clean) remove_tree(clean);
        unlink(path);
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
        if (bind(fd, (struct sockaddr *)&un, sizeof un) < 0) { perror("startup: bind"); return 1; }
        setenv("NOTIFY_SOCKET", path, 1);
        pid_t pid;
        uint64_t t0 = now_ns();
        if ((errno = posix_spawn(&pid, command[0], &actions, NULL, command, environ)) != 0) { perror("startup: spawn"); return 1; }
        int ready = 0;
        uint64_t deadline = t0 + (uint64_t)timeout * 1000000000ULL;
        while (token_socket && !ready && now_ns() < deadline) {
            if (token_once(token_socket)) {
                ms[r] = (double)(now_ns() - t0) / 1e6;
                ready = 1;
            } else {
                usleep(500);
            }
        }
        while (!ready) {
            uint64_t t = now_ns();
            if (t >= deadline) break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int n = poll(&p, 1, (int)((deadline - t) / 1000000ULL) + 1);
            if (n <= 0) continue;
            char buf[4096];
            ssize_t len = recv(fd, buf, sizeof buf - 1, 0);
            if (len <= 0) continue;
            buf[len] = 0;
            if (strstr(buf, "READY=1")) {
                ms[r] = (double)(now_ns() - t0) / 1e6;
                ready = 1;
            }
        }
        stop_child(pid, fd);
        close(fd);
        unlink(path);
        if (!ready) { failed++; ms[r] = -1; }
    }
    printf("{\"runs\":[");
    for (int r = 0; r < runs; r++) printf("%s%.2f", r ? "," : "", ms[r]);
    qsort(ms, (size_t)runs, sizeof *ms, cmp);
    printf("],\"failed\":%d,\"minMs\":%.2f,\"medianMs\":%.2f,\"maxMs\":%.2f}\n", failed, ms[0], ms[runs / 2], ms[runs - 1]);
    return failed ? 1 : 0;
}
