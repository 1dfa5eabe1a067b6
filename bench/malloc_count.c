// LD_PRELOAD shim for bench/cost.py: counts the allocator calls of a process. On SIGWINCH
// (which the broker does not use) it appends "mallocs frees reallocs\n" to $MALLOC_COUNT_FILE,
// so a benchmark can read the counts before and after a window of requests. Counting is one
// relaxed atomic add per call; the calls go on to glibc's own implementation.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_ulong mallocs, frees, reallocs;

void *malloc(size_t n) { atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { atomic_fetch_add_explicit(&reallocs, 1, memory_order_relaxed); return __libc_realloc(p, n); }
void free(void *p) { if (p) atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed); __libc_free(p); }
int posix_memalign(void **out, size_t align, size_t n) {
    atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed);
    void *p = __libc_memalign(align, n);
    if (!p) return 12;  // ENOMEM
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) { atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed); return __libc_memalign(align, n); }
void *memalign(size_t align, size_t n) { atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed); return __libc_memalign(align, n); }

static char *append(char *at, unsigned long value) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value);
    while (n) *at++ = digits[--n];
    return at;
}

static void report(int signal) {
    (void)signal;
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (!path) return;
    char line[96], *at = line;
    at = append(at, atomic_load(&mallocs)); *at++ = ' ';
    at = append(at, atomic_load(&frees)); *at++ = ' ';
    at = append(at, atomic_load(&reallocs)); *at++ = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) { (void)!write(fd, line, (size_t)(at - line)); close(fd); }
}

__attribute__((constructor)) static void install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = report;
    action.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &action, NULL);
}
