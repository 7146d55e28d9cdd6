"""pktflow's operations as ``@njit`` functions, for stage code that stays jitted.

Rings: each takes the ring's ``state`` array first (``pktflow.Ring.state``);
pick the variant matching the ring's flags, or take ``ring.jit_ops``.
Mempools: ``mempool_get_bulk(ring_state, cache_row, out, n)`` and
``mempool_put_bulk`` with ``pool.ring.state`` and a row of
``pool.cache_rows`` (the lcore's, ``pktflow.lcore_id()``). Mbufs:
``mbuf_alloc_bulk(ring_state, header_words, cache_row, out, n)`` and
``mbuf_free_bulk`` with ``pool.header_words``.

Every batch function returns the count moved, or a negative ``pktflow.abc``
``ERR_*`` code (e.g. ERR_COUNT when n runs past the array, ERR_CORRUPT for a
corrupt shared header word), never touching memory out of bounds. Waits for
other producers (consumers) of an MP (MC) ring are bounded: a code at or
below ``ERR_STALLED`` means the handles moved but publishing them waits for
another process; hand it to ``ring.complete(code)`` from Python, which
repairs a dead process's reservation and returns the count.

Usage::

    from pktflow.backends.jit import dequeue_burst_sc, enqueue_burst_mp

    @numba.njit(nogil=True)
    def forward(rx_state, tx_state, burst):
        n = dequeue_burst_sc(rx_state, burst, burst.shape[0])
        return enqueue_burst_mp(tx_state, burst, n)
"""

from pktflow.backends._numba._kernels import (
    count,
    dequeue_bulk_mc,
    dequeue_bulk_sc,
    dequeue_burst_mc,
    dequeue_burst_sc,
    dequeue_one_mc,
    dequeue_one_sc,
    enqueue_bulk_mp,
    enqueue_bulk_sp,
    enqueue_burst_mp,
    enqueue_burst_sp,
    enqueue_one_mp,
    enqueue_one_sp,
)
from pktflow.backends._numba._mbuf_kernels import mbuf_alloc_bulk, mbuf_free_bulk, mbuf_refcnt_add
from pktflow.backends._numba._mempool_kernels import (
    mempool_cache_flush,
    mempool_get_bulk,
    mempool_put_bulk,
)

__all__ = [
    "count",
    "dequeue_bulk_mc",
    "dequeue_bulk_sc",
    "dequeue_burst_mc",
    "dequeue_burst_sc",
    "dequeue_one_mc",
    "dequeue_one_sc",
    "enqueue_bulk_mp",
    "enqueue_bulk_sp",
    "enqueue_burst_mp",
    "enqueue_burst_sp",
    "enqueue_one_mp",
    "enqueue_one_sp",
    "mbuf_alloc_bulk",
    "mbuf_free_bulk",
    "mbuf_refcnt_add",
    "mempool_cache_flush",
    "mempool_get_bulk",
    "mempool_put_bulk",
]
