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

from pktflow.abc import ERR_ABORTED, ERR_CORRUPT, ERR_STALLED

from ._atomics import (
    cas_relaxed,
    cpu_relax,
    fence_acquire,
    fetch_add,
    load_acquire,
    load_relaxed,
    monotonic_ns,
    owner_token,
    sched_yield,
    store_relaxed,
    store_release,
)
from ._layout import (
    HOLE,
    LAYOUT_VERSION,
    MAGIC,
    R_COPIED,
    R_LEN,
    R_PID,
    R_START,
    R_STIME,
    RECORD_WORDS,
    W_ABORT,
    W_CAPACITY,
    W_CONS_HEAD,
    W_CONS_NEED_WAKEUP,
    W_CONS_REC,
    W_CONS_TAIL,
    W_FLAGS,
    W_HOLES,
    W_MAGIC,
    W_MASK,
    W_PROD_HEAD,
    W_PROD_NEED_WAKEUP,
    W_PROD_REC,
    W_PROD_TAIL,
    W_REPAIR,
    W_REPAIRED,
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
# Every wait is bounded in time: rounds of spins + sched_yield, checking the
# clock and the abort word once per round, for at most this long. The caller
# then gets ERR_STALLED and the facade repairs a dead owner's reservation or
# raises.
_WAIT_NS = 2_000_000
# A failed head CAS means another thread moved on (lock-free), but the retry
# loop is bounded too, and checks the abort word, as every wait does.
_CAS_ROUNDS = 4096
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)

# Signatures: the state array is C-contiguous; objs may be strided ("A").
_SIG_BATCH = "int64(uint32[::1], uint32[:], int64)"
_SIG_PUT_ONE = "int64(uint32[::1], int64)"
_SIG_GET_ONE = "int64(uint32[::1])"
_JIT = {"cache": True, "nogil": True}


@njit(inline="always")
def stalled_code(old_head, is_prod):
    """The ERR_STALLED code naming a pending publish of this side at ``old_head``."""
    return ERR_STALLED - (2 * old_head + (1 if is_prod else 0))


@njit(inline="always")
def _corrupt(state, size, rec_word, single):
    """Whether the header words would lead a transfer outside the state array.

    Read once per call from line 0, which the transfer reads anyway: a corrupt
    shared word gets ERR_CORRUPT, never a wild read or write.
    """
    capacity = np.int64(state[W_CAPACITY])
    length = state.shape[0]
    if size <= 0 or size & (size - 1) or capacity >= size or W_SLOTS + size > length:
        return True
    if not single:
        rec = np.int64(state[rec_word])
        if rec < W_SLOTS + size or rec + RECORD_WORDS * size > length:
            return True
    return False


@njit(inline="always")
def _move_head(state, head_word, opposite_tail_word, n, fixed, single, is_prod):
    """Reserve up to ``n`` slots on one side; returns (old_head, reserved or ERR_ABORTED)."""
    capacity = np.int64(state[W_CAPACITY])
    # Relaxed: our own head; the CAS below catches a stale value.
    old_head = np.int64(load_relaxed(state, head_word))
    retries = 0
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
        retries += 1
        if retries & 63 == 0:
            # Relaxed: the abort word only asks us to give up; nothing is published with it.
            if load_relaxed(state, W_ABORT) != 0:
                return old_head, ERR_ABORTED
            if retries >= _CAS_ROUNDS:
                return old_head, 0  # contended: "nothing moved now", as a burst may answer
            sched_yield()
        old_head = np.int64(load_relaxed(state, head_word))


@njit(inline="always")
def _record(state, rec, old_head, k):
    """Write the reservation record of ``[old_head, old_head + k)`` at word ``rec``."""
    token = owner_token()
    # Relaxed: published by the release store of R_START below.
    store_relaxed(state, rec + R_LEN, k)
    store_relaxed(state, rec + R_PID, token & _LOW32)
    store_relaxed(state, rec + R_STIME, token >> _SHIFT32)
    # Release: pairs with the repairer's load_acquire of R_START; a record that
    # names this lap's head carries this lap's length and owner.
    store_release(state, rec + R_START, old_head)


@njit(inline="always")
def _wait_tail(state, tail_word, old_head):
    """Wait (bounded) until every earlier reservation of this side has published."""
    spins = 0
    deadline = np.int64(0)
    # Relaxed: we only wait for equality; the caller's release orders its copy.
    while np.int64(load_relaxed(state, tail_word)) != old_head:
        cpu_relax()
        spins += 1
        if spins == _SPINS_BEFORE_YIELD:
            spins = 0
            now = monotonic_ns()  # read only once a wait has begun: nothing per burst
            if deadline == 0:
                deadline = now + _WAIT_NS
            # Relaxed: see _move_head.
            if now >= deadline or load_relaxed(state, W_ABORT) != 0:
                return False
            sched_yield()
    return True


