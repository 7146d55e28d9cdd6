"""The contract between pktflow and its ring backends.

A backend is a class registered by name (entry-point group
``pktflow.backends``) that creates and attaches rings. The ``Ring`` facade
checks argument types before they reach a backend, so implementations
receive only a C-or-strided 1-D uint32 array (writable where they write)
and an int ``n``; they return ``ERR_COUNT`` and touch nothing when ``n`` is
negative or exceeds the array (one comparison they can make for free).

Usage::

    class MyBackend(pktflow.abc.Backend):
        name = "mine"
        def create_ring(self, name, size, capacity, flags): ...
        def lookup_ring(self, name): ...
    pktflow.register_backend("mine", MyBackend)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from ._errors import NotFoundError, RingError

if TYPE_CHECKING:
    from ._wakeup import Waker

__all__ = [
    "ERR_ABORTED",
    "ERR_CLOSED",
    "ERR_CORRUPT",
    "ERR_COUNT",
    "ERR_FOREIGN",
    "ERR_OVERFLOW",
    "ERR_STALLED",
    "RING_F_EXACT_SZ",
    "RING_F_SC_DEQ",
    "RING_F_SP_ENQ",
    "Backend",
    "CacheOps",
    "JitOps",
    "MbufOps",
    "Ring",
    "U32Array",
    "WAIT_DATA",
    "WAIT_ROOM",
]

U32Array = npt.NDArray[np.uint32]

RING_F_SP_ENQ = 0x1  # the default enqueue is multi-producer
RING_F_SC_DEQ = 0x2  # the default dequeue is multi-consumer
RING_F_EXACT_SZ = 0x4  # capacity is exactly `count`; size rounds up past it

# The error codes batch operations return instead of raising: backends'
# kernels, and the operations ``bind`` hands out. Negative, as DPDK's are.
ERR_FOREIGN = -1  # a handle that is not below the pool's n
ERR_OVERFLOW = -2  # the free list overflowed: only a double free causes it
ERR_CORRUPT = -3  # a chain longer than the pool: a cycle
ERR_CLOSED = -9  # the ring or pool was closed (DPDK's -EBADF); nothing was touched
ERR_COUNT = -22  # a count outside 0..len(array) (DPDK's -EINVAL)
ERR_ABORTED = -125  # the ring's abort word is set (DPDK's -ECANCELED); nothing was moved
# A wait for an earlier reservation of the same side to publish ran out of
# its bound (or the ring was aborted meanwhile): the handles WERE moved, only
# publishing them is pending. Codes at or below ERR_STALLED encode where:
# ``ERR_STALLED - (2 * head + is_producer)``; ``Ring.complete(code)`` (or the
# facade, on its own) finishes the operation, repairing a dead owner's
# reservation on the way, and returns the count.
ERR_STALLED = -(1 << 40)

# The two sides a lcore sleeps on (``Ring.add_waiter`` and friends).
WAIT_DATA = 0  # a consumer waits for handles; producers wake it
WAIT_ROOM = 1  # a producer waits for room (``full: block``); consumers wake it


def _nobody_sleeps() -> int:
    """The notifier of a ring whose backend cannot wake sleepers: nothing to do."""
    return 0


class JitOps(NamedTuple):
    """A ring's operations as ``@njit`` functions over its ``state`` array.

    Jitted stage code takes these (and ``Ring.state``) and moves bursts without
    returning to Python. Each is specialised to the ring's sync mode.

    Usage: ``ops = ring.jit_ops; k = ops.enqueue_burst(ring.state, burst, n)``
    """

    enqueue_bulk: Callable[..., int]
    enqueue_burst: Callable[..., int]
    dequeue_bulk: Callable[..., int]
    dequeue_burst: Callable[..., int]
    count: Callable[..., int]


class Ring(ABC):
    """One ring as a backend implements it; users see the ``pktflow.Ring`` facade.

    Arrays arrive checked; counts outside ``0..len(array)`` get ``ERR_COUNT``.
    Full and empty are return values (0, False, None), never exceptions.
    Nothing may be allocated per call.
    """

    name: str
    size: int  # slots, a power of two
    capacity: int  # usable slots
    flags: int

    @abstractmethod
    def enqueue_bulk(self, objs: U32Array, n: int) -> int:
        """Enqueue ``objs[:n]`` entirely or not at all; returns n or 0.

        Usage: ``if impl.enqueue_bulk(burst, 32) == 0: ...  # full``
        """

    @abstractmethod
    def enqueue_burst(self, objs: U32Array, n: int) -> int:
        """Enqueue as many of ``objs[:n]`` as fit; returns how many.

        Usage: ``sent = impl.enqueue_burst(burst, n)``
        """

    @abstractmethod
    def dequeue_bulk(self, out: U32Array, n: int) -> int:
        """Dequeue exactly ``n`` handles into ``out[:n]`` or none; returns n or 0.

        Usage: ``got = impl.dequeue_bulk(out, 32)``
        """

    @abstractmethod
    def dequeue_burst(self, out: U32Array, n: int) -> int:
        """Dequeue up to ``n`` handles into ``out``; returns how many.

        Usage: ``got = impl.dequeue_burst(out, len(out))``
        """

    @abstractmethod
    def enqueue(self, handle: int) -> bool:
        """Enqueue one handle (``0 <= handle < 2**32``); False when full.

        Usage: ``ok = impl.enqueue(7)``
        """

    @abstractmethod
    def dequeue(self) -> int | None:
        """Dequeue one handle; None when empty.

        Usage: ``h = impl.dequeue()``
        """

    @abstractmethod
    def count(self) -> int:
        """Handles in the ring now.

        Usage: ``n = impl.count()``
        """

    @abstractmethod
    def reset(self, counter_start: int = 0) -> None:
        """Empty the ring, with every head and tail at ``counter_start`` (mod 2**32).

        Tests start counters near 2**32 to cross the wrap. Not thread-safe.

        Usage: ``impl.reset(2**32 - 16)``
        """

    @abstractmethod
    def close(self, unlink: bool) -> None:
        """Release this handle on the ring; ``unlink`` destroys a shared ring's name.

        Called once. Usage: ``impl.close(unlink=True)``
        """

    @property
    def state(self) -> U32Array | None:
        """The uint32 state array the jitted kernels work on, or None."""
        return None

    def complete(self, code: int, timeout: float | None = None) -> int:
        """Finish a transfer that returned ``ERR_STALLED...`` (or raise for another code).

        Repairs the reservation of a dead process that blocks it; raises
        ``RingStalledError`` when a live one blocks it past ``timeout`` or the
        ring is aborted. Backends whose transfers never stall keep this default.

        Usage: ``moved = impl.complete(code)``
        """
        raise RingError(f"ring {self.name!r}: no transfer of this backend is pending ({code})")

    def abort(self, on: bool = True) -> None:
        """Set (or clear) the ring's abort word: every wait in a transfer returns at once.

        Usage: ``impl.abort()``
        """
        return None  # no transfer of this backend waits

    def repair(self) -> int:
        """Publish past reservations of dead processes; returns how many slots were freed.

        Usage: ``impl.repair()``
        """
        return 0

    @property
    def repairs(self) -> int:
        """Reservations of dead processes repaired so far (any process)."""
        return 0

    def peek(self) -> U32Array | None:
        """A copy of the handles in the ring now, oldest first, or None if unsupported.

        A snapshot: exact only while nobody transfers (audits, tests).

        Usage: ``handles = impl.peek()``
        """
        return None

    def cache_ops(self) -> CacheOps | None:
        """A faster mempool cache algorithm over this ring, or None for pktflow's own.

        Usage: ``ops = impl.cache_ops()``
        """
        return None

    def mbuf_ops(self, header_words: npt.NDArray[np.uint32]) -> MbufOps | None:
        """Faster mbuf alloc/free for a pool whose free list is this ring, or None.

        ``header_words`` is the pool's (n + 1, H_WORDS) uint32 header array
        (layout: ``pktflow._mbuf_layout``).

        Usage: ``ops = impl.mbuf_ops(words)``
        """
        return None

    @property
    def jit_ops(self) -> JitOps | None:
        """``@njit`` operations over ``state``, or None for a non-jitted backend."""
        return None

    # -- sleeping on a ring: the "need wakeup" contract --------------------------
    #
    # A consumer that finds the ring empty (WAIT_DATA), or a producer that finds
    # it full (WAIT_ROOM), registers a ``pktflow.Waker`` once, then for each
    # sleep: ``arm`` (True: sleep on ``waker.fd``), wake, ``disarm``. The other
    # side calls ``notifier(side)()`` after every successful transfer; it makes
    # a system call only when some waiter is armed. The handshake needs a full
    # fence on both sides (a store then a load, each side): ``arm`` sets the
    # waiter's bit, fences, re-reads the other side's tail; the notifier's
    # caller has published its tail, and the notifier fences, then reads the
    # bits. Either the sleeper sees the new tail or the notifier sees the bit.
    #
    # The defaults below are what a backend that implements none of this gets:
    # ``add_waiter`` returns -1 ("cannot sleep here: poll with back-off"),
    # ``arm`` returns False (never sleep), ``disarm`` / ``remove_waiter`` do
    # nothing and the notifier returns 0. The facade and the runtime honour it.

    def add_waiter(self, side: int, waker: Waker) -> int:
        """Register a sleeper on ``side``; returns its index there, or -1 if unsupported.

        ``side`` is ``WAIT_DATA`` or ``WAIT_ROOM`` (checked by the facade). The
        index names the waiter in ``arm``/``disarm``/``remove_waiter`` until
        removed. Raise ``RingError`` when the side's table is full. -1 (the
        default) means this backend cannot wake sleepers: poll with back-off.

        Usage: ``index = impl.add_waiter(WAIT_DATA, waker)``
        """
        return -1

    def remove_waiter(self, side: int, index: int) -> None:
        """Forget a waiter ``add_waiter`` returned (disarming it); -1 is a no-op.

        Raise ``PktflowValueError`` for an index that is not registered.

        Usage: ``impl.remove_waiter(WAIT_DATA, index)``
        """
        return None

    def arm(self, side: int, index: int) -> bool:
        """Set this waiter's need-wakeup bit, full fence, re-check the ring.

        True: still empty (``WAIT_DATA``) / still no room (``WAIT_ROOM``), so
        sleep on the waker's fd now; the next transfer of the other side
        signals it. False: it changed meanwhile, the bit is cleared again, go
        on. The default (no sleeping) always answers False.

        Usage: ``if impl.arm(WAIT_DATA, index): sleep_on(waker.fd)``
        """
        return False

    def disarm(self, side: int, index: int) -> None:
        """Clear this waiter's bit after waking or giving up (a timeout, a stop).

        Usage: ``impl.disarm(WAIT_DATA, index)``
        """
        return None

    def notifier(self, side: int) -> Callable[[], int]:
        """A cheap callable the OTHER side calls after each successful transfer.

        Producers call ``notifier(WAIT_DATA)()`` after an enqueue, consumers
        ``notifier(WAIT_ROOM)()`` after a dequeue. It fences (full), loads the
        side's need-wakeup mask, and when it is non-zero takes it (an atomic
        exchange to 0) and signals each taken waiter once; returns how many it
        signalled. With nobody asleep it must make no system call (one
        compiled call). The default returns 0.

        Usage: ``wake = impl.notifier(WAIT_DATA); impl.enqueue_burst(b, n); wake()``
        """
        return _nobody_sleeps


class CacheOps(NamedTuple):
    """DPDK's mempool cache algorithm (LTS 22.11) over one ring: an ops table.

    Each entry is a callable bound to the pool's free-list ring (MP/MC,
    capacity ``pool_n``); a cache is a uint32 row laid out as the ``C_*``
    constants say. Plain callables, not methods, so a backend can hand out
    compiled functions that run with no Python frame in between. (The row
    layout lives in ``pktflow._cache_layout``.)

    - ``get_bulk(cache, out, n) -> int``: take ``n`` handles into ``out``,
      cache first, refilling it with ``size + missing`` in one bulk; n or 0.
    - ``put_bulk(cache, objs, n) -> int``: return ``objs[:n]`` through the
      cache, flushing it whole past the threshold; n, or -1 (nothing put)
      when a handle is not below ``cache[C_POOL_N]``, or -2 when the ring
      overflowed (only a double put causes that).
    - ``flush(cache) -> int``: move every cached handle back to the ring;
      how many, or -2.

    Both bulk operations receive a checked uint32 array but an unchecked
    count: they return ``ERR_COUNT`` (and touch nothing) when ``n`` is
    negative or exceeds the array, which costs them one comparison.

    Usage: ``got = ops.get_bulk(cache_row, out, 32)``
    """

    get_bulk: Callable[[U32Array, U32Array, int], int]
    put_bulk: Callable[[U32Array, U32Array, int], int]
    flush: Callable[[U32Array], int]


class MbufOps(NamedTuple):
    """Fast mbuf operations over one pool (its ring, caches and header words).

    - ``alloc_bulk(cache, out, n) -> int``: ``get_bulk`` plus DPDK's reset of
      each header; n or 0 (or ERR_COUNT).
    - ``free_bulk(cache, handles, n) -> int``: free each chain, honouring
      every segment's refcnt and detaching indirect segments. Returns how
      many of the ``n`` chains it freed: fewer than n when chain
      ``handles[result]`` has an indirect segment of another pool, which the
      caller frees itself before calling again with the rest; or ERR_*
      (ERR_FOREIGN, ERR_CORRUPT: found before anything is freed).
    - ``refcnt_add(handle, delta) -> int``: atomically add to a refcnt; the new value.

    Usage: ``got = ops.alloc_bulk(cache_row, out, 32)``
    """

    alloc_bulk: Callable[[U32Array, U32Array, int], int]
    free_bulk: Callable[[U32Array, U32Array, int], int]
    refcnt_add: Callable[[int, int], int]
    # Optional, cheaper calls for ``PktmbufPool.bind``: ``bind_args(cache,
    # array)`` gives (args, keep): ``alloc_bound(*args, n)`` and
    # ``free_bound(*args, n)`` work like the two above on that row and
    # array (e.g. args are addresses, not arrays); ``keep`` holds what they
    # point into, for as long as they may be called.
    bind_args: Callable[[U32Array, U32Array], tuple[tuple[int, ...], object]] | None = None
    alloc_bound: Callable[..., int] | None = None
    free_bound: Callable[..., int] | None = None


class Backend(ABC):
    """A named way to make rings: where their memory lives and how they sync.

    Subclasses set ``name``, ``shared`` (rings attachable from other
    processes by name) and implement the two factory methods.
    """

    name: ClassVar[str]
    shared: ClassVar[bool] = False
    description: ClassVar[str] = ""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run here (with the fix), or None when it can.

        Usage: ``if (why := NumbaBackend.unavailable_reason()): print(why)``
        """
        return None

    @abstractmethod
    def create_ring(self, name: str, size: int, capacity: int, flags: int) -> Ring:
        """Create a ring of ``size`` slots (a power of two) holding ``capacity``.

        Raise ``pktflow.ExistsError`` when a shared ring of that name exists.

        Usage: ``impl = backend.create_ring("rx", 1024, 1023, 0)``
        """

    def lookup_ring(self, name: str) -> Ring:
        """Attach to a ring another process created; ``NotFoundError`` if none.

        Only backends with ``shared = True`` need to override this.

        Usage: ``impl = backend.lookup_ring("rx")``
        """
        raise NotFoundError(f"backend {self.name!r} has no shared rings; no ring named {name!r}")

    def exists(self, name: str) -> bool:
        """Whether a shared object of that name exists (for shared backends).

        Usage: ``if backend.exists("rx"): ...``
        """
        return False

    def describe(self) -> dict[str, Any]:
        """Facts for ``pktflow info``: free-form, JSON-serialisable.

        Usage: ``print(backend.describe())``
        """
        return {"description": self.description, "shared": self.shared}
