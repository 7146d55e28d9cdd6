"""A reusable conformance suite for ring backends: DPDK's rte_ring semantics.

Any backend, built in or a third party's, proves it keeps the ``pktflow.Ring``
contract by subclassing ``RingConformance`` in a test module and naming
itself. The cases follow DPDK's ``app/test/test_ring.c``: sizes, full and
empty edges, bulk versus burst, FIFO order, index and 32-bit counter
wrap-around, every sync mode, bad input (a clear error and an unchanged
ring), lifecycle, sleeping on a ring (the "need wakeup" contract: arm,
notifier, WAIT_DATA / WAIT_ROOM), many threads, and, for backends whose rings are shared,
many processes attaching by name.

Usage::

    from pktflow.testing import RingConformance

    class TestMyBackend(RingConformance):
        backend = "mine"

The backend must be registered (entry point or ``pktflow.register_backend``)
before the tests run; the cross-process tests additionally need it to be
found by a fresh interpreter, i.e. through its entry point. Register the
``slow`` marker in your pytest configuration (the 10**8-handle stress test
carries it), and for detailed assertion messages call
``pytest.register_assert_rewrite("pktflow.testing")`` in your conftest.py.
"""

from __future__ import annotations

import array as pyarray
import contextlib
import multiprocessing
import os
import re
import select
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

import pktflow
from pktflow.abc import (
    ERR_CLOSED,
    ERR_COUNT,
    RING_F_EXACT_SZ,
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    U32Array,
)

from . import _workers

__all__ = ["RingConformance", "RingModel", "assert_same_behaviour", "unique_name"]

U32_MAX = 0xFFFFFFFF
SP_SC = RING_F_SP_ENQ | RING_F_SC_DEQ
SYNC_MODES = {"mp_mc": 0, "sp_mc": RING_F_SP_ENQ, "mp_sc": RING_F_SC_DEQ, "sp_sc": SP_SC}
# Values that catch sign, truncation and "0 means empty" mistakes.
EDGE_VALUES = (0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFF, 0x10000, 0xFFFFFFFE, U32_MAX)
# Filler for output arrays: a slot still holding it was never written.
SENTINEL = 0xA5A5A5A5

MakeRing = Callable[..., pktflow.Ring]


def unique_name(prefix: str = "t") -> str:
    """A ring or zone name no other test, process or earlier run will use.

    Usage: ``name = unique_name("rx")``
    """
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", prefix)[:40]
    return f"{safe}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _u32(values: Any) -> U32Array:
    return np.asarray(values, dtype=np.uint64).astype(np.uint32)


def _sentinel(length: int) -> U32Array:
    return np.full(length, SENTINEL, dtype=np.uint32)


def _drain(ring: pktflow.Ring) -> U32Array:
    """Everything in ``ring``, in order, taken out with one burst."""
    out = _sentinel(max(ring.capacity, 1))
    got = ring.dequeue_burst(out)
    assert ring.count() == 0, "one burst of `capacity` did not empty the ring"
    return out[:got].copy()


def _assert_holds(ring: pktflow.Ring, expected: Any) -> None:
    """``ring`` holds exactly ``expected`` in order (it is drained to check)."""
    expected = _u32(expected)
    assert ring.count() == expected.size, f"count {ring.count()}, expected {expected.size}"
    assert ring.free_count() == ring.capacity - expected.size
    got = _drain(ring)
    assert np.array_equal(got, expected), f"ring held {got.tolist()}, expected {expected.tolist()}"


def _readable(fd: int) -> bool:
    """Whether ``fd`` is readable now (a waker was signalled and not drained)."""
    return bool(select.select([fd], [], [], 0)[0])


def _random_handles(rng: np.random.Generator, n: int) -> U32Array:
    values = rng.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32)
    if n >= 2:  # the extremes, somewhere
        values[rng.integers(0, n)] = 0
        values[rng.integers(0, n)] = U32_MAX
    return values


class RingModel:
    """An obviously correct ring (a deque and a capacity) with the facade's methods.

    The oracle for random operation sequences; ``impl.reset(start)`` just
    empties it, since a model has no counters to wrap.

    Usage: ``model = RingModel(capacity=15); model.enqueue_burst(objs, 4)``
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[int] = deque()

    @property
    def impl(self) -> RingModel:
        return self

    def _n(self, array: U32Array, n: int | None) -> int:
        return array.shape[0] if n is None else int(n)

    def enqueue_bulk(self, objs: U32Array, n: int | None = None) -> int:
        n = self._n(objs, n)
        if n > self.capacity - len(self._items):
            return 0
        self._items.extend(objs[:n].tolist())
        return n

    def enqueue_burst(self, objs: U32Array, n: int | None = None) -> int:
        n = min(self._n(objs, n), self.capacity - len(self._items))
        self._items.extend(objs[:n].tolist())
        return n

    def dequeue_bulk(self, out: U32Array, n: int | None = None) -> int:
        n = self._n(out, n)
        if n > len(self._items):
            return 0
        return self.dequeue_burst(out, n)

    def dequeue_burst(self, out: U32Array, n: int | None = None) -> int:
        n = min(self._n(out, n), len(self._items))
        for i in range(n):
            out[i] = self._items.popleft()
        return n

    def enqueue(self, handle: int) -> bool:
        return self.enqueue_burst(_u32([handle]), 1) == 1

    def dequeue(self) -> int | None:
        return self._items.popleft() if self._items else None

    def count(self) -> int:
        return len(self._items)

    def free_count(self) -> int:
        return self.capacity - len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def empty(self) -> bool:
        return not self._items

    def reset(self, counter_start: int = 0) -> None:
        self._items.clear()


_OPS = (
    "enqueue_bulk",
    "enqueue_burst",
    "dequeue_bulk",
    "dequeue_burst",
    "enqueue",
    "dequeue",
    "count",
    "free_count",
    "full",
    "empty",
    "reset",
    "reset_near_wrap",
)
# Mostly traffic; resets are rare so the ring spends time full and empty.
_OP_WEIGHTS = np.array([8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 0.2, 0.2])


def assert_same_behaviour(
    subject: Any, oracle: Any, *, seed: int, steps: int = 2000, start: int = U32_MAX - 40
) -> None:
    """Drive ``subject`` and ``oracle`` with the same random operations; all must agree.

    Both are ``pktflow.Ring``-like (a ``RingModel`` works as the oracle) of
    equal capacity. Return values and every element of every output array
    (written or not) must match after each step. Counters start at
    ``start`` so that the sequence crosses the 32-bit wrap.

    Usage: ``assert_same_behaviour(numba_ring, pure_ring, seed=1)``
    """
    assert subject.capacity == oracle.capacity
    rng = np.random.default_rng(seed)
    subject.impl.reset(start)
    oracle.impl.reset(start)
    p = _OP_WEIGHTS / _OP_WEIGHTS.sum()
    top = subject.capacity + 3
    for step in range(steps):
        op = _OPS[rng.choice(len(_OPS), p=p)]
        where = f"step {step} ({op}, seed {seed})"
        if op in ("enqueue_bulk", "enqueue_burst"):
            objs = _random_handles(rng, int(rng.integers(0, top + 1)))
            n = None if rng.random() < 0.2 else int(rng.integers(0, objs.size + 1))
            a, b = getattr(subject, op)(objs, n), getattr(oracle, op)(objs, n)
            assert a == b, f"{where}: returned {a}, oracle {b}"
        elif op in ("dequeue_bulk", "dequeue_burst"):
            length = int(rng.integers(0, top + 1))
            n = None if rng.random() < 0.2 else int(rng.integers(0, length + 1))
            out_a, out_b = _sentinel(length), _sentinel(length)
            a, b = getattr(subject, op)(out_a, n), getattr(oracle, op)(out_b, n)
            assert a == b, f"{where}: returned {a}, oracle {b}"
            assert np.array_equal(out_a, out_b), f"{where}: out {out_a}, oracle {out_b}"
        elif op == "enqueue":
            handle = int(_random_handles(rng, 1)[0])
            a, b = subject.enqueue(handle), oracle.enqueue(handle)
            assert a == b, f"{where}: returned {a}, oracle {b}"
        elif op == "reset":
            subject.reset()
            oracle.reset()
        elif op == "reset_near_wrap":
            counter = (1 << 32) - int(rng.integers(1, 2 * top))
            subject.impl.reset(counter)
            oracle.impl.reset(counter)
        else:  # dequeue, count, free_count, full, empty
            a, b = getattr(subject, op)(), getattr(oracle, op)()
            assert a == b, f"{where}: returned {a!r}, oracle {b!r}"
        assert subject.count() == oracle.count(), f"{where}: count differs"


def _exactly_once(streams: list[U32Array], total: int, bounds: list[int]) -> None:
    """Every handle ``0 .. total - 1`` arrived once, each producer's in order per consumer."""
    everything = np.concatenate(streams) if streams else np.empty(0, np.uint32)
    assert everything.size == total, f"{everything.size} handles arrived, {total} were sent"
    assert int(everything.max(initial=0)) < total, "a handle that nobody sent arrived"
    seen = np.bincount(everything, minlength=total)
    missing, repeated = np.flatnonzero(seen == 0), np.flatnonzero(seen > 1)
    assert missing.size == 0 and repeated.size == 0, (
        f"{missing.size} handles lost (first {missing[:5].tolist()}), "
        f"{repeated.size} seen twice (first {repeated[:5].tolist()})"
    )
    # A consumer's dequeues take ever later ring positions, and a producer
    # fills positions in the order it sends, so within one consumer's stream
    # each producer's handles (sent in increasing order) must increase.
    for c, stream in enumerate(streams):
        for p in range(len(bounds) - 1):
            mine = stream[(stream >= bounds[p]) & (stream < bounds[p + 1])]
            assert np.all(mine[1:] > mine[:-1]), (
                f"consumer {c} received producer {p}'s handles out of FIFO order"
            )