@njit(inline="always")
def _update_tail(state, tail_word, old_head, new_tail, single):
    """Publish our slots once every earlier reservation of this side has; False: stalled."""
    if not single and not _wait_tail(state, tail_word, old_head):
        return False
    # Release: our slot writes (enqueue) or reads (dequeue) happen before the
    # other side's load_acquire of this tail sees the new value.
    store_release(state, tail_word, new_tail)
    return True


@njit(inline="always")
def _enqueue(state, objs, start, n, fixed, single):
    """Move ``objs[start:start + n]`` in (offsets, not a slice: no refcount traffic)."""
    if n < 0 or start + n > objs.shape[0]:
        return ERR_COUNT
    size = np.int64(state[W_SIZE])
    if _corrupt(state, size, W_PROD_REC, single):
        return ERR_CORRUPT
    old_head, k = _move_head(state, W_PROD_HEAD, W_CONS_TAIL, n, fixed, single, True)
    if k <= 0:
        return k
    first = np.int64(old_head & (size - 1))
    rec = np.int64(state[W_PROD_REC]) + first * RECORD_WORDS
    if not single:
        _record(state, rec, old_head, k)
    run = min(k, size - first)
    for i in range(run):
        state[W_SLOTS + first + i] = objs[start + i]
    for i in range(run, k):
        state[W_SLOTS + i - run] = objs[start + i]
    if not single:
        # Release: pairs with the repairer's load_acquire of R_LEN: a record
        # marked copied has every slot written, so a repair may publish them.
        store_release(state, rec + R_LEN, k | R_COPIED)
    if not _update_tail(state, W_PROD_TAIL, old_head, (old_head + k) & U32_MASK, single):
        return stalled_code(old_head, True)
    return k


@njit(inline="always")
def drop_holes(state, out, start, k):
    """Close up the HOLE values a repair left in ``out[start:start + k]``; returns the rest."""
    kept = 0
    for i in range(k):
        value = out[start + i]
        if value != HOLE:
            out[start + kept] = value
            kept += 1
    for i in range(kept, k):
        out[start + i] = HOLE
    if kept != k:
        # Sequentially consistent add (a subtraction modulo 2**32); pairs with
        # nothing: the counter is only a hint that holes may be about.
        fetch_add(state, W_HOLES, (1 << 32) - (k - kept))
    return kept


@njit(inline="always")
def _dequeue(state, out, start, n, fixed, single):
    """Move up to ``n`` handles out into ``out[start:]``."""
    if n < 0 or start + n > out.shape[0]:
        return ERR_COUNT
    size = np.int64(state[W_SIZE])
    if _corrupt(state, size, W_CONS_REC, single):
        return ERR_CORRUPT
    old_head, k = _move_head(state, W_CONS_HEAD, W_PROD_TAIL, n, fixed, single, False)
    if k <= 0:
        return k
    first = np.int64(old_head & (size - 1))
    if not single:
        _record(state, np.int64(state[W_CONS_REC]) + first * RECORD_WORDS, old_head, k)
    run = min(k, size - first)
    for i in range(run):
        out[start + i] = state[W_SLOTS + first + i]
    for i in range(run, k):
        out[start + i] = state[W_SLOTS + i - run]
    got = k
    # Relaxed: a repair raises the count before its release of prod_tail,
    # which our move_head load-acquired.
    if load_relaxed(state, W_HOLES) != 0:
        got = drop_holes(state, out, start, k)
    if not _update_tail(state, W_CONS_TAIL, old_head, (old_head + k) & U32_MASK, single):
        return stalled_code(old_head, False)
    return got


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
    """Enqueue one handle (multi-producer); 1, 0 when the ring is full, or an ERR_* code."""
    one = np.empty(1, np.uint32)
    one[0] = handle
    return _enqueue(state, one, 0, 1, True, False)


@njit(_SIG_PUT_ONE, **_JIT)
def enqueue_one_sp(state, handle):
    """Enqueue one handle (single producer); 1, 0 when the ring is full, or an ERR_* code."""
    one = np.empty(1, np.uint32)
    one[0] = handle
    return _enqueue(state, one, 0, 1, True, True)


@njit(_SIG_GET_ONE, **_JIT)
def dequeue_one_mc(state):
    """Dequeue one handle (multi-consumer); -1 when the ring is empty, or an ERR_* code.

    On ERR_STALLED the handle is still in its slot (``Ring.complete`` reads it).
    """
    one = np.empty(1, np.uint32)
    got = _dequeue(state, one, 0, 1, True, False)
    if got == 0:
        return -1
    return np.int64(one[0]) if got > 0 else got


