"""The reference loop that never returns to Python: jitted code calling ``ring.jit_ops``.

It is the bench's only ``@njit`` code, written as a user's jitted stage
would be (the ring operations arrive as arguments, as ``Ring.jit_ops``
documents), so the row shows what the kernels cost without Python's
per-call price. Imported lazily: numba is not needed for the other rows.
"""

from __future__ import annotations

from typing import Any

from numba import njit

from pktflow.abc import JitOps, U32Array


@njit(cache=True, nogil=True)  # type: ignore[misc]
def _bulk_pairs(state, objs, out, iterations, enqueue_bulk, dequeue_bulk):  # type: ignore[no-untyped-def]
    burst = objs.shape[0]
    moved = 0
    for _ in range(iterations):
        enqueue_bulk(state, objs, burst)
        moved += dequeue_bulk(state, out, burst)
    return moved


def jitted_bulk_pairs(
    state: U32Array, ops: JitOps, objs: U32Array, out: U32Array, iterations: int
) -> int:
    """Enqueue then dequeue a burst ``iterations`` times inside jitted code; returns handles moved.

    The first call per sync mode compiles (or loads numba's cache): warm up first.

    Usage: ``jitted_bulk_pairs(ring.state, ring.jit_ops, objs, out, 1 << 16)``
    """
    moved: Any = _bulk_pairs(state, objs, out, iterations, ops.enqueue_bulk, ops.dequeue_bulk)
    return int(moved)
