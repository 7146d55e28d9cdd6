"""glibc's malloc, told to keep what is freed in a process that moves messages.

A remote edge's transport allocates a buffer per message (ZeroMQ: its IO
thread, for every message past its 8 KiB batch) and frees it after the
copy; at tens of KiB a message, glibc gives the top of its heap back to
the kernel after such frees and takes it again a message later: a page
fault and a zeroed page per 4 KiB, every message (measured at 32 x 1,500 B:
~20 % of the two processes' CPU, 0.9 -> 1.2 GB/s without it). Keeping
64 MiB of freed memory before trimming, padding each growth, and mapping
only allocations past 16 MiB on their own, stops it.

Process-wide, so only processes that run a remote edge end call it (the
shards' and their lcores'); elsewhere (another libc) it does nothing.
"""

from __future__ import annotations

import ctypes

__all__ = ["keep_freed_memory"]

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 64 << 20
TOP_PAD = 16 << 20
# Setting the others freezes glibc's mmap threshold at 128 KiB (it would grow
# with the sizes freed): a message past it would be mapped and unmapped each time.
MMAP_THRESHOLD = 16 << 20

_done = False


def keep_freed_memory() -> None:
    """Raise glibc's trim threshold, top pad and mmap threshold here (once; no-op elsewhere).

    Usage: ``keep_freed_memory()``
    """
    global _done
    if _done:
        return
    _done = True
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's libc, as the other modules bind it
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    mallopt(M_TOP_PAD, TOP_PAD)
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
