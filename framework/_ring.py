"""The ``Ring`` users construct: argument checks and lifecycle over a backend ring.

The types of every argument are checked here, once, before a backend sees
the call; backends check the count against the array and move handles.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _registry
from ._arrays import U32, checked_count, checked_handle, checked_int, checked_out, ndarray
from ._bound import BoundCalls
from ._errors import ClosedError, NotFoundError, PktflowValueError
from ._names import LocalNames
from .abc import (
    ERR_CLOSED,
    ERR_COUNT,
    RING_F_EXACT_SZ,
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    WAIT_DATA,
    WAIT_ROOM,
    JitOps,
    U32Array,
)
from .abc import Ring as RingImpl

if TYPE_CHECKING:
    from ._wakeup import Waker

__all__ = ["RING_SZ_MAX", "BoundRing", "Ring"]

RING_SZ_MAX = 1 << 30  # DPDK's RTE_RING_SZ_MASK allows sizes below 2**31
_KNOWN_FLAGS = RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ
HOLE = 0xFFFFFFFF  # a slot a repair emptied (the layout's HOLE); consumers drop it

_local: LocalNames[Ring] = LocalNames("ring")


def _closed(*args: object, **kwargs: object) -> Any:
    raise ClosedError("the ring is closed")


def _closed_notifier() -> int:
    """What a notifier of a closed ring does: nothing."""
    return ERR_CLOSED


def _side(side: object) -> int:
    if type(side) is not int or side not in (WAIT_DATA, WAIT_ROOM):
        raise PktflowValueError(
            f"side must be pktflow.WAIT_DATA ({WAIT_DATA}) or pktflow.WAIT_ROOM ({WAIT_ROOM}), "
            f"not {side!r}"
        )
    return side


def _read_only(n: int) -> int:
    raise PktflowValueError("the bound array is read-only: it can only be enqueued")


def _count_error(array: U32Array, n: int, role: str) -> int:
    """Raise the error a backend's ERR_COUNT stands for."""
    checked_count(array, n, role)  # raises: n is outside 0..len(array)
    raise PktflowValueError(f"n={n} does not fit {role}")  # unreachable for a sane backend


def _settle(impl: RingImpl, code: int, array: U32Array, n: int, role: str) -> int:
    """The slow path of a negative answer: raise, or finish a stalled transfer."""
    if code == ERR_COUNT:
        return _count_error(array, n, role)
    moved = impl.complete(code)  # raises for ERR_ABORTED / ERR_CORRUPT / a live blocker
    if role == "out" and moved:
        # Holes a repair left (a dead producer's unfinished slots) were dropped
        # and sit at the end of what this dequeue reserved.
        while moved and int(array[moved - 1]) == HOLE:
            moved -= 1
    return moved


class BoundRing(NamedTuple):
    """A ring's batch operations bound to one array (see ``Ring.bind``); each takes n."""

    enqueue_bulk: Callable[[int], int]
    enqueue_burst: Callable[[int], int]
    dequeue_bulk: Callable[[int], int]
    dequeue_burst: Callable[[int], int]


def ring_size(count: int, flags: int) -> tuple[int, int]:
    """(size, capacity) of a ring asked to hold ``count`` with ``flags``, as DPDK sizes it."""
    if flags & RING_F_EXACT_SZ:
        count = checked_int(count, "ring count", 1, RING_SZ_MAX - 1)
        return 1 << count.bit_length(), count  # the next power of two above count
    count = checked_int(count, "ring size (a power of two)", 1, RING_SZ_MAX)
    if count & (count - 1):
        raise PktflowValueError(
            f"ring size {count} must be a power of two in 1..{RING_SZ_MAX} "
            "(or pass flags=RING_F_EXACT_SZ for an exact capacity)"
        )
    return count, count - 1


