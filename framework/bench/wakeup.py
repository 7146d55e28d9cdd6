"""How fast a sleeping lcore wakes, beside the machine's floor, and what waking costs.

``measure_wakeup`` runs the producer here (pinned to ``cpu_for(0)``) and a
spawned consumer peer (pinned to ``cpu_for(1)``) over one SP/SC ``hugepage``
ring, and measures, in one run:

- ``poll``: the latency from the producer's enqueue + ``notifier(WAIT_DATA)()``
  to the consumer, asleep in a blocking ``select.poll`` on its ``Waker``'s fd,
  returning from it;
- ``uvloop``: the same, the consumer awaiting the fd through a uvloop
  ``loop.add_reader`` (how the runtime sleeps);
- ``pipe_floor``: the machine's floor between the same two CPUs: a blocking
  ``os.read()`` on a pipe (a FIFO), no event loop;
- ``notify_idle_ns``: one notifier call when nobody sleeps (no system call);
- ``signals_per_1000_bursts``: wake-up system calls (both sides, from
  ``pktflow._wakeup.signals_sent``) per 1,000 bursts of 32 when a producer
  streams as fast as it can to a consumer that sleeps as soon as the ring is
  empty (and the producer sleeps when it is full): the need-wakeup flag's
  whole point is that this stays far below 1,000.

Each latency round waits until the consumer is armed, then 1 ms more (so it
is really asleep), then stamps CLOCK_MONOTONIC (the same clock in both
processes) and signals; the consumer stamps the moment its wait returns.

Usage::

    from pktflow.bench.wakeup import measure_wakeup
    result = measure_wakeup(rounds=2000)
    print(result["poll"]["p50_us"], result["pipe_floor"]["p50_us"])
"""

from __future__ import annotations

import asyncio
import os
import select
import tempfile
import time
import timeit
from typing import Any

import numpy as np

import pktflow
from pktflow._affinity import cpu_for, pinned
from pktflow._wakeup import signals_sent
from pktflow._worker import Parent, Worker

__all__ = ["measure_wakeup"]

_GAP_S = 0.001  # between rounds: the consumer is asleep, not about to be
_TIMEOUT_MS = 1000  # a wait this long is a lost wake-up, counted in "lost"
_BURST = 32
_SP_SC = pktflow.RING_F_SP_ENQ | pktflow.RING_F_SC_DEQ


def _now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _percentiles(latencies_ns: np.ndarray[Any, Any]) -> dict[str, float]:
    us = latencies_ns / 1000.0
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99))}


# -- the consumer peer ------------------------------------------------------------------


class _Sleeper:
    """The peer's ring, waker and waiter index."""

    def __init__(self, ring_name: str) -> None:
        self.ring = pktflow.Ring.lookup(ring_name)
        self.waker = pktflow.Waker()
        self.index = self.ring.add_waiter(pktflow.WAIT_DATA, self.waker)
        self.room = self.ring.notifier(pktflow.WAIT_ROOM)
        self.out = np.empty(self.ring.capacity, dtype=np.uint32)
        self.lost = 0

    def wait_poll(self) -> int:
        """Sleep in a blocking poll until data arrives; the time the wait returned."""
        poller = select.poll()
        poller.register(self.waker.fd, select.POLLIN)
        ring, index = self.ring, self.index
        while True:
            if ring.arm(pktflow.WAIT_DATA, index):
                if not poller.poll(_TIMEOUT_MS):
                    self.lost += 1
                woke = _now()
                self.waker.drain()
                ring.disarm(pktflow.WAIT_DATA, index)
            else:
                woke = _now()
            if ring.dequeue_burst(self.out):
                self.room()
                return woke

    def close(self) -> None:
        self.waker.close()
        self.ring.close()


def _latency_poll(sleeper: _Sleeper, rounds: int) -> np.ndarray[Any, Any]:
    woke = np.empty(rounds, dtype=np.int64)
    for i in range(rounds):
        woke[i] = sleeper.wait_poll()
    return woke