def _run_threads(
    ring: pktflow.Ring,
    producers: int,
    consumers: int,
    total: int,
    *,
    max_burst: int,
    seed: int,
    timeout_s: float = 60.0,
) -> None:
    """Move ``0 .. total - 1`` through ``ring`` with threads; check exactly once, in order."""
    bounds = np.linspace(0, total, producers + 1).astype(int).tolist()
    produced = threading.Event()
    errors: list[BaseException] = []
    streams: list[list[U32Array]] = [[] for _ in range(consumers)]
    deadline = time.monotonic() + timeout_s

    def guarded(body: Callable[[int], None]) -> Callable[[int], None]:
        def run(i: int) -> None:
            try:
                body(i)
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        return run

    def produce(p: int) -> None:
        rng = np.random.default_rng([seed, 0, p])
        src = np.arange(bounds[p], bounds[p + 1], dtype=np.uint32)
        pos = 0
        while pos < src.size:
            n = min(int(rng.integers(1, max_burst + 1)), src.size - pos)
            view = src[pos : pos + n]
            sent = ring.enqueue_bulk(view) if rng.random() < 0.5 else ring.enqueue_burst(view)
            if sent:
                pos += sent
            else:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"producer {p} stuck at {bounds[p] + pos}")
                time.sleep(0)  # full: let a consumer run

    def consume(c: int) -> None:
        rng = np.random.default_rng([seed, 1, c])
        out = np.empty(max_burst, dtype=np.uint32)
        use_bulk = True
        while True:
            n = int(rng.integers(1, max_burst + 1))
            if use_bulk and rng.random() < 0.5:
                got = ring.dequeue_bulk(out, n)
                use_bulk = got != 0  # after a failed bulk, a burst drains the tail
            else:
                got = ring.dequeue_burst(out, n)
                use_bulk = True
            if got:
                streams[c].append(out[:got].copy())
                continue
            if not use_bulk:
                continue
            # Read "done" before the count: once every producer has returned,
            # a zero count means every handle was dequeued by someone.
            if produced.is_set() and ring.count() == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumer {c} waited past the deadline")
            time.sleep(0)  # empty: let a producer run

    makers = [threading.Thread(target=guarded(produce), args=(p,)) for p in range(producers)]
    takers = [threading.Thread(target=guarded(consume), args=(c,)) for c in range(consumers)]
    for t in makers + takers:
        t.start()
    for t in makers:
        t.join(max(deadline - time.monotonic(), 0) + 5)
    produced.set()
    for t in takers:
        t.join(max(deadline - time.monotonic(), 0) + 5)
    assert not any(t.is_alive() for t in makers + takers), "a thread is still running (hang?)"
    assert not errors, f"thread failed: {errors[0]!r}"
    joined = [np.concatenate(s) if s else np.empty(0, np.uint32) for s in streams]
    _exactly_once(joined, total, bounds)
    assert ring.empty()


_pump: Any = None


def _jit_pump() -> Any:
    """A jitted loop that moves a whole array through a ring using only ``jit_ops``."""
    global _pump
    if _pump is None:
        numba = pytest.importorskip("numba")

        @numba.njit
        def pump(state, src, out, enq_bulk, enq_burst, deq_bulk, deq_burst, count):  # type: ignore[no-untyped-def]
            n = src.shape[0]
            sent = 0
            got = 0
            step = 0
            while got < n:
                step += 1
                if sent < n:
                    k = min(1 + (step * 7) % 37, n - sent)
                    if step % 2 == 0:
                        r = enq_bulk(state, src[sent:], k)
                    else:
                        r = enq_burst(state, src[sent:], k)
                    if r < 0 or (step % 2 == 0 and r != 0 and r != k):
                        return -1  # a bulk moved a part, or an error
                    sent += r
                if count(state) != sent - got:
                    return -2
                m = min(1 + (step * 5) % 41, n - got)
                if step % 3 == 0:
                    r = deq_bulk(state, out[got:], m)
                else:
                    r = deq_burst(state, out[got:], m)
                if r < 0 or (step % 3 == 0 and r != 0 and r != m):
                    return -3
                got += r
                if step > 100 * n + 1000:
                    return -4  # no progress: a broken ring, not a hang
            return got

        _pump = pump
    return _pump


