// The kernel's socket table asked for one TCP connection (NETLINK_SOCK_DIAG, inet_diag):
// which uid owns the socket at one end of an exact 4-tuple. Replaces parsing all of
// /proc/net/tcp per accepted connection, which took ~65 ms with 14,000 TIME-WAIT rows and
// let any local user stall the compatibility listener with a connection flood. Written in
// C because the request is a packed kernel struct the Glibc Swift module does not map.
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

// The uid owning the TCP socket whose local end is (local, localPort) and whose remote end
// is (remote, remotePort), ports in host order, addresses in network order (4 bytes for
// AF_INET, 16 for AF_INET6; IPv4-mapped IPv6 addresses are looked up as IPv4 by the
// kernel). Returns 0 and sets *uid, or a negative errno (-ENOENT: no such socket).
static inline int csockdiag_tcp_owner(int family, const uint8_t *local, uint16_t localPort, const uint8_t *remote,
                                      uint16_t remotePort, uint32_t *uid) {
    size_t length = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    if (length == 0) return -EAFNOSUPPORT;
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -errno;
    struct {
        struct nlmsghdr header;
        struct inet_diag_req_v2 body;
    } request;
    memset(&request, 0, sizeof request);
    request.header.nlmsg_len = sizeof request;
    request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    request.header.nlmsg_flags = NLM_F_REQUEST;  // no NLM_F_DUMP: the one socket, not a table walk
    request.header.nlmsg_seq = 1;
    request.body.sdiag_family = (uint8_t)family;
    request.body.sdiag_protocol = IPPROTO_TCP;
    request.body.idiag_states = ~0U;
    request.body.id.idiag_sport = htons(localPort);
    request.body.id.idiag_dport = htons(remotePort);
    memcpy(request.body.id.idiag_src, local, length);
    memcpy(request.body.id.idiag_dst, remote, length);
    request.body.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    request.body.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    // The kernel answers before sendto returns; the timeout only bounds a kernel without
    // inet_diag (it would not answer at all).
    struct timeval timeout = {0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    struct sockaddr_nl kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd, &request, sizeof request, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    long buffer[1024];  // 8 KiB, aligned for nlmsghdr
    ssize_t received;
    do {
        received = recv(fd, buffer, sizeof buffer, 0);
    } while (received < 0 && errno == EINTR);
    int error = received < 0 ? errno : 0;
    close(fd);
    if (received < 0) return -error;
    int remaining = (int)received;
    for (struct nlmsghdr *message = (struct nlmsghdr *)buffer; NLMSG_OK(message, remaining);
         message = NLMSG_NEXT(message, remaining)) {
        if (message->nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr *failure = (struct nlmsgerr *)NLMSG_DATA(message);
            return failure->error != 0 ? failure->error : -ENOENT;
        }
        if (message->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
            message->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
            struct inet_diag_msg *found = (struct inet_diag_msg *)NLMSG_DATA(message);
            // The kernel matched the 4-tuple; say so only if it is the end asked about, and a
            // full socket: TIME-WAIT and request sockets have no owner (they read as uid 0),
            // and neither has the end of a client that closed once our side acknowledged its
            // FIN: a timewait entry reported as FIN-WAIT-2, with inode 0. Every socket a
            // process holds has an inode.
            if (found->id.idiag_sport != htons(localPort) || found->id.idiag_dport != htons(remotePort)) return -ENOENT;
            if (found->idiag_state == 6 /* TIME_WAIT */ || found->idiag_state == 10 /* LISTEN */ ||
                found->idiag_state == 12 /* NEW_SYN_RECV */ || found->idiag_inode == 0)
                return -ENOENT;
            *uid = found->idiag_uid;
            return 0;
        }
    }
    return -ENOENT;
}
