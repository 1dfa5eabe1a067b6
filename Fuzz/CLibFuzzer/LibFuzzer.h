// libFuzzer's driver entry point, from the runtime that `-sanitize=fuzzer` links in.
//
// SwiftPM points an executable's `main` at its top-level code (so that tests can link
// executables), which hides libFuzzer's own `main`; each fuzz target's main.swift
// therefore calls the driver itself, with the `LLVMFuzzerTestOneInput` that the target
// defines in Swift with `@_cdecl`.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*testOneInput)(const uint8_t *data, size_t size));

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
