"""Issue 8, part 2: 10**5 round trips between two processes that always sleep when idle (slow).

Two spawned workers, pinned to two CPUs, ping-pong one handle over two
SP/SC hugepage rings; each side, finding its input empty, arms its waiter
and sleeps in ``poll`` on its Waker (1 s timeout). A lost wake-up leaves
both asleep until the timeout, so the count of timeouts must be 0. Without
the seq_cst fences of the handshake this run loses wake-ups.

Also 10**6 rounds of the in-process litmus test over the real kernels.

Run with ``pytest -m slow tests/stress``.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _wakeup_workers import run_ping_pong

ROUNDS = int(os.environ.get("PKTFLOW_PINGPONG_ROUNDS", "100000"))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_processes_never_lose_a_wake_up() -> None:
    reports = run_ping_pong(ROUNDS, timeout_ms=1000)
    timeouts = [r[0] for r in reports]
    sleeps = [r[1] for r in reports]
    seconds = max(r[3] for r in reports)
    print(f"{ROUNDS} round trips in {seconds:.1f} s; sleeps {sleeps}; timeouts {timeouts}")
    assert timeouts == [0, 0], f"lost wake-ups (poll timeouts) per side: {timeouts}"
    assert min(sleeps) > ROUNDS // 10, f"the sides hardly slept ({sleeps})"


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the race needs two CPUs")
def test_litmus_million_rounds() -> None:
    from _wakeup_litmus import litmus

    import pktflow
    from pktflow._affinity import cpu_for
    from pktflow.testing import unique_name

    flags = pktflow.RING_F_SP_ENQ | pktflow.RING_F_SC_DEQ
    with (
        pktflow.Ring(unique_name("litmus"), 64, flags, backend="numba") as ring,
        pktflow.Waker() as waker,
    ):
        assert ring.add_waiter(pktflow.WAIT_DATA, waker) == 0
        assert ring.state is not None
        lost, would_sleep, done = litmus(ring.state, 10**6, (cpu_for(0), cpu_for(1)), 600.0)
        print(f"litmus: {lost} lost in {done} rounds ({would_sleep} would have slept)")
        assert lost == 0 and done == 10**6
