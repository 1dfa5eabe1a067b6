// loadgen: a closed-loop load generator for the token broker's socket.
//
// N connections on epoll (optionally split over T threads), each keeping
// `depth` requests in flight (1 = no pipelining). Warm-up, then a fixed
// measuring window; every response is verified and timed into a log-linear
// histogram (HDR-like: 128 sub-buckets per power of two, < 0.8 % error).
//
//   loadgen --unix PATH | --tcp HOST:PORT
//           --mode ndjson|http  -c CONNS  -d SECONDS  -w WARMUP  -p DEPTH  -t THREADS
//           --request TEXT      (ndjson: the line without \n; http: the path)
//           --expect TEXT       (ndjson: substring each response line must contain;
//                                default "ok":true; http: status 200 is required and
//                                the body must contain TEXT if given)
//           --once              (cold burst: connect all, send one request on each at
//                                once, wait for every answer, report; -d is the timeout)
//           --json              (one JSON object on stdout instead of text)
//
// Build: gcc -O2 -pthread -o loadgen loadgen.c
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------- histogram
#define SUB_BITS 7
#define SUB_COUNT (1 << SUB_BITS)
#define HALF (SUB_COUNT / 2)
#define NBUCKETS (SUB_COUNT + 48 * HALF)

typedef struct {
    uint64_t counts[NBUCKETS];
    uint64_t total, max, min;
    double sum;
} hist_t;

static int bucket_of(uint64_t v) {
    if (v < SUB_COUNT) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int e = msb - (SUB_BITS - 1);  // >= 1
    uint64_t mant = v >> e;        // [HALF, SUB_COUNT)
    int idx = SUB_COUNT + (e - 1) * HALF + (int)(mant - HALF);
    return idx < NBUCKETS ? idx : NBUCKETS - 1;
}

static uint64_t value_of(int idx) {  // midpoint of the bucket
    if (idx < SUB_COUNT) return (uint64_t)idx;
    int e = (idx - SUB_COUNT) / HALF + 1;
    uint64_t mant = (uint64_t)((idx - SUB_COUNT) % HALF + HALF);
    return (mant << e) + ((1ULL << e) >> 1);
}

static void hist_add(hist_t *h, uint64_t v) {
    h->counts[bucket_of(v)]++;
    h->total++;
    h->sum += (double)v;
    if (v > h->max) h->max = v;
    if (h->min == 0 || v < h->min) h->min = v;
}

static void hist_merge(hist_t *into, const hist_t *from) {
    for (int i = 0; i < NBUCKETS; i++) into->counts[i] += from->counts[i];
    into->total += from->total;
    into->sum += from->sum;
    if (from->max > into->max) into->max = from->max;
    if (from->min && (!into->min || from->min < into->min)) into->min = from->min;
}

