// startup: time from exec to sd_notify READY=1.
//
//   startup [-n RUNS] [-t TIMEOUT_S] -- COMMAND ARGS...
//
// For each run: binds a datagram socket, points NOTIFY_SOCKET at it, takes the
// monotonic time, posix_spawn()s COMMAND, waits for a datagram containing
// READY=1, takes the time again, then stops the child with SIGTERM (SIGKILL after
// 5 s) and reaps it. Prints one JSON object: every run in ms, min, median, max.
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

static void stop_child(pid_t pid) {
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int main(int argc, char **argv) {
    int runs = 5, timeout = 10, i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) timeout = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--")) { i++; break; }
        else break;
    }
    if (i >= argc || runs < 1) {
        fprintf(stderr, "usage: startup [-n RUNS] [-t TIMEOUT_S] -- COMMAND ARGS...\n");
        return 2;
    }
    char **command = argv + i;
    char path[108];
    snprintf(path, sizeof path, "/tmp/tb-startup-%d.notify", (int)getpid());
    double *ms = calloc((size_t)runs, sizeof *ms);
    int failed = 0;
    for (int r = 0; r < runs; r++) {
        unlink(path);
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
        if (bind(fd, (struct sockaddr *)&un, sizeof un) < 0) { perror("startup: bind"); return 1; }
        setenv("NOTIFY_SOCKET", path, 1);
        pid_t pid;
        uint64_t t0 = now_ns();
        if ((errno = posix_spawn(&pid, command[0], NULL, NULL, command, environ)) != 0) { perror("startup: spawn"); return 1; }
        int ready = 0;
        uint64_t deadline = t0 + (uint64_t)timeout * 1000000000ULL;
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
        stop_child(pid);
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
