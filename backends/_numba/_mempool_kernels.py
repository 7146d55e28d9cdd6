"""DPDK's mempool cache algorithm (LTS 22.11) jitted over a ring's state array.

A cache is a uint32 row (layout: ``pktflow._cache_layout``) owned by one lcore,
so its fields need no atomics; only the ring transfers do, and those are
the ring kernels' multi-producer/multi-consumer bulk operations. One call
moves a whole burst, so a get or put from Python is one jitted call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._cache_layout import C_FLUSHTHRESH, C_LEN, C_OBJS, C_POOL_N, C_SIZE, CACHE_MAX_SIZE
from pktflow.abc import ERR_FOREIGN, ERR_OVERFLOW

from ._kernels import ERR_COUNT, _dequeue, _enqueue

_JIT = {"cache": True, "nogil": True}


@njit("int64(uint32[::1], uint32[::1], uint32[:], int64)", **_JIT)
def mempool_get_bulk(ring, cache, out, n):
    """Take exactly ``n`` handles into ``out``, or none; returns n or 0 (or ERR_COUNT)."""
    if n < 0 or n > out.shape[0]:
        return ERR_COUNT
    size = np.int64(cache[C_SIZE])
    if size == 0:
        return _dequeue(ring, out, 0, n, True, False)
    length = np.int64(cache[C_LEN])
    # Serve from the top of the cache first: the most recently freed objects
    # are the ones still warm in this CPU's cache.
    taken = min(n, length)
    for i in range(taken):
        out[i] = cache[C_OBJS + length - 1 - i]
    remaining = n - taken
    if remaining == 0:
        cache[C_LEN] = length - taken
        return n
    # The cache is empty now. Refill it with size + remaining objects in one
    # bulk and serve the rest from its top, unless that would not fit.
    if remaining <= CACHE_MAX_SIZE:
        refill = size + remaining
        if _dequeue(ring, cache, C_OBJS, refill, True, False) == refill:
            for i in range(remaining):
                out[taken + i] = cache[C_OBJS + refill - 1 - i]
            cache[C_LEN] = size
            return n
    # Too large, or the ring cannot give size + remaining: take the rest from
    # the ring directly.
    if _dequeue(ring, out, taken, remaining, True, False) == remaining:
        cache[C_LEN] = 0
        return n
    # All or nothing: the cached objects were only copied, so they are intact.
    cache[C_LEN] = length
    return 0


@njit("int64(uint32[::1], uint32[::1], uint32[:], int64)", **_JIT)
def mempool_put_bulk(ring, cache, objs, n):
    """Return ``objs[:n]`` to the pool; n, or ERR_FOREIGN / ERR_OVERFLOW (nothing put)."""
    if n < 0 or n > objs.shape[0]:
        return ERR_COUNT
    pool_n = np.int64(cache[C_POOL_N])
    # A handle outside the pool would be handed out later and corrupt it: the
    # one check the fast path keeps, at a few cycles per handle.
    for i in range(n):
        if objs[i] >= pool_n:
            return ERR_FOREIGN
    size = np.int64(cache[C_SIZE])
    threshold = np.int64(cache[C_FLUSHTHRESH])
    if size == 0 or n > threshold:
        return n if _enqueue(ring, objs, 0, n, True, False) == n else ERR_OVERFLOW
    length = np.int64(cache[C_LEN])
    if length + n <= threshold:
        dest = length
    else:
        # Crossing the threshold flushes the whole cache in one bulk and keeps
        # the new objects, which are the hot ones.
        if _enqueue(ring, cache, C_OBJS, length, True, False) != length:
            return ERR_OVERFLOW
        dest = 0
    for i in range(n):
        cache[C_OBJS + dest + i] = objs[i]
    cache[C_LEN] = dest + n
    return n


@njit("int64(uint32[::1], uint32[::1])", **_JIT)
def mempool_cache_flush(ring, cache):
    """Move every cached handle back to the ring; returns how many moved, or ERR_OVERFLOW."""
    length = np.int64(cache[C_LEN])
    if length and _enqueue(ring, cache, C_OBJS, length, True, False) != length:
        return ERR_OVERFLOW
    cache[C_LEN] = 0
    return length