class Ring:
    """A bounded lock-free FIFO of 32-bit handles with DPDK's rte_ring semantics.

    Usage::

        with pktflow.Ring("rx0", 1024, backend="numba") as ring:
            ring.enqueue_burst(handles)          # as many as fit
            got = ring.dequeue_burst(out)        # into a preallocated uint32 array
    """

    def __init__(self, name: str, count: int, flags: int = 0, backend: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise PktflowValueError(f"a ring name must be a non-empty string, not {name!r}")
        flags = checked_int(flags, "ring flags", 0)
        if flags & ~_KNOWN_FLAGS:
            raise PktflowValueError(
                f"unknown ring flags {flags!r}; use RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ"
            )
        size, capacity = ring_size(count, flags)
        backend_name = backend if backend is not None else _registry.default_backend_name()
        chosen = _registry.get_backend(backend_name)
        _local.register(
            name,
            self,
            lambda: self._bind(
                chosen.create_ring(name, size, capacity, flags),
                backend_name,
                creator=True,
                owns_impl=True,
            ),
        )

    @classmethod
    def lookup(cls, name: str) -> Ring:
        """Attach to a ring by name: one of this process, or a shared one.

        Raises ``NotFoundError`` when no live ring has that name.

        Usage: ``ring = pktflow.Ring.lookup("rx0")``
        """
        creator = _local.get(name)
        if creator is not None and creator._impl is not None:
            # The same backend ring, shared with its creator: closing this
            # facade must leave the ring alone.
            return cls._attached(creator._impl, creator.backend, owns_impl=False)
        for backend_name in _registry.available_backends():
            backend = _registry.get_backend(backend_name)
            if not backend.shared:
                continue
            try:
                impl = backend.lookup_ring(name)
            except NotFoundError:
                continue
            return cls._attached(impl, backend_name, owns_impl=True)
        raise NotFoundError(f"no ring named {name!r} in this process or in shared memory")

    @classmethod
    def _attached(cls, impl: RingImpl, backend_name: str, *, owns_impl: bool) -> Ring:
        ring = cls.__new__(cls)
        ring._bind(impl, backend_name, creator=False, owns_impl=owns_impl)
        return ring

    def _bind(self, impl: RingImpl, backend_name: str, *, creator: bool, owns_impl: bool) -> None:
        self._impl: RingImpl | None = impl
        self._creator = creator
        self._owns_impl = owns_impl
        self.name: str = impl.name
        self.size: int = impl.size
        self.capacity: int = impl.capacity
        self.flags: int = impl.flags
        self.backend: str = backend_name
        self._bound = BoundCalls()
        # Waiters added through this facade, removed by its close (unless their
        # waker closed first, which removed them already).
        self._waiters: dict[tuple[int, int], Waker] = {}
        self._notifiers: weakref.WeakSet[partial[int]] = weakref.WeakSet()
        # Bound once: the hot path is one attribute load and one call.
        self._enqueue_bulk = impl.enqueue_bulk
        self._enqueue_burst = impl.enqueue_burst
        self._dequeue_bulk = impl.dequeue_bulk
        self._dequeue_burst = impl.dequeue_burst
        self._enqueue_one = impl.enqueue
        self._dequeue_one = impl.dequeue
        self._count = impl.count

    # -- the batch operations: one call per burst ---------------------------
    #
    # The inline test admits the common case with a few attribute reads; the
    # backend checks n against the array (it has both in hand) and answers
    # ERR_COUNT, turned into the exception here, off the fast path.

    def enqueue_bulk(self, objs: U32Array, n: int | None = None) -> int:
        """Enqueue ``objs[:n]`` entirely or not at all; returns n or 0.

        Usage: ``if ring.enqueue_bulk(burst, k) == 0: ...  # not enough room``
        """
        if not (type(objs) is ndarray and objs.dtype is U32 and objs.ndim == 1 and type(n) is int):
            n = checked_count(objs, n, "objs")
        moved: int = self._enqueue_bulk(objs, n)
        return moved if moved >= 0 else _settle(self._live(), moved, objs, n, "objs")

    def enqueue_burst(self, objs: U32Array, n: int | None = None) -> int:
        """Enqueue as many of ``objs[:n]`` as fit; returns how many.

        Usage: ``sent = ring.enqueue_burst(burst, k)``
        """
        if not (type(objs) is ndarray and objs.dtype is U32 and objs.ndim == 1 and type(n) is int):
            n = checked_count(objs, n, "objs")
        moved: int = self._enqueue_burst(objs, n)
        return moved if moved >= 0 else _settle(self._live(), moved, objs, n, "objs")

    def dequeue_bulk(self, out: U32Array, n: int | None = None) -> int:
        """Dequeue exactly ``n`` handles into ``out`` or none; returns n or 0.

        Usage: ``got = ring.dequeue_bulk(out, 32)``
        """
        if not (
            type(out) is ndarray
            and out.dtype is U32
            and out.ndim == 1
            and out.flags.writeable
            and type(n) is int
        ):
            n = checked_out(out, n)
        moved: int = self._dequeue_bulk(out, n)
        return moved if moved >= 0 else _settle(self._live(), moved, out, n, "out")

    def dequeue_burst(self, out: U32Array, n: int | None = None) -> int:
        """Dequeue up to ``n`` (default ``len(out)``) handles into ``out``; returns how many.

        Usage: ``got = ring.dequeue_burst(out)``
        """
        if not (
            type(out) is ndarray
            and out.dtype is U32
            and out.ndim == 1
            and out.flags.writeable
            and type(n) is int
        ):
            n = checked_out(out, n)
        moved: int = self._dequeue_burst(out, n)
        return moved if moved >= 0 else _settle(self._live(), moved, out, n, "out")

    def bind(self, array: U32Array) -> BoundRing:
        """The batch operations bound to one preallocated array, for hot loops.

        Each takes only ``n`` and is a compiled call with no Python frame in
        between (about half the cost of the methods above). The array is
        checked once, here; ``n`` by the backend: a count outside
        ``0..len(array)`` returns ``ERR_COUNT`` (negative), not an exception.
        After ``close()`` every one returns ``ERR_CLOSED`` and touches
        nothing. Keep the array's dtype and shape as they are while it is bound.

        Usage::

            tx = ring.bind(burst)
            sent = tx.enqueue_burst(32)
        """
        checked_count(array, None, "array")
        impl = self._live()
        dequeue_bulk: Callable[[int], int] = _read_only
        dequeue_burst: Callable[[int], int] = _read_only
        bound = self._bound
        if array.flags.writeable:
            dequeue_bulk = bound.bind(impl.dequeue_bulk, array)
            dequeue_burst = bound.bind(impl.dequeue_burst, array)
        return BoundRing(
            enqueue_bulk=bound.bind(impl.enqueue_bulk, array),
            enqueue_burst=bound.bind(impl.enqueue_burst, array),
            dequeue_bulk=dequeue_bulk,
            dequeue_burst=dequeue_burst,
        )

    # -- conveniences derived from the batch operations ----------------------

    def enqueue(self, handle: int) -> bool:
        """Enqueue one handle (``0 <= handle < 2**32``); False when full.

        Usage: ``ring.enqueue(7)``
        """
        return self._enqueue_one(checked_handle(handle, 1 << 32))

    def dequeue(self) -> int | None:
        """Dequeue one handle; None when empty.

        Usage: ``h = ring.dequeue()``
        """
        return self._dequeue_one()

    def count(self) -> int:
        """Handles in the ring now.

        Usage: ``ring.count()``
        """
        return self._count()

    def free_count(self) -> int:
        """Free slots now: ``capacity - count()``.

        Usage: ``ring.free_count()``
        """
        return self.capacity - self._count()

    def full(self) -> bool:
        """Whether no handle fits now.

        Usage: ``ring.full()``
        """
        return self._count() >= self.capacity

    def empty(self) -> bool:
        """Whether no handle is waiting now.

        Usage: ``ring.empty()``
        """
        return self._count() == 0

    def reset(self) -> None:
        """Drop every handle; not safe while other threads or processes use the ring.

        Usage: ``ring.reset()``
        """
        self._live().reset(0)

    # -- crash safety ---------------------------------------------------------

    def complete(self, code: int, timeout: float | None = None) -> int:
        """Finish a transfer that a bound call or jitted code got ``ERR_STALLED...`` for.

        A wait for an earlier producer (or consumer) to publish is bounded: the
        kernel then answers a code at or below ``pktflow.abc.ERR_STALLED`` with
        its handles already moved. This finishes it and returns the count,
        first publishing past the reservation of a dead process that blocks
        it (a dead producer's copied handles are delivered, its unfinished
        slots dropped; a dead consumer's reserved handles are discarded).
        Raises ``RingStalledError`` (still pending: call again with
        ``err.code``) when a live process blocks it for ``timeout`` seconds
        (default 5) or the ring is aborted. The methods of this class do
        this on their own.

        Usage: ``moved = ring.complete(code) if code <= ERR_STALLED else code``
        """
        return self._live().complete(code, timeout)

    def abort(self, on: bool = True) -> None:
        """Set the shared abort word: every process's waits on this ring return at once.

        Transfers that had reserved slots raise ``RingStalledError`` (pending);
        new ones raise ``RingError`` until ``abort(False)``.

        Usage: ``ring.abort()``
        """
        self._live().abort(on)

    def repair(self) -> int:
        """Publish past the reservations of dead processes now; returns the slots freed.

        Usage: ``ring.repair()``
        """
        return self._live().repair()

    @property
    def repairs(self) -> int:
        """Reservations of dead processes repaired so far, by any process."""
        return self._live().repairs

    # -- sleeping: the "need wakeup" contract ---------------------------------

    def add_waiter(self, side: int, waker: Waker) -> int:
        """Register ``waker`` as a sleeper on ``side``; returns its index on that side.

        ``side``: ``pktflow.WAIT_DATA`` (a consumer waiting for handles) or
        ``pktflow.WAIT_ROOM`` (a producer waiting for room). Register once,
        then ``arm`` before each sleep. Returns -1 when the backend cannot
        wake sleepers (then poll with back-off: ``arm`` answers False).
        Raises ``RingError`` when the side's table is full. The entry goes
        away with ``remove_waiter``, ``waker.close()`` or this ring's ``close()``.

        Usage: ``index = ring.add_waiter(pktflow.WAIT_DATA, waker)``
        """
        from ._wakeup import Waker

        side = _side(side)
        if not isinstance(waker, Waker):
            raise PktflowValueError(f"add_waiter needs a pktflow.Waker, not {waker!r}")
        index = self._live().add_waiter(side, waker)
        if type(index) is not int or index < -1:
            raise PktflowValueError(f"backend {self.backend!r} returned waiter index {index!r}")
        if index >= 0:
            self._waiters[(side, index)] = waker
        return index

    def _waiter(self, side: int, index: int) -> tuple[RingImpl, int]:
        impl = self._live()
        side = _side(side)
        if type(index) is not int or index < -1:
            raise PktflowValueError(
                f"a waiter index is an int >= -1 from add_waiter, not {index!r}"
            )
        return impl, side

    def remove_waiter(self, side: int, index: int) -> None:
        """Forget a waiter (-1, the index of a ring that cannot sleep, is a no-op).

        Usage: ``ring.remove_waiter(pktflow.WAIT_DATA, index)``
        """
        impl, side = self._waiter(side, index)
        if index >= 0:
            impl.remove_waiter(side, index)
            self._waiters.pop((side, index), None)

    def arm(self, side: int, index: int) -> bool:
        """Mark this waiter as about to sleep, then look again (full fence in between).

        True: still empty (``WAIT_DATA``) / still no room (``WAIT_ROOM``):
        sleep on ``waker.fd`` now; the other side's next notifier call signals
        it. False: it changed meanwhile (the mark is cleared): go on without
        sleeping. Always False for index -1. After waking, ``waker.drain()``,
        ``disarm`` and look again (wake-ups can be spurious).

        Usage::

            if ring.arm(pktflow.WAIT_DATA, index):
                select.select([waker.fd], [], [], timeout)
                waker.drain()
            ring.disarm(pktflow.WAIT_DATA, index)
        """
        impl, side = self._waiter(side, index)
        return bool(impl.arm(side, index)) if index >= 0 else False

    def disarm(self, side: int, index: int) -> None:
        """Clear this waiter's mark after waking or giving up (a timeout, a stop).

        Usage: ``ring.disarm(pktflow.WAIT_DATA, index)``
        """
        impl, side = self._waiter(side, index)
        if index >= 0:
            impl.disarm(side, index)

    def notifier(self, side: int) -> Callable[[], int]:
        """The callable the other side calls after each successful transfer.

        A producer calls ``ring.notifier(pktflow.WAIT_DATA)()`` after each
        enqueue that moved handles, a consumer ``ring.notifier(pktflow.WAIT_ROOM)()``
        after each dequeue that did. It wakes every waiter armed on that side
        and returns how many it signalled; with nobody asleep it is one
        compiled call and no system call. After ``close()`` it returns
        ``ERR_CLOSED`` and touches nothing.

        Usage::

            wake = ring.notifier(pktflow.WAIT_DATA)
            if tx.enqueue_burst(n):
                wake()
        """
        side = _side(side)
        call: partial[int] = partial(self._live().notifier(side))  # flattens a backend partial
        self._notifiers.add(call)
        return call

    # -- what jitted code needs ---------------------------------------------

    @property
    def state(self) -> U32Array | None:
        """The uint32 state array jitted code passes to ``jit_ops`` (None for ``pure``)."""
        return self._live().state

    @property
    def jit_ops(self) -> JitOps | None:
        """``@njit`` ring operations for this ring's sync mode (None for ``pure``).

        They are the functions of ``pktflow.backends.jit``; call them from
        jitted code as module globals, which numba caches (passed as
        arguments, they make numba compile the caller again in every process).

        Usage::

            from pktflow.backends.jit import enqueue_burst_mp

            @numba.njit(nogil=True, cache=True)
            def forward(state, burst, n):
                return enqueue_burst_mp(state, burst, n)

            assert ring.jit_ops.enqueue_burst is enqueue_burst_mp  # MP ring
            forward(ring.state, burst, 32)
        """
        return self._live().jit_ops

    @property
    def impl(self) -> RingImpl:
        """The backend ring behind this facade (for conformance tests and tools)."""
        return self._live()

    # -- lifecycle ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._impl is None

    def _live(self) -> RingImpl:
        if self._impl is None:
            raise ClosedError(f"ring {self.name!r} is closed")
        return self._impl

    def close(self) -> None:
        """Release the ring; the creator's close destroys it (and unlinks a shared one).

        Idempotent; every other method raises ``ClosedError`` afterwards.

        Usage: ``ring.close()``
        """
        impl, self._impl = self._impl, None
        if impl is None:
            return
        for attr in (
            "_enqueue_bulk", "_enqueue_burst", "_dequeue_bulk", "_dequeue_burst",
            "_enqueue_one", "_dequeue_one", "_count",
        ):  # fmt: skip
            setattr(self, attr, _closed)
        self._bound.close()
        for call in list(self._notifiers):
            # In place, as BoundCalls does: a notifier handed out never reaches
            # the closed ring's memory again.
            call.__setstate__((_closed_notifier, (), None, None))  # type: ignore[attr-defined]
        waiters, self._waiters = self._waiters, {}
        for (side, index), waker in waiters.items():
            if not waker.closed:  # a closed waker removed its entries itself
                impl.remove_waiter(side, index)
        if self._creator:
            _local.forget(self.name, self)
        if self._owns_impl:
            impl.close(unlink=self._creator)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        state = "closed" if self._impl is None else f"{self._count()}/{self.capacity}"
        return f"<Ring {self.name!r} backend={self.backend} size={self.size} {state}>"
