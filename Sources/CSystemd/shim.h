#ifndef TOKENBROKER_CSYSTEMD_SHIM_H
#define TOKENBROKER_CSYSTEMD_SHIM_H

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
#include <linux/memfd.h>

// memfd_create(2) and file seals (fcntl(2) F_ADD_SEALS/F_GET_SEALS): Swift's Glibc module
// is built without _GNU_SOURCE and imports neither. The seal values are the kernel ABI
// (include/uapi/linux/fcntl.h), stable since Linux 3.17.
#define TB_F_ADD_SEALS 1033
#define TB_F_GET_SEALS 1034
#define TB_F_SEAL_SEAL 0x0001
#define TB_F_SEAL_SHRINK 0x0002
#define TB_F_SEAL_GROW 0x0004
#define TB_F_SEAL_WRITE 0x0008

/// The seals a stored cache carries: no write, no resize, no further change of seals.
static inline int tb_required_seals(void) {
    return TB_F_SEAL_SEAL | TB_F_SEAL_SHRINK | TB_F_SEAL_GROW | TB_F_SEAL_WRITE;
}

/// A close-on-exec memfd that can be sealed; -1 and errno on failure.
static inline int tb_memfd_create(const char *name) {
    return (int)syscall(SYS_memfd_create, name, MFD_ALLOW_SEALING | MFD_CLOEXEC);
}

/// Adds every required seal; -1 and errno on failure.
static inline int tb_seal_all(int fd) {
    return fcntl(fd, TB_F_ADD_SEALS, tb_required_seals());
}

/// The seals on fd; -1 with EINVAL for a file that cannot carry seals (not a memfd).
static inline int tb_seals(int fd) {
    return fcntl(fd, TB_F_GET_SEALS);
}

#endif
