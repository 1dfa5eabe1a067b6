// The version the binaries report (`--version`). A C function because only C can be
// given a string at build time (Package.swift defines TOKENBROKER_VERSION from
// $TOKENBROKER_VERSION, or VERSION and the checkout's commit); Swift `-D` takes flags only.
#pragma once

const char *tokenbroker_build_version(void);
