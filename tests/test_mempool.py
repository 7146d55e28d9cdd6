"""Mempool: DPDK's rte_mempool semantics (app/test/test_mempool.c) on every backend.

The accounting is checked after every step: ``avail_count()`` must equal
the free list's count plus every lcore cache's length, and the cache
algorithm (DPDK 22.11 LTS) is checked through the cache rows themselves
(``cache_rows[lcore, C_LEN]``) and the free-list ring's count, so a wrong
refill or flush shows up as a wrong number, not only as a slow pool.
"""

from __future__ import annotations

import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _mempool_workers import fill_objects, leave_objects_in_cache, pattern, spawn_child

import pktflow
import pktflow.backends
from pktflow._cache_layout import (
    C_FLUSHTHRESH,
    C_LEN,
    C_MAGIC,
    C_OBJS,
    C_POOL_N,
    C_SIZE,
    C_VERSION,
    CACHE_MAX_SIZE,
)

BACKENDS = ("pure", "numba", "hugepage")
ZONE_DIRS = (Path("/dev/hugepages"), Path("/dev/shm"))
NO_CACHE_ROW = pktflow.MAX_LCORE  # the row a thread that is not an lcore uses


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    why = pktflow.backend_unavailable_reason(request.param)
    if why:
        pytest.skip(why)
    return str(request.param)


class Pools:
    """Makes pools and rings with names unique to one test, and closes them all."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.uid = uuid.uuid4().hex[:12]
        self._count = 0
        self._made: list[pktflow.Mempool | pktflow.Ring] = []

    def name(self, tag: str = "mp") -> str:
        self._count += 1
        return f"t-{tag}-{self.uid}-{self._count}"

    def __call__(
        self, n: int, elt_size: int = 64, cache_size: int = 0, **kwargs: Any
    ) -> pktflow.Mempool:
        kwargs.setdefault("backend", self.backend)
        pool = pktflow.Mempool(self.name(), n, elt_size, cache_size, **kwargs)
        self._made.append(pool)
        return pool

    def ring(self, count: int) -> pktflow.Ring:
        ring = pktflow.Ring(self.name("ring"), count, backend="hugepage")
        self._made.append(ring)
        return ring

    def close_all(self) -> None:
        for thing in reversed(self._made):
            thing.close()

    def leftovers(self) -> list[Path]:
        return [p for d in ZONE_DIRS if d.is_dir() for p in d.glob(f"pktflow.*{self.uid}*")]


@pytest.fixture
def pools(request: pytest.FixtureRequest) -> Iterator[Pools]:
    # Tests that take `backend` get pools of it; the others name it per pool.
    backend = request.getfixturevalue("backend") if "backend" in request.fixturenames else "pure"
    made = Pools(backend)
    yield made
    made.close_all()
    # Every zone (the pool's and its "MP_<name>" ring's) is unlinked on close.
    assert made.leftovers() == []


@pytest.fixture
def lcore() -> Iterator[int]:
    """The test's thread as a registered lcore: pools use its cache."""
    me = pktflow.register_lcore()
    yield me
    pktflow.unregister_lcore()


@pytest.fixture(params=["lcore", "not-lcore"])
def caller(request: pytest.FixtureRequest) -> Iterator[int | None]:
    """The test's thread as an lcore (its id) or as a plain thread (None)."""
    if request.param == "not-lcore":
        assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
        yield None
        return
    yield pktflow.register_lcore()
    pktflow.unregister_lcore()


def state(pool: pktflow.Mempool) -> tuple[int, int, tuple[int, ...]]:
    """Everything the pool's accounting consists of: avail, free list, every cache's length."""
    return pool.avail_count(), pool.ring.count(), tuple(pool.cache_rows[:, C_LEN].tolist())


def cache_len(pool: pktflow.Mempool, lcore: int | None) -> int:
    return int(pool.cache_rows[NO_CACHE_ROW if lcore is None else lcore, C_LEN])


def assert_accounting(pool: pktflow.Mempool, held: int) -> None:
    """avail is exactly the free list plus every lcore cache, and n - held."""
    lens = int(pool.cache_rows[: pktflow.MAX_LCORE, C_LEN].sum())
    assert pool.ring.count() + lens == pool.avail_count() == pool.n - held
    assert pool.in_use_count() == held
    assert pool.full() == (held == 0)
    assert pool.empty() == (held == pool.n)
    # The "no cache" row never holds anything.
    assert int(pool.cache_rows[NO_CACHE_ROW, C_LEN]) == 0


def u32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.uint32)