@njit(_SIG_GET_ONE, **_JIT)
def dequeue_one_sc(state):
    """Dequeue one handle (single consumer); -1 when the ring is empty, or an ERR_* code."""
    one = np.empty(1, np.uint32)
    got = _dequeue(state, one, 0, 1, True, True)
    if got == 0:
        return -1
    return np.int64(one[0]) if got > 0 else got


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
    store_relaxed(state, W_HOLES, 0)
    store_relaxed(state, W_REPAIR, 0)
    # Records name no lap: record p gets a start that no head landing on p has.
    size = np.int64(state[W_SIZE])
    for rec_word in (W_PROD_REC, W_CONS_REC):
        base = np.int64(state[rec_word])
        if base != 0 and base + RECORD_WORDS * size <= state.shape[0]:
            for p in range(size):
                store_relaxed(state, base + p * RECORD_WORDS + R_START, p + 1)
    store_release(state, W_CONS_TAIL, value)
    store_release(state, W_PROD_TAIL, value)


@njit("void(uint32[::1], int64, int64, int64, int64, int64)", **_JIT)
def init(state, size, capacity, flags, prod_rec, cons_rec):
    """Write a fresh header: counters at zero, records naming no lap.

    The waiter tables are written next by ``_wakeup_kernels.init_waiters``.
    """
    state[W_SIZE] = size
    state[W_MASK] = size - 1
    state[W_CAPACITY] = capacity
    state[W_FLAGS] = flags
    state[W_PROD_REC] = prod_rec
    state[W_CONS_REC] = cons_rec
    state[W_ABORT] = 0
    state[W_REPAIRED] = 0
    state[W_VERSION] = LAYOUT_VERSION
    reset(state, 0)
    # Release: an attacher that load-acquires the magic sees the whole header.
    store_release(state, W_MAGIC, MAGIC)


@njit("int64(uint32[::1], boolean, int64)", **_JIT)
def finish(state, is_prod, old_head):
    """Publish a reservation that returned ERR_STALLED: wait (bounded) for its turn again.

    Returns the reserved count, the same ERR_STALLED code when still stalled,
    or ERR_CORRUPT when the record no longer names the reservation.
    """
    size = np.int64(state[W_SIZE])
    rec_word = W_PROD_REC if is_prod else W_CONS_REC
    tail_word = W_PROD_TAIL if is_prod else W_CONS_TAIL
    if _corrupt(state, size, rec_word, False):
        return ERR_CORRUPT
    rec = np.int64(state[rec_word]) + (old_head & (size - 1)) * RECORD_WORDS
    # Acquire: pairs with our own release in _record (same thread: plain order).
    if np.int64(load_acquire(state, rec + R_START)) != old_head:
        return ERR_CORRUPT
    k = np.int64(load_relaxed(state, rec + R_LEN)) & (R_COPIED - 1)
    if not _wait_tail(state, tail_word, old_head):
        return stalled_code(old_head, is_prod)
    # Release: as in _update_tail.
    store_release(state, tail_word, (old_head + k) & U32_MASK)
    return k


@njit("int64(uint32[::1], boolean, int64, int64, boolean)", **_JIT)
def repair(state, is_prod, tail, k, fill):
    """Publish past a dead owner's reservation ``[tail, tail + k)`` of one side.

    ``fill``: the owner had not finished copying its handles in, so its slots
    become HOLE, which consumers drop. One repairer at a time (the W_REPAIR
    word holds its pid); returns k, or 0 when someone else repairs or the tail
    has moved (nothing to do).
    """
    size = np.int64(state[W_SIZE])
    if size <= 0 or size & (size - 1) or k <= 0 or k > size or W_SLOTS + size > state.shape[0]:
        return ERR_CORRUPT
    me = owner_token() & _LOW32
    if not cas_relaxed(state, W_REPAIR, 0, me):
        return 0
    # Acquire fence: the tail load below stays after the CAS that made us the repairer.
    fence_acquire()
    tail_word = W_PROD_TAIL if is_prod else W_CONS_TAIL
    done = 0
    if np.int64(load_acquire(state, tail_word)) == tail:
        if fill:
            for i in range(k):
                state[W_SLOTS + ((tail + i) & (size - 1))] = HOLE
            # Sequentially consistent: raised before the tail release below,
            # which a consumer load-acquires before it reads this counter.
            fetch_add(state, W_HOLES, k)
        fetch_add(state, W_REPAIRED, 1)
        # Release: the holes (or the dead owner's complete copy) are visible to
        # whoever load-acquires the new tail.
        store_release(state, tail_word, (tail + k) & U32_MASK)
        done = k
    # Release: the repair is over; pairs with the next repairer's CAS + fence.
    store_release(state, W_REPAIR, 0)
    return done


@njit("boolean(uint32[::1], int64, int64, int64)", **_JIT)
def cas_word(state, word, expected, desired):
    """A relaxed compare-and-swap of one header word, for the repair path in Python."""
    return cas_relaxed(state, word, expected, desired)


@njit("void(uint32[::1], int64, int64)", **_JIT)
def store_word(state, word, value):
    """Store one header word with release (the abort word: waiters load it relaxed)."""
    store_release(state, word, value)
