#include "tokenbroker_build_info.h"

#ifndef TOKENBROKER_VERSION
#define TOKENBROKER_VERSION "unknown"
#endif

const char *tokenbroker_build_version(void) { return TOKENBROKER_VERSION; }