def run_in_thread(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a new thread; its result, or its exception re-raised here."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            result.append(body())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the thread hung"
    if errors:
        raise errors[0]
    return result[0]


# -- basic: get and put, single and bulk ---------------------------------------


@pytest.mark.parametrize("cache_size", [0, 32])
def test_get_every_object_one_by_one(pools: Pools, caller: int | None, cache_size: int) -> None:
    # Odd n, so that neither the ring nor the cache divides it evenly.
    mp = pools(97, cache_size=cache_size)
    assert_accounting(mp, 0)
    got = []
    for i in range(mp.n):
        h = mp.get()
        assert h is not None
        got.append(h)
        assert_accounting(mp, i + 1)
    # Handles are exactly 0 .. n-1, each once.
    assert sorted(got) == list(range(mp.n))
    assert mp.get() is None
    assert mp.get_bulk(np.empty(1, dtype=np.uint32), 1) == 0
    assert_accounting(mp, mp.n)
    for i, h in enumerate(got):
        mp.put(h)
        assert_accounting(mp, mp.n - i - 1)
    assert mp.full()
    if caller is not None and cache_size:
        # The last puts stayed in the lcore's cache, within its threshold.
        assert 0 < cache_len(mp, caller) <= 48


@pytest.mark.parametrize("cache_size", [0, 32])
@pytest.mark.parametrize("burst", [1, 2, 7, 32, 100])
def test_bulk_get_put_until_empty(
    pools: Pools, caller: int | None, cache_size: int, burst: int
) -> None:
    mp = pools(256, cache_size=cache_size)
    out = np.empty(burst, dtype=np.uint32)
    held: list[int] = []
    while len(held) + burst <= mp.n:
        assert mp.get_bulk(out, burst) == burst
        held += out.tolist()
        assert_accounting(mp, len(held))
    # Fewer left than a burst: all or nothing, and the pool is unchanged.
    before = state(mp)
    if len(held) < mp.n:
        assert mp.get_bulk(out, burst) == 0
        assert state(mp) == before
    assert len(set(held)) == len(held)
    # The rest, so that every handle is seen: exactly 0 .. n-1.
    rest = np.empty(mp.n - len(held), dtype=np.uint32)
    assert mp.get_bulk(rest) == rest.size
    held += rest.tolist()
    assert sorted(held) == list(range(mp.n))
    assert mp.empty()
    assert mp.get() is None
    handles = u32(held)
    for start in range(0, mp.n, burst):
        chunk = handles[start : start + burst]
        mp.put_bulk(chunk)
        assert_accounting(mp, mp.n - start - chunk.size)
    assert mp.full()


def test_counts_of_zero(pools: Pools, backend: str, caller: int | None) -> None:
    mp = pools(64, cache_size=16)
    h = mp.get()
    before = state(mp)
    out = np.full(4, 7, dtype=np.uint32)
    assert mp.get_bulk(out, 0) == 0
    assert mp.get_bulk(np.empty(0, dtype=np.uint32)) == 0
    mp.put_bulk(out, 0)
    mp.put_bulk(np.empty(0, dtype=np.uint32))
    assert state(mp) == before
    assert out.tolist() == [7, 7, 7, 7]  # a get of nothing writes nothing
    mp.put(h)
    assert mp.full()


def test_default_count_is_the_whole_array(pools: Pools, caller: int | None) -> None:
    mp = pools(64, cache_size=8)
    out = np.empty(10, dtype=np.uint32)
    assert mp.get_bulk(out) == 10
    assert_accounting(mp, 10)
    mp.put_bulk(out)
    assert_accounting(mp, 0)


def test_strided_arrays(pools: Pools, caller: int | None) -> None:
    # A view with a stride (every other slot) is a valid uint32 vector.
    mp = pools(64, cache_size=8)
    backing = np.full(20, 0xFFFFFFFF, dtype=np.uint32)
    view = backing[::2]
    assert mp.get_bulk(view, 10) == 10
    assert (backing[1::2] == 0xFFFFFFFF).all()  # the gaps were not written
    assert len(set(view.tolist())) == 10 and int(view.max()) < mp.n
    assert_accounting(mp, 10)
    mp.put_bulk(view)
    assert_accounting(mp, 0)


def test_not_an_lcore_uses_no_cache(pools: Pools) -> None:
    mp = pools(128, cache_size=32)

    def body() -> list[int]:
        assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
        out = np.empty(5, dtype=np.uint32)
        assert mp.get_bulk(out, 5) == 5
        # Straight from the ring: the first five handles, in order.
        assert out.tolist() == [0, 1, 2, 3, 4]
        assert mp.ring.count() == 123
        mp.put_bulk(out[:2])
        assert mp.ring.count() == 125
        return out[2:].tolist()

    kept = run_in_thread(body)
    assert mp.cache_rows[:, C_LEN].sum() == 0
    assert_accounting(mp, 3)
    mp.put_bulk(u32(kept))
    assert mp.ring.count() == mp.n


def test_unregistered_lcore_stops_using_its_cache(pools: Pools, backend: str) -> None:
    mp = pools(128, cache_size=32)
    me = pktflow.register_lcore()
    try:
        h = mp.get()
        assert cache_len(mp, me) == 32
    finally:
        pktflow.unregister_lcore()
    # Unregistering flushed the lcore's row; this thread now goes to the ring.
    assert cache_len(mp, me) == 0
    mp.put(h)
    assert mp.ring.count() == mp.n
    assert mp.full()
    pktflow.register_lcore(me)
    try:
        mp.cache_flush()
    finally:
        pktflow.unregister_lcore()
    assert mp.ring.count() == mp.n


# -- the cache algorithm (DPDK 22.11 LTS), seen through the rows ------------------


def test_cache_refills_and_serves_hot_objects_first(pools: Pools, backend: str, lcore: int) -> None:
    mp = pools(256, cache_size=32)
    row = mp.cache_rows[lcore]
    assert (int(row[C_SIZE]), int(row[C_FLUSHTHRESH]), int(row[C_POOL_N])) == (32, 48, 256)
    # An empty cache refills with size + missing = 33 objects in one bulk
    # (handles 0..32 from the freshly filled ring) and serves the missing one
    # from the top.
    assert mp.get() == 32
    assert (cache_len(mp, lcore), mp.ring.count()) == (32, 223)
    assert_accounting(mp, 1)
    # Served from the cache alone, newest first; the ring is not touched.
    out = np.empty(5, dtype=np.uint32)
    assert mp.get_bulk(out, 5) == 5
    assert out.tolist() == [31, 30, 29, 28, 27]
    assert (cache_len(mp, lcore), mp.ring.count()) == (27, 223)
    assert_accounting(mp, 6)
    # LIFO: the last object put is the first one got.
    mp.put(30)
    mp.put(28)
    assert cache_len(mp, lcore) == 29
    assert mp.get() == 28
    assert mp.get() == 30
    assert cache_len(mp, lcore) == 27
    # A get larger than the cache holds: the 27 cached (newest first), then
    # a refill of 32 + 3 from the ring (handles 33..67), served from its top.
    big = np.empty(30, dtype=np.uint32)
    assert mp.get_bulk(big, 30) == 30
    assert big.tolist() == [*range(26, -1, -1), 67, 66, 65]
    assert (cache_len(mp, lcore), mp.ring.count()) == (32, 223 - 35)
    assert_accounting(mp, 36)
    mp.put_bulk(out)
    mp.put_bulk(big)
    mp.put(32)
    assert mp.full()


def test_cache_flushes_whole_at_the_threshold(pools: Pools, backend: str, lcore: int) -> None:
    mp = pools(256, cache_size=32)  # flush threshold 48
    held = np.empty(100, dtype=np.uint32)
    assert mp.get_bulk(held, 100) == 100  # refill 132: the cache keeps 32
    assert (cache_len(mp, lcore), mp.ring.count()) == (32, 124)
    mp.cache_flush()
    assert (cache_len(mp, lcore), mp.ring.count()) == (0, 156)
    assert_accounting(mp, 100)
    # Up to the threshold exactly: everything stays in the cache.
    mp.put_bulk(held[:40])
    assert (cache_len(mp, lcore), mp.ring.count()) == (40, 156)
    mp.put_bulk(held[40:48])
    assert (cache_len(mp, lcore), mp.ring.count()) == (48, 156)
    assert_accounting(mp, 52)
    # One more crosses it: the 48 go to the ring in one bulk, the new one stays.
    mp.put(int(held[48]))
    assert (cache_len(mp, lcore), mp.ring.count()) == (1, 204)
    assert mp.cache_rows[lcore, C_OBJS] == held[48]  # the cache's only object
    assert_accounting(mp, 51)
    # A put larger than the threshold bypasses the cache entirely.
    mp.put_bulk(held[49:98])
    assert (cache_len(mp, lcore), mp.ring.count()) == (1, 253)
    assert_accounting(mp, 2)
    # A crossing put with a non-empty cache: 1 + 48 > 48 flushes the one.
    assert mp.get_bulk(held[:46], 46) == 46  # 1 from the cache, then a refill of 32 + 45
    assert (cache_len(mp, lcore), mp.ring.count()) == (32, 253 - 77)
    mp.put_bulk(held[:46])  # 32 + 46 > 48: flush 32, keep 46
    assert (cache_len(mp, lcore), mp.ring.count()) == (46, 253 - 77 + 32)
    mp.put_bulk(held[98:])
    assert_accounting(mp, 0)


def test_oversized_get_bypasses_the_cache(pools: Pools, backend: str, lcore: int) -> None:
    mp = pools(2048, elt_size=8, cache_size=32)
    assert mp.get() is not None  # cache 32, ring 2048 - 33
    ring_before = mp.ring.count()
    # More than CACHE_MAX_SIZE missing after the cache's 32: the remaining
    # come straight from the ring, and the cache is left empty.
    big = np.empty(32 + CACHE_MAX_SIZE + 1, dtype=np.uint32)
    assert mp.get_bulk(big) == big.size
    assert (cache_len(mp, lcore), mp.ring.count()) == (0, ring_before - CACHE_MAX_SIZE - 1)
    assert_accounting(mp, big.size + 1)
    # Exactly CACHE_MAX_SIZE missing still refills (size + 512 in one bulk).
    edge = np.empty(CACHE_MAX_SIZE, dtype=np.uint32)
    ring_before = mp.ring.count()
    assert mp.get_bulk(edge) == CACHE_MAX_SIZE
    assert (cache_len(mp, lcore), mp.ring.count()) == (32, ring_before - 32 - CACHE_MAX_SIZE)
    assert_accounting(mp, big.size + 1 + CACHE_MAX_SIZE)
    mp.put_bulk(edge)
    mp.put_bulk(big)
    mp.cache_flush()
    assert mp.ring.count() == mp.n - 1


def test_refill_falls_back_to_the_ring_and_stays_all_or_nothing(
    pools: Pools, backend: str, lcore: int
) -> None:
    mp = pools(64, cache_size=32)  # 32 * 1.5 = 48 <= 64
    held = np.empty(64, dtype=np.uint32)
    # 32 + 40 > 64: no refill; the 40 come from the ring directly.
    assert mp.get_bulk(held[:40], 40) == 40
    assert held[:40].tolist() == list(range(40))
    assert (cache_len(mp, lcore), mp.ring.count()) == (0, 24)
    # 32 + 1 > 24: again straight from the ring.
    assert mp.get() == 40
    assert (cache_len(mp, lcore), mp.ring.count()) == (0, 23)
    mp.put_bulk(held[:10])
    assert (cache_len(mp, lcore), mp.ring.count()) == (10, 23)
    before = state(mp)
    # 10 cached + 23 in the ring < 34: nothing is taken, the cache is intact.
    assert mp.get_bulk(held[:34], 34) == 0
    assert state(mp) == before
    # 33 can be served: 10 from the cache (newest first), 23 from the ring.
    assert mp.get_bulk(held[:33], 33) == 33
    assert held[:10].tolist() == list(range(9, -1, -1))
    assert sorted(held[10:33].tolist()) == list(range(41, 64))
    assert mp.empty() and cache_len(mp, lcore) == 0
    everything = np.concatenate([held[:33], np.arange(10, 41, dtype=np.uint32)])
    assert sorted(everything.tolist()) == list(range(64))
    mp.put_bulk(everything)
    assert mp.full()


def _seeded_sequence(
    mp: pktflow.Mempool, lcore: int, seed: int
) -> Iterator[tuple[str, list[int], int, int, int]]:
    """Random get/put bursts on one pool; yields what each step observed."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for _ in range(600):
        roll = rng.random()
        if roll < 0.02:
            mp.cache_flush()
            observed: list[int] = []
            op = "flush"
        elif roll < 0.52:
            # Mostly bursts, some larger than the threshold or CACHE_MAX_SIZE.
            k = int(rng.choice([rng.integers(0, 40), rng.integers(40, 200), rng.integers(500, 700)],
                               p=[0.8, 0.15, 0.05]))  # fmt: skip
            out = np.empty(k, dtype=np.uint32)
            got = mp.get_bulk(out, k)
            observed = out[:got].tolist()
            held += observed
            op = f"get {k} -> {got}"
        else:
            k = int(rng.integers(0, min(len(held), 120) + 1))
            picks = rng.permutation(len(held))[:k]
            objs = u32([held[i] for i in picks])
            for i in sorted(picks.tolist(), reverse=True):
                del held[i]
            mp.put_bulk(objs)
            observed = objs.tolist()
            op = f"put {k}"
        yield op, observed, cache_len(mp, lcore), mp.ring.count(), mp.avail_count()
    mp.put_bulk(u32(held))


@pytest.mark.parametrize("seed", [1, 2])
def test_reference_and_jitted_caches_agree(pools: Pools, lcore: int, seed: int) -> None:
    available = [b for b in BACKENDS if pktflow.backend_unavailable_reason(b) is None]
    if "pure" not in available or len(available) < 2:
        pytest.skip("needs the pure backend and a jitted one")
    # The pure backend runs PyCache (the reference); numba and hugepage the kernels.
    mps = [pools(1024, elt_size=8, cache_size=64, backend=b) for b in available]
    steps = [_seeded_sequence(mp, lcore, seed) for mp in mps]
    for index, observed in enumerate(zip(*steps, strict=True)):
        reference = observed[0]
        for name, other in zip(available[1:], observed[1:], strict=True):
            assert other == reference, f"step {index}: {name} differs from pure"
    for mp in mps:
        mp.cache_flush()
        assert mp.ring.count() == mp.n


# -- avail_count sees every lcore's cache ----------------------------------------


def test_avail_counts_another_threads_cache(pools: Pools, backend: str) -> None:
    mp = pools(256, cache_size=32)

    def body() -> tuple[int, int]:
        me = pktflow.register_lcore()
        h = mp.get()
        assert h is not None
        return me, h  # the thread ends holding h, its cache full

    other, h = run_in_thread(body)
    # The thread's id was released with it; its cache row keeps the objects
    # until avail_count (which never counts what nobody can take) reclaims them.
    assert cache_len(mp, other) == 32
    assert mp.ring.count() == 256 - 33
    assert_accounting(mp, 1)
    assert cache_len(mp, other) == 0
    mp.put(h)  # not an lcore here: to the ring
    assert mp.full() and mp.ring.count() == mp.n

    def flush_as(lcore_id: int) -> None:
        assert pktflow.register_lcore(lcore_id) == lcore_id
        mp.cache_flush()

    run_in_thread(lambda: flush_as(other))
    assert mp.ring.count() == mp.n
    assert_accounting(mp, 0)


def _need_hugepage() -> None:
    why = pktflow.backend_unavailable_reason("hugepage")
    if why:
        pytest.skip(why)


def test_avail_counts_a_dead_processs_cache(pools: Pools) -> None:
    _need_hugepage()
    mp = pools(256, cache_size=32, backend="hugepage")
    # The child gets 8 (a refill of 32 + 8), puts 3 back into its cache and
    # dies holding 5.
    proc, conn, (child_lcore, kept, child_len) = spawn_child(leave_objects_in_cache, mp.name, 8, 3)
    proc.join(60)
    conn.close()
    assert proc.exitcode == 0
    assert child_len == 35 == cache_len(mp, child_lcore)
    assert mp.ring.count() == 256 - 40
    # avail_count never counts what cannot be taken: the dead child's row
    # goes back to the free list first.
    assert_accounting(mp, 5)
    assert cache_len(mp, child_lcore) == 0
    assert mp.ring.count() == 256 - 5
    mp.put_bulk(u32(kept))  # the parent is not an lcore: to the ring
    assert mp.full() and mp.ring.count() == mp.n
    assert_accounting(mp, 0)


def test_objects_cross_processes(pools: Pools) -> None:
    _need_hugepage()
    mp = pools(128, elt_size=200, cache_size=16, backend="hugepage")
    ring = pools.ring(64)
    before = {h: bytes(mp.obj(h)) for h in range(mp.n)}
    # The child looks both up by name, gets 20 objects as an lcore (a refill
    # of 16 + 20), writes into them and passes their handles back.
    proc, conn, (child_lcore, child_len) = spawn_child(fill_objects, mp.name, ring.name, 20)
    proc.join(60)
    conn.close()
    assert proc.exitcode == 0
    assert child_len == 16 == cache_len(mp, child_lcore)
    assert mp.ring.count() == 128 - 36
    assert_accounting(mp, 20)
    handles = np.empty(20, dtype=np.uint32)
    assert ring.dequeue_bulk(handles) == 20
    assert ring.empty()
    assert len(set(handles.tolist())) == 20
    for h in handles.tolist():
        assert bytes(mp.obj(h)) == pattern(h, 200).tobytes()
    # Objects the child did not take are as they were.
    untouched = set(range(mp.n)) - set(handles.tolist())
    assert all(bytes(mp.obj(h)) == before[h] for h in untouched)
    for i, h in enumerate(handles.tolist()):
        mp.put(h)
        assert_accounting(mp, 19 - i)
    # The pool never touched the contents on the way back.
    assert all(bytes(mp.obj(h)) == pattern(h, 200).tobytes() for h in handles.tolist())
    assert pktflow.register_lcore(child_lcore) == child_lcore
    try:
        mp.cache_flush()
    finally:
        pktflow.unregister_lcore()
    assert mp.ring.count() == mp.n


# -- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "elt_size", "cache_size", "extra"),
    [
        (4096, 64, CACHE_MAX_SIZE + 1, {}),  # over DPDK's cache limit
        (100, 64, 68, {}),  # 68 * 1.5 > 100
        (0, 64, 0, {}),
        (-1, 64, 0, {}),
        (64, -1, 0, {}),
        (64, 64, -1, {}),
        (64, 64, 0, {"private_data_size": -1}),
        (64, 64, 0, {"flags": 0x100}),  # an unknown flag
        (1.5, 64, 0, {}),  # the wrong types are TypeErrors
        ("64", 64, 0, {}),
        (True, 64, 0, {}),
        (64, 64, 0.0, {}),
    ],
)
def test_bad_sizes(
    pools: Pools, backend: str, n: Any, elt_size: Any, cache_size: Any, extra: dict[str, Any]
) -> None:
    name = pools.name()
    wrong_type = any(not isinstance(v, int) or isinstance(v, bool) for v in (n, cache_size))
    error = pktflow.PktflowTypeError if wrong_type else pktflow.PktflowValueError
    with pytest.raises(error):
        pktflow.Mempool(name, n, elt_size, cache_size, backend=backend, **extra)
    # A failed creation leaves nothing behind: the name is free.
    assert pools.leftovers() == []
    with pktflow.Mempool(name, 64, 8, backend=backend) as mp:
        assert mp.full()


@pytest.mark.parametrize("word", [C_MAGIC, C_VERSION], ids=["magic", "version"])
def test_attaching_checks_the_cache_row_layout(pools: Pools, backend: str, word: int) -> None:
    mp = pools(16, cache_size=4)
    saved = int(mp.cache_rows[3, word])
    mp.cache_rows[3, word] = saved + 1  # another pktflow's layout
    try:
        with pytest.raises(pktflow.PktflowValueError, match=r"cache row layout|bad magic"):
            pktflow.Mempool.lookup(mp.name)
    finally:
        mp.cache_rows[3, word] = saved
    pktflow.Mempool.lookup(mp.name).close()


def test_unknown_flag_bits_are_rejected(pools: Pools) -> None:
    with pytest.raises(pktflow.PktflowValueError):
        pools(16, flags=0x1)


# DPDK compares its integer threshold (size * 3 // 2) with n: 67 fits 100.
@pytest.mark.parametrize(
    ("n", "cache_size"), [(768, CACHE_MAX_SIZE), (99, 66), (100, 67), (3, 2), (1, 0)]
)
def test_cache_size_limits_are_inclusive(
    pools: Pools, backend: str, n: int, cache_size: int
) -> None:
    mp = pools(n, elt_size=8, cache_size=cache_size)
    assert mp.cache_size == cache_size
    assert mp.full()


@pytest.mark.parametrize(
    ("out", "n", "error"),
    [
        (np.empty(8, dtype=np.int64), 4, pktflow.PktflowTypeError),
        (np.empty(8, dtype=np.float32), 4, pktflow.PktflowTypeError),
        (np.empty(8, dtype=np.int32), 4, pktflow.PktflowTypeError),
        (np.empty((2, 4), dtype=np.uint32), 4, pktflow.PktflowValueError),
        ([0] * 8, 4, pktflow.PktflowTypeError),
        (np.empty(8, dtype=np.uint32), 9, pktflow.PktflowValueError),
        (np.empty(8, dtype=np.uint32), -1, pktflow.PktflowValueError),
        (np.empty(8, dtype=np.uint32), 2.0, pktflow.PktflowTypeError),
    ],
)
def test_get_bulk_rejects_bad_arguments(
    pools: Pools, backend: str, lcore: int, out: Any, n: Any, error: type[Exception]
) -> None:
    mp = pools(64, cache_size=8)
    h = mp.get()  # some state in the cache and the ring
    before = state(mp)
    with pytest.raises(error):
        mp.get_bulk(out, n)
    assert state(mp) == before
    mp.put(h)
    assert mp.full()


def test_get_bulk_rejects_read_only_output(pools: Pools, backend: str) -> None:
    mp = pools(64)
    out = np.empty(4, dtype=np.uint32)
    out.flags.writeable = False
    with pytest.raises(pktflow.PktflowValueError):
        mp.get_bulk(out, 4)
    assert mp.full()


@pytest.mark.parametrize("caching", [False, True])
def test_put_bulk_rejects_bad_arguments(pools: Pools, backend: str, caching: bool) -> None:
    mp = pools(64, cache_size=8)
    if caching:
        pktflow.register_lcore()
    try:
        held = np.empty(6, dtype=np.uint32)
        assert mp.get_bulk(held) == 6
        before = state(mp)
        bad: list[tuple[Any, Any, type[Exception]]] = [
            (held.astype(np.int64), None, pktflow.PktflowTypeError),
            (held.astype(np.float64), None, pktflow.PktflowTypeError),
            (held.tolist(), None, pktflow.PktflowTypeError),
            (held.reshape(2, 3), None, pktflow.PktflowValueError),
            (held, 7, pktflow.PktflowValueError),
            (held, -1, pktflow.PktflowValueError),
            (held, 1.0, pktflow.PktflowTypeError),
        ]
        for objs, n, error in bad:
            with pytest.raises(error):
                mp.put_bulk(objs, n)
            assert state(mp) == before, (objs, n)
        mp.put_bulk(held)
        assert mp.full()
    finally:
        pktflow.unregister_lcore()


@pytest.mark.parametrize("debug", [False, True])
def test_foreign_handles_put_nothing(
    pools: Pools, backend: str, caller: int | None, debug: bool
) -> None:
    mp = pools(64, cache_size=8, debug=debug)
    held = np.empty(3, dtype=np.uint32)
    assert mp.get_bulk(held) == 3
    before = state(mp)
    # A handle >= n anywhere in the burst: none of the burst is put.
    for foreign in (64, 65, 0xFFFFFFFF):
        with pytest.raises(pktflow.MempoolError):
            mp.put_bulk(u32([held[0], foreign, held[1]]))
        assert state(mp) == before
    for foreign in (64, -1, 2**32):
        with pytest.raises(pktflow.MempoolError):
            mp.put(foreign)
        assert state(mp) == before
    mp.put_bulk(held)
    assert mp.full()


@pytest.mark.parametrize("cache_size", [0, 8])
def test_debug_detects_double_puts(
    pools: Pools, backend: str, caller: int | None, cache_size: int
) -> None:
    mp = pools(64, cache_size=cache_size, debug=True)
    held = np.empty(4, dtype=np.uint32)
    assert mp.get_bulk(held) == 4
    a, b, c, d = held.tolist()
    mp.put(a)  # into the cache, when there is one: still detected
    before = state(mp)
    with pytest.raises(pktflow.MempoolError):
        mp.put(a)
    assert state(mp) == before
    # A free handle anywhere in a burst: nothing of the burst is put.
    with pytest.raises(pktflow.MempoolError):
        mp.put_bulk(u32([b, a, c]))
    assert state(mp) == before
    # The same handle twice in one burst.
    with pytest.raises(pktflow.MempoolError):
        mp.put_bulk(u32([b, c, b]))
    assert state(mp) == before
    # A handle nobody took, on a pool with room.
    free = next(h for h in range(mp.n) if h not in (a, b, c, d))
    with pytest.raises(pktflow.MempoolError):
        mp.put(free)
    assert state(mp) == before
    # The handles the failed puts named are still held, and can be put.
    mp.put_bulk(u32([b, c, d]))
    assert mp.full()
    # And taken again: a failed put did not mark anything.
    everything = np.empty(mp.n, dtype=np.uint32)
    assert mp.get_bulk(everything) == mp.n
    assert sorted(everything.tolist()) == list(range(mp.n))
    mp.put_bulk(everything)
    assert mp.full()


def test_debug_get_with_a_bad_count_changes_nothing(pools: Pools, backend: str) -> None:
    mp = pools(16, debug=True)
    out = np.zeros(32, dtype=np.uint32)  # longer than 22: out[:-22] is not empty
    with pytest.raises(pktflow.PktflowValueError):
        mp.get_bulk(out, 33)
    # Every object can still be taken: none was marked as handed out.
    everything = np.empty(16, dtype=np.uint32)
    assert mp.get_bulk(everything) == 16
    mp.put_bulk(everything)
    assert mp.full()


def test_overflow_without_debug_is_an_error(pools: Pools, backend: str) -> None:
    # Without a cache a double put overflows the ring, which the pool
    # reports instead of corrupting itself.
    mp = pools(16)
    with pytest.raises(pktflow.MempoolError):
        mp.put(3)
    assert mp.avail_count() == 16 and mp.ring.count() == 16
    everything = np.empty(16, dtype=np.uint32)
    assert mp.get_bulk(everything) == 16
    assert sorted(everything.tolist()) == list(range(16))
    mp.put_bulk(everything)


def test_overflow_on_a_cache_flush_is_an_error(pools: Pools, backend: str, lcore: int) -> None:
    # The double put lands in the cache unnoticed (no debug); the flush that
    # finds the ring full reports it instead of counting objects twice.
    mp = pools(64, elt_size=8, cache_size=8)
    handle = mp.get()
    assert handle is not None
    mp.put(handle)
    mp.put(handle)
    with pytest.raises(pktflow.MempoolError, match="double put"):
        mp.cache_flush()


def test_a_user_cache_serves_only_its_pool(pools: Pools, backend: str) -> None:
    a, b = pools(64, elt_size=8), pools(16, elt_size=8)
    cache = a.cache_create(8)
    with pytest.raises(pktflow.MempoolError):
        b.put_bulk(np.array([100], dtype=np.uint32), cache=cache)
    with pytest.raises(pktflow.MempoolError):
        b.get_bulk(np.empty(4, dtype=np.uint32), cache=cache)
    with pytest.raises(TypeError):
        b.get_bulk(np.empty(4, dtype=np.uint32), cache="not a cache")  # type: ignore[arg-type]
    assert b.full() and a.full() and len(cache) == 0


def test_use_after_close(pools: Pools, backend: str) -> None:
    mp = pools(16, cache_size=4)
    name = mp.name
    out = np.empty(2, dtype=np.uint32)
    mp.close()
    mp.close()  # idempotent
    assert mp.closed
    calls: list[Callable[[], object]] = [
        mp.get,
        lambda: mp.put(0),
        lambda: mp.get_bulk(out, 2),
        lambda: mp.put_bulk(u32([0, 1])),
        mp.avail_count,
        mp.in_use_count,
        mp.full,
        mp.empty,
        lambda: mp.obj(0),
        lambda: mp.priv(0),
        lambda: mp.objects,
        lambda: mp.private,
        lambda: mp.cache_create(4),
        mp.cache_flush,
    ]
    for call in calls:
        with pytest.raises(pktflow.ClosedError):
            call()
    with pytest.raises(pktflow.NotFoundError):
        pktflow.Mempool.lookup(name)
    assert pools.leftovers() == []


def test_context_manager_closes(pools: Pools, backend: str) -> None:
    name = pools.name()
    with pktflow.Mempool(name, 16, 8, backend=backend) as mp:
        assert mp.get() is not None
    assert mp.closed
    with pytest.raises(pktflow.ClosedError):
        mp.avail_count()
    assert pools.leftovers() == []
    # The name is free again.
    with pktflow.Mempool(name, 16, 8, backend=backend) as again:
        assert again.full()


def test_duplicate_name(pools: Pools, backend: str) -> None:
    mp = pools(16, cache_size=4)
    h = mp.get()
    for other in BACKENDS:
        if pktflow.backend_unavailable_reason(other) is None:
            with pytest.raises(pktflow.ExistsError):
                pktflow.Mempool(mp.name, 16, 8, backend=other)
    # The first pool is intact and usable.
    assert_accounting(mp, 1)
    mp.put(h)
    assert mp.full()


def test_lookup(pools: Pools, backend: str) -> None:
    with pytest.raises(pktflow.NotFoundError) as info:
        pktflow.Mempool.lookup(pools.name("nothing"))
    assert isinstance(info.value, LookupError)
    mp = pools(32, elt_size=16)
    other = pktflow.Mempool.lookup(mp.name)
    try:
        assert (other.n, other.elt_size, other.backend) == (32, 16, backend)
        # The same pool: what one takes, the other sees.
        h = other.get()
        assert h is not None
        other.obj(h)[:3] = b"abc"
        assert bytes(mp.obj(h)[:3]) == b"abc"
        assert mp.avail_count() == 31
        mp.put(h)
        assert other.full()
    finally:
        other.close()
    # Closing the attached pool leaves the creator's alone.
    assert mp.full() and mp.get() is not None


# -- objects -----------------------------------------------------------------------


def test_objects_are_aligned_writable_and_untouched(pools: Pools, backend: str, lcore: int) -> None:
    mp = pools(64, elt_size=100, cache_size=16)
    assert mp.objects.shape == (64, 100)
    for h in range(mp.n):
        view = mp.obj(h)
        assert len(view) == 100 and not view.readonly
        assert np.frombuffer(view, np.uint8).ctypes.data % 64 == 0
        assert mp.objects[h].ctypes.data % 64 == 0
        view[:] = pattern(h, 100).tobytes()
    # obj(h) and objects[h] are the same bytes.
    assert (mp.objects[5] == pattern(5, 100)).all()
    mp.objects[6, :4] = [1, 2, 3, 4]
    assert bytes(mp.obj(6)[:4]) == b"\x01\x02\x03\x04"
    mp.obj(6)[:4] = pattern(6, 100)[:4].tobytes()
    # Round trips through the cache and the ring leave the contents alone.
    rng = np.random.default_rng(5)
    out = np.empty(mp.n, dtype=np.uint32)
    for _ in range(5):
        k = int(rng.integers(1, mp.n + 1))
        assert mp.get_bulk(out, k) == k
        mp.put_bulk(rng.permutation(out[:k]))
    for h in range(mp.n):
        assert bytes(mp.obj(h)) == pattern(h, 100).tobytes(), h
    for bad in (mp.n, -1):
        with pytest.raises(pktflow.MempoolError):
            mp.obj(bad)
    with pytest.raises(pktflow.PktflowTypeError):
        mp.obj("1")  # type: ignore[arg-type]


@pytest.mark.parametrize(("flags", "stride"), [(0, 64), (pktflow.MEMPOOL_F_NO_CACHE_ALIGN, 24)])
def test_object_stride(pools: Pools, backend: str, flags: int, stride: int) -> None:
    mp = pools(8, elt_size=24, flags=flags)
    addresses = [np.frombuffer(mp.obj(h), np.uint8).ctypes.data for h in range(mp.n)]
    assert np.diff(addresses).tolist() == [stride] * (mp.n - 1)
    # Packed or not, objects do not overlap.
    for h in range(mp.n):
        mp.obj(h)[:] = bytes([h + 1]) * 24
    assert all(bytes(mp.obj(h)) == bytes([h + 1]) * 24 for h in range(mp.n))


def test_private_areas(pools: Pools, backend: str, lcore: int) -> None:
    mp = pools(32, elt_size=16, cache_size=4, private_data_size=12)
    assert mp.private.shape == (32, 12)
    for h in range(mp.n):
        area = mp.priv(h)
        assert len(area) == 12 and not area.readonly
        area[:] = bytes([h]) * 12
        mp.obj(h)[:] = bytes([255 - h]) * 16
    assert (mp.private[7] == 7).all()
    out = np.empty(mp.n, dtype=np.uint32)
    assert mp.get_bulk(out) == mp.n
    mp.put_bulk(out[::-1].copy())
    # Private areas and objects are separate, and the pool touched neither.
    for h in range(mp.n):
        assert bytes(mp.priv(h)) == bytes([h]) * 12
        assert bytes(mp.obj(h)) == bytes([255 - h]) * 16
    with pytest.raises(pktflow.MempoolError):
        mp.priv(mp.n)
    plain = pools(4, elt_size=16)
    assert len(plain.priv(0)) == 0 and plain.private.shape == (4, 0)


# -- user-owned caches ---------------------------------------------------------------


def test_user_cache(pools: Pools, backend: str) -> None:
    mp = pools(256, cache_size=0)  # the pool's own lcore caches are off
    cache = mp.cache_create(32)
    assert (cache.size, len(cache)) == (32, 0)
    out = np.empty(4, dtype=np.uint32)
    assert mp.get_bulk(out, 4, cache=cache) == 4
    # Refilled with 32 + 4; a user cache is not counted as available (DPDK).
    assert (len(cache), mp.ring.count()) == (32, 256 - 36)
    assert mp.avail_count() == 256 - 36 and mp.in_use_count() == 36
    mp.put_bulk(out, 4, cache=cache)
    assert (len(cache), mp.ring.count()) == (36, 256 - 36)
    assert mp.avail_count() == 256 - 36
    # No lcore row was used.
    assert mp.cache_rows[:, C_LEN].sum() == 0
    mp.cache_flush(cache)
    assert len(cache) == 0
    assert mp.full() and mp.ring.count() == 256


def test_user_cache_overrides_the_lcores(pools: Pools, backend: str, lcore: int) -> None:
    mp = pools(256, cache_size=16)
    cache = mp.cache_create(8)
    out = np.empty(3, dtype=np.uint32)
    assert mp.get_bulk(out, 3, cache=cache) == 3
    assert (len(cache), cache_len(mp, lcore), mp.ring.count()) == (8, 0, 256 - 11)
    # The lcore's own cache works alongside it.
    h = mp.get()
    assert (len(cache), cache_len(mp, lcore), mp.ring.count()) == (8, 16, 256 - 28)
    assert mp.avail_count() == 256 - 28 + 16
    mp.put(h)
    mp.put_bulk(out, cache=cache)
    mp.cache_flush(cache)
    mp.cache_flush()
    assert mp.ring.count() == 256 and mp.full()


def test_user_cache_sizes_are_checked(pools: Pools, backend: str) -> None:
    mp = pools(256)
    for size in (CACHE_MAX_SIZE + 1, 172, -1):  # 172 * 3 // 2 > 256
        with pytest.raises(pktflow.PktflowValueError):
            mp.cache_create(size)
    assert mp.cache_create(171).size == 171


# -- several lcores at once ------------------------------------------------------------


def test_lcore_threads_share_the_pool(pools: Pools, backend: str) -> None:
    threads, bursts = 4, 4000
    mp = pools(512, elt_size=8, cache_size=32)
    owner = np.full(mp.n, -1, dtype=np.int16)  # which thread holds each handle
    start = threading.Barrier(threads)
    errors: list[BaseException] = []
    lcores: list[int] = []

    def worker(tid: int) -> None:
        try:
            lcores.append(pktflow.register_lcore())
            rng = np.random.default_rng(100 + tid)
            buf = np.empty(64, dtype=np.uint32)
            held: list[int] = []
            start.wait(30)
            for _ in range(bursts):
                if rng.random() < 0.55 and len(held) < 200:
                    k = int(rng.integers(1, 65))
                    got = mp.get_bulk(buf, k)
                    if got == 0:
                        continue  # all or nothing: the others hold too many
                    assert got == k
                    mine = buf[:k]
                    # A handle held by someone else means the pool handed it out twice.
                    assert (owner[mine] == -1).all(), "a handle was handed out twice"
                    owner[mine] = tid
                    held += mine.tolist()
                elif held:
                    k = int(rng.integers(1, min(len(held), 64) + 1))
                    objs = u32(held[-k:])
                    del held[-k:]
                    owner[objs] = -1
                    mp.put_bulk(objs)
            owner[held] = -1
            mp.put_bulk(u32(held))
            mp.cache_flush()  # each lcore flushes its own cache
        except BaseException as exc:
            errors.append(exc)
        finally:
            pktflow.unregister_lcore()

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    assert not any(t.is_alive() for t in workers), "a worker hung"
    if errors:
        raise errors[0]
    assert len(set(lcores)) == threads
    assert (owner == -1).all()
    assert mp.cache_rows[:, C_LEN].sum() == 0
    assert mp.full() and mp.ring.count() == mp.n
    # Drain it as a plain thread: every handle exactly once.
    everything = np.empty(mp.n, dtype=np.uint32)
    assert mp.get_bulk(everything) == mp.n
    assert sorted(everything.tolist()) == list(range(mp.n))
    mp.put_bulk(everything)


# -- the hot path allocates nothing ----------------------------------------------------


def _pktflow_allocations(run: Callable[[], None]) -> int:
    """Bytes still allocated by pktflow's own files after ``run()``."""
    files = [
        tracemalloc.Filter(True, str(Path(module.__file__).parent / "*"))
        for module in (pktflow, pktflow.backends)
        if module.__file__
    ]
    before = tracemalloc.take_snapshot().filter_traces(files)
    run()
    after = tracemalloc.take_snapshot().filter_traces(files)
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def test_bursts_allocate_nothing(pools: Pools, lcore: int) -> None:
    if pktflow.backend_unavailable_reason("numba"):
        pytest.skip("needs the numba backend")
    mp = pools(4096, elt_size=64, cache_size=256, backend="numba")
    out = np.empty(32, dtype=np.uint32)
    get_bulk, put_bulk = mp.get_bulk, mp.put_bulk

    def bursts(count: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                get_bulk(out, 32)
                put_bulk(out, 32)

        return run

    bursts(2000)()  # warm-up: compiled code loaded, caches filled
    tracemalloc.start()
    try:
        small = _pktflow_allocations(bursts(1000))
        large = _pktflow_allocations(bursts(10000))
        current_before = tracemalloc.get_traced_memory()[0]
        bursts(10000)()
        growth = tracemalloc.get_traced_memory()[0] - current_before
    finally:
        tracemalloc.stop()
    assert (small, large) == (0, 0)
    # Nothing elsewhere (numba's dispatch, numpy) accumulates per burst either.
    assert growth < 1024
    assert mp.full()


def test_bound_get_and_put(pools: Pools, backend: str, caller: int | None) -> None:
    mp = pools(256, elt_size=8, cache_size=32)
    burst = np.zeros(16, dtype=np.uint32)
    io = mp.bind(burst)
    assert io.get_bulk(16) == 16
    assert mp.in_use_count() == 16
    assert io.put_bulk(16) == 16
    assert mp.full()
    assert io.get_bulk(17) == pktflow.abc.ERR_COUNT
    burst[:] = 1000
    assert io.put_bulk(1) == pktflow.abc.ERR_FOREIGN, "nothing put"
    assert mp.full()
    with pytest.raises(pktflow.PktflowTypeError):
        mp.bind(np.zeros(4, dtype=np.int32))


@pytest.mark.parametrize("caching", [False, True])
def test_bound_operations_fail_after_close(pools: Pools, backend: str, caching: bool) -> None:
    mp = pools(16, cache_size=4 if caching else 0)
    burst = np.empty(4, dtype=np.uint32)
    io = mp.bind(burst)
    assert io.get_bulk(4) == 4
    mp.close()
    burst[:] = 99
    for op in (io.get_bulk, io.put_bulk):
        assert op(4) == pktflow.abc.ERR_CLOSED
        assert op(0) == pktflow.abc.ERR_CLOSED
    assert burst.tolist() == [99] * 4, "a bound get reached a closed pool"
