"""The lost-wake-up litmus test over the real kernels: two threads in jitted loops.

Round i: the consumer thread says "go", waits a random few spins and arms
(``arm_data``: set its bit, fence, re-read prod_tail); the producer thread
sees "go", waits a random few spins, enqueues (its prod_tail store) and
notifies (``notify_data``: fence, load the bit). Both run nogil, pinned to
two CPUs, so the two store-then-load sequences overlap in time. The
outcome the fences forbid: the consumer saw the ring empty (it would sleep)
and the producer saw no bit (it signalled nobody): a lost wake-up.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from numba import njit

from pktflow.backends._numba._atomics import (
    cpu_relax,
    load_acquire,
    monotonic_ns,
    sched_yield,
    store_release,
)
from pktflow.backends._numba._kernels import dequeue_one_sc, enqueue_burst_sp
from pktflow.backends._numba._wakeup_kernels import arm_data, disarm, notify_data

_GO = 0  # round i may start: i + 1 (the consumer writes it)
_DONE = 16  # the producer finished round i: i + 1 (another cache line)
_STOP = 32  # non-zero: the time is up, the producer returns
# Spins before yielding the CPU: on a loaded machine a preempted peer must run.
_SPINS = 1024


@njit(nogil=True)  # not cached: a cached copy would keep stale kernels inlined
def _wait_for(ctl, word, value):  # type: ignore[no-untyped-def]
    """Spin (then yield) until ``ctl[word] == value``; False once the run is stopped."""
    spins = 0
    # Acquire: pairs with the other thread's release of the word.
    while load_acquire(ctl, word) != value:
        if load_acquire(ctl, _STOP) != 0:
            return False
        spins += 1
        if spins >= _SPINS:
            spins = 0
            sched_yield()
        else:
            cpu_relax()
    return True


@njit(nogil=True)
def _producer(state, ctl, delays, saw):  # type: ignore[no-untyped-def]
    # A burst call over a preallocated array: the one-handle kernels allocate,
    # and freeing that (an atomic refcount, a locked op) would fence for us.
    one = np.zeros(1, np.uint32)
    for i in range(saw.shape[0]):
        if not _wait_for(ctl, _GO, i + 1):
            return i
        for _ in range(delays[i]):
            cpu_relax()
        one[0] = i
        enqueue_burst_sp(state, one, 1)
        saw[i] = notify_data(state)
        store_release(ctl, _DONE, i + 1)  # release: pairs with the consumer's wait
    return saw.shape[0]


@njit(nogil=True)
def _consumer(state, ctl, delays, armed, deadline_ns):  # type: ignore[no-untyped-def]
    for i in range(armed.shape[0]):
        if monotonic_ns() > deadline_ns:
            store_release(ctl, _STOP, 1)
            return i
        store_release(ctl, _GO, i + 1)
        for _ in range(delays[i]):
            cpu_relax()
        armed[i] = arm_data(state, 0)
        _wait_for(ctl, _DONE, i + 1)  # the producer finishes every round it started
        disarm(state, 0, 0)
        if dequeue_one_sc(state) != i:
            return -1
    return armed.shape[0]


def litmus(
    state: np.ndarray, rounds: int, cpus: tuple[int, int], seconds: float = 10.0, seed: int = 1
) -> tuple[int, int, int]:
    """Run up to ``rounds`` rounds (at most ``seconds``) on an SP/SC ring whose waiter 0 is set.

    Returns (lost wake-ups, rounds where the consumer would have slept, rounds run).
    """
    rng = np.random.default_rng(seed)
    delays = [rng.integers(0, 48, size=rounds).astype(np.int64) for _ in range(2)]
    ctl = np.zeros(48, dtype=np.uint32)
    saw = np.zeros(rounds, dtype=np.int64)
    armed = np.zeros(rounds, dtype=np.bool_)
    results: list[int] = [0, 0]
    deadline = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + int(seconds * 1e9)

    def run(which: int) -> None:
        os.sched_setaffinity(0, {cpus[which]})
        if which == 0:
            results[0] = _producer(state, ctl, delays[0], saw)
        else:
            results[1] = _consumer(state, ctl, delays[1], armed, deadline)

    threads = [threading.Thread(target=run, args=(w,)) for w in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = results[1]
    assert done >= 0 and results[0] == done, f"the litmus loops failed: {results}"
    lost = int(np.count_nonzero(armed[:done] & (saw[:done] == 0)))
    return lost, int(np.count_nonzero(armed[:done])), done
