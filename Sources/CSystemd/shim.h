#ifndef TOKENBROKER_CSYSTEMD_SHIM_H
#define TOKENBROKER_CSYSTEMD_SHIM_H

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <sys/uio.h>

#endif
