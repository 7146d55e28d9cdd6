"""Integer arguments: one validator, so numpy integers work wherever ints do, and bool never."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import pktflow
from pktflow._arrays import checked_int
from pktflow.testing import unique_name


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Objects a test made; closed at teardown."""
    made: list[Any] = []
    yield made
    for obj in reversed(made):
        obj.close()


def test_checked_int() -> None:
    assert checked_int(np.int64(7), "n", 0, 10) == 7
    assert type(checked_int(np.uint8(7), "n", 0)) is int
    with pytest.raises(pktflow.PktflowTypeError, match="burst must be an int, not bool"):
        checked_int(True, "burst", 0)
    with pytest.raises(pktflow.PktflowTypeError, match="burst must be an int, not float"):
        checked_int(1.0, "burst", 0)
    with pytest.raises(pktflow.PktflowValueError, match=r"burst must be in 1..4, not 5"):
        checked_int(5, "burst", 1, 4)
    with pytest.raises(pktflow.PktflowValueError, match="burst must be >= 1, not 0"):
        checked_int(np.int32(0), "burst", 1)
    with pytest.raises(KeyError):
        checked_int(9, "handle", 0, 8, KeyError)


def test_numpy_integers_are_accepted_everywhere(closing: list[Any]) -> None:
    i = np.int64
    closing.append(pktflow.Ring(unique_name("r"), i(64), i(pktflow.RING_F_SP_ENQ), "pure"))
    closing.append(pktflow.Ring(unique_name("r"), np.uint32(100), pktflow.RING_F_EXACT_SZ, "pure"))
    mp = pktflow.Mempool(unique_name("m"), i(100), i(64), i(8), i(16), i(0), backend="pure")
    closing.append(mp)
    cache = mp.cache_create(np.int32(8))
    assert cache.size == 8 and type(cache.size) is int
    pool = pktflow.pktmbuf_pool_create(
        unique_name("p"), i(63), i(8), i(8), i(2176), i(0), backend="pure"
    )
    closing.append(pool)
    assert (pool.n, pool.cache_size, pool.priv_size, pool.data_room_size) == (63, 8, 8, 2176)
    assert all(type(v) is int for v in (mp.n, mp.elt_size, mp.cache_size, pool.n))
    m = pool.alloc()
    assert m is not None
    view = m.append(np.uint16(4))
    assert view is not None and m.data_len == 4
    m.port = np.uint16(3)
    m.ol_flags = np.uint64(1)
    assert m.port == 3 and m.ol_flags == 1 and pool.mbuf(np.uint32(m.handle)) == m
    m.free()


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: pktflow.Ring(unique_name("r"), True, backend="pure"), "ring size"),
        (lambda: pktflow.Mempool(unique_name("m"), 64, 64.0, backend="pure"), "elt_size"),
        (lambda: pktflow.Mempool(unique_name("m"), 64, 64, True, backend="pure"), "cache_size"),
        (
            lambda: pktflow.pktmbuf_pool_create(unique_name("p"), 63, 0, "8", 2176),
            "priv_size",
        ),
        (
            lambda: pktflow.pktmbuf_pool_create(unique_name("p"), 63, 0, 0, 2176.0),
            "data_room_size",
        ),
        (lambda: pktflow.pktmbuf_pool_create(unique_name("p"), 63, 0, 0, 2176, 0.0), "socket_id"),
        (lambda: pktflow.register_lcore(False), "lcore id"),
    ],
)
def test_wrong_types_are_type_errors_naming_the_argument(
    make: Callable[[], Any], argument: str
) -> None:
    with pytest.raises(pktflow.PktflowTypeError, match=argument):
        make()
