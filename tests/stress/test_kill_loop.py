"""Issue 7, part 1: 100 rounds of SIGKILL on an MP/MC hugepage ring and on a mempool (slow).

Each round spawns 2 producers and 2 consumers (ring) or 4 get/put workers
(mempool), kills one mid-run at a random moment, and checks that the
survivors finish, nothing hangs and nothing is delivered twice.

Run with ``pytest -m slow tests/stress``.
"""

from __future__ import annotations

import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _crash_workers import (
    check_churn_result,
    check_pool_result,
    check_ring_result,
    churn_kill_scenario,
    pool_kill_scenario,
    ring_kill_scenario,
)

ROUNDS = int(os.environ.get("PKTFLOW_KILL_ROUNDS", "100"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]


def test_sigkill_loop_on_an_mpmc_ring(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    for round_ in range(ROUNDS):
        victim = "producer" if round_ % 2 == 0 else "consumer"
        result = ring_kill_scenario(str(tmp_path), f"loop{round_}", victim, rng.uniform(0.02, 0.4))
        check_ring_result(result, victim)


def test_sigkill_loop_on_a_mempool(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    for round_ in range(ROUNDS):
        check_pool_result(
            pool_kill_scenario(str(tmp_path), f"ploop{round_}", rng.uniform(0.02, 0.4))
        )


def test_sigkill_loop_on_the_issues_reproducer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(13)
    repairs = 0
    for round_ in range(ROUNDS):
        result = churn_kill_scenario(str(tmp_path), f"cloop{round_}", rng.uniform(0.02, 0.3))
        check_churn_result(result)
        repairs += result["repairs"]
    assert repairs >= ROUNDS // 2, repairs
