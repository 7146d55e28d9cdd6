"""DPDK's mempool cache algorithm (LTS 22.11) jitted over a ring's state array.

A cache is a uint32 row (layout: ``pktflow._cache_layout``) owned by one lcore,
so its fields need no atomics; only the ring transfers do, and those are
the ring kernels' multi-producer/multi-consumer bulk operations. One call
moves a whole burst, so a get or put from Python is one jitted call.

Crash safety: a row's length is lowered before its objects go to the ring
(a flush), so a process killed mid-flush loses those objects rather than
letting a later reclaim of its row hand them out twice; a ring transfer
that stalls (``ERR_STALLED...``) has moved its handles, so the row is
brought up to date and the code is returned for the facade to finish. A
row whose words are out of range answers ERR_CORRUPT and is not touched.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._cache_layout import (
    C_FLUSHTHRESH,
    C_LEN,
    C_OBJS,
    C_POOL_N,
    C_SIZE,
    CACHE_MAX_SIZE,
    CACHE_WORDS,
)
from pktflow.abc import ERR_CORRUPT, ERR_FOREIGN, ERR_OVERFLOW, ERR_STALLED

from ._kernels import ERR_COUNT, _dequeue, _enqueue

_JIT = {"cache": True, "nogil": True}
_THRESHOLD_MAX = CACHE_MAX_SIZE * 3 // 2


@njit(inline="always")
def _row_corrupt(cache, size, threshold, length):
    """Whether a row's words would index outside it (a bad shared word)."""
    return (
        cache.shape[0] < CACHE_WORDS
        or size > CACHE_MAX_SIZE
        or threshold > _THRESHOLD_MAX
        or length > _THRESHOLD_MAX
    )


@njit("int64(uint32[::1], uint32[::1], uint32[:], int64)", **_JIT)
def mempool_get_bulk(ring, cache, out, n):
    """Take exactly ``n`` handles into ``out``, or none; returns n or 0 (or an ERR_* code)."""
    if n < 0 or n > out.shape[0]:
        return ERR_COUNT
    size = np.int64(cache[C_SIZE])
    if size == 0:
        got = _dequeue(ring, out, 0, n, True, False)
        if 0 < got < n:  # a repair's holes were dropped: all or nothing
            _enqueue(ring, out, 0, got, False, False)
            return 0
        return got
    length = np.int64(cache[C_LEN])
    if _row_corrupt(cache, size, np.int64(cache[C_FLUSHTHRESH]), length):
        return ERR_CORRUPT
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
        got = _dequeue(ring, cache, C_OBJS, refill, True, False)
        if got == refill or got <= ERR_STALLED:
            for i in range(remaining):
                out[taken + i] = cache[C_OBJS + refill - 1 - i]
            cache[C_LEN] = size
            return n if got == refill else got
        if got > 0:
            # A repair's holes were dropped: fewer came than asked; give them back.
            _enqueue(ring, cache, C_OBJS, got, False, False)
        # The refill may have written over the cached objects: put them back.
        for i in range(taken):
            cache[C_OBJS + length - 1 - i] = out[i]
        if got < 0:
            cache[C_LEN] = length
            return got
    # Too large, or the ring cannot give size + remaining: take the rest from
    # the ring directly.
    got = _dequeue(ring, out, taken, remaining, True, False)
    if got == remaining or got <= ERR_STALLED:
        cache[C_LEN] = 0
        return n if got == remaining else got
    if got > 0:
        _enqueue(ring, out, taken, got, False, False)
    # All or nothing: the cached objects were only copied, so they are intact.
    cache[C_LEN] = length
    return 0 if got >= 0 else got


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
        moved = _enqueue(ring, objs, 0, n, True, False)
        if moved == n or moved < 0:
            return moved
        return ERR_OVERFLOW
    length = np.int64(cache[C_LEN])
    if _row_corrupt(cache, size, threshold, length):
        return ERR_CORRUPT
    pending = 0
    if length + n <= threshold:
        dest = length
    else:
        # Crossing the threshold flushes the whole cache in one bulk and keeps
        # the new objects, which are the hot ones. The length drops first: a
        # crash in the flush must not leave them counted in the row too.
        cache[C_LEN] = 0
        moved = _enqueue(ring, cache, C_OBJS, length, True, False)
        if moved <= ERR_STALLED:
            pending = moved
        elif moved != length:
            cache[C_LEN] = length
            return moved if moved < 0 else ERR_OVERFLOW
        dest = 0
    for i in range(n):
        cache[C_OBJS + dest + i] = objs[i]
    cache[C_LEN] = dest + n
    return n if pending == 0 else pending


@njit("int64(uint32[::1], uint32[::1])", **_JIT)
def mempool_cache_flush(ring, cache):
    """Move every cached handle back to the ring; returns how many moved, or an ERR_* code."""
    length = np.int64(cache[C_LEN])
    if length == 0:
        return 0
    if _row_corrupt(cache, np.int64(cache[C_SIZE]), np.int64(cache[C_FLUSHTHRESH]), length):
        return ERR_CORRUPT
    cache[C_LEN] = 0  # first: see mempool_put_bulk
    moved = _enqueue(ring, cache, C_OBJS, length, True, False)
    if moved <= ERR_STALLED:
        return moved
    if moved != length:
        cache[C_LEN] = length
        return moved if moved < 0 else ERR_OVERFLOW
    return length
