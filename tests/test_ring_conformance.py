"""The public ring conformance suite, run once per built-in backend, plus pure as oracle."""

from __future__ import annotations

import numpy as np
import pytest

import pktflow
import pktflow.testing
from pktflow.abc import RING_F_EXACT_SZ, RING_F_SC_DEQ, RING_F_SP_ENQ
from pktflow.testing import RingConformance, assert_same_behaviour, unique_name


class TestPure(RingConformance):
    backend = "pure"


class TestNumba(RingConformance):
    backend = "numba"


class TestHugepage(RingConformance):
    backend = "hugepage"


# -- the pure backend as the oracle ------------------------------------------------

FLAG_SETS = {
    "mp_mc": 0,
    "sp_sc": RING_F_SP_ENQ | RING_F_SC_DEQ,
    "exact_sp": RING_F_EXACT_SZ | RING_F_SP_ENQ,
    "exact_sc": RING_F_EXACT_SZ | RING_F_SC_DEQ,
}


@pytest.mark.parametrize("backend", ["numba", "hugepage"])
@pytest.mark.parametrize("flags", list(FLAG_SETS.values()), ids=list(FLAG_SETS))
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_backend_matches_pure_oracle(backend: str, flags: int, seed: int) -> None:
    """Random bursts and bulks (seeded) give identical return values and contents."""
    reason = pktflow.backend_unavailable_reason(backend)
    if reason is not None:
        pytest.skip(f"backend {backend!r} is unavailable here: {reason}")
    count = 24 if flags & RING_F_EXACT_SZ else 32
    with (
        pktflow.Ring(unique_name("oracle"), count, flags, backend="pure") as oracle,
        pktflow.Ring(unique_name(backend), count, flags, backend=backend) as subject,
    ):
        assert (subject.size, subject.capacity) == (oracle.size, oracle.capacity)
        assert_same_behaviour(subject, oracle, seed=seed, steps=2500)


def test_oracle_comparison_detects_a_difference() -> None:
    """The comparison itself can fail: a ring that drops a handle is caught."""

    class Lossy(pktflow.testing.RingModel):
        def dequeue_burst(self, out: np.ndarray, n: int | None = None) -> int:
            got = super().dequeue_burst(out, n)
            if got:
                out[0] ^= 1  # corrupt one handle
            return got

    with pytest.raises(AssertionError, match="oracle"):
        assert_same_behaviour(Lossy(15), pktflow.testing.RingModel(15), seed=1, steps=500)


# -- the suite's own checks can fail ------------------------------------------------------


def test_exactly_once_check_catches_loss_repeats_and_reordering() -> None:
    from pktflow.testing.ring_conformance import _exactly_once

    bounds = [0, 4, 8]  # producer 0 sent 0..3, producer 1 sent 4..7
    good = [np.array([0, 4, 1, 5], np.uint32), np.array([2, 6, 3, 7], np.uint32)]
    _exactly_once(good, 8, bounds)
    lost = [good[0], np.array([2, 6, 3], np.uint32)]
    repeated = [good[0], np.array([2, 6, 3, 7, 5], np.uint32)]
    swapped = [np.array([0, 4, 1, 5], np.uint32), np.array([3, 6, 2, 7], np.uint32)]
    stranger = [good[0], np.array([2, 6, 3, 9], np.uint32)]
    for streams, message in (
        (lost, "7 handles arrived"),
        (repeated, "9 handles arrived"),
        (swapped, "out of FIFO order"),
        (stranger, "nobody sent"),
    ):
        with pytest.raises(AssertionError, match=message):
            _exactly_once(streams, 8, bounds)
    # Same total, one handle twice and one missing.
    with pytest.raises(AssertionError, match="1 handles lost"):
        _exactly_once([good[0], np.array([2, 6, 2, 7], np.uint32)], 8, bounds)


# -- pktflow's jitted kernels: a bad count from jitted code is an error code ------------


@pytest.mark.parametrize("backend", ["numba", "hugepage"])
def test_jitted_batch_calls_reject_bad_counts_without_touching_memory(backend: str) -> None:
    reason = pktflow.backend_unavailable_reason(backend)
    if reason is not None:
        pytest.skip(f"backend {backend!r} is unavailable here: {reason}")
    from pktflow.abc import ERR_COUNT

    with pktflow.Ring(unique_name(backend), 16, backend=backend) as ring:
        ops, state = ring.jit_ops, ring.state
        assert ops is not None and state is not None
        assert ring.enqueue_bulk(np.array([1, 2, 3], np.uint32)) == 3
        before = state.copy()
        objs = np.arange(4, dtype=np.uint32)
        out = np.full(4, 0xA5A5A5A5, dtype=np.uint32)
        for call, array in (
            (ops.enqueue_bulk, objs),
            (ops.enqueue_burst, objs),
            (ops.dequeue_bulk, out),
            (ops.dequeue_burst, out),
        ):
            assert call(state, array, 5) == ERR_COUNT  # past the end of the array
            assert call(state, array, -1) == ERR_COUNT
        assert np.array_equal(state, before), "a rejected call changed the ring"
        assert np.all(out == 0xA5A5A5A5)
        assert ring.count() == 3
