"""The need-wakeup handshake over a ring's state array, jitted.

A sleeper (a consumer waiting for handles, side ``WAIT_DATA``, or a
producer waiting for room, ``WAIT_ROOM``) owns entry i of its side's waiter
table and bit i of that side's need-wakeup mask. The handshake, as io_uring's
SQ_NEED_WAKEUP and AF_XDP's need-wakeup flag, is a store then a load on each
side, so it needs a full fence on each side (release/acquire alone loses
wake-ups: both loads may read the old value):

- sleeper (``arm_*``): ``fetch_or`` its bit (seq_cst), **seq_cst fence**,
  re-read the other side's tail; data (room) there: clear the bit, go on;
  none: sleep on its waker;
- the other side: publish its tail (the transfer's release store), then
  ``notify_*``: **seq_cst fence**, load the mask; non-zero: ``exchange`` it
  to 0 (one signal per sleep) and signal each taken waiter.

The two fences forbid the outcome where the sleeper reads the old tail and
the notifier reads the old mask, which is the lost wake-up.

Kept apart from ``_kernels.py`` so that editing this handshake does not
recompile (numba recompiles a whole module) the ring kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._atomics import (
    cas_relaxed,
    exchange,
    fence_seq_cst,
    fetch_and,
    fetch_or,
    load_acquire,
    load_relaxed,
    store_relaxed,
    store_release,
    wake_waiters,
)
from ._layout import (
    E_FD,
    E_PID,
    E_STIME,
    E_TOKEN,
    MAX_WAITERS,
    W_CAPACITY,
    W_CONS_HEAD,
    W_CONS_NEED_WAKEUP,
    W_CONS_TAIL,
    W_CONS_WAITERS,
    W_PROD_HEAD,
    W_PROD_NEED_WAKEUP,
    W_PROD_TAIL,
    W_PROD_WAITERS,
    W_WAITERS,
    WAITER_TABLES_WORDS,
    WAITER_WORDS,
)

_JIT = {"cache": True, "nogil": True}
U32_MASK = 0xFFFFFFFF
_FULL = np.int64(U32_MASK)
ERR_CORRUPT = -3  # pktflow.abc.ERR_CORRUPT: the tables' offset word is damaged
# Claiming a free entry is a CAS on the registration word; bounded, as every wait.
_CAS_ROUNDS = 4096


@njit(inline="always")
def _need_word(side):
    return W_CONS_NEED_WAKEUP if side == 0 else W_PROD_NEED_WAKEUP


@njit(inline="always")
def _entry(state, side, index):
    """Word offset of entry ``index`` of ``side``, or -1 when the tables' offset is corrupt."""
    base = np.int64(load_relaxed(state, W_WAITERS))
    if base < W_WAITERS or base + WAITER_TABLES_WORDS > state.shape[0]:
        return -1
    return base + (side * MAX_WAITERS + index) * WAITER_WORDS


@njit("void(uint32[::1], int64)", **_JIT)
def init_waiters(state, base):
    """No waiter registered or armed; the tables at ``base`` (before the ring is published)."""
    for w in range(base, base + WAITER_TABLES_WORDS):
        store_relaxed(state, w, 0)
    store_relaxed(state, W_CONS_NEED_WAKEUP, 0)
    store_relaxed(state, W_PROD_NEED_WAKEUP, 0)
    store_relaxed(state, W_CONS_WAITERS, 0)
    store_relaxed(state, W_PROD_WAITERS, 0)
    store_relaxed(state, W_WAITERS, base)


@njit("int64(uint32[::1], int64, int64, int64, int64, int64)", **_JIT)
def add_waiter(state, side, pid, stime, fd, token):
    """Claim a free entry of ``side`` and fill it; its index, -1 when full, or ERR_CORRUPT."""
    reg = W_CONS_WAITERS if side == 0 else W_PROD_WAITERS
    if _entry(state, side, 0) < 0:
        return ERR_CORRUPT
    for _ in range(_CAS_ROUNDS):
        # Acquire: pairs with the release of a freed entry (release_waiter).
        used = np.int64(load_acquire(state, reg))
        if used == _FULL:
            return -1
        index = 0
        while (used >> index) & 1:
            index += 1
        if cas_relaxed(state, reg, used, used | (np.int64(1) << index)):
            entry = _entry(state, side, index)
            store_relaxed(state, entry + E_STIME, stime)
            store_relaxed(state, entry + E_FD, fd)
            store_relaxed(state, entry + E_TOKEN, token)
            # Release, last: an entry with a pid is whole. Pairs with the
            # acquire of a reclaimer; the notifier is ordered by arm's fetch_or.
            store_release(state, entry + E_PID, pid)
            return index
    return -1