def _latency_uvloop(sleeper: _Sleeper, rounds: int) -> np.ndarray[Any, Any]:
    import uvloop

    woke = np.empty(rounds, dtype=np.int64)
    ring, index, waker = sleeper.ring, sleeper.index, sleeper.waker

    async def consume() -> None:
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []

        def readable() -> None:  # the reader stays registered, as the runtime's does
            if pending and not pending[0].done():
                pending[0].set_result(None)

        loop.add_reader(waker.fd, readable)
        try:
            for i in range(rounds):
                while True:
                    if ring.arm(pktflow.WAIT_DATA, index):
                        future = loop.create_future()
                        pending[:] = [future]
                        try:
                            await asyncio.wait_for(future, _TIMEOUT_MS / 1000)
                        except TimeoutError:
                            sleeper.lost += 1
                        woke[i] = _now()
                        waker.drain()
                        ring.disarm(pktflow.WAIT_DATA, index)
                    else:
                        woke[i] = _now()
                    if ring.dequeue_burst(sleeper.out):
                        sleeper.room()
                        break
        finally:
            loop.remove_reader(waker.fd)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(consume())
    return woke


def _latency_pipe(fifo: str, rounds: int) -> np.ndarray[Any, Any]:
    woke = np.empty(rounds, dtype=np.int64)
    fd = os.open(fifo, os.O_RDONLY)  # blocking: the floor has no event loop
    try:
        for i in range(rounds):
            os.read(fd, 8)
            woke[i] = _now()
    finally:
        os.close(fd)
    return woke


def _stream_consume(sleeper: _Sleeper, handles: int) -> int:
    """Take ``handles`` handles, sleeping whenever the ring is empty; signals sent."""
    before = signals_sent()
    ring, index, out, room = sleeper.ring, sleeper.index, sleeper.out, sleeper.room
    rx = ring.bind(out)
    poller = select.poll()
    poller.register(sleeper.waker.fd, select.POLLIN)
    got = 0
    while got < handles:
        k = rx.dequeue_burst(_BURST)
        if k:
            got += k
            room()
        elif ring.arm(pktflow.WAIT_DATA, index):
            if not poller.poll(_TIMEOUT_MS):
                sleeper.lost += 1
            sleeper.waker.drain()
            ring.disarm(pktflow.WAIT_DATA, index)
    return signals_sent() - before


def _peer(parent: Parent, ring_name: str, fifo: str) -> None:
    sleeper = _Sleeper(ring_name)
    parent.ready()
    try:
        while (job := parent.receive()) is not None:
            kind, count = job
            if kind == "poll":
                parent.send(_latency_poll(sleeper, count))
            elif kind == "uvloop":
                parent.send(_latency_uvloop(sleeper, count))
            elif kind == "pipe":
                parent.send(_latency_pipe(fifo, count))
            elif kind == "stream":
                parent.send(_stream_consume(sleeper, count))
            elif kind == "lost":
                parent.send(sleeper.lost)
    finally:
        sleeper.close()


# -- the producer (this process) -----------------------------------------------------------


def _wait_armed(state: np.ndarray[Any, Any], deadline: float) -> None:
    from pktflow.backends._numba import _wakeup_kernels as wk

    while wk.armed(state, pktflow.WAIT_DATA) == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the consumer never went to sleep")
        time.sleep(0.0001)


def _send_rounds(peer: Worker, ring: pktflow.Ring, kind: str, rounds: int) -> np.ndarray[Any, Any]:
    state = ring.state
    assert state is not None
    notify = ring.notifier(pktflow.WAIT_DATA)
    sent = np.empty(rounds, dtype=np.int64)
    peer.send((kind, rounds))
    for i in range(rounds):
        _wait_armed(state, time.monotonic() + 30)
        time.sleep(_GAP_S)
        sent[i] = _now()
        ring.enqueue(i)
        notify()
    woke: np.ndarray[Any, Any] = peer.receive(timeout=60 + rounds * 0.01)
    return woke - sent


