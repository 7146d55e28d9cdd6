"""Ring operations as ``@njit`` functions, for stage code that stays jitted.

Each takes the ring's ``state`` array first (``pktflow.Ring.state``); pick
the variant matching the ring's flags, or take ``ring.jit_ops``.

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
]