@njit("boolean(uint32[::1], int64, int64, int64)", **_JIT)
def release_waiter(state, side, index, token):
    """Free entry ``index`` if it still holds ``token``; False when someone else freed it."""
    entry = _entry(state, side, index)
    if entry < 0 or token == 0:
        return False
    # The token CAS elects one releaser: the owner removing it, or a reclaimer
    # that found its process dead.
    if not cas_relaxed(state, entry + E_TOKEN, token, 0):
        return False
    bit = np.int64(1) << index
    fetch_and(state, _need_word(side), _FULL ^ bit)
    store_relaxed(state, entry + E_PID, 0)
    store_relaxed(state, entry + E_STIME, 0)
    store_relaxed(state, entry + E_FD, 0)
    # seq_cst (a release): the cleared entry is visible before the bit frees it.
    reg = W_CONS_WAITERS if side == 0 else W_PROD_WAITERS
    fetch_and(state, reg, _FULL ^ bit)
    return True


@njit("boolean(uint32[::1], int64)", **_JIT)
def arm_data(state, index):
    """A consumer about to sleep: True when the ring is still empty (sleep now)."""
    bit = np.int64(1) << index
    # seq_cst RMW: the bit is set (and the entry released) before what follows.
    fetch_or(state, W_CONS_NEED_WAKEUP, bit)
    # Full fence, pairs with notify_data's: our bit store stays before the
    # prod_tail load below, as the producer's prod_tail store stays before
    # its mask load. One of us sees the other.
    fence_seq_cst()
    # Acquire: pairs with the producer's prod_tail store (release); relaxed
    # for cons_head, which only consumers move (nothing left to claim).
    prod_tail = np.int64(load_acquire(state, W_PROD_TAIL))
    cons_head = np.int64(load_relaxed(state, W_CONS_HEAD))
    if prod_tail == cons_head:
        return True
    fetch_and(state, W_CONS_NEED_WAKEUP, _FULL ^ bit)
    return False


@njit("boolean(uint32[::1], int64)", **_JIT)
def arm_room(state, index):
    """A producer about to sleep: True when the ring still has no room (sleep now)."""
    bit = np.int64(1) << index
    fetch_or(state, W_PROD_NEED_WAKEUP, bit)
    # Full fence, pairs with notify_room's (after the consumer's cons_tail store).
    fence_seq_cst()
    # Acquire: pairs with the consumer's cons_tail store (release).
    cons_tail = np.int64(load_acquire(state, W_CONS_TAIL))
    prod_head = np.int64(load_relaxed(state, W_PROD_HEAD))
    capacity = np.int64(state[W_CAPACITY])
    if (capacity + cons_tail - prod_head) & U32_MASK == 0:
        return True
    fetch_and(state, W_PROD_NEED_WAKEUP, _FULL ^ bit)
    return False


@njit("void(uint32[::1], int64, int64)", **_JIT)
def disarm(state, side, index):
    """Clear a waiter's bit (after it woke, or gave up)."""
    fetch_and(state, _need_word(side), _FULL ^ (np.int64(1) << index))


@njit(inline="always")
def _notify(state, side):
    # Full fence, pairs with arm's: the caller's tail store (release, in the
    # transfer just made) stays before the mask load below.
    fence_seq_cst()
    word = _need_word(side)
    # Relaxed: the fence orders it; while nobody sleeps the line stays shared.
    if load_relaxed(state, word) == 0:
        return 0
    # seq_cst exchange: each armed bit is taken by one notifier, so one sleep
    # gets one signal; also the acquire of the entries the waiters released.
    taken = np.int64(exchange(state, word, 0))
    if taken == 0:
        return 0
    return wake_waiters(state, side, taken)


@njit("int64(uint32[::1])", **_JIT)
def notify_data(state):
    """After an enqueue: wake the consumers asleep on the ring; how many were signalled."""
    return _notify(state, 0)


@njit("int64(uint32[::1])", **_JIT)
def notify_room(state):
    """After a dequeue: wake the producers waiting for room; how many were signalled."""
    return _notify(state, 1)


@njit("int64(uint32[::1], int64)", **_JIT)
def armed(state, side):
    """The side's need-wakeup mask now (diagnostics and tests)."""
    return np.int64(load_acquire(state, _need_word(side)))


@njit("int64(uint32[::1], int64)", **_JIT)
def registered(state, side):
    """The side's registration mask now (diagnostics and tests)."""
    return np.int64(load_acquire(state, W_CONS_WAITERS if side == 0 else W_PROD_WAITERS))
