"""The runtime's own kernels over a burst: its bytes (stats) and fan-out refcounts.

One jitted call per burst each, over the pool's (n + 1, H_WORDS) header words.
A burst a stage made up (handles past the pool) gets ERR_FOREIGN, not a read
outside the zone.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._burst_checks import check_burst
from pktflow._mbuf_layout import H_DATA, H_NEXT, H_PKT_LEN, H_REFCNT, H_WORDS, NO_NEXT
from pktflow.backends._numba._atomics import fetch_add

_JIT = {"cache": True, "nogil": True}


@njit("int64(uint32[:, ::1], uint32[::1], int64)", **_JIT)
def burst_bytes(words, handles, n):
    """Sum of ``pkt_len`` over ``handles[:n]``; ERR_COUNT or ERR_FOREIGN (see check_burst)."""
    checked = check_burst(words, handles, n)
    if checked:
        return checked
    total = 0
    for i in range(n):
        total += words[handles[i], H_PKT_LEN]
    return total


@njit("int64(uint32[:, ::1], uint32[::1], int64, int64)", **_JIT)
def refcnt_add_bulk(words, handles, n, delta):
    """Add ``delta`` to the refcnt of every segment of every chain (DPDK's multicast idiom).

    Atomic adds (acq_rel): the other owners' frees pair with them. Walks at
    most nb_segs segments per chain, none past the pool. Returns how many
    segments it updated; ERR_COUNT or ERR_FOREIGN (nothing updated) for a bad burst.
    """
    checked = check_burst(words, handles, n)
    if checked:
        return checked
    pool_n = np.int64(words.shape[0]) - 1
    flat = words.reshape(words.size)
    step = np.uint32(delta & 0xFFFFFFFF)
    updated = 0
    for i in range(n):
        m = np.int64(handles[i])
        for _ in range(np.int64(words[m, H_DATA] >> 16)):
            fetch_add(flat, m * H_WORDS + H_REFCNT, step)
            updated += 1
            following = words[m, H_NEXT]
            if following == NO_NEXT or np.int64(following) >= pool_n:
                break
            m = np.int64(following)
    return updated
