"""Mempool caches: the row layout's owner objects and the reference algorithm.

``PyCache`` is DPDK's LTS cache algorithm written over any backend's
ring methods; backends with jitted kernels supply their own ``CacheOps``
(see ``Ring.cache_ops``) and this one is the oracle tests compare them to.
"""

from __future__ import annotations

import numpy as np

from ._arrays import checked_int
from ._cache_layout import (
    C_FLUSHTHRESH,
    C_LEN,
    C_MAGIC,
    C_OBJS,
    C_POOL_N,
    C_SIZE,
    C_VERSION,
    CACHE_MAX_SIZE,
    CACHE_WORDS,
    LAYOUT_VERSION,
    MAGIC,
)
from ._errors import PktflowValueError
from .abc import ERR_COUNT, CacheOps, Ring, U32Array

__all__ = ["MempoolCache", "PyCache", "flush_threshold", "init_cache_row"]


def flush_threshold(size: int) -> int:
    """DPDK's CALC_CACHE_FLUSHTHRESH: 1.5 x the cache size."""
    return size * 3 // 2


def check_cache_size(cache_size: int, n: int) -> int:
    """``cache_size`` as an int within DPDK's limits (<= CACHE_MAX_SIZE, 1.5 x it <= n)."""
    cache_size = checked_int(cache_size, "cache_size", 0, CACHE_MAX_SIZE)
    if flush_threshold(cache_size) > n:
        raise PktflowValueError(
            f"cache_size {cache_size} is too large for {n} objects: "
            f"cache_size * 1.5 must not exceed n"
        )
    return cache_size


def init_cache_row(row: U32Array, size: int, pool_n: int) -> None:
    """Write an empty cache of ``size`` into ``row`` (size 0: no cache)."""
    row[:C_OBJS] = 0
    row[C_SIZE] = size
    row[C_FLUSHTHRESH] = flush_threshold(size)
    row[C_POOL_N] = pool_n
    row[C_VERSION] = LAYOUT_VERSION
    row[C_MAGIC] = MAGIC


class MempoolCache:
    """A cache owned by the caller instead of an lcore (DPDK's user-owned cache).

    For threads that are not lcores; pass it as ``cache=`` to get/put. Not
    counted by ``avail_count()``; flush it before dropping it.

    Usage::

        cache = pool.cache_create(64)
        pool.get_bulk(out, 32, cache=cache)
        pool.cache_flush(cache)
    """

    def __init__(self, size: int, pool_n: int, pool_name: str) -> None:
        size = check_cache_size(size, pool_n)
        self.pool_name = pool_name  # a cache holds handles of one pool only
        self.row: U32Array = np.zeros(CACHE_WORDS, dtype=np.uint32)
        init_cache_row(self.row, size, pool_n)

    @property
    def size(self) -> int:
        return int(self.row[C_SIZE])

    def __len__(self) -> int:
        return int(self.row[C_LEN])

    def __repr__(self) -> str:
        return f"<MempoolCache size={self.size} len={len(self)}>"


class PyCache:
    """The cache algorithm in Python over a backend ring's bulk methods."""

    def __init__(self, ring: Ring) -> None:
        self._ring = ring

    def get_bulk(self, cache: U32Array, out: U32Array, n: int) -> int:
        if not 0 <= n <= len(out):
            return ERR_COUNT
        size = int(cache[C_SIZE])
        if size == 0:
            return self._ring.dequeue_bulk(out, n)
        length = int(cache[C_LEN])
        taken = min(n, length)
        # Hot objects first: the top of the stack, newest first.
        out[:taken] = cache[C_OBJS + length - taken : C_OBJS + length][::-1]
        remaining = n - taken
        if remaining == 0:
            cache[C_LEN] = length - taken
            return n
        if remaining <= CACHE_MAX_SIZE:
            refill = size + remaining
            objs = cache[C_OBJS : C_OBJS + refill]
            if self._ring.dequeue_bulk(objs, refill) == refill:
                out[taken:n] = objs[size:][::-1]
                cache[C_LEN] = size
                return n
        if self._ring.dequeue_bulk(out[taken:], remaining) == remaining:
            cache[C_LEN] = 0
            return n
        cache[C_LEN] = length  # all or nothing: the cached objects are intact
        return 0

    def put_bulk(self, cache: U32Array, objs: U32Array, n: int) -> int:
        if not 0 <= n <= len(objs):
            return ERR_COUNT
        if n and int(objs[:n].max()) >= int(cache[C_POOL_N]):
            return -1
        size = int(cache[C_SIZE])
        threshold = int(cache[C_FLUSHTHRESH])
        if size == 0 or n > threshold:
            return n if self._ring.enqueue_bulk(objs, n) == n else -2
        length = int(cache[C_LEN])
        if length + n <= threshold:
            dest = length
        else:
            if self._ring.enqueue_bulk(cache[C_OBJS : C_OBJS + length], length) != length:
                return -2
            dest = 0
        cache[C_OBJS + dest : C_OBJS + dest + n] = objs[:n]
        cache[C_LEN] = dest + n
        return n

    def flush(self, cache: U32Array) -> int:
        length = int(cache[C_LEN])
        if length and self._ring.enqueue_bulk(cache[C_OBJS : C_OBJS + length], length) != length:
            return -2
        cache[C_LEN] = 0
        return length

    def ops(self) -> CacheOps:
        return CacheOps(self.get_bulk, self.put_bulk, self.flush)
