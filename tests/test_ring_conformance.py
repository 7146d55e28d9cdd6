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