static uint64_t hist_pct(const hist_t *h, double p) {
    if (!h->total) return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->total + 0.5);
    if (rank < 1) rank = 1;
    if (rank > h->total) rank = h->total;
    uint64_t seen = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = value_of(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

// ---------------------------------------------------------------- options
enum { MODE_NDJSON, MODE_HTTP };
static struct {
    const char *unix_path, *tcp;
    int mode, conns, depth, threads, once, json;
    double duration, warmup;
    const char *request, *expect;
} opt = {NULL, NULL, MODE_NDJSON, 1, 1, 1, 0, 0, 5.0, 1.0, NULL, NULL};

static char *req_bytes;
static size_t req_len;
static struct sockaddr_storage addr;
static socklen_t addr_len;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

// ---------------------------------------------------------------- connections
#define RBUF 65536
typedef struct {
    int fd;
    char *rbuf;
    size_t rlen;
    uint64_t *sent;  // ring of send times, `depth` slots
    int head, inflight;
    char *wbuf;      // pending output when a write was short
    size_t wlen, wcap;
    int done;        // --once: answered
} conn_t;

typedef struct {
    int id, first, count;
    conn_t *conns;
    hist_t hist;
    uint64_t ok, errors, conn_errors, reconnects, all;
    pthread_t thread;
} worker_t;

static atomic_int phase;  // 0 warm-up, 1 measuring, 2 stop
static uint64_t measure_start, measure_end;

static int open_conn(void) {
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    // Blocking connect: a Unix socket's non-blocking connect fails with EAGAIN
    // when the listen backlog is full; blocking waits for the server to accept.
    if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0) {
        close(fd);
        return -1;
    }
    if (addr.ss_family == AF_INET || addr.ss_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int flush_out(conn_t *c) {
    while (c->wlen) {
        ssize_t n = write(c->fd, c->wbuf, c->wlen);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return 0;
            return -1;
        }
        memmove(c->wbuf, c->wbuf + n, c->wlen - (size_t)n);
        c->wlen -= (size_t)n;
    }
    return 0;
}

static int send_requests(conn_t *c, int n) {
    uint64_t t = now_ns();
    size_t need = c->wlen + req_len * (size_t)n;
    if (need > c->wcap) {
        c->wcap = need * 2;
        c->wbuf = realloc(c->wbuf, c->wcap);
    }
    for (int i = 0; i < n; i++) {
        memcpy(c->wbuf + c->wlen, req_bytes, req_len);
        c->wlen += req_len;
        c->sent[(c->head + c->inflight) % opt.depth] = t;
        c->inflight++;
    }
    return flush_out(c);
}

// Parses complete responses from c->rbuf. Returns the number consumed and sets
// *bad to the number of those that failed verification; -1 on a framing error.
static int parse_responses(conn_t *c, int *bad) {
    int n = 0;
    size_t off = 0;
    *bad = 0;
    for (;;) {
        char *start = c->rbuf + off;
        size_t avail = c->rlen - off;
        if (!avail) break;
        if (opt.mode == MODE_NDJSON) {
            char *nl = memchr(start, '\n', avail);
            if (!nl) break;
            size_t len = (size_t)(nl - start);
            if (!memmem(start, len, opt.expect, strlen(opt.expect))) (*bad)++;
            off += len + 1;
            n++;
        } else {
            char *end = memmem(start, avail, "\r\n\r\n", 4);
            if (!end) break;
            size_t hlen = (size_t)(end - start) + 4;
            long clen = -1;
            for (char *p = start; p < end;) {
                char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
                if (!eol) break;
                if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) clen = strtol(p + 15, NULL, 10);
                p = eol + 2;
            }
            if (clen < 0) return -1;  // chunked or close-delimited: unsupported
            if (avail < hlen + (size_t)clen) break;
            int status_ok = avail > 12 && memcmp(start, "HTTP/1.", 7) == 0 && memcmp(start + 9, "200", 3) == 0;
            if (!status_ok || (opt.expect && *opt.expect && !memmem(start + hlen, (size_t)clen, opt.expect, strlen(opt.expect)))) (*bad)++;
            off += hlen + (size_t)clen;
            n++;
        }
    }
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return n;
}

static void reset_conn(worker_t *w, int epfd, conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->rlen = c->wlen = 0;
    c->head = c->inflight = 0;
    if (atomic_load(&phase) == 1) w->conn_errors++;
    if (opt.once || atomic_load(&phase) == 2) return;
    c->fd = open_conn();
    if (c->fd < 0) return;
    w->reconnects++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    send_requests(c, opt.depth);
}

static void *run_worker(void *arg) {
    worker_t *w = arg;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < w->count; i++) {
        conn_t *c = &w->conns[i];
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
        if (!opt.once) send_requests(c, opt.depth);
    }
    struct epoll_event events[256];
    int remaining = w->count;
    while (atomic_load(&phase) != 2 && (!opt.once || remaining > 0)) {
        int n = epoll_wait(epfd, events, 256, 50);
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c->fd < 0) continue;
            if (events[i].events & EPOLLOUT) {
                if (flush_out(c) < 0) { reset_conn(w, epfd, c); continue; }
            }
            if (!(events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            for (;;) {
                if (c->rlen == RBUF) { reset_conn(w, epfd, c); break; }
                ssize_t r = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
                if (r <= 0) {
                    if (opt.once && !c->done) { w->errors++; remaining--; c->done = 1; }
                    reset_conn(w, epfd, c);
                    break;
                }
                c->rlen += (size_t)r;
                int bad;
                int got = parse_responses(c, &bad);
                if (got < 0) { w->errors++; reset_conn(w, epfd, c); break; }
                if (!got) continue;
                uint64_t t = now_ns();
                int measuring = atomic_load(&phase) == 1 || opt.once;
                w->all += (uint64_t)got;
                for (int k = 0; k < got; k++) {
                    uint64_t sent = c->sent[c->head];
                    c->head = (c->head + 1) % opt.depth;
                    c->inflight--;
                    if (measuring) hist_add(&w->hist, t - sent);
                }
                if (measuring) {
                    w->ok += (uint64_t)(got - bad);
                    w->errors += (uint64_t)bad;
                }
                if (opt.once) {
                    if (!c->done) { c->done = 1; remaining--; }
                } else if (atomic_load(&phase) != 2) {
                    if (send_requests(c, got) < 0) { reset_conn(w, epfd, c); break; }
                }
            }
        }
    }
    close(epfd);
    return NULL;
}

