"""A ring over a uint32 state array, driven by the jitted kernels.

The numba backend gives it private memory, the hugepage backend a shared
zone. The kernel for the ring's sync mode is picked once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from pktflow._memory import Zone
from pktflow.abc import RING_F_SC_DEQ, RING_F_SP_ENQ, CacheOps, JitOps, MbufOps, Ring, U32Array

from ._layout import LAYOUT_VERSION, MAGIC, W_CAPACITY, W_FLAGS, W_MAGIC, W_SIZE, W_VERSION
from ._layout import state_words as state_words

_CACHE_LINE_WORDS = 16


def numba_missing() -> str | None:
    """Why the jitted kernels cannot load here, or None."""
    try:
        import llvmlite  # noqa: F401
        import numba  # noqa: F401
    except ImportError as exc:
        return f"numba is not installed ({exc}): pip install numba"
    return None


def _compiled(dispatcher: Any) -> Callable[..., Any]:
    """The compiled entry point of a dispatcher that has exactly one signature.

    Calling it skips numba's per-call type dispatch (about half the cost of a
    burst call from Python); the ``Ring`` facade has already checked the
    argument types that the signature expects.
    """
    (signature,) = dispatcher.signatures
    return dispatcher.overloads[signature].entry_point  # type: ignore[no-any-return]


def jit_ops_for(flags: int) -> JitOps:
    """The ``@njit`` operations specialised to the sync mode in ``flags``.

    Usage: ``ops = jit_ops_for(RING_F_SP_ENQ | RING_F_SC_DEQ)``
    """
    from . import _kernels as k

    sp, sc = bool(flags & RING_F_SP_ENQ), bool(flags & RING_F_SC_DEQ)
    return JitOps(
        enqueue_bulk=k.enqueue_bulk_sp if sp else k.enqueue_bulk_mp,
        enqueue_burst=k.enqueue_burst_sp if sp else k.enqueue_burst_mp,
        dequeue_bulk=k.dequeue_bulk_sc if sc else k.dequeue_bulk_mc,
        dequeue_burst=k.dequeue_burst_sc if sc else k.dequeue_burst_mc,
        count=k.count,
    )


def aligned_words(words: int) -> U32Array:
    """A zeroed private uint32 array whose start is cache-line aligned."""
    raw = np.zeros(words + _CACHE_LINE_WORDS, dtype=np.uint32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip : skip + words]


class JitRing(Ring):
    """A ring whose state array lives in private memory or a shared zone."""

    # The batch operations and count are bound per ring in __init__: partials
    # of the compiled kernel for the ring's sync mode over its state array,
    # so a burst from Python is one C call with no Python frame in between.
    enqueue_bulk = enqueue_burst = dequeue_bulk = dequeue_burst = count = None  # type: ignore[assignment]

    def __init__(self, name: str, state: U32Array, zone: Zone | None = None) -> None:
        from . import _kernels as k

        self.name = name
        self.size = int(state[W_SIZE])
        self.capacity = int(state[W_CAPACITY])
        self.flags = int(state[W_FLAGS])
        self._state = state
        self._zone = zone
        self._ops = jit_ops_for(self.flags)
        sp, sc = bool(self.flags & RING_F_SP_ENQ), bool(self.flags & RING_F_SC_DEQ)
        self.enqueue_bulk = partial(_compiled(self._ops.enqueue_bulk), state)
        self.enqueue_burst = partial(_compiled(self._ops.enqueue_burst), state)
        self.dequeue_bulk = partial(_compiled(self._ops.dequeue_bulk), state)
        self.dequeue_burst = partial(_compiled(self._ops.dequeue_burst), state)
        self.count = partial(_compiled(k.count), state)
        self._enqueue_one = _compiled(k.enqueue_one_sp if sp else k.enqueue_one_mp)
        self._dequeue_one = _compiled(k.dequeue_one_sc if sc else k.dequeue_one_mc)
        self._reset = k.reset

    @classmethod
    def initialise(
        cls, name: str, state: U32Array, size: int, capacity: int, flags: int,
        zone: Zone | None = None,
    ) -> JitRing:  # fmt: skip
        """Write a fresh ring header into ``state`` and wrap it."""
        from . import _kernels as k

        k.init(state, size, capacity, flags)
        return cls(name, state, zone)

    @classmethod
    def private(cls, name: str, size: int, capacity: int, flags: int) -> JitRing:
        return cls.initialise(name, aligned_words(state_words(size)), size, capacity, flags)

    @staticmethod
    def check_header(state: U32Array, where: str) -> str | None:
        """Why ``state`` is not a ring this version can drive, or None."""
        if state.shape[0] < state_words(0) or int(state[W_MAGIC]) != MAGIC:
            return f"{where} holds no initialised ring"
        if int(state[W_VERSION]) != LAYOUT_VERSION:
            return f"{where} has ring layout {int(state[W_VERSION])}, expected {LAYOUT_VERSION}"
        if state.shape[0] < state_words(int(state[W_SIZE])):
            return f"{where} is smaller than its ring header says"
        return None

    def enqueue(self, handle: int) -> bool:
        return self._enqueue_one(self._state, handle)  # type: ignore[no-any-return]

    def dequeue(self) -> int | None:
        handle = self._dequeue_one(self._state)
        return None if handle < 0 else handle

    def reset(self, counter_start: int = 0) -> None:
        self._reset(self._state, counter_start)

    def close(self, unlink: bool) -> None:
        if self._zone is not None:
            self._zone.close()

    @property
    def state(self) -> U32Array:
        return self._state

    def cache_ops(self) -> CacheOps:
        from . import _mempool_kernels as k

        # Partials over the compiled entry points: one C call per burst.
        return CacheOps(
            get_bulk=partial(_compiled(k.mempool_get_bulk), self._state),
            put_bulk=partial(_compiled(k.mempool_put_bulk), self._state),
            flush=partial(_compiled(k.mempool_cache_flush), self._state),
        )

    def mbuf_ops(self, header_words: npt.NDArray[np.uint32]) -> MbufOps:
        from . import _mbuf_kernels as k

        return MbufOps(
            alloc_bulk=partial(_compiled(k.mbuf_alloc_bulk), self._state, header_words),
            free_bulk=partial(_compiled(k.mbuf_free_bulk), self._state, header_words),
            refcnt_add=partial(_compiled(k.mbuf_refcnt_add), header_words),
        )

    @property
    def jit_ops(self) -> JitOps:
        return self._ops
