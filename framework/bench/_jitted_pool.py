"""Reference loops that never return to Python: jitted code calling the mempool and mbuf kernels.

Written as a user's jitted stage would be, over ``pktflow.backends.jit``.
The kernels are globals, not arguments: passed as arguments they defeat
numba's cache (see ``_jitted``). A module of their own, because editing a
module recompiles every loop in it. Imported lazily: the other rows need
no numba.
"""

from __future__ import annotations

from numba import njit

from pktflow.backends.jit import (
    mbuf_alloc_bulk,
    mbuf_free_bulk,
    mempool_get_bulk,
    mempool_put_bulk,
)


@njit(cache=True, nogil=True)  # type: ignore[misc]
def mempool_pairs(ring, cache, out, iterations):  # type: ignore[no-untyped-def]
    """Get ``len(out)`` objects, put them back, ``iterations`` times; returns the objects got.

    ``ring`` is ``pool.ring.state``, ``cache`` a row of ``pool.cache_rows``.
    The first call in a process loads numba's cache (or compiles): warm up first.

    Usage: ``mempool_pairs(pool.ring.state, pool.cache_rows[pktflow.lcore_id()], out, 1000)``
    """
    burst = out.shape[0]
    moved = 0
    for _ in range(iterations):
        got = mempool_get_bulk(ring, cache, out, burst)
        # Put back what was got: a failed get (never here) must not put stale handles.
        mempool_put_bulk(ring, cache, out, got)
        moved += got
    return moved


@njit(cache=True, nogil=True)  # type: ignore[misc]
def mbuf_pairs(ring, words, cache, out, iterations):  # type: ignore[no-untyped-def]
    """Allocate ``len(out)`` mbufs, free them, ``iterations`` times; returns the mbufs got.

    Usage: ``mbuf_pairs(pool.ring.state, pool.header_words, row, out, 1000)``
    """
    burst = out.shape[0]
    moved = 0
    for _ in range(iterations):
        got = mbuf_alloc_bulk(ring, words, cache, out, burst)
        mbuf_free_bulk(ring, words, cache, out, got)
        moved += got
    return moved
