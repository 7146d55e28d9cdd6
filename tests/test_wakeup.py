"""Sleeping on a ring (issue 8, part 2): Wakers, the need-wakeup handshake, lost wake-ups.

The per-backend contract (arm, notifier, both sides, errors, close) is in the
public conformance suite (``pktflow.testing.RingConformance``), run for every
backend by tests/test_ring_conformance.py. Here: the Waker itself, what only
the shared rings do (another process's waiter, reached through pidfd_getfd
or the datagram socket; a dead one skipped and reclaimed; a full table), the
default of a backend that implements nothing, the layout, the lost-wake-up
race between two processes, and the bench's measurement.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import timeit

import numpy as np
import pytest
from _wakeup_workers import register_and_sleep, run_ping_pong, sleep_until_woken

import pktflow
from pktflow import _wakeup
from pktflow._wakeup import signals_sent
from pktflow._worker import Worker
from pktflow.abc import Ring as RingImpl
from pktflow.abc import U32Array
from pktflow.backends._numba import _layout as L
from pktflow.testing import unique_name

pytestmark = pytest.mark.timeout(300)

BACKENDS = ["pure", "numba", "hugepage"]


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _abstract_names() -> str:
    with open("/proc/net/unix") as f:
        return f.read()


# -- the Waker -------------------------------------------------------------------------


def test_waker_is_readable_until_drained_and_counts_its_signals() -> None:
    before = signals_sent()
    with pktflow.Waker() as waker:
        assert not _readable(waker.fd)
        waker.signal()
        waker.signal()
        assert _readable(waker.fd)
        assert waker.drain() == 2
        assert not _readable(waker.fd)
        assert waker.drain() == 0, "a drained waker had more"
        assert signals_sent() - before == 2
        name = f"@pktflow-wake-{os.getpid()}-{waker.eventfd}"
        assert name in _abstract_names(), "the fallback socket is not bound"
        fds = {waker.fd, waker.eventfd}
    assert waker.closed and waker.fd == -1
    assert name not in _abstract_names(), "the socket name outlived the waker"
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    waker.close()  # idempotent
    waker.signal()  # a no-op once closed
    assert waker.drain() == 0


def test_waker_wakes_on_a_datagram_too() -> None:
    with pktflow.Waker() as waker:
        assert _wakeup._send_datagram(os.getpid(), waker.eventfd)
        assert _readable(waker.fd)
        assert waker.drain() == 1 and not _readable(waker.fd)
    assert not _wakeup._send_datagram(os.getpid(), waker.eventfd), "sent to a closed waker"


def test_signal_waiter_reaches_a_waker_of_this_process_by_token() -> None:
    me, stime = os.getpid(), _wakeup.start_time(os.getpid())
    with pktflow.Waker() as waker:
        assert _wakeup.signal_waiter(me, stime, waker.eventfd, waker.token)
        assert waker.drain() == 1
        assert not _wakeup.signal_waiter(me, stime, waker.eventfd, waker.token ^ 2)
    assert not _wakeup.signal_waiter(me, stime, waker.eventfd, waker.token), "a closed waker"


# -- a backend that implements none of it -------------------------------------------------


class _Plain(RingImpl):
    """The abstract methods only (over a pure ring): the wake-up defaults of pktflow.abc."""

    def __init__(self) -> None:
        from pktflow.backends._pure import PureRing

        self._ring = PureRing("plain", 16, 15, 0)
        self.name, self.size, self.capacity, self.flags = "plain", 16, 15, 0

    def enqueue_bulk(self, objs: U32Array, n: int) -> int:
        return self._ring.enqueue_bulk(objs, n)

    def enqueue_burst(self, objs: U32Array, n: int) -> int:
        return self._ring.enqueue_burst(objs, n)

    def dequeue_bulk(self, out: U32Array, n: int) -> int:
        return self._ring.dequeue_bulk(out, n)

    def dequeue_burst(self, out: U32Array, n: int) -> int:
        return self._ring.dequeue_burst(out, n)

    def enqueue(self, handle: int) -> bool:
        return self._ring.enqueue(handle)

    def dequeue(self) -> int | None:
        return self._ring.dequeue()

    def count(self) -> int:
        return self._ring.count()

    def reset(self, counter_start: int = 0) -> None:
        self._ring.reset(counter_start)

    def close(self, unlink: bool) -> None:
        pass


def test_a_backend_that_implements_nothing_polls_instead_of_sleeping() -> None:
    ring = pktflow.Ring._attached(_Plain(), "plain", owns_impl=True)
    with pktflow.Waker() as waker:
        for side in (pktflow.WAIT_DATA, pktflow.WAIT_ROOM):
            index = ring.add_waiter(side, waker)
            assert index == -1, "the default add_waiter means: cannot sleep, poll"
            assert ring.arm(side, index) is False
            assert ring.impl.arm(side, 0) is False  # the ABC default, whatever the index
            ring.disarm(side, index)
            ring.remove_waiter(side, index)
            before = signals_sent()
            assert ring.enqueue(1) and ring.notifier(side)() == 0
            assert ring.dequeue() == 1
            assert signals_sent() == before and not _readable(waker.fd)
        with pytest.raises(pktflow.PktflowValueError):
            ring.arm(3, -1)
        with pytest.raises(pktflow.PktflowValueError):
            ring.arm(pktflow.WAIT_DATA, -2)
    notify = ring.notifier(pktflow.WAIT_DATA)
    ring.close()
    assert notify() == pktflow.abc.ERR_CLOSED
    with pytest.raises(pktflow.ClosedError):
        ring.arm(pktflow.WAIT_DATA, -1)


# -- the jitted rings: layout and tables --------------------------------------------------


def test_layout_version_3_puts_the_waiter_tables_after_the_records() -> None:
    assert L.LAYOUT_VERSION == 3
    assert L.W_SLOTS == L.HEADER_WORDS == 128, "the slots moved: cached inlined kernels go stale"
    assert L.MAX_WAITERS == 32 and L.WAITER_WORDS == 4
    for flags, sides in ((0, 2), (1, 1), (2, 1), (3, 0)):
        tables = L.waiter_tables(64, flags)
        assert tables == L.W_SLOTS + 64 + sides * L.RECORD_WORDS * 64
        assert L.state_words(64, flags) == tables + 2 * 32 * 4
    with pktflow.Ring(unique_name("layout"), 64, backend="hugepage") as ring:
        state = ring.state
        assert state is not None
        assert int(state[L.W_VERSION]) == 3
        assert int(state[L.W_WAITERS]) == L.waiter_tables(64, 0)
        assert state.shape[0] >= L.state_words(64, 0)


@pytest.mark.parametrize(("word", "value", "message"), [
    (L.W_WAITERS, 12, "waiter-table offset"),
    (L.W_VERSION, 2, "ring layout 2, expected 3"),
])  # fmt: skip
def test_lookup_rejects_a_ring_of_another_layout(word: int, value: int, message: str) -> None:
    with pktflow.Ring(unique_name("strict"), 64, backend="hugepage") as ring:
        state = ring.state
        assert state is not None
        good = int(state[word])
        state[word] = value
        try:
            with pytest.raises(pktflow.PktflowValueError, match=message):
                # The backend's lookup, as another process's (this one's facade
                # would hand back its creator's ring).
                pktflow.get_backend("hugepage").lookup_ring(ring.name)
        finally:
            state[word] = good


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_full_table_raises_ring_error_and_changes_nothing(backend: str) -> None:
    with pktflow.Ring(unique_name("full"), 16, backend=backend) as ring:
        wakers = [pktflow.Waker() for _ in range(33)]
        try:
            indexes = [ring.add_waiter(pktflow.WAIT_DATA, w) for w in wakers[:32]]
            assert sorted(indexes) == list(range(32))
            with pytest.raises(pktflow.RingError, match="32 waiter entries"):
                ring.add_waiter(pktflow.WAIT_DATA, wakers[32])
            assert ring.add_waiter(pktflow.WAIT_ROOM, wakers[32]) == 0, "the sides share a table"
            for index in indexes:
                assert ring.arm(pktflow.WAIT_DATA, index)
            ring.enqueue(1)
            assert ring.notifier(pktflow.WAIT_DATA)() == 32
            assert all(w.drain() == 1 for w in wakers[:32])
            wakers[5].close()  # frees its entry
            assert ring.add_waiter(pktflow.WAIT_DATA, wakers[32]) == indexes[5]
        finally:
            for waker in wakers:
                waker.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_notifier_with_nobody_asleep_costs_one_call(backend: str) -> None:
    with pktflow.Ring(unique_name("cost"), 16, backend=backend) as ring, pktflow.Waker() as waker:
        ring.add_waiter(pktflow.WAIT_DATA, waker)  # registered, not armed
        notify = ring.notifier(pktflow.WAIT_DATA)
        before = signals_sent()
        calls = 100_000
        seconds = min(timeit.repeat(notify, number=calls, repeat=3))
        assert signals_sent() == before
        assert not _readable(waker.fd)
        per_call_ns = seconds / calls * 1e9
        print(f"{backend}: notifier with nobody asleep {per_call_ns:.0f} ns")
        assert per_call_ns < 3000, f"{per_call_ns:.0f} ns per notifier call"


# -- other processes ----------------------------------------------------------------------


def _wake_a_sleeping_child() -> tuple[bool, int]:
    with pktflow.Ring(unique_name("xwake"), 64, backend="hugepage") as ring:
        with Worker(sleep_until_woken, (ring.name, 30.0), name="sleeper") as child:
            child.wait_ready(timeout=120)
            child.receive(timeout=10)  # its index: armed by now
            before = signals_sent()
            assert ring.enqueue(9)
            assert ring.notifier(pktflow.WAIT_DATA)() == 1
            assert signals_sent() - before == 1
            woken, drained = child.receive(timeout=30)
            child.send("done")
        return woken, drained


def test_a_sleeper_in_another_process_is_woken_through_pidfd_getfd() -> None:
    woken, drained = _wake_a_sleeping_child()
    assert woken and drained == 1
    assert any(copy >= 0 for copy in _wakeup._remote.values()), "no eventfd copy was cached"


def test_a_refused_pidfd_getfd_falls_back_to_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(pid: int, fd: int) -> int:
        raise OSError(errno.EPERM, "refused (the test says so)")

    monkeypatch.setattr(_wakeup, "_pidfd_getfd", refused)
    cached = dict(_wakeup._remote)
    woken, drained = _wake_a_sleeping_child()
    assert woken and drained == 1
    fresh = {k: v for k, v in _wakeup._remote.items() if k not in cached}
    assert list(fresh.values()) == [-1], "the socket path was not the one taken"


def test_a_dead_processes_waiter_is_skipped_and_reclaimed() -> None:
    from pktflow.backends._numba import _wakeup_kernels as wk

    with pktflow.Ring(unique_name("dead"), 64, backend="hugepage") as ring:
        state = ring.state
        assert state is not None
        child = Worker(register_and_sleep, (ring.name,), name="doomed")
        try:
            child.wait_ready(timeout=120)
            pid, index, armed = child.receive(timeout=10)
            assert armed and wk.armed(state, 0) == 1 << index
            os.kill(pid, signal.SIGKILL)
        finally:
            child.close()
        assert child.exitcode == -signal.SIGKILL
        assert wk.registered(state, 0) == 1 << index, "registered until someone notices"
        before = signals_sent()
        assert ring.enqueue(1)
        assert ring.notifier(pktflow.WAIT_DATA)() == 0, "a dead waiter counted as woken"
        assert signals_sent() == before
        assert wk.registered(state, 0) == 0 and wk.armed(state, 0) == 0, "entry not reclaimed"
        # Its WAIT_ROOM entry (registered, never armed) is reclaimed when the table fills.
        assert wk.registered(state, 1) != 0
        wakers = [pktflow.Waker() for _ in range(32)]
        try:
            for waker in wakers:
                ring.add_waiter(pktflow.WAIT_ROOM, waker)
            assert wk.registered(state, 1) == 0xFFFFFFFF
        finally:
            for waker in wakers:
                waker.close()
        assert wk.registered(state, 1) == 0


def test_two_processes_ping_pong_without_losing_a_wake_up() -> None:
    """The lost-wake-up race between processes: a sleeping side must always be woken.

    Blocks of rounds in turn: both sides sleep when idle; one sleeps while the
    other busy-polls (so the reply lands while the sleeper arms). A lost
    wake-up shows as a poll timeout. 2 x 10**4 round trips here, 10**5 in
    tests/stress/. The in-process litmus test below hits the window far more often.
    """
    reports = run_ping_pong(20_000, timeout_ms=1000)
    timeouts = [r[0] for r in reports]
    sleeps = [r[1] for r in reports]
    assert timeouts == [0, 0], f"lost wake-ups (poll timeouts) per side: {timeouts}"
    assert min(sleeps) > 1000, f"the sides hardly slept ({sleeps}): the race was not exercised"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the race needs two CPUs")
def test_litmus_the_handshake_never_loses_a_wake_up() -> None:
    """The store-then-load race on the real kernels, two jitted threads on two CPUs.

    Each round the consumer arms while the producer enqueues and notifies; a
    round where the consumer saw the ring empty but the producer saw no bit
    is a lost wake-up. With the handshake reduced to release/acquire (no
    fences, a plain store of the bit) it lost 26 per 10**5 and 528 per 10**6 rounds here.
    """
    from _wakeup_litmus import litmus

    from pktflow._affinity import cpu_for

    flags = pktflow.RING_F_SP_ENQ | pktflow.RING_F_SC_DEQ
    with (
        pktflow.Ring(unique_name("litmus"), 64, flags, backend="numba") as ring,
        pktflow.Waker() as waker,
    ):
        assert ring.add_waiter(pktflow.WAIT_DATA, waker) == 0
        assert ring.state is not None
        rounds = int(os.environ.get("PKTFLOW_LITMUS_ROUNDS", "200000"))
        # At most 10 s: a loaded machine runs fewer rounds, never a hang.
        lost, would_sleep, done = litmus(ring.state, rounds, (cpu_for(0), cpu_for(1)), 10.0)
        assert lost == 0, f"{lost} lost wake-ups in {done} rounds"
        assert done > 0 and would_sleep > done // 10, f"hardly exercised ({would_sleep}/{done})"
        assert ring.empty()


# -- the bench --------------------------------------------------------------------------------


def test_measure_wakeup_reports_latencies_beside_the_floor() -> None:
    from pktflow.bench.wakeup import measure_wakeup

    result = measure_wakeup(rounds=50)
    for key in ("poll", "uvloop", "pipe_floor"):
        p50, p99 = result[key]["p50_us"], result[key]["p99_us"]
        assert 0 < p50 <= p99, (key, result[key])
    assert result["rounds"] == 50
    assert result["lost"] == 0
    assert result["notify_idle_ns"] > 0
    assert np.isfinite(result["signals_per_1000_bursts"])
