"""Bodies of the processes tests/test_wakeup.py spawns (importable by name, as spawn needs)."""

from __future__ import annotations

import os
import select
import time
from typing import Any

import numpy as np

import pktflow
from pktflow._wakeup import signals_sent
from pktflow._worker import Parent

BLOCK = 1000  # round trips per phase of ping_pong


def _jitted_send() -> Any:
    """``send(state, one)``: enqueue ``one[0]`` (SP) and notify, in one jitted call.

    No Python between the tail store and the mask load: the narrowest window,
    where a missing fence shows up most (jitted stage code does the same).
    """
    from numba import njit

    from pktflow.backends._numba._kernels import enqueue_burst_sp
    from pktflow.backends._numba._wakeup_kernels import notify_data

    @njit("int64(uint32[::1], uint32[::1])", nogil=True)  # uncached: no stale kernels
    def send(state: Any, one: Any) -> int:
        # A burst over a preallocated array: the one-handle kernels allocate,
        # and freeing that (an atomic refcount: a locked op) would fence for us.
        if enqueue_burst_sp(state, one, 1) != 1:
            return -1
        return notify_data(state)

    return send


def ping_pong(parent: Parent, rx_name: str, tx_name: str, rounds: int, first: bool,
              timeout_ms: int) -> None:  # fmt: skip
    """One side of a ping-pong over two SP/SC rings, sleeping through arm + poll when idle.

    ``first`` sends the first ball. Each value received is checked (the
    expected sequence) and sent back incremented, enqueued and notified in
    one jitted call. Rounds come in blocks of ``BLOCK``, in turn: both sides
    sleep whenever their input is empty; only the first side sleeps (the
    other busy-polls, so its reply lands while the sleeper is arming: the
    race window); only the other side sleeps. A lost wake-up shows as a poll
    that times out (the peer always answers, so nothing else times out).
    Reports (timeouts, sleeps, signals sent, seconds).
    """
    rx, tx = pktflow.Ring.lookup(rx_name), pktflow.Ring.lookup(tx_name)
    waker = pktflow.Waker()
    index = rx.add_waiter(pktflow.WAIT_DATA, waker)
    assert index >= 0, "a hugepage ring must be able to sleep"
    send, state, one = _jitted_send(), tx.state, np.zeros(1, np.uint32)
    poller = select.poll()
    poller.register(waker.fd, select.POLLIN)
    parent.ready()
    if parent.receive() != "go":
        return
    timeouts = sleeps = 0
    before = signals_sent()
    start = time.perf_counter()
    last = 2 * rounds - 1  # the first side sends the even values, the other the odd ones
    expected = 1 if first else 0
    if first:
        assert send(state, one) >= 0
    while True:
        value = rx.dequeue()
        if value is None:
            phase = (expected // 2 // BLOCK) % 3
            if phase == (2 if first else 1):
                continue  # this side busy-polls in this block
            if rx.arm(pktflow.WAIT_DATA, index):
                sleeps += 1
                if not poller.poll(timeout_ms):
                    timeouts += 1  # a lost wake-up: the producer saw no bit
                waker.drain()
            rx.disarm(pktflow.WAIT_DATA, index)
            continue
        if value != expected:
            raise AssertionError(f"got {value}, expected {expected}")
        if value == last:
            break
        one[0] = value + 1
        assert send(state, one) >= 0
        if value + 1 == last:
            break
        expected = value + 2
    elapsed = time.perf_counter() - start
    parent.send((timeouts, sleeps, signals_sent() - before, elapsed))
    parent.receive()  # hold the rings until the parent has both reports
    waker.close()
    rx.close()
    tx.close()


def register_and_sleep(parent: Parent, ring_name: str) -> None:
    """Register on both sides, arm WAIT_DATA, report (pid, index, armed); sleep until killed."""
    ring = pktflow.Ring.lookup(ring_name)
    waker = pktflow.Waker()
    index = ring.add_waiter(pktflow.WAIT_DATA, waker)
    armed = ring.arm(pktflow.WAIT_DATA, index)
    room = ring.add_waiter(pktflow.WAIT_ROOM, waker)
    assert not ring.arm(pktflow.WAIT_ROOM, room), "an empty ring has room"
    parent.ready()
    parent.send((os.getpid(), index, armed))
    while True:
        time.sleep(60)


def sleep_until_woken(parent: Parent, ring_name: str, timeout_s: float) -> None:
    """Register, arm, report the index, sleep on the waker; report (woken, signals drained)."""
    ring = pktflow.Ring.lookup(ring_name)
    with pktflow.Waker() as waker:
        index = ring.add_waiter(pktflow.WAIT_DATA, waker)
        assert ring.arm(pktflow.WAIT_DATA, index), "the ring was not empty"
        parent.ready()
        parent.send(index)
        woken = bool(select.select([waker.fd], [], [], timeout_s)[0])
        parent.send((woken, waker.drain()))
        parent.receive()
    ring.close()


def run_ping_pong(rounds: int, timeout_ms: int = 1000) -> list[tuple[int, int, int, float]]:
    """Ping-pong ``rounds`` round trips between two pinned spawned workers over hugepage rings.

    Returns each side's (timeouts, sleeps, signals sent, seconds).
    """
    from pktflow._affinity import cpu_for
    from pktflow._worker import Worker
    from pktflow.abc import RING_F_SC_DEQ, RING_F_SP_ENQ
    from pktflow.testing import unique_name

    flags = RING_F_SP_ENQ | RING_F_SC_DEQ
    a2b = pktflow.Ring(unique_name("ping"), 64, flags, backend="hugepage")
    b2a = pktflow.Ring(unique_name("pong"), 64, flags, backend="hugepage")
    try:
        with (
            Worker(ping_pong, (b2a.name, a2b.name, rounds, True, timeout_ms), name="ping",
                   cpu=cpu_for(0)) as ping,
            Worker(ping_pong, (a2b.name, b2a.name, rounds, False, timeout_ms), name="pong",
                   cpu=cpu_for(1)) as pong,
        ):  # fmt: skip
            for worker in (ping, pong):
                worker.wait_ready(timeout=120)
            pong.send("go")
            ping.send("go")
            budget = 60 + rounds * timeout_ms / 1000 / 50
            reports = [ping.receive(timeout=budget), pong.receive(timeout=budget)]
            for worker in (ping, pong):
                worker.send("done")
        return reports
    finally:
        a2b.close()
        b2a.close()
