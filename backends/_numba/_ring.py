"""A ring over a uint32 state array, driven by the jitted kernels.

The numba backend gives it private memory, the hugepage backend a shared
zone. The kernel for the ring's sync mode is picked once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pktflow._arrays import descriptor
from pktflow._errors import RingError
from pktflow._memory import Zone
from pktflow.abc import (
    ERR_ABORTED,
    ERR_CORRUPT,
    ERR_STALLED,
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    CacheOps,
    JitOps,
    MbufOps,
    Ring,
    U32Array,
)

if TYPE_CHECKING:
    from pktflow._wakeup import Waker

    from ._waiters import Waiters

from ._layout import (
    HEADER_WORDS,
    LAYOUT_VERSION,
    MAGIC,
    W_ABORT,
    W_CAPACITY,
    W_CONS_REC,
    W_FLAGS,
    W_MAGIC,
    W_MASK,
    W_PROD_REC,
    W_REPAIRED,
    W_SIZE,
    W_VERSION,
    W_WAITERS,
    cons_records,
    prod_records,
    waiter_tables,
)
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
        self._sleepers: Waiters | None = None  # made on first use (loads the wake-up kernels)

    @classmethod
    def initialise(
        cls, name: str, state: U32Array, size: int, capacity: int, flags: int,
        zone: Zone | None = None,
    ) -> JitRing:  # fmt: skip
        """Write a fresh ring header into ``state`` and wrap it."""
        from . import _kernels as k
        from ._waiters import Waiters

        k.init(state, size, capacity, flags, prod_records(size, flags), cons_records(size, flags))
        Waiters.initialise(state, waiter_tables(size, flags))
        return cls(name, state, zone)

    @classmethod
    def private(cls, name: str, size: int, capacity: int, flags: int) -> JitRing:
        words = aligned_words(state_words(size, flags))
        return cls.initialise(name, words, size, capacity, flags)

    @staticmethod
    def check_header(state: U32Array, where: str) -> str | None:
        """Why ``state`` is not a ring this version can drive, or None.

        Every word a kernel indexes with is checked, so that a corrupt header
        is an error here and never a read or write outside the zone.
        """
        if state.shape[0] < HEADER_WORDS or int(state[W_MAGIC]) != MAGIC:
            return f"{where} holds no initialised ring"
        if int(state[W_VERSION]) != LAYOUT_VERSION:
            return f"{where} has ring layout {int(state[W_VERSION])}, expected {LAYOUT_VERSION}"
        size, capacity, flags = int(state[W_SIZE]), int(state[W_CAPACITY]), int(state[W_FLAGS])
        if size <= 0 or size & (size - 1) or int(state[W_MASK]) != size - 1:
            return f"{where} has a corrupt ring header (size {size}, mask {int(state[W_MASK])})"
        if capacity >= size:
            return f"{where} has a corrupt ring header (capacity {capacity} >= size {size})"
        if flags & ~0x7:
            return f"{where} has a corrupt ring header (flags {flags:#x})"
        if state.shape[0] < state_words(size, flags):
            return f"{where} is smaller than its ring header says"
        for word, expected, what in (
            (W_PROD_REC, prod_records(size, flags), "record"),
            (W_CONS_REC, cons_records(size, flags), "record"),
            (W_WAITERS, waiter_tables(size, flags), "waiter-table"),
        ):
            if int(state[word]) != expected:
                return f"{where} has a corrupt ring header ({what} offset {int(state[word])})"
        return None

    def enqueue(self, handle: int) -> bool:
        moved = int(self._enqueue_one(self._state, handle))
        if moved >= 0:
            return moved == 1
        return self.complete(moved) == 1

    def dequeue(self) -> int | None:
        handle = int(self._dequeue_one(self._state))
        if handle >= 0:
            return handle
        if handle == -1:
            return None
        if handle <= ERR_STALLED:
            from ._repair import decode, slot_value

            # Ours until we publish: read it before the publish frees the slot.
            value = slot_value(self._state, decode(handle)[1])
            return value if self.complete(handle) == 1 else None
        self.complete(handle)  # raises for ERR_ABORTED / ERR_CORRUPT
        return None

    def complete(self, code: int, timeout: float | None = None) -> int:
        if code == ERR_ABORTED:
            raise RingError(f"ring {self.name!r} is aborted (Ring.abort(False) clears it)")
        if code == ERR_CORRUPT:
            raise RingError(f"ring {self.name!r} has a corrupt header word")
        from ._repair import complete

        return complete(self._state, code, self.name, timeout)

    def abort(self, on: bool = True) -> None:
        from . import _kernels as k

        k.store_word(self._state, W_ABORT, 1 if on else 0)

    def repair(self) -> int:
        from ._repair import repair_side

        done = 0
        for is_prod, rec_word in ((True, W_PROD_REC), (False, W_CONS_REC)):
            if int(self._state[rec_word]):  # an MP/MC side: it has records
                done += repair_side(self._state, is_prod)
        return done

    @property
    def repairs(self) -> int:
        return int(self._state[W_REPAIRED])

    def peek(self) -> U32Array | None:
        from ._layout import W_CONS_TAIL, W_PROD_TAIL, W_SLOTS

        state, size = self._state, self.size
        tail, head = int(state[W_CONS_TAIL]), int(state[W_PROD_TAIL])
        used = min((head - tail) & 0xFFFFFFFF, self.capacity)
        index = (tail + np.arange(used, dtype=np.int64)) & (size - 1)
        snapshot: U32Array = state[W_SLOTS + index].copy()
        return snapshot

    def reset(self, counter_start: int = 0) -> None:
        self._reset(self._state, counter_start)

    # -- sleeping: the waiter tables (``_waiters``, ``_wakeup_kernels``) --------

    @property
    def _waiters(self) -> Waiters:
        if self._sleepers is None:
            from ._waiters import Waiters

            self._sleepers = Waiters(self._state, self.name)
        return self._sleepers

    def add_waiter(self, side: int, waker: Waker) -> int:
        return self._waiters.add(side, waker)

    def remove_waiter(self, side: int, index: int) -> None:
        self._waiters.remove(side, index)

    def arm(self, side: int, index: int) -> bool:
        return self._waiters.arm(side, index)

    def disarm(self, side: int, index: int) -> None:
        self._waiters.disarm(side, index)

    def notifier(self, side: int) -> Callable[[], int]:
        return self._waiters.notifier(side)

    def close(self, unlink: bool) -> None:
        if self._sleepers is not None:
            self._sleepers.close()  # no entry of this process outlives its handle
            self._sleepers = None
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

        state = self._state

        def bind_args(cache: U32Array, array: U32Array) -> tuple[tuple[int, ...], object]:
            described = descriptor(state, header_words, cache, array)
            return (described.ctypes.data,), (described, state, header_words, cache, array)

        return MbufOps(
            alloc_bulk=partial(_compiled(k.mbuf_alloc_bulk), state, header_words),
            free_bulk=partial(_compiled(k.mbuf_free_bulk), state, header_words),
            refcnt_add=partial(_compiled(k.mbuf_refcnt_add), header_words),
            bind_args=bind_args,
            alloc_bound=_compiled(k.mbuf_alloc_bulk_bound),
            free_bound=_compiled(k.mbuf_free_bulk_bound),
        )

    @property
    def jit_ops(self) -> JitOps:
        return self._ops