// ---------------------------------------------------------------- main
static void usage(void) {
    fprintf(stderr, "usage: loadgen (--unix PATH | --tcp HOST:PORT) [--mode ndjson|http] [-c N] [-d S] [-w S] [-p DEPTH] [-t THREADS]\n"
                    "               [--request TEXT] [--expect TEXT] [--once] [--json]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), (char *)NULL))
        if (!strcmp(a, "--unix")) opt.unix_path = NEXT();
        else if (!strcmp(a, "--tcp")) opt.tcp = NEXT();
        else if (!strcmp(a, "--mode")) { const char *m = NEXT(); opt.mode = !strcmp(m, "http") ? MODE_HTTP : MODE_NDJSON; }
        else if (!strcmp(a, "-c")) opt.conns = atoi(NEXT());
        else if (!strcmp(a, "-d")) opt.duration = atof(NEXT());
        else if (!strcmp(a, "-w")) opt.warmup = atof(NEXT());
        else if (!strcmp(a, "-p")) opt.depth = atoi(NEXT());
        else if (!strcmp(a, "-t")) opt.threads = atoi(NEXT());
        else if (!strcmp(a, "--request")) opt.request = NEXT();
        else if (!strcmp(a, "--expect")) opt.expect = NEXT();
        else if (!strcmp(a, "--once")) opt.once = 1;
        else if (!strcmp(a, "--json")) opt.json = 1;
        else usage();
    }
    if ((!opt.unix_path && !opt.tcp) || opt.conns < 1 || opt.depth < 1 || opt.threads < 1) usage();
    if (opt.threads > opt.conns) opt.threads = opt.conns;
    if (opt.once) opt.depth = 1;
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    const char *host = "localhost";
    if (opt.unix_path) {
        struct sockaddr_un *un = (struct sockaddr_un *)&addr;
        un->sun_family = AF_UNIX;
        if (strlen(opt.unix_path) >= sizeof un->sun_path) { fprintf(stderr, "loadgen: socket path too long\n"); return 2; }
        strcpy(un->sun_path, opt.unix_path);
        addr_len = sizeof *un;
    } else {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", opt.tcp);
        char *colon = strrchr(buf, ':');
        if (!colon) usage();
        *colon = 0;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
        if (getaddrinfo(buf, colon + 1, &hints, &res) != 0) { fprintf(stderr, "loadgen: cannot resolve %s\n", opt.tcp); return 2; }
        memcpy(&addr, res->ai_addr, res->ai_addrlen);
        addr_len = res->ai_addrlen;
        freeaddrinfo(res);
        host = opt.tcp;
    }

    const char *request = opt.request;
    if (opt.mode == MODE_NDJSON) {
        if (!request) request = "{\"op\":\"token\",\"scope\":\"https://storage.azure.com/.default\"}";
        req_len = strlen(request) + 1;
        req_bytes = malloc(req_len + 1);
        memcpy(req_bytes, request, req_len - 1);
        req_bytes[req_len - 1] = '\n';
        if (!opt.expect) opt.expect = "\"ok\":true";
    } else {
        if (!request) request = "/v1/token?scope=https://storage.azure.com/.default";
        req_bytes = malloc(strlen(request) + strlen(host) + 64);
        req_len = (size_t)sprintf(req_bytes, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", request, host);
        if (!opt.expect) opt.expect = "";
    }

    conn_t *conns = calloc((size_t)opt.conns, sizeof *conns);
    for (int i = 0; i < opt.conns; i++) {
        conns[i].fd = open_conn();
        if (conns[i].fd < 0) { fprintf(stderr, "loadgen: connect %d: %s\n", i, strerror(errno)); return 1; }
        conns[i].rbuf = malloc(RBUF);
        conns[i].sent = calloc((size_t)opt.depth, sizeof(uint64_t));
    }

    worker_t *workers = calloc((size_t)opt.threads, sizeof *workers);
    int per = opt.conns / opt.threads, extra = opt.conns % opt.threads, next = 0;
    if (opt.once) {
        atomic_store(&phase, 1);
        measure_start = now_ns();
    }
    for (int t = 0; t < opt.threads; t++) {
        workers[t].id = t;
        workers[t].first = next;
        workers[t].count = per + (t < extra);
        workers[t].conns = conns + next;
        next += workers[t].count;
    }
    if (opt.once) {
        // Send every request before any answer can be read: a true burst.
        for (int i = 0; i < opt.conns; i++) send_requests(&conns[i], 1);
    }
    for (int t = 0; t < opt.threads; t++) pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]);

    if (opt.once) {
        // Wait for the workers (they stop when every connection answered) or the timeout.
        uint64_t deadline = measure_start + (uint64_t)(opt.duration * 1e9);
        int running = 1;
        while (running && now_ns() < deadline) {
            running = 0;
            for (int t = 0; t < opt.threads; t++)
                if (pthread_tryjoin_np(workers[t].thread, NULL) != 0) running = 1;
                else workers[t].thread = 0;
            if (running) usleep(1000);
        }
        measure_end = now_ns();
        atomic_store(&phase, 2);
    } else {
        struct timespec ws = {(time_t)opt.warmup, (long)((opt.warmup - (double)(time_t)opt.warmup) * 1e9)};
        nanosleep(&ws, NULL);
        measure_start = now_ns();
        atomic_store(&phase, 1);
        struct timespec ds = {(time_t)opt.duration, (long)((opt.duration - (double)(time_t)opt.duration) * 1e9)};
        nanosleep(&ds, NULL);
        atomic_store(&phase, 2);
        measure_end = now_ns();
    }
    for (int t = 0; t < opt.threads; t++)
        if (workers[t].thread) pthread_join(workers[t].thread, NULL);

    hist_t all = {0};
    uint64_t ok = 0, errors = 0, conn_errors = 0, answered = 0;
    for (int t = 0; t < opt.threads; t++) {
        hist_merge(&all, &workers[t].hist);
        ok += workers[t].ok;
        errors += workers[t].errors;
        conn_errors += workers[t].conn_errors;
        answered += workers[t].all;
    }
    uint64_t unanswered = 0;
    if (opt.once)
        for (int i = 0; i < opt.conns; i++) unanswered += !conns[i].done;
    double secs = (double)(measure_end - measure_start) / 1e9;
    double rps = opt.once ? 0 : (double)ok / secs;
    double us[6] = {hist_pct(&all, 50) / 1e3, hist_pct(&all, 90) / 1e3, hist_pct(&all, 99) / 1e3,
                    hist_pct(&all, 99.9) / 1e3, all.max / 1e3, all.total ? all.sum / (double)all.total / 1e3 : 0};
    const char *target = opt.unix_path ? opt.unix_path : opt.tcp;
    if (opt.json) {
        printf("{\"target\":\"%s\",\"mode\":\"%s\",\"conns\":%d,\"depth\":%d,\"threads\":%d,\"seconds\":%.3f,"
               "\"requests\":%llu,\"answeredInclWarmup\":%llu,\"ok\":%llu,\"errors\":%llu,\"connErrors\":%llu,\"unanswered\":%llu,\"rps\":%.1f,"
               "\"p50us\":%.1f,\"p90us\":%.1f,\"p99us\":%.1f,\"p999us\":%.1f,\"maxus\":%.1f,\"meanus\":%.1f}\n",
               target, opt.mode == MODE_HTTP ? "http" : "ndjson", opt.conns, opt.depth, opt.threads, secs,
               (unsigned long long)all.total, (unsigned long long)answered, (unsigned long long)ok, (unsigned long long)errors,
               (unsigned long long)conn_errors, (unsigned long long)unanswered, rps, us[0], us[1], us[2], us[3], us[4], us[5]);
    } else {
        printf("%s %s: %d conns x depth %d, %d thread(s), %.2f s\n", target, opt.mode == MODE_HTTP ? "http" : "ndjson",
               opt.conns, opt.depth, opt.threads, secs);
        printf("  requests %llu  ok %llu  errors %llu  conn errors %llu%s\n", (unsigned long long)all.total,
               (unsigned long long)ok, (unsigned long long)errors, (unsigned long long)conn_errors,
               opt.once ? "" : "");
        if (opt.once) printf("  unanswered %llu\n", (unsigned long long)unanswered);
        else printf("  %.0f req/s\n", rps);
        printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n", us[0], us[1], us[2], us[3], us[4], us[5]);
    }
    return (errors || conn_errors || unanswered || !ok) ? 1 : 0;
}
