import CLibFuzzer
import Glibc

// Hands over to libFuzzer (see Fuzz/CLibFuzzer/LibFuzzer.h).
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput))