class RingConformance:
    """The rte_ring contract, as pytest tests any backend runs against itself.

    Subclass it in a ``Test*`` class and set ``backend`` to the registered
    name; every test then creates rings of that backend through the public
    ``pktflow.Ring`` facade. Override the ``ring_backend`` fixture instead
    to choose the name at run time (e.g. parametrized). The class
    attributes below size the concurrency tests.

    Usage::

        class TestNumba(RingConformance):
            backend = "numba"
    """

    backend: ClassVar[str | None] = None
    thread_handles: ClassVar[int] = 200_000
    process_handles: ClassVar[int] = 1_000_000
    stress_handles: ClassVar[int] = 10**8

    # -- fixtures -------------------------------------------------------------

    @pytest.fixture
    def ring_backend(self) -> str:
        """The backend name under test; skips when it cannot run here."""
        if self.backend is None:
            raise TypeError(f"{type(self).__name__} must set `backend = <registered name>`")
        reason = pktflow.backend_unavailable_reason(self.backend)
        if reason is not None:
            pytest.skip(f"backend {self.backend!r} is unavailable here: {reason}")
        return self.backend

    @pytest.fixture
    def make_ring(self, ring_backend: str) -> Iterator[MakeRing]:
        """``make_ring(count, flags=0, name=None)``: a new ring, closed after the test.

        Names are unique per call, so runs never collide with leftovers.
        """
        made: list[pktflow.Ring] = []

        def make(count: int, flags: int = 0, name: str | None = None) -> pktflow.Ring:
            ring = pktflow.Ring(name or unique_name(ring_backend), count, flags, ring_backend)
            made.append(ring)
            return ring

        yield make
        for ring in reversed(made):
            ring.close()

    @pytest.fixture(params=list(SYNC_MODES.values()), ids=list(SYNC_MODES))
    def sync_flags(self, request: pytest.FixtureRequest) -> int:
        """Each sync mode: MP/MC, SP/MC, MP/SC, SP/SC."""
        return int(request.param)

    @pytest.fixture
    def shared_backend(self, ring_backend: str) -> str:
        """The backend name, skipping unless its rings attach across processes."""
        if not pktflow.get_backend(ring_backend).shared:
            pytest.skip(f"backend {ring_backend!r} has no shared rings")
        return ring_backend

    # -- size and capacity ------------------------------------------------------

    def test_power_of_two_size_holds_size_minus_one(self, make_ring: MakeRing) -> None:
        for count in (2, 4, 16, 1024, 4096):
            ring = make_ring(count)
            assert (ring.size, ring.capacity) == (count, count - 1)
            src = np.arange(count, dtype=np.uint32)
            assert ring.enqueue_burst(src) == count - 1
            assert ring.full() and ring.free_count() == 0
            assert ring.enqueue(7) is False
            _assert_holds(ring, src[: count - 1])

    def test_size_one_holds_nothing(self, make_ring: MakeRing) -> None:
        ring = make_ring(1)
        assert (ring.size, ring.capacity) == (1, 0)
        assert ring.enqueue(1) is False
        assert ring.enqueue_burst(_u32([1, 2])) == 0
        assert ring.empty() and ring.full() and ring.count() == 0

    def test_exact_size_holds_exactly_count(self, make_ring: MakeRing) -> None:
        for count in (1, 3, 5, 16, 100, 1000):
            ring = make_ring(count, RING_F_EXACT_SZ)
            assert ring.capacity == count
            assert ring.size > count and ring.size & (ring.size - 1) == 0
            assert ring.size // 2 <= count, "the size is the next power of two, not larger"
            assert ring.flags == RING_F_EXACT_SZ
            src = np.arange(count + 1, dtype=np.uint32)
            assert ring.enqueue_bulk(src) == 0
            assert ring.enqueue_burst(src) == count
            assert ring.full() and ring.free_count() == 0
            _assert_holds(ring, src[:count])

    def test_exact_size_holds_one_more_than_plain(self, make_ring: MakeRing) -> None:
        plain, exact = make_ring(16), make_ring(16, RING_F_EXACT_SZ)
        assert (plain.size, plain.capacity) == (16, 15)
        assert (exact.size, exact.capacity) == (32, 16)
        src = np.arange(16, dtype=np.uint32)
        assert plain.enqueue_bulk(src) == 0
        assert exact.enqueue_bulk(src) == 16
        assert plain.enqueue_burst(src) == 15

    @pytest.mark.parametrize("count", [0, 3, 6, 1000, -1, -16, 1 << 31])
    def test_size_not_power_of_two_is_rejected(self, ring_backend: str, count: int) -> None:
        name = unique_name(ring_backend)
        with pytest.raises(pktflow.PktflowValueError, match="power of two") as info:
            pktflow.Ring(name, count, backend=ring_backend)
        assert isinstance(info.value, ValueError)
        # A failed create leaves the name free.
        pktflow.Ring(name, 4, backend=ring_backend).close()

    @pytest.mark.parametrize("count", [0, -5, 1 << 30])
    def test_exact_size_out_of_range_is_rejected(self, ring_backend: str, count: int) -> None:
        with pytest.raises(pktflow.PktflowValueError):
            pktflow.Ring(unique_name(ring_backend), count, RING_F_EXACT_SZ, ring_backend)

    @pytest.mark.parametrize("count", [16.0, "16", None, True])
    def test_size_of_wrong_type_is_rejected(self, ring_backend: str, count: Any) -> None:
        with pytest.raises(pktflow.PktflowTypeError) as info:
            pktflow.Ring(unique_name(ring_backend), count, backend=ring_backend)
        assert isinstance(info.value, TypeError)

    @pytest.mark.parametrize("flags", [0x8, 0x100, 1 << 31, -1, RING_F_EXACT_SZ | 0x40])
    def test_unknown_flags_are_rejected(self, ring_backend: str, flags: int) -> None:
        name = unique_name(ring_backend)
        with pytest.raises(pktflow.PktflowValueError, match="flags") as info:
            pktflow.Ring(name, 16, flags, ring_backend)
        assert isinstance(info.value, ValueError)
        pktflow.Ring(name, 16, 0, ring_backend).close()

    @pytest.mark.parametrize("flags", [1.0, "1", True, None])
    def test_flags_of_wrong_type_are_rejected(self, ring_backend: str, flags: Any) -> None:
        with pytest.raises(pktflow.PktflowError) as info:
            pktflow.Ring(unique_name(ring_backend), 16, flags, ring_backend)
        assert isinstance(info.value, ValueError | TypeError)

    @pytest.mark.parametrize("name", ["", None, 5])
    def test_name_must_be_a_non_empty_string(self, ring_backend: str, name: Any) -> None:
        with pytest.raises(pktflow.PktflowValueError):
            pktflow.Ring(name, 16, backend=ring_backend)

    def test_attributes(self, make_ring: MakeRing, ring_backend: str, sync_flags: int) -> None:
        name = unique_name(ring_backend)
        ring = make_ring(64, sync_flags, name=name)
        assert (ring.name, ring.size, ring.capacity) == (name, 64, 63)
        assert ring.flags == sync_flags
        assert ring.backend == ring_backend
        assert ring.closed is False
        assert len(ring) == 0
        assert name in repr(ring)
        assert ring.impl.capacity == 63 and ring.impl.size == 64

    # -- full and empty -----------------------------------------------------------

    def test_new_ring_is_empty(self, make_ring: MakeRing, sync_flags: int) -> None:
        ring = make_ring(16, sync_flags)
        assert ring.count() == 0 and ring.free_count() == 15
        assert ring.empty() is True and ring.full() is False
        assert ring.dequeue() is None
        out = _sentinel(4)
        assert ring.dequeue_burst(out) == 0
        assert ring.dequeue_bulk(out, 1) == 0
        assert np.all(out == SENTINEL), "a failed dequeue wrote into out"

    def test_full_and_empty_with_random_shifts(self, make_ring: MakeRing, sync_flags: int) -> None:
        # DPDK's test_ring_burst_bulk_tests1: shift the indexes, fill, empty.
        ring = make_ring(64, sync_flags)
        cap = ring.capacity
        rng = np.random.default_rng(1)
        for _ in range(8):
            shift = int(rng.integers(1, 64))
            src = _random_handles(rng, cap)
            assert ring.enqueue_bulk(src, shift) == shift
            out = _sentinel(cap)
            assert ring.dequeue_bulk(out, shift) == shift
            assert np.array_equal(out[:shift], src[:shift])

            assert ring.enqueue_bulk(src) == cap
            assert (ring.count(), ring.free_count()) == (cap, 0)
            assert ring.full() is True and ring.empty() is False
            assert ring.enqueue_bulk(src, 1) == 0
            assert ring.enqueue_burst(src, 1) == 0
            assert ring.enqueue(1) is False
            assert ring.count() == cap

            out = _sentinel(cap)
            assert ring.dequeue_bulk(out) == cap
            assert (ring.count(), ring.free_count()) == (0, cap)
            assert ring.full() is False and ring.empty() is True
            assert np.array_equal(out, src)

    def test_bulk_is_all_or_nothing_and_burst_takes_what_fits(
        self, make_ring: MakeRing, sync_flags: int
    ) -> None:
        ring = make_ring(16, sync_flags)
        src = np.arange(100, 120, dtype=np.uint32)
        assert ring.enqueue_bulk(src, 10) == 10
        assert ring.enqueue_bulk(src[10:], 6) == 0, "bulk of 6 with room for 5"
        assert ring.count() == 10
        assert ring.enqueue_burst(src[10:], 6) == 5, "burst of 6 with room for 5"
        assert ring.full()
        assert ring.enqueue_burst(src[15:], 5) == 0

        out = _sentinel(20)
        assert ring.dequeue_bulk(out, 16) == 0, "bulk of 16 from 15"
        assert np.all(out == SENTINEL)
        assert ring.dequeue_bulk(out, 4) == 4
        assert ring.dequeue_burst(out[4:], 16) == 11, "burst of 16 from 11"
        assert np.array_equal(out[:15], src[:15])
        assert np.all(out[15:] == SENTINEL), "a burst wrote past what it dequeued"
        assert ring.empty()

    def test_failed_bulk_leaves_ring_unchanged(self, make_ring: MakeRing, sync_flags: int) -> None:
        ring = make_ring(8, sync_flags)
        held = _u32([7, 0, U32_MAX, 3, 9])
        assert ring.enqueue_bulk(held) == 5
        assert ring.enqueue_bulk(_u32([1, 2, 3]), 3) == 0
        assert ring.count() == 5
        out = _sentinel(8)
        assert ring.dequeue_bulk(out, 6) == 0
        assert np.all(out == SENTINEL)
        assert ring.count() == 5
        _assert_holds(ring, held)

    def test_fifo_order_across_mixed_sizes(self, make_ring: MakeRing, sync_flags: int) -> None:
        # DPDK's tests2/3: 1, 2 and MAX_BULK at a time, then check the objects.
        ring = make_ring(128, sync_flags)
        rng = np.random.default_rng(2)
        src = _random_handles(rng, 127)
        sent = 0
        for k in (1, 2, 32, 1, 2, 32, 57):
            if k == 1:
                assert ring.enqueue(int(src[sent])) is True
            else:
                assert ring.enqueue_bulk(src[sent : sent + k]) == k
            sent += k
        assert sent == 127 and ring.full()
        got: list[int] = []
        for k in (1, 2, 32, 1, 2, 32, 57):
            if k == 1:
                handle = ring.dequeue()
                assert handle is not None
                got.append(handle)
            else:
                out = _sentinel(k)
                assert ring.dequeue_bulk(out) == k
                got.extend(out.tolist())
        assert got == src.tolist()
        assert ring.empty()

    def test_zero_count_succeeds_and_does_nothing(self, make_ring: MakeRing) -> None:
        ring = make_ring(8)
        none = np.empty(0, dtype=np.uint32)
        out = _sentinel(4)
        for fill in (0, 3, 7):  # empty, partly full, full
            ring.reset()
            src = np.arange(1, fill + 1, dtype=np.uint32)
            assert ring.enqueue_bulk(src) == fill
            for call in (ring.enqueue_bulk, ring.enqueue_burst):
                assert call(src, 0) == 0
                assert call(none) == 0
            for take in (ring.dequeue_bulk, ring.dequeue_burst):
                assert take(out, 0) == 0
                assert take(np.empty(0, dtype=np.uint32)) == 0
            assert np.all(out == SENTINEL)
            _assert_holds(ring, src)

    def test_every_uint32_value_passes_through(self, make_ring: MakeRing, sync_flags: int) -> None:
        ring = make_ring(64, sync_flags)
        edges = _u32(EDGE_VALUES)
        assert ring.enqueue_bulk(edges) == edges.size
        _assert_holds(ring, edges)
        assert ring.enqueue_burst(edges) == edges.size
        _assert_holds(ring, edges)
        for value in EDGE_VALUES:
            assert ring.enqueue(value) is True
            assert ring.enqueue(np.uint32(value)) is True  # type: ignore[arg-type]  # also fine
        for value in EDGE_VALUES:
            assert ring.dequeue() == value  # 0 comes back as 0, not as None
            assert ring.dequeue() == value
        assert ring.dequeue() is None
        # A large random sample through bursts crossing the end of the slots.
        rng = np.random.default_rng(3)
        src = _random_handles(rng, 10_000)
        out = _sentinel(src.size)
        sent = got = 0
        while got < src.size:
            sent += ring.enqueue_burst(src[sent:], min(45, src.size - sent))
            got += ring.dequeue_burst(out[got:], min(37, src.size - got))
        assert np.array_equal(out, src)

    def test_return_types(self, make_ring: MakeRing) -> None:
        ring = make_ring(4)
        src = _u32([5, 6])
        out = _sentinel(2)
        for value in (
            ring.enqueue_bulk(src),
            ring.dequeue_burst(out),
            ring.enqueue_burst(src),
            ring.dequeue_bulk(out),
            ring.count(),
            ring.free_count(),
        ):
            assert type(value) is int, f"{value!r} is a {type(value).__name__}, not an int"
        assert ring.enqueue(1) is True
        handle = ring.dequeue()
        assert type(handle) is int and handle == 1
        assert ring.full() is False and ring.empty() is True

    def test_views_readonly_sources_and_numpy_counts(self, make_ring: MakeRing) -> None:
        ring = make_ring(32)
        base = np.arange(40, dtype=np.uint32)
        assert ring.enqueue_burst(base[::3]) == 14  # strided source
        frozen = np.arange(100, 105, dtype=np.uint32)
        frozen.flags.writeable = False  # a read-only source is fine to enqueue
        assert ring.enqueue_bulk(frozen, np.int64(3)) == 3  # type: ignore[arg-type]  # works
        out = _sentinel(40)
        assert ring.dequeue_burst(out[::2]) == 17  # strided destination
        assert np.array_equal(out[::2][:17], np.concatenate([base[::3], frozen[:3]]))
        assert np.all(out[1::2] == SENTINEL), "a strided dequeue wrote between its elements"
        assert ring.empty()

    # -- wrap-around ------------------------------------------------------------

    @pytest.mark.parametrize("exact", [False, True], ids=["pow2", "exact"])
    def test_index_wraps_over_many_cycles(
        self, make_ring: MakeRing, sync_flags: int, exact: bool
    ) -> None:
        ring = make_ring(13 if exact else 16, sync_flags | (RING_F_EXACT_SZ if exact else 0))
        model = RingModel(ring.capacity)
        rng = np.random.default_rng(4)
        odd = (1, 3, 5, 7, 9, 11, 13, 15, 17)
        for i in range(600):
            src = _random_handles(rng, odd[i % len(odd)])
            use_bulk = i % 3 == 0
            enq = "enqueue_bulk" if use_bulk else "enqueue_burst"
            assert getattr(ring, enq)(src) == getattr(model, enq)(src), f"iteration {i}"
            k = odd[(i * 5) % len(odd)]
            out_r, out_m = _sentinel(k), _sentinel(k)
            deq = "dequeue_bulk" if i % 4 == 0 else "dequeue_burst"
            assert getattr(ring, deq)(out_r) == getattr(model, deq)(out_m), f"iteration {i}"
            assert np.array_equal(out_r, out_m), f"iteration {i}"
            assert ring.count() == model.count()
        _assert_holds(ring, list(model._items))

    @pytest.mark.parametrize("before_wrap", [1, 5, 15, 16, 63])
    def test_counters_wrap_at_2_32(
        self, make_ring: MakeRing, sync_flags: int, before_wrap: int
    ) -> None:
        ring = make_ring(16, sync_flags)
        cap = ring.capacity
        ring.impl.reset((1 << 32) - before_wrap)
        assert (ring.count(), ring.free_count()) == (0, cap)
        assert ring.empty() and not ring.full()
        src = np.arange(1000, 1000 + cap, dtype=np.uint32)
        # Fill across the wrap, check the edges, empty across it.
        assert ring.enqueue_bulk(src, 10) == 10
        assert (ring.count(), ring.free_count()) == (10, cap - 10)
        more = np.concatenate([src[10:], src[:5]])  # 5 more than fit
        assert ring.enqueue_burst(more) == cap - 10
        assert (ring.count(), ring.free_count()) == (cap, 0)
        assert ring.full() and not ring.empty()
        assert ring.enqueue(1) is False
        assert ring.enqueue_bulk(src, 1) == 0
        out = _sentinel(cap)
        assert ring.dequeue_bulk(_sentinel(cap + 1)) == 0
        assert ring.dequeue_bulk(out, 3) == 3
        assert ring.count() == cap - 3
        assert ring.dequeue_burst(out[3:]) == cap - 3
        assert np.array_equal(out, src)
        assert ring.empty() and ring.free_count() == cap
        # Keep going: many more passes of the counters, in odd steps.
        rng = np.random.default_rng(before_wrap)
        ring.impl.reset((1 << 32) - before_wrap)
        model = RingModel(cap)
        for i in range(200):
            src = _random_handles(rng, 1 + (i * 7) % 17)
            assert ring.enqueue_burst(src) == model.enqueue_burst(src)
            out_r, out_m = _sentinel(1 + (i * 5) % 13), _sentinel(1 + (i * 5) % 13)
            assert ring.dequeue_burst(out_r) == model.dequeue_burst(out_m)
            assert np.array_equal(out_r, out_m)
            assert ring.count() == model.count()
            assert ring.full() == model.full() and ring.empty() == model.empty()

    def test_single_enqueue_dequeue(self, make_ring: MakeRing, sync_flags: int) -> None:
        # DPDK's test_ring_basic_ex: one at a time to full, then to empty.
        ring = make_ring(32, sync_flags)
        for start in (0, (1 << 32) - 20):
            ring.impl.reset(start)
            for i in range(ring.capacity):
                assert ring.enqueue(i * 3) is True
                assert ring.count() == i + 1
            assert ring.full() and ring.enqueue(99) is False
            for i in range(ring.capacity):
                assert ring.dequeue() == i * 3
                assert ring.free_count() == i + 1
            assert ring.empty() and ring.dequeue() is None

    def test_count_free_count_full_empty_track_every_step(self, make_ring: MakeRing) -> None:
        ring = make_ring(8)
        for k in range(ring.capacity + 1):
            assert ring.count() == k and len(ring) == k
            assert ring.free_count() == ring.capacity - k
            assert ring.full() is (k == ring.capacity)
            assert ring.empty() is (k == 0)
            ring.enqueue(k)
        for k in range(ring.capacity, -1, -1):
            assert ring.count() == k
            assert ring.full() is (k == ring.capacity)
            ring.dequeue()

    def test_reset_empties_the_ring(self, make_ring: MakeRing, sync_flags: int) -> None:
        ring = make_ring(16, sync_flags)
        src = np.arange(15, dtype=np.uint32)
        for start in (0, (1 << 32) - 7):
            ring.impl.reset(start)
            assert ring.enqueue_bulk(src) == 15
            ring.reset()
            assert ring.count() == 0 and ring.empty() and ring.free_count() == 15
            assert ring.dequeue() is None
            assert ring.enqueue_bulk(src[:4]) == 4
            _assert_holds(ring, src[:4])

    @pytest.mark.parametrize("exact", [False, True], ids=["pow2", "exact"])
    def test_random_operations_match_a_model(
        self, make_ring: MakeRing, sync_flags: int, exact: bool
    ) -> None:
        ring = make_ring(12 if exact else 16, sync_flags | (RING_F_EXACT_SZ if exact else 0))
        assert_same_behaviour(ring, RingModel(ring.capacity), seed=5 + sync_flags, steps=1500)

    # -- bad input: a clear error, and the ring unchanged ------------------------------

    @pytest.fixture
    def held_ring(self, make_ring: MakeRing) -> Iterator[pktflow.Ring]:
        """A ring holding 10, 11, 12; checked unchanged after the test."""
        ring = make_ring(8)
        assert ring.enqueue_bulk(_u32([10, 11, 12])) == 3
        yield ring
        if not ring.closed:
            _assert_holds(ring, [10, 11, 12])

    @pytest.mark.parametrize(
        "dtype", ["float64", "float32", "int64", "int32", "uint64", "uint16", "int8", "bool", ">u4"]
    )
    def test_array_of_wrong_dtype_is_rejected(self, held_ring: pktflow.Ring, dtype: str) -> None:
        objs = np.ones(2, dtype=dtype)
        out = np.zeros(2, dtype=dtype)
        for call, array in (
            (held_ring.enqueue_bulk, objs),
            (held_ring.enqueue_burst, objs),
            (held_ring.dequeue_bulk, out),
            (held_ring.dequeue_burst, out),
        ):
            with pytest.raises(pktflow.PktflowTypeError, match="uint32") as info:
                call(array, 1)
            assert isinstance(info.value, TypeError)
        assert np.all(out == 0), "a rejected out array was written"

    @pytest.mark.parametrize("shape", [(2, 2), (4, 1), ()], ids=["2x2", "4x1", "0-d"])
    def test_array_of_wrong_shape_is_rejected(
        self, held_ring: pktflow.Ring, shape: tuple[int, ...]
    ) -> None:
        array = np.zeros(shape, dtype=np.uint32)
        for call in (
            held_ring.enqueue_bulk,
            held_ring.enqueue_burst,
            held_ring.dequeue_bulk,
            held_ring.dequeue_burst,
        ):
            with pytest.raises(pktflow.PktflowError, match="dimensional") as info:
                call(array)
            assert isinstance(info.value, ValueError | TypeError)
        assert np.all(array == 0)

    @pytest.mark.parametrize(
        "objs",
        [[1, 2], (1, 2), b"\x01\x00\x00\x00", None, 5],
        ids=["list", "tuple", "bytes", "None", "int"],
    )
    def test_non_array_is_rejected(self, held_ring: pktflow.Ring, objs: Any) -> None:
        for call in (
            held_ring.enqueue_bulk,
            held_ring.enqueue_burst,
            held_ring.dequeue_bulk,
            held_ring.dequeue_burst,
        ):
            with pytest.raises(pktflow.PktflowTypeError, match="numpy") as info:
                call(objs)
            assert isinstance(info.value, TypeError)

    def test_buffer_that_is_not_an_ndarray_is_rejected(self, held_ring: pktflow.Ring) -> None:
        words = np.zeros(2, dtype=np.uint32)
        buffers: tuple[Any, ...] = (words.data, pyarray.array("I", [0, 0]))
        for buffer in buffers:
            with pytest.raises(pktflow.PktflowTypeError):
                held_ring.dequeue_burst(buffer)
            with pytest.raises(pktflow.PktflowTypeError):
                held_ring.enqueue_burst(buffer)
        assert np.all(words == 0)

    @pytest.mark.parametrize("n", [5, 100, -1, -(1 << 40)])
    def test_count_out_of_range_is_rejected(self, held_ring: pktflow.Ring, n: int) -> None:
        objs = _u32([1, 2, 3, 4])
        out = _sentinel(4)
        for call, array in (
            (held_ring.enqueue_bulk, objs),
            (held_ring.enqueue_burst, objs),
            (held_ring.dequeue_bulk, out),
            (held_ring.dequeue_burst, out),
        ):
            with pytest.raises(pktflow.PktflowValueError) as info:
                call(array, n)
            assert isinstance(info.value, ValueError)
        assert np.all(out == SENTINEL)

    @pytest.mark.parametrize("n", [1.0, "2", True, np.float64(1), [1]])
    def test_count_of_wrong_type_is_rejected(self, held_ring: pktflow.Ring, n: Any) -> None:
        objs = _u32([1, 2, 3, 4])
        out = _sentinel(4)
        for call, array in (
            (held_ring.enqueue_bulk, objs),
            (held_ring.enqueue_burst, objs),
            (held_ring.dequeue_bulk, out),
            (held_ring.dequeue_burst, out),
        ):
            with pytest.raises(pktflow.PktflowTypeError) as info:
                call(array, n)
            assert isinstance(info.value, TypeError)
        assert np.all(out == SENTINEL)

    def test_read_only_out_is_rejected(self, held_ring: pktflow.Ring) -> None:
        out = _sentinel(4)
        out.flags.writeable = False
        for call in (held_ring.dequeue_bulk, held_ring.dequeue_burst):
            with pytest.raises(pktflow.PktflowError, match="writ") as info:
                call(out, 2)
            assert isinstance(info.value, ValueError | TypeError)
        assert np.all(out == SENTINEL)

    @pytest.mark.parametrize("handle", [-1, 1 << 32, 1 << 64, -(1 << 40)])
    def test_handle_out_of_range_is_rejected(self, held_ring: pktflow.Ring, handle: int) -> None:
        with pytest.raises(pktflow.PktflowValueError) as info:
            held_ring.enqueue(handle)
        assert isinstance(info.value, ValueError)

    @pytest.mark.parametrize("handle", [1.0, "1", None, True])
    def test_handle_of_wrong_type_is_rejected(self, held_ring: pktflow.Ring, handle: Any) -> None:
        with pytest.raises(pktflow.PktflowTypeError) as info:
            held_ring.enqueue(handle)
        assert isinstance(info.value, TypeError)

    def test_full_ring_rejects_bad_input_too(self, make_ring: MakeRing) -> None:
        # Checks come before the "full" answer: a full ring must not mask misuse.
        ring = make_ring(4)
        assert ring.enqueue_bulk(_u32([1, 2, 3])) == 3
        with pytest.raises(pktflow.PktflowTypeError):
            ring.enqueue_burst(np.ones(2, np.float64))
        with pytest.raises(pktflow.PktflowValueError):
            ring.enqueue(-1)
        ring.reset()
        with pytest.raises(pktflow.PktflowTypeError):
            ring.dequeue_burst(np.ones(2, np.int64))  # an empty ring too
        _assert_holds(ring, [])

    # -- lifecycle ----------------------------------------------------------------

    def test_use_after_close_raises_closed_error(self, make_ring: MakeRing) -> None:
        ring = make_ring(8)
        ring.enqueue(1)
        ring.close()
        assert ring.closed is True
        objs, out = _u32([1]), _sentinel(1)
        calls: list[Callable[[], object]] = [
            lambda: ring.enqueue(1),
            ring.dequeue,
            lambda: ring.enqueue_bulk(objs),
            lambda: ring.enqueue_burst(objs),
            lambda: ring.dequeue_bulk(out),
            lambda: ring.dequeue_burst(out),
            ring.count,
            ring.free_count,
            ring.full,
            ring.empty,
            ring.reset,
            lambda: len(ring),
            lambda: ring.state,
            lambda: ring.jit_ops,
            lambda: ring.impl,
        ]
        for call in calls:
            with pytest.raises(pktflow.ClosedError):
                call()
        assert np.all(out == SENTINEL)
        assert ring.name in repr(ring)  # still printable

    def test_close_is_idempotent(self, make_ring: MakeRing) -> None:
        ring = make_ring(8)
        ring.close()
        ring.close()
        assert ring.closed
        with pytest.raises(pktflow.ClosedError):
            ring.count()

    def test_context_manager_closes(self, ring_backend: str) -> None:
        name = unique_name(ring_backend)
        with pktflow.Ring(name, 16, backend=ring_backend) as ring:
            assert ring.enqueue(3) is True
            with pktflow.Ring.lookup(name) as attached:
                assert attached.count() == 1
            assert ring.count() == 1 and not ring.closed
        assert ring.closed
        with pytest.raises(pktflow.ClosedError):
            ring.dequeue()
        with pytest.raises(pktflow.NotFoundError):
            pktflow.Ring.lookup(name)
        with pytest.raises(KeyError), pktflow.Ring(name, 16, backend=ring_backend) as again:
            raise KeyError("an error inside the block propagates")
        assert again.closed

    def test_duplicate_name_raises_exists_error(self, make_ring: MakeRing) -> None:
        first = make_ring(8)
        first.enqueue(42)
        with pytest.raises(pktflow.ExistsError) as info:
            make_ring(16, name=first.name)
        assert isinstance(info.value, FileExistsError)
        assert first.name in str(info.value)
        assert (first.size, first.count()) == (8, 1), "the failed create touched the first ring"
        first.close()
        again = make_ring(4, name=first.name)  # the name is free once closed
        assert again.size == 4 and again.empty()

    def test_lookup_of_unknown_name_raises_not_found(self, ring_backend: str) -> None:
        with pytest.raises(pktflow.NotFoundError) as info:
            pktflow.Ring.lookup(unique_name("missing"))
        assert isinstance(info.value, LookupError)

    def test_lookup_attaches_to_the_same_ring(self, make_ring: MakeRing, sync_flags: int) -> None:
        ring = make_ring(16, sync_flags)
        other = pktflow.Ring.lookup(ring.name)
        assert (other.name, other.size, other.capacity, other.flags) == (
            ring.name, ring.size, ring.capacity, ring.flags,
        )  # fmt: skip
        assert other.backend == ring.backend
        assert other.enqueue_bulk(_u32([1, 2, 3])) == 3
        assert ring.count() == 3
        assert ring.dequeue() == 1
        assert other.count() == 2
        other.close()
        # Closing an attached handle leaves the ring to its creator.
        assert ring.enqueue(4) is True
        _assert_holds(ring, [2, 3, 4])
        again = pktflow.Ring.lookup(ring.name)
        again.close()

    def test_lookup_after_close_raises_not_found(self, make_ring: MakeRing) -> None:
        ring = make_ring(8)
        ring.close()
        with pytest.raises(pktflow.NotFoundError):
            pktflow.Ring.lookup(ring.name)

    def test_creator_close_unlinks_a_shared_ring(
        self, make_ring: MakeRing, shared_backend: str
    ) -> None:
        backend = pktflow.get_backend(shared_backend)
        ring = make_ring(8)
        # A second mapping through the backend itself, as another process gets.
        impl = backend.lookup_ring(ring.name)
        assert (impl.size, impl.capacity, impl.flags) == (ring.size, ring.capacity, ring.flags)
        assert impl.enqueue(11) is True
        assert ring.count() == 1 and ring.dequeue() == 11
        impl.close(unlink=False)
        attached = pktflow.Ring.lookup(ring.name)
        attached.close()
        # Neither close unlinked the ring: it is still there to attach to.
        impl = backend.lookup_ring(ring.name)
        assert impl.enqueue(12) is True and ring.dequeue() == 12
        impl.close(unlink=False)
        ring.close()
        with pytest.raises(pktflow.NotFoundError):
            backend.lookup_ring(ring.name)

    # -- threads ------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("flags", "producers", "consumers"),
        [(0, 4, 4), (SP_SC, 1, 1), (RING_F_SC_DEQ, 3, 1), (RING_F_SP_ENQ, 1, 3)],
        ids=["mp4_mc4", "sp_sc", "mp3_sc", "sp_mc3"],
    )
    def test_threads_move_every_handle_exactly_once(
        self, make_ring: MakeRing, flags: int, producers: int, consumers: int
    ) -> None:
        ring = make_ring(256, flags)
        total = self.thread_handles if producers + consumers > 2 else self.thread_handles // 2
        _run_threads(ring, producers, consumers, total, max_burst=40, seed=producers * 10 + flags)

    # -- processes (shared backends) ------------------------------------------------

    def test_spawned_process_attaches_by_name(
        self, make_ring: MakeRing, shared_backend: str
    ) -> None:
        ring = make_ring(16, RING_F_SC_DEQ)
        src = _u32([0, 1, U32_MAX, 0x80000000, 77])
        assert ring.enqueue_bulk(src) == src.size
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(
            target=_workers.ring_echo, args=(ring.name, ring.size, ring.capacity, ring.flags)
        )
        child.start()
        child.join(120)
        assert child.exitcode == 0, "the spawned child failed (its stderr is above)"
        _assert_holds(ring, src[::-1])
        name = ring.name
        ring.close()
        child = ctx.Process(target=_workers.ring_lookup_fails, args=(name,))
        child.start()
        child.join(120)
        assert child.exitcode == 0, "a closed ring was still attachable from another process"

    def _cross_process(
        self,
        make_ring: MakeRing,
        *,
        total: int,
        ring_size: int,
        max_burst: int,
        timeout_s: float,
        producers: int = 2,
        consumers: int = 2,
    ) -> None:
        ring = make_ring(ring_size)
        size, _ = _workers.control_layout(consumers, total)
        control = pktflow.Zone.create(
            unique_name("ctl"), size, shared=True, hugepages="never", kind=_workers.CONTROL_KIND
        )
        try:
            control.publish()
            bounds = np.linspace(0, total, producers + 1).astype(int).tolist()
            ctx = multiprocessing.get_context("spawn")
            procs = [
                ctx.Process(
                    target=_workers.produce,
                    args=(ring.name, bounds[p], bounds[p + 1], 100 + p, max_burst, timeout_s),
                    name=f"producer-{p}",
                )
                for p in range(producers)
            ] + [
                ctx.Process(
                    target=_workers.consume,
                    args=(
                        ring.name,
                        control.name,
                        c,
                        consumers,
                        total,
                        200 + c,
                        max_burst,
                        timeout_s,
                    ),
                    name=f"consumer-{c}",
                )
                for c in range(consumers)
            ]
            for proc in procs:
                proc.start()
            try:
                end = time.monotonic() + timeout_s + 30
                for proc in procs:
                    proc.join(max(end - time.monotonic(), 1))
            finally:
                for proc in procs:
                    if proc.is_alive():
                        proc.kill()
                        proc.join()
            failed = {proc.name: proc.exitcode for proc in procs if proc.exitcode != 0}
            assert not failed, f"child processes failed (their stderr is above): {failed}"
            counts, streams = _workers.control_views(control, consumers, total)
            _exactly_once([streams[c][: counts[c]] for c in range(consumers)], total, bounds)
            assert ring.count() == 0 and ring.empty()
            del counts, streams
        finally:
            control.close()

    def test_processes_move_every_handle_exactly_once(
        self, make_ring: MakeRing, shared_backend: str
    ) -> None:
        self._cross_process(
            make_ring, total=self.process_handles, ring_size=1024, max_burst=64, timeout_s=120
        )

    @pytest.mark.slow
    def test_processes_stress(self, make_ring: MakeRing, shared_backend: str) -> None:
        self._cross_process(
            make_ring, total=self.stress_handles, ring_size=4096, max_burst=256, timeout_s=240
        )

    # -- bound arrays -----------------------------------------------------------------

    def test_bound_operations_match_the_methods(self, make_ring: MakeRing, sync_flags: int) -> None:
        ring = make_ring(16, sync_flags)
        burst = _u32(range(100, 110))
        out = np.zeros(10, dtype=np.uint32)
        tx, rx = ring.bind(burst), ring.bind(out)
        assert tx.enqueue_bulk(10) == 10
        assert tx.enqueue_bulk(10) == 0, "bulk: all or nothing"
        assert tx.enqueue_burst(10) == 5, "burst: what fits"
        assert rx.dequeue_bulk(10) == 10
        assert out.tolist() == list(range(100, 110))
        assert rx.dequeue_burst(10) == 5
        assert out[:5].tolist() == list(range(100, 105))
        assert ring.empty()
        assert tx.enqueue_burst(0) == 0 and rx.dequeue_bulk(0) == 0

    def test_bound_count_out_of_range_returns_err_count(self, make_ring: MakeRing) -> None:
        ring = make_ring(16)
        ring.enqueue_bulk(_u32([1, 2, 3]))
        bound = ring.bind(np.zeros(4, dtype=np.uint32))
        for n in (-1, 5):
            assert bound.enqueue_bulk(n) == ERR_COUNT
            assert bound.enqueue_burst(n) == ERR_COUNT
            assert bound.dequeue_bulk(n) == ERR_COUNT
            assert bound.dequeue_burst(n) == ERR_COUNT
        _assert_holds(ring, [1, 2, 3])

    def test_bound_operations_fail_after_close(self, make_ring: MakeRing) -> None:
        ring = make_ring(16)
        out = np.zeros(4, dtype=np.uint32)
        bound = ring.bind(out)
        assert bound.enqueue_bulk(4) == 4
        attached = pktflow.Ring.lookup(ring.name)
        seen = attached.bind(out)
        attached.close()  # an attached facade's close disarms its own operations only
        for op in seen:
            assert op(1) == ERR_CLOSED
        assert bound.dequeue_burst(1) == 1
        ring.close()
        out[:] = 7
        for op in bound:
            assert op(1) == ERR_CLOSED, "a bound operation reached a closed ring"
            assert op(0) == ERR_CLOSED and op(-1) == ERR_CLOSED
        assert out.tolist() == [7, 7, 7, 7], "nothing was dequeued into the array"

    def test_bind_checks_the_array_once(self, make_ring: MakeRing) -> None:
        ring = make_ring(16)
        with pytest.raises(pktflow.PktflowTypeError):
            ring.bind(np.zeros(4, dtype=np.int64))
        with pytest.raises(pktflow.PktflowValueError):
            ring.bind(np.zeros((2, 2), dtype=np.uint32))
        frozen = np.arange(3, dtype=np.uint32)
        frozen.flags.writeable = False
        bound = ring.bind(frozen)
        assert bound.enqueue_bulk(3) == 3
        with pytest.raises(pktflow.PktflowValueError):
            bound.dequeue_bulk(3)
        _assert_holds(ring, [0, 1, 2])
        ring.close()
        with pytest.raises(pktflow.ClosedError):
            ring.bind(np.zeros(4, dtype=np.uint32))

    # -- jitted code ------------------------------------------------------------------

    def test_jit_ops_drive_the_ring(self, make_ring: MakeRing) -> None:
        ring = make_ring(64)
        ops = ring.jit_ops
        if ops is None:
            pytest.skip(f"backend {ring.backend!r} offers no jitted operations")
        state = ring.state
        assert isinstance(state, np.ndarray) and state.dtype == np.uint32
        pump = _jit_pump()
        src = _random_handles(np.random.default_rng(6), 20_000)
        out = _sentinel(src.size)
        moved = pump(
            state, src, out, ops.enqueue_bulk, ops.enqueue_burst, ops.dequeue_bulk,
            ops.dequeue_burst, ops.count,
        )  # fmt: skip
        assert moved == src.size, f"the jitted loop failed with code {moved}"
        assert np.array_equal(out, src)
        assert ring.empty()

    def test_jit_ops_and_python_calls_see_one_ring(
        self, make_ring: MakeRing, sync_flags: int
    ) -> None:
        ring = make_ring(16, sync_flags)
        ops = ring.jit_ops
        if ops is None:
            pytest.skip(f"backend {ring.backend!r} offers no jitted operations")
        state = ring.state
        ring.impl.reset((1 << 32) - 3)  # and across the counter wrap
        src = _u32([5, 0, U32_MAX, 9, 8, 7])
        assert ops.enqueue_bulk(state, src, 4) == 4
        assert ring.count() == 4 and ops.count(state) == 4
        assert ring.enqueue_bulk(src[4:]) == 2
        assert ops.enqueue_bulk(state, np.tile(src, 2), 10) == 0, "a bulk went into too little room"
        assert ops.enqueue_burst(state, src, 6) == 6
        assert ops.count(state) == 12 == ring.count()
        out = _sentinel(12)
        assert ops.dequeue_bulk(state, _sentinel(13), 13) == 0
        assert ops.dequeue_bulk(state, out, 3) == 3
        assert ring.dequeue_burst(out[3:], 4) == 4
        assert ops.dequeue_burst(state, out[7:], 12 - 7) == 5
        assert np.array_equal(out, np.concatenate([src, src]))
        assert ring.empty() and ops.count(state) == 0

    # -- sleeping: the "need wakeup" contract ---------------------------------------
    #
    # A backend that implements none of it keeps the defaults of pktflow.abc.Ring:
    # add_waiter returns -1 ("poll with back-off"), arm is always False, the
    # notifier always returns 0. These tests check that, and skip the rest.

    @pytest.fixture
    def waker(self) -> Iterator[pktflow.Waker]:
        """A fresh ``pktflow.Waker``, closed after the test."""
        with pktflow.Waker() as waker:
            yield waker

    @staticmethod
    def _sleeper(ring: pktflow.Ring, side: int, waker: pktflow.Waker) -> int:
        index = ring.add_waiter(side, waker)
        if index == -1:
            assert not ring.arm(side, index), "a ring that cannot sleep armed a waiter"
            assert ring.notifier(side)() == 0
            pytest.skip(f"backend {ring.backend!r} cannot wake sleepers (add_waiter gave -1)")
        assert type(index) is int and index >= 0
        return index

    def test_wakeup_arm_on_a_non_empty_ring_says_go_on(
        self, make_ring: MakeRing, sync_flags: int, waker: pktflow.Waker
    ) -> None:
        ring = make_ring(16, sync_flags)
        index = self._sleeper(ring, pktflow.WAIT_DATA, waker)
        assert ring.enqueue(7)
        assert ring.arm(pktflow.WAIT_DATA, index) is False
        # The bit was cleared again: a notifier finds nobody and signals nothing.
        assert ring.notifier(pktflow.WAIT_DATA)() == 0
        assert not _readable(waker.fd)
        assert ring.dequeue() == 7, "arm changed the ring"

    def test_wakeup_arm_on_an_empty_ring_then_one_signal(
        self, make_ring: MakeRing, sync_flags: int, waker: pktflow.Waker
    ) -> None:
        ring = make_ring(16, sync_flags)
        index = self._sleeper(ring, pktflow.WAIT_DATA, waker)
        notify = ring.notifier(pktflow.WAIT_DATA)
        assert ring.arm(pktflow.WAIT_DATA, index) is True
        assert not _readable(waker.fd), "readable before anything was sent"
        assert ring.enqueue_burst(_u32([1, 2])) == 2
        assert notify() == 1
        assert _readable(waker.fd)
        assert notify() == 0, "one sleep was signalled twice"
        assert waker.drain() == 1, "the waker was signalled more than once"
        assert not _readable(waker.fd)
        ring.disarm(pktflow.WAIT_DATA, index)
        assert notify() == 0
        _assert_holds(ring, [1, 2])

    def test_wakeup_notifier_with_nobody_asleep_makes_no_system_call(
        self, make_ring: MakeRing, waker: pktflow.Waker
    ) -> None:
        from pktflow._wakeup import signals_sent

        ring = make_ring(16)
        self._sleeper(ring, pktflow.WAIT_DATA, waker)  # registered, never armed
        before = signals_sent()
        for side in (pktflow.WAIT_DATA, pktflow.WAIT_ROOM):
            notify = ring.notifier(side)
            for _ in range(100):
                assert ring.enqueue(3)
                assert notify() == 0
                assert ring.dequeue() == 3
        assert signals_sent() == before, "a notifier signalled with nobody asleep"
        assert not _readable(waker.fd)

    def test_wakeup_every_armed_waiter_of_a_side_is_signalled(self, make_ring: MakeRing) -> None:
        ring = make_ring(16)
        with contextlib.ExitStack() as stack:
            wakers = [stack.enter_context(pktflow.Waker()) for _ in range(4)]
            indexes = [self._sleeper(ring, pktflow.WAIT_DATA, w) for w in wakers]
            assert len(set(indexes)) == 4, f"indexes {indexes} are not distinct"
            for index in indexes[:3]:
                assert ring.arm(pktflow.WAIT_DATA, index)
            ring.enqueue(1)
            assert ring.notifier(pktflow.WAIT_DATA)() == 3
            assert [_readable(w.fd) for w in wakers] == [True, True, True, False]
            assert [w.drain() for w in wakers] == [1, 1, 1, 0]

    def test_wakeup_room_on_a_full_ring(
        self, make_ring: MakeRing, sync_flags: int, waker: pktflow.Waker
    ) -> None:
        ring = make_ring(8, sync_flags)
        index = self._sleeper(ring, pktflow.WAIT_ROOM, waker)
        assert ring.arm(pktflow.WAIT_ROOM, index) is False, "an empty ring has room"
        assert ring.enqueue_burst(_u32(range(7))) == 7 and ring.full()
        notify = ring.notifier(pktflow.WAIT_ROOM)
        assert ring.arm(pktflow.WAIT_ROOM, index) is True
        assert ring.notifier(pktflow.WAIT_DATA)() == 0, "the other side woke a room waiter"
        assert not _readable(waker.fd)
        assert ring.dequeue() == 0
        assert notify() == 1 and _readable(waker.fd) and waker.drain() == 1
        ring.disarm(pktflow.WAIT_ROOM, index)
        _assert_holds(ring, range(1, 7))

    def test_wakeup_sides_are_independent(self, make_ring: MakeRing) -> None:
        ring = make_ring(8)
        with pktflow.Waker() as data, pktflow.Waker() as room:
            i = self._sleeper(ring, pktflow.WAIT_DATA, data)
            j = self._sleeper(ring, pktflow.WAIT_ROOM, room)
            ring.enqueue_burst(_u32(range(7)))
            assert ring.arm(pktflow.WAIT_ROOM, j)
            assert not ring.arm(pktflow.WAIT_DATA, i)
            assert ring.notifier(pktflow.WAIT_DATA)() == 0
            assert not _readable(room.fd)
            ring.dequeue()
            assert ring.notifier(pktflow.WAIT_ROOM)() == 1
            assert _readable(room.fd) and not _readable(data.fd)

    def test_wakeup_bad_side_or_index_is_a_clear_error(
        self, make_ring: MakeRing, waker: pktflow.Waker
    ) -> None:
        ring = make_ring(16)
        index = self._sleeper(ring, pktflow.WAIT_DATA, waker)
        for side in (2, -1, 1.0, "data", None, True):
            with pytest.raises(pktflow.PktflowValueError, match="WAIT_DATA"):
                ring.arm(side, index)  # type: ignore[arg-type]
            with pytest.raises(pktflow.PktflowValueError, match="WAIT_DATA"):
                ring.notifier(side)  # type: ignore[arg-type]
            with pytest.raises(pktflow.PktflowValueError, match="WAIT_DATA"):
                ring.add_waiter(side, waker)  # type: ignore[arg-type]
        stranger = (index + 1) % 32
        for call in (ring.arm, ring.disarm, ring.remove_waiter):
            with pytest.raises(pktflow.PktflowValueError):
                call(pktflow.WAIT_DATA, stranger)
            with pytest.raises(pktflow.PktflowValueError):
                call(pktflow.WAIT_ROOM, index)  # registered on the other side only
            with pytest.raises(pktflow.PktflowValueError):
                call(pktflow.WAIT_DATA, "0")  # type: ignore[arg-type]
        with pytest.raises(pktflow.PktflowValueError, match="Waker"):
            ring.add_waiter(pktflow.WAIT_DATA, waker.fd)  # type: ignore[arg-type]
        # Unchanged: the waiter still works, the ring is still empty.
        assert ring.empty()
        assert ring.arm(pktflow.WAIT_DATA, index)
        ring.enqueue(5)
        assert ring.notifier(pktflow.WAIT_DATA)() == 1

    def test_wakeup_removed_or_closed_waiters_are_gone(self, make_ring: MakeRing) -> None:
        ring = make_ring(16)
        first = pktflow.Waker()
        index = self._sleeper(ring, pktflow.WAIT_DATA, first)
        assert ring.arm(pktflow.WAIT_DATA, index)
        ring.remove_waiter(pktflow.WAIT_DATA, index)  # disarms it too
        with pytest.raises(pktflow.PktflowValueError):
            ring.arm(pktflow.WAIT_DATA, index)
        ring.enqueue(1)
        assert ring.notifier(pktflow.WAIT_DATA)() == 0, "a removed waiter was signalled"
        ring.dequeue()
        again = ring.add_waiter(pktflow.WAIT_DATA, first)
        assert ring.arm(pktflow.WAIT_DATA, again)
        first.close()  # an armed waker's close removes its entry
        ring.enqueue(1)
        assert ring.notifier(pktflow.WAIT_DATA)() == 0, "a closed waker was signalled"
        with pytest.raises(pktflow.PktflowValueError):
            ring.arm(pktflow.WAIT_DATA, again)
        with pytest.raises(pktflow.PktflowValueError):
            ring.add_waiter(pktflow.WAIT_DATA, first)  # closed

    def test_wakeup_after_close_raises_closed_error(
        self, make_ring: MakeRing, waker: pktflow.Waker
    ) -> None:
        ring = make_ring(16)
        index = self._sleeper(ring, pktflow.WAIT_DATA, waker)
        notify = ring.notifier(pktflow.WAIT_DATA)
        assert ring.arm(pktflow.WAIT_DATA, index)
        ring.close()
        for call, args in (
            (ring.add_waiter, (pktflow.WAIT_DATA, waker)),
            (ring.remove_waiter, (pktflow.WAIT_DATA, index)),
            (ring.arm, (pktflow.WAIT_DATA, index)),
            (ring.disarm, (pktflow.WAIT_DATA, index)),
            (ring.notifier, (pktflow.WAIT_DATA,)),
        ):
            with pytest.raises(pktflow.ClosedError):
                call(*args)
        assert notify() == ERR_CLOSED, "a notifier reached a closed ring"
        assert not _readable(waker.fd)
        waker.close()  # after the ring: nothing left to remove, no error

    def test_wakeup_close_of_an_attached_facade_removes_its_waiters(
        self, make_ring: MakeRing, waker: pktflow.Waker
    ) -> None:
        ring = make_ring(16)
        self._sleeper(ring, pktflow.WAIT_DATA, waker)  # skips a backend that cannot sleep
        attached = pktflow.Ring.lookup(ring.name)
        with pktflow.Waker() as other:
            index = attached.add_waiter(pktflow.WAIT_DATA, other)
            assert attached.arm(pktflow.WAIT_DATA, index)
            attached.close()
            ring.enqueue(1)
            assert ring.notifier(pktflow.WAIT_DATA)() == 0, "a waiter outlived its ring handle"

    def test_wakeup_threads_never_lose_a_wake_up(self, make_ring: MakeRing) -> None:
        """Two threads ping-pong over two SP/SC rings, each sleeping whenever its input is empty."""
        rings = (make_ring(16, SP_SC), make_ring(16, SP_SC))
        last = 2 * 2000 - 1  # 2000 round trips
        with pktflow.Waker() as probe:  # skips a backend that cannot sleep
            rings[0].remove_waiter(
                pktflow.WAIT_DATA, self._sleeper(rings[0], pktflow.WAIT_DATA, probe)
            )
        timeouts = [0, 0]
        errors: list[BaseException] = []

        def side(me: int) -> None:  # side 0 sends the even values, side 1 the odd ones
            rx, tx = rings[me], rings[1 - me]
            try:
                with pktflow.Waker() as waker:
                    index = rx.add_waiter(pktflow.WAIT_DATA, waker)
                    wake = tx.notifier(pktflow.WAIT_DATA)
                    if me == 0:
                        tx.enqueue(0)
                        wake()
                    expected = 1 - me
                    while True:
                        got = rx.dequeue()
                        if got is None:
                            if rx.arm(pktflow.WAIT_DATA, index):
                                if not select.select([waker.fd], [], [], 2.0)[0]:
                                    timeouts[me] += 1
                                waker.drain()
                            rx.disarm(pktflow.WAIT_DATA, index)
                            continue
                        assert got == expected, f"got {got}, expected {expected}"
                        if got == last:
                            break
                        tx.enqueue(got + 1)
                        wake()
                        if got + 1 == last:
                            break
                        expected = got + 2
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=side, args=(me,)) for me in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert timeouts == [0, 0], f"lost wake-ups (poll timeouts): {timeouts}"
