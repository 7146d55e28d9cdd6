"""The Python loops the ring and mempool benchmarks time, and a ring worker's set-up.

What is measured is the price of a call from Python, so the loops are what
a careful user writes: the callables and arrays are locals, the arrays are
allocated once, and each iteration makes one call per burst and a
comparison or two. Each loop comes in two forms: over methods that take
the array (``ring.enqueue_burst(objs, n)``) and over bound operations that
take only ``n`` (``ring.bind(objs).enqueue_burst(n)``); one loop serving
both would add a call or a branch to what it measures. A spawned worker
imports this module to run its side of a process benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import repeat
from typing import Any

import numpy as np

import pktflow
from pktflow.abc import U32Array

BurstFn = Callable[[U32Array, int], int]  # a method: ring.enqueue_burst(objs, n)
BoundFn = Callable[[int], int]  # a bound operation: ring.bind(objs).enqueue_burst(n)
PutFn = Callable[[U32Array, int], object]  # what bulk_pairs gives with (mp.put_bulk returns None)
Backoff = Callable[[], Any]


def bulk_pairs(
    enqueue_bulk: PutFn, dequeue_bulk: BurstFn, objs: U32Array, out: U32Array, iterations: int
) -> int:
    """One thread: enqueue a burst, dequeue it into ``out``; returns handles dequeued.

    Usage: ``bulk_pairs(ring.enqueue_bulk, ring.dequeue_bulk, objs, out, 1000)``
    """
    burst = objs.shape[0]
    moved = 0
    for _ in repeat(None, iterations):
        enqueue_bulk(objs, burst)
        moved += dequeue_bulk(out, burst)
    return moved


def bound_pairs(enqueue_bulk: BoundFn, dequeue_bulk: BoundFn, burst: int, iterations: int) -> int:
    """``bulk_pairs`` over bound operations, which carry their arrays; returns handles dequeued.

    Usage: ``bound_pairs(ring.bind(objs).enqueue_bulk, ring.bind(out).dequeue_bulk, 32, 1000)``
    """
    moved = 0
    for _ in repeat(None, iterations):
        enqueue_bulk(burst)
        moved += dequeue_bulk(burst)
    return moved


def transfer(call: BurstFn, array: U32Array, handles: int, backoff: Backoff) -> int:
    """Move exactly ``handles`` handles by ``call`` in bursts of up to ``len(array)``; returns them.

    ``call`` is an enqueue or a dequeue burst. Moving exactly a quota lets
    several consumers share one producer total and all finish. ``backoff``
    runs only when the ring is full (or empty): it lets the other side run
    (it drops the GIL between threads, or yields a shared core).

    Usage: ``transfer(ring.dequeue_burst, out, 1 << 20, os.sched_yield)``
    """
    burst = array.shape[0]
    left = handles
    while left:
        moved = call(array, burst if left >= burst else left)
        if moved:
            left -= moved
        else:
            backoff()
    return handles


def transfer_bound(call: BoundFn, burst: int, handles: int, backoff: Backoff) -> int:
    """``transfer`` by a bound operation, in bursts of up to ``burst``; returns ``handles``.

    Usage: ``transfer_bound(ring.bind(out).dequeue_burst, 32, 1 << 20, os.sched_yield)``
    """
    left = handles
    while left:
        moved = call(burst if left >= burst else left)
        if moved:
            left -= moved
        else:
            backoff()
    return handles


def _sent(work: Callable[[], int]) -> int:
    work()
    return 0  # a transfer counts the handles that arrive: a producer's count none


def ring_side(
    ring: pktflow.Ring, burst: int, handles: int, backoff: Backoff, *, send: bool, bound: bool
) -> Callable[[], int]:
    """One side of a transfer over ``ring``, ready to time: a producer (``send``) or a consumer.

    The loop calls the ring's methods, or with ``bound`` the operations of
    ``ring.bind(array)``. The work returns the handles that arrived (0 for
    a producer). A first call of 0 handles loads the kernels here, before
    any run is timed.

    Usage: ``work = ring_side(ring, 32, 1 << 20, os.sched_yield, send=False, bound=True)``
    """
    array = np.arange(burst, dtype=np.uint32) if send else np.zeros(burst, dtype=np.uint32)
    work: Callable[[], int]
    if bound:
        ops = ring.bind(array)
        call = ops.enqueue_burst if send else ops.dequeue_burst
        call(0)
        work = partial(transfer_bound, call, burst, handles, backoff)
    else:
        method = ring.enqueue_burst if send else ring.dequeue_burst
        method(array, 0)
        work = partial(transfer, method, array, handles, backoff)
    return partial(_sent, work) if send else work


@contextmanager
def ring_worker(
    shared: tuple[Any, ...], name: str, burst: int, handles: int, send: bool, bound: bool
) -> Iterator[Callable[[], int]]:
    """A team job: attach to the shared ring ``name`` and yield one side of a transfer.

    The side is ``ring_side``'s: a producer of ``handles`` handles (``send``)
    or a consumer of exactly ``handles``, by methods or by bound calls.

    Usage: ``Job(cpu_for(1), ring_worker, (ring.name, 32, 1 << 20, False, True))``
    """
    ring = pktflow.Ring.lookup(name)
    try:
        yield ring_side(ring, burst, handles, os.sched_yield, send=send, bound=bound)
    finally:
        ring.close()