def _pipe_rounds(peer: Worker, fifo: str, rounds: int) -> np.ndarray[Any, Any]:
    sent = np.empty(rounds, dtype=np.int64)
    peer.send(("pipe", rounds))
    fd = os.open(fifo, os.O_WRONLY)  # blocks until the peer opened its end
    try:
        for i in range(rounds):
            time.sleep(_GAP_S)  # the peer is back in its blocking read
            sent[i] = _now()
            os.write(fd, b"\0" * 8)
    finally:
        os.close(fd)
    woke: np.ndarray[Any, Any] = peer.receive(timeout=60 + rounds * 0.01)
    return woke - sent


def _stream(peer: Worker, ring: pktflow.Ring, bursts: int) -> tuple[int, float]:
    """Stream ``bursts`` bursts of 32; (signals by both sides, seconds)."""
    burst = np.arange(_BURST, dtype=np.uint32)
    tx = ring.bind(burst)
    notify = ring.notifier(pktflow.WAIT_DATA)
    total = bursts * _BURST
    with pktflow.Waker() as waker:
        index = ring.add_waiter(pktflow.WAIT_ROOM, waker)
        poller = select.poll()
        poller.register(waker.fd, select.POLLIN)
        before = signals_sent()
        peer.send(("stream", total))
        start = time.perf_counter()
        left = total
        while left:
            k = tx.enqueue_burst(min(left, _BURST))
            if k:
                left -= k
                notify()
            elif ring.arm(pktflow.WAIT_ROOM, index):
                poller.poll(_TIMEOUT_MS)
                waker.drain()
                ring.disarm(pktflow.WAIT_ROOM, index)
        mine = signals_sent() - before
        theirs: int = peer.receive(timeout=120)
        seconds = time.perf_counter() - start
        ring.remove_waiter(pktflow.WAIT_ROOM, index)
    return mine + theirs, seconds


def measure_wakeup(rounds: int = 2000) -> dict[str, Any]:
    """Wake-up latency (p50/p99 µs) by poll and by uvloop, beside a pipe's floor.

    Also the notifier's cost with nobody asleep, and wake-up system calls per
    1,000 bursts while streaming. ``lost`` counts waits that timed out (1 s):
    lost wake-ups; it must be 0.

    Usage: ``result = measure_wakeup(rounds=2000)``
    """
    if rounds < 1:
        raise pktflow.PktflowValueError(f"rounds must be at least 1, not {rounds!r}")
    producer_cpu, consumer_cpu = cpu_for(0), cpu_for(1)
    with tempfile.TemporaryDirectory(prefix="pktflow-wake-") as tmp:
        fifo = os.path.join(tmp, "floor")
        os.mkfifo(fifo)
        name = f"wakebench-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        with (
            pinned(producer_cpu),
            pktflow.Ring(name, 1024, _SP_SC, backend="hugepage") as ring,
            Worker(_peer, (ring.name, fifo), name="wake-peer", cpu=consumer_cpu) as peer,
        ):
            peer.wait_ready(timeout=120)
            poll = _send_rounds(peer, ring, "poll", rounds)
            loop = _send_rounds(peer, ring, "uvloop", rounds)
            floor = _pipe_rounds(peer, fifo, rounds)
            bursts = max(rounds * 10, 1000)
            signals, seconds = _stream(peer, ring, bursts)
            peer.send(("lost", 0))
            lost: int = peer.receive(timeout=30)
            notify = ring.notifier(pktflow.WAIT_DATA)
            before = signals_sent()
            calls = 100_000
            idle_s = min(timeit.repeat(notify, number=calls, repeat=5))
            assert signals_sent() == before, "a notifier signalled with nobody asleep"
    return {
        "rounds": rounds,
        "cpus": [producer_cpu, consumer_cpu],
        "poll": _percentiles(poll),
        "uvloop": _percentiles(loop),
        "pipe_floor": _percentiles(floor),
        "notify_idle_ns": idle_s / calls * 1e9,
        "stream_bursts": bursts,
        "stream_mpps": bursts * _BURST / seconds / 1e6,
        "signals_per_1000_bursts": signals / bursts * 1000,
        "lost": lost,
    }
