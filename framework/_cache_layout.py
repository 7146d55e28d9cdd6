"""A mempool cache row's byte layout: the one home of its word indexes.

A cache is one uint32 row, in the pool's zone for lcore caches so that
every process reads their lengths: a few header words, stamped with
``MAGIC`` and ``LAYOUT_VERSION`` (checked when a process attaches to the
pool), then room for twice the largest cache, because a put may add up to
the flush threshold and a refill brings ``size + missing`` objects. The
jitted cache kernels read these words, so any change bumps
``LAYOUT_VERSION``.

Usage::

    from pktflow._cache_layout import C_LEN
    cached = pool.cache_rows[lcore, C_LEN]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "CACHE_MAX_SIZE",
    "CACHE_WORDS",
    "C_FLUSHTHRESH",
    "C_LEN",
    "C_MAGIC",
    "C_OBJS",
    "C_POOL_N",
    "C_SIZE",
    "C_VERSION",
    "LAYOUT_VERSION",
    "MAGIC",
    "layout_problem",
]

MAGIC = 0x43414348  # "CACH"
LAYOUT_VERSION = 1

CACHE_MAX_SIZE = 512  # DPDK's RTE_MEMPOOL_CACHE_MAX_SIZE
C_SIZE = 0  # the cache's nominal size; 0 = no cache (go to the ring)
C_FLUSHTHRESH = 1  # 1.5 x size: a put crossing it flushes the whole cache
C_LEN = 2  # objects in the cache now; only its owning lcore writes it
C_POOL_N = 3  # handles are 0 .. pool_n - 1: a put checks its handles are
C_MAGIC = 4
C_VERSION = 5
C_OBJS = 16  # the objects, a stack: the most recently put on top
CACHE_WORDS = C_OBJS + 2 * CACHE_MAX_SIZE


def layout_problem(rows: npt.NDArray[np.uint32]) -> str | None:
    """Why the cache rows (one per row of a 2-D array) are not of this layout, or None.

    Usage: ``if (why := layout_problem(pool.cache_rows)): raise PktflowValueError(why)``
    """
    if rows.ndim != 2 or rows.shape[1] != CACHE_WORDS:
        return f"cache rows of shape {rows.shape}, expected (k, {CACHE_WORDS})"
    if (rows[:, C_MAGIC] != MAGIC).any():
        return "no mempool cache rows (bad magic)"
    versions = set(rows[:, C_VERSION].tolist())
    if versions != {LAYOUT_VERSION}:
        return f"cache row layout {sorted(versions)}, expected {LAYOUT_VERSION}"
    return None
