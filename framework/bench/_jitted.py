"""The reference loop that never returns to Python: jitted code calling the ring kernels.

It is the bench's only ``@njit`` code, written as a user's jitted stage
would be. The kernels are the ones ``ring.jit_ops`` names, referenced as
globals: passed as arguments (dispatcher-typed), they defeat numba's
cache, so every process recompiled the loop (6-9 s here) and left a new
cache entry each run. Imported lazily: the other rows need no numba.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit

from pktflow.abc import JitOps, U32Array
from pktflow.backends.jit import dequeue_bulk_mc, dequeue_bulk_sc, enqueue_bulk_mp, enqueue_bulk_sp


@njit(cache=True, nogil=True)  # type: ignore[misc]
def _pairs_sp_sc(state, objs, out, iterations):  # type: ignore[no-untyped-def]
    burst = objs.shape[0]
    moved = 0
    for _ in range(iterations):
        enqueue_bulk_sp(state, objs, burst)
        moved += dequeue_bulk_sc(state, out, burst)
    return moved


@njit(cache=True, nogil=True)  # type: ignore[misc]
def _pairs_mp_mc(state, objs, out, iterations):  # type: ignore[no-untyped-def]
    burst = objs.shape[0]
    moved = 0
    for _ in range(iterations):
        enqueue_bulk_mp(state, objs, burst)
        moved += dequeue_bulk_mc(state, out, burst)
    return moved


_LOOPS: dict[tuple[Any, Any], Callable[..., int]] = {
    (enqueue_bulk_sp, dequeue_bulk_sc): _pairs_sp_sc,
    (enqueue_bulk_mp, dequeue_bulk_mc): _pairs_mp_mc,
}


def jitted_bulk_pairs(
    state: U32Array, ops: JitOps, objs: U32Array, out: U32Array, iterations: int
) -> int:
    """Enqueue then dequeue a burst ``iterations`` times inside jitted code; returns handles moved.

    ``ops`` (``ring.jit_ops``) picks the loop for the ring's sync mode (SP/SC
    or MP/MC). The first call in a process loads numba's cache (or
    compiles): warm up first.

    Usage: ``jitted_bulk_pairs(ring.state, ring.jit_ops, objs, out, 1 << 16)``
    """
    loop = _LOOPS.get((ops.enqueue_bulk, ops.dequeue_bulk))
    if loop is None:
        raise ValueError("the jitted reference loop covers SP/SC and MP/MC rings only")
    return int(loop(state, objs, out, iterations))
