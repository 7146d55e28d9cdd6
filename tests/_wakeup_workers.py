"""Bodies of the processes tests/test_wakeup.py spawns (importable by name, as spawn needs)."""

from __future__ import annotations

import os
import select
import time

import pktflow
from pktflow._wakeup import signals_sent
from pktflow._worker import Parent


def ping_pong(parent: Parent, rx_name: str, tx_name: str, rounds: int, first: bool,
              timeout_ms: int) -> None:  # fmt: skip
    """One side of a ping-pong over two SP/SC rings, always sleeping when its input is empty.

    ``first`` sends the first ball. Each value received is checked (the
    expected sequence) and sent back incremented. A lost wake-up shows as a
    poll that times out with the ring non-empty afterwards (a real timeout
    with nothing sent cannot happen: the peer always answers). Reports
    (timeouts, sleeps, signals sent, seconds).
    """
    rx, tx = pktflow.Ring.lookup(rx_name), pktflow.Ring.lookup(tx_name)
    waker = pktflow.Waker()
    index = rx.add_waiter(pktflow.WAIT_DATA, waker)
    assert index >= 0, "a hugepage ring must be able to sleep"
    wake_peer = tx.notifier(pktflow.WAIT_DATA)
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
        assert tx.enqueue(0)
        wake_peer()
    while True:
        value = rx.dequeue()
        if value is None:
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
        assert tx.enqueue(value + 1)
        wake_peer()
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
