// What the broker's own event loop needs from Linux that the Glibc Swift module does not
// export (epoll, eventfd, accept4 and MSG_NOSIGNAL are behind _GNU_SOURCE or not mapped).
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/uio.h>

static inline int cepoll_accept(int fd) {
    return accept4(fd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

// sendmsg of `count` buffers without SIGPIPE (a peer that went away is an error, not a signal).
static inline long cepoll_writev(int fd, const struct iovec *iov, int count) {
    struct msghdr message = {0};
    message.msg_iov = (struct iovec *)iov;
    message.msg_iovlen = (size_t)count;
    return sendmsg(fd, &message, MSG_NOSIGNAL);
}

static inline long cepoll_send(int fd, const void *bytes, size_t count) {
    return send(fd, bytes, count, MSG_NOSIGNAL);
}

// Names the calling thread (15 bytes at most) in /proc/PID/task/TID/comm.
static inline void cepoll_name_thread(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

static inline unsigned cepoll_in(void) { return EPOLLIN; }
static inline unsigned cepoll_out(void) { return EPOLLOUT; }
static inline unsigned cepoll_err(void) { return EPOLLERR | EPOLLHUP; }
static inline unsigned cepoll_exclusive(void) { return EPOLLEXCLUSIVE; }
