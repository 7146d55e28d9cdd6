"""rte_ring's lock-free algorithm over one uint32 state array, jitted.

A transfer is three steps, as in DPDK's C11 ring:

1. *move head*: reserve ``k`` slots by moving this side's head (a CAS for
   multi-producer/consumer, a plain store for single);
2. *copy* the handles into (or out of) the reserved slots;
3. *update tail*: wait until earlier reservations of this side have
   published (their tail equals our old head), then release our new tail.

Counters are 32-bit and wrap; all differences are taken modulo 2**32, so
``free = capacity + cons_tail - prod_head`` stays right across the wrap.
Arithmetic runs in int64 and is masked, because uint32 mixed with int64
becomes float64 in numba.

The exported functions take ``(state, objs, n)``: few arguments keep the
call from Python cheap, and jitted stage code calls them directly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._atomics import (
    cas_relaxed,
    cpu_relax,
    fence_acquire,
    load_acquire,
    load_relaxed,
    sched_yield,
    store_relaxed,
    store_release,
)
from ._layout import (
    LAYOUT_VERSION,
    MAGIC,
    W_CAPACITY,
    W_CONS_HEAD,
    W_CONS_NEED_WAKEUP,
    W_CONS_TAIL,
    W_FLAGS,
    W_MAGIC,
    W_MASK,
    W_PROD_HEAD,
    W_PROD_NEED_WAKEUP,
    W_PROD_TAIL,
    W_SIZE,
    W_SLOTS,
    W_VERSION,
)

U32_MASK = 0xFFFFFFFF
# Returned, with the ring untouched, when n is negative or runs past the
# array: jitted callers get no out-of-bounds access (DPDK's -EINVAL).
ERR_COUNT = -22
# Spins with `pause` before yielding the CPU to a preempted peer: MP/MC rings
# are not preemption-safe, and on 2 cores a spinning waiter can starve the
# very thread it waits for.
_SPINS_BEFORE_YIELD = 256

# Signatures: the state array is C-contiguous; objs may be strided ("A").
_SIG_BATCH = "int64(uint32[::1], uint32[:], int64)"
_SIG_PUT_ONE = "boolean(uint32[::1], int64)"
_SIG_GET_ONE = "int64(uint32[::1])"
_JIT = {"cache": True, "nogil": True}


@njit(inline="always")
def _move_head(state, head_word, opposite_tail_word, n, fixed, single, is_prod):
    """Reserve up to ``n`` slots on one side; returns (old_head, reserved)."""
    capacity = np.int64(state[W_CAPACITY])
    # Relaxed: our own head; the CAS below catches a stale value.
    old_head = np.int64(load_relaxed(state, head_word))
    while True:
        # Acquire fence: the head load above stays before the tail load below.
        fence_acquire()
        # Acquire: pairs with the other side's store_release of its tail, so
        # the slots it published (or freed) are visible before we touch them.
        opposite_tail = np.int64(load_acquire(state, opposite_tail_word))
        if is_prod:
            room = (capacity + opposite_tail - old_head) & U32_MASK
        else:
            room = (opposite_tail - old_head) & U32_MASK
        k = n if n <= room else (0 if fixed else room)
        if k == 0:
            return old_head, 0
        new_head = (old_head + k) & U32_MASK
        if single:
            # Relaxed: only this thread writes the head; the tail release publishes.
            store_relaxed(state, head_word, new_head)
            return old_head, k
        if cas_relaxed(state, head_word, old_head, new_head):
            return old_head, k
        old_head = np.int64(load_relaxed(state, head_word))


@njit(inline="always")
def _update_tail(state, tail_word, old_head, new_tail, single):
    """Publish our slots once every earlier reservation of this side has."""
    if not single:
        spins = 0
        # Relaxed: we only wait for equality; the release below orders our copy.
        while np.int64(load_relaxed(state, tail_word)) != old_head:
            cpu_relax()
            spins += 1
            if spins == _SPINS_BEFORE_YIELD:
                sched_yield()
                spins = 0
    # Release: our slot writes (enqueue) or reads (dequeue) happen before the
    # other side's load_acquire of this tail sees the new value.
    store_release(state, tail_word, new_tail)


@njit(inline="always")
def _enqueue(state, objs, start, n, fixed, single):
    """Move ``objs[start:start + n]`` in (offsets, not a slice: no refcount traffic)."""
    if n < 0 or start + n > objs.shape[0]:
        return ERR_COUNT
    old_head, k = _move_head(state, W_PROD_HEAD, W_CONS_TAIL, n, fixed, single, True)
    if k == 0:
        return 0
    size = np.int64(state[W_SIZE])
    first = np.int64(old_head & (size - 1))
    run = min(k, size - first)
    for i in range(run):
        state[W_SLOTS + first + i] = objs[start + i]
    for i in range(run, k):
        state[W_SLOTS + i - run] = objs[start + i]
    _update_tail(state, W_PROD_TAIL, old_head, (old_head + k) & U32_MASK, single)
    return k


@njit(inline="always")
def _dequeue(state, out, start, n, fixed, single):
    """Move up to ``n`` handles out into ``out[start:]``."""
    if n < 0 or start + n > out.shape[0]:
        return ERR_COUNT
    old_head, k = _move_head(state, W_CONS_HEAD, W_PROD_TAIL, n, fixed, single, False)
    if k == 0:
        return 0
    size = np.int64(state[W_SIZE])
    first = np.int64(old_head & (size - 1))
    run = min(k, size - first)
    for i in range(run):
        out[start + i] = state[W_SLOTS + first + i]
    for i in range(run, k):
        out[start + i] = state[W_SLOTS + i - run]
    _update_tail(state, W_CONS_TAIL, old_head, (old_head + k) & U32_MASK, single)
    return k


# Specialised entry points, one per (verb, behaviour, sync mode): the mode is
# fixed when a ring is created, so no call carries a branch on it.


@njit(_SIG_BATCH, **_JIT)
def enqueue_bulk_mp(state, objs, n):
    """Enqueue exactly ``n`` handles or none (multi-producer); returns n or 0."""
    return _enqueue(state, objs, 0, n, True, False)


@njit(_SIG_BATCH, **_JIT)
def enqueue_bulk_sp(state, objs, n):
    """Enqueue exactly ``n`` handles or none (single producer); returns n or 0."""
    return _enqueue(state, objs, 0, n, True, True)


@njit(_SIG_BATCH, **_JIT)
def enqueue_burst_mp(state, objs, n):
    """Enqueue as many of ``n`` handles as fit (multi-producer); returns the count."""
    return _enqueue(state, objs, 0, n, False, False)


@njit(_SIG_BATCH, **_JIT)
def enqueue_burst_sp(state, objs, n):
    """Enqueue as many of ``n`` handles as fit (single producer); returns the count."""
    return _enqueue(state, objs, 0, n, False, True)


@njit(_SIG_BATCH, **_JIT)
def dequeue_bulk_mc(state, out, n):
    """Dequeue exactly ``n`` handles into ``out`` or none (multi-consumer)."""
    return _dequeue(state, out, 0, n, True, False)


@njit(_SIG_BATCH, **_JIT)
def dequeue_bulk_sc(state, out, n):
    """Dequeue exactly ``n`` handles into ``out`` or none (single consumer)."""
    return _dequeue(state, out, 0, n, True, True)


@njit(_SIG_BATCH, **_JIT)
def dequeue_burst_mc(state, out, n):
    """Dequeue up to ``n`` handles into ``out`` (multi-consumer); returns the count."""
    return _dequeue(state, out, 0, n, False, False)


@njit(_SIG_BATCH, **_JIT)
def dequeue_burst_sc(state, out, n):
    """Dequeue up to ``n`` handles into ``out`` (single consumer); returns the count."""
    return _dequeue(state, out, 0, n, False, True)


@njit(_SIG_PUT_ONE, **_JIT)
def enqueue_one_mp(state, handle):
    """Enqueue one handle (multi-producer); False when the ring is full."""
    one = np.empty(1, np.uint32)
    one[0] = handle
    return _enqueue(state, one, 0, 1, True, False) == 1


@njit(_SIG_PUT_ONE, **_JIT)
def enqueue_one_sp(state, handle):
    """Enqueue one handle (single producer); False when the ring is full."""
    one = np.empty(1, np.uint32)
    one[0] = handle
    return _enqueue(state, one, 0, 1, True, True) == 1


@njit(_SIG_GET_ONE, **_JIT)
def dequeue_one_mc(state):
    """Dequeue one handle (multi-consumer); -1 when the ring is empty."""
    one = np.empty(1, np.uint32)
    if _dequeue(state, one, 0, 1, True, False) == 0:
        return -1
    return np.int64(one[0])


@njit(_SIG_GET_ONE, **_JIT)
def dequeue_one_sc(state):
    """Dequeue one handle (single consumer); -1 when the ring is empty."""
    one = np.empty(1, np.uint32)
    if _dequeue(state, one, 0, 1, True, True) == 0:
        return -1
    return np.int64(one[0])


@njit("int64(uint32[::1])", **_JIT)
def count(state):
    """Handles in the ring now (a snapshot under concurrency), clamped to capacity."""
    # Acquire on both tails, as rte_ring_count reads them.
    prod_tail = np.int64(load_acquire(state, W_PROD_TAIL))
    cons_tail = np.int64(load_acquire(state, W_CONS_TAIL))
    used = (prod_tail - cons_tail) & U32_MASK
    capacity = np.int64(state[W_CAPACITY])
    return used if used <= capacity else capacity


@njit("void(uint32[::1], int64)", **_JIT)
def reset(state, start):
    """Empty the ring with all four counters at ``start`` (tests start near 2**32).

    Not safe while other threads use the ring, as rte_ring_reset is not.
    """
    value = start & U32_MASK
    store_relaxed(state, W_PROD_HEAD, value)
    store_relaxed(state, W_CONS_HEAD, value)
    store_relaxed(state, W_CONS_NEED_WAKEUP, 0)
    store_relaxed(state, W_PROD_NEED_WAKEUP, 0)
    store_release(state, W_CONS_TAIL, value)
    store_release(state, W_PROD_TAIL, value)


@njit("void(uint32[::1], int64, int64, int64)", **_JIT)
def init(state, size, capacity, flags):
    """Write a fresh header: counters at zero, no waiters."""
    state[W_SIZE] = size
    state[W_MASK] = size - 1
    state[W_CAPACITY] = capacity
    state[W_FLAGS] = flags
    state[W_VERSION] = LAYOUT_VERSION
    reset(state, 0)
    # Release: an attacher that load-acquires the magic sees the whole header.
    store_release(state, W_MAGIC, MAGIC)
