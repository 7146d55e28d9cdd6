"""The Python loops the ring benchmarks time, and their set-ups in worker processes.

What is measured is the price of a ring call from Python, so the loops
are what a careful user writes: the bound methods and arrays are locals,
the arrays are allocated once, and each iteration makes one call per
burst and a comparison or two. A spawned worker imports this module to
run its side of a process benchmark.
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

BurstFn = Callable[[U32Array, int], int]


def bulk_pairs(
    enqueue_bulk: BurstFn, dequeue_bulk: BurstFn, objs: U32Array, out: U32Array, iterations: int
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


def produce(
    enqueue_burst: BurstFn, objs: U32Array, handles: int, backoff: Callable[[], Any]
) -> int:
    """Enqueue ``handles`` handles in bursts of ``len(objs)``; returns 0 (producers receive none).

    ``backoff`` runs only when the ring is full: it lets the consumer run
    (it drops the GIL between threads, or yields a shared core).

    Usage: ``produce(ring.enqueue_burst, objs, 1 << 20, os.sched_yield)``
    """
    burst = objs.shape[0]
    left = handles
    while left:
        sent = enqueue_burst(objs, burst if left >= burst else left)
        if sent:
            left -= sent
        else:
            backoff()
    return 0


def consume(dequeue_burst: BurstFn, out: U32Array, handles: int, backoff: Callable[[], Any]) -> int:
    """Dequeue exactly ``handles`` handles in bursts of up to ``len(out)``; returns them.

    Taking exactly a quota lets several consumers share one producer total
    and all finish.

    Usage: ``consume(ring.dequeue_burst, out, 1 << 20, os.sched_yield)``
    """
    burst = out.shape[0]
    left = handles
    while left:
        got = dequeue_burst(out, burst if left >= burst else left)
        if got:
            left -= got
        else:
            backoff()
    return handles


# -- one side of a process benchmark, set up in a spawned worker ---------------


@contextmanager
def ring_producer(
    shared: tuple[Any, ...], name: str, burst: int, handles: int
) -> Iterator[Callable[[], int]]:
    """Attach to the shared ring ``name`` and yield a producer of ``handles`` handles.

    The first call loads the kernels in this process, before any run is timed.
    """
    ring = pktflow.Ring.lookup(name)
    try:
        objs = np.arange(burst, dtype=np.uint32)
        ring.enqueue_burst(objs, 0)
        yield partial(produce, ring.enqueue_burst, objs, handles, os.sched_yield)
    finally:
        ring.close()


@contextmanager
def ring_consumer(
    shared: tuple[Any, ...], name: str, burst: int, handles: int
) -> Iterator[Callable[[], int]]:
    """Attach to the shared ring ``name`` and yield a consumer of exactly ``handles`` handles."""
    ring = pktflow.Ring.lookup(name)
    try:
        out = np.zeros(burst, dtype=np.uint32)
        ring.dequeue_burst(out, 0)
        yield partial(consume, ring.dequeue_burst, out, handles, os.sched_yield)
    finally:
        ring.close()
