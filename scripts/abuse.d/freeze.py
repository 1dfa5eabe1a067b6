"""Freezes one thread of another process, as a debugger would, until stdin closes.

usage: freeze.py TID. PTRACE_SEIZE then PTRACE_INTERRUPT stop exactly that thread (the
rest of the process runs on); "frozen" is printed once it is stopped. When stdin closes
(or this process dies) the thread is detached and runs again.
"""
import ctypes
import os
import sys

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long

tid = int(sys.argv[1])
for request in (PTRACE_SEIZE, PTRACE_INTERRUPT):
    if libc.ptrace(request, tid, None, None) != 0:
        sys.exit(f"ptrace({request:#x}, {tid}): {os.strerror(ctypes.get_errno())}")
os.waitpid(tid, WALL)
print("frozen", flush=True)
sys.stdin.read()
libc.ptrace(PTRACE_DETACH, tid, None, None)
