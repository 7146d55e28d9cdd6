"""``pktflow bench mempool``: objects per second through mempools and mbuf pools.

A rate counts objects taken and given back: one get and one put (one
alloc and one free) count once. For each backend, in one thread that is
a registered lcore:

- ``get()+put()`` (burst 1) and ``get_bulk+put_bulk`` (bursts 8, 32, 128)
  from Python, on a pool of 8191 objects of 256 bytes with the lcore's
  cache of 256 (mode ``cache``) and on one with ``cache_size=0`` (mode
  ``no cache``, what a thread that is not an lcore gets);
- ``bound get_bulk+put_bulk``: the same, with the loop calling the
  operations of ``mp.bind(buf)`` (``io.get_bulk(n)``, compiled calls that
  take only ``n``) instead of the pool's methods (``mp.get_bulk(buf, n)``);
- ``jitted get_bulk+put_bulk`` (numba and hugepage): the same loop inside
  ``@njit`` code over ``pktflow.backends.jit``, a reference for what
  Python's calls cost;
- mbufs, from a pool of 8191 x 2176 bytes with a cache of 256:
  ``alloc()+append+free()`` per packet (burst 1, ``append(64)``),
  ``alloc_bulk+append+free_bulk`` (``pool.mbuf(h).append(64)`` on each
  mbuf of the burst, no bytes written), ``alloc_bulk+free_bulk`` (no mbuf
  touched: the headline), the same by the operations of ``pool.bind(buf)``
  (``bound alloc_bulk+free_bulk``) and its jitted loop.

Peers in the same run: a free list of handles in a Python ``list``, one
``pop`` per object taken and one ``append`` per object given back, and
separately the fastest bulk idiom on a list (slice, ``del``, ``extend``);
and ``bytearray(size)`` per object (taking one allocates it, zero-filled;
giving it back drops it).

The costs per object span four orders of magnitude (the pure backend's
mbufs from Python to the jitted loops), so each row is sized by time: its
iterations are chosen once so that a run lasts about ``run_s``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
from rich.console import Console

import pktflow
from pktflow._affinity import cpu_for, pinned

from ._command import Progress, run_bench
from ._loops import BurstFn, PutFn, bound_pairs, bulk_pairs
from ._measure import (
    CALL_WAYS,
    MIN_RUNS,
    Case,
    Row,
    Span,
    measure,
    python_row,
    row_key,
    timed,
    twin_keys,
)
from ._report import Comparison, compare_both, target_both
from .ring import BACKENDS, HEADLINE_BURST, _has_jit_ops

__all__ = ["CACHE_SIZE", "ELT_SIZE", "FULL", "POOL_SIZE", "QUICK", "run_mempool_bench"]

POOL_SIZE = 8191  # DPDK's usual pool size: 2**13 - 1
ELT_SIZE = 256
CACHE_SIZE = 256
MODES = {"cache": CACHE_SIZE, "no cache": 0}
APPEND = 64  # bytes appended to each packet: a minimal Ethernet frame
DATA_ROOM = pktflow.MBUF_DEFAULT_BUF_SIZE

# Row names: what ran (the backend or peer is its own column).
GET_PUT_ONE = "get()+put()"
GET_PUT = "get_bulk+put_bulk"
JITTED_GET_PUT = "jitted get_bulk+put_bulk"
PACKET = "alloc()+append+free()"
ALLOC_APPEND_FREE = "alloc_bulk+append+free_bulk"
ALLOC_FREE = "alloc_bulk+free_bulk"
JITTED_ALLOC_FREE = "jitted alloc_bulk+free_bulk"
POP_APPEND = "pop+append each"
SLICES = "slice+del+extend"
ALLOCATE = "allocate+drop each"
# Peers, in the backend column.
FREE_LIST = "list free list"


def _bytearray_peer(size: int) -> str:
    return f"bytearray({size})"


class Settings(NamedTuple):
    """How much a run measures."""

    bursts: list[int]  # objects per call; 1 is the single-object API
    run_s: float  # about how long each timed run lasts
    repeats: int  # timed runs per row, after one warm-up run
    pool_size: int  # objects in each pool


QUICK = Settings(bursts=[1, 32], run_s=0.1, repeats=MIN_RUNS, pool_size=POOL_SIZE)
FULL = Settings(bursts=[1, 8, 32, 128], run_s=0.3, repeats=7, pool_size=POOL_SIZE)


def _name() -> str:
    # A fresh name per pool: runs never collide, and none outlives its case.
    return f"pktflow-bench-{uuid.uuid4().hex[:12]}"


def _iterations_for(trial: Callable[[int], Span], run_s: float) -> int:
    """The iterations that make one run of ``trial`` last about ``run_s`` seconds.

    Trials grow until one lasts a tenth of ``run_s`` (shorter ones are
    mostly timer and cache noise), then the count scales to ``run_s``.
    """
    iterations = 1
    while True:
        span = trial(iterations)
        elapsed = span.end - span.start
        if elapsed >= run_s / 10:
            return max(1, round(iterations * run_s / elapsed))
        # Aim at a fifth of run_s, at most 100 times more per trial: the
        # first trials are too short to extrapolate far from.
        growth = min(100.0, run_s / 5 / max(elapsed, 1e-7))
        iterations = max(iterations + 1, round(iterations * growth))


# -- the Python loops -------------------------------------------------------------
# Written as a careful user would: bound methods and arrays are locals,
# arrays are allocated once.


def _single_pairs(get: Callable[[], Any], put: Callable[[Any], Any], iterations: int) -> int:
    """Take one object and give it back, ``iterations`` times; returns objects taken."""
    for _ in repeat(None, iterations):
        put(get())
    return iterations


def _packets(alloc: Callable[[], Any], iterations: int) -> int:
    """Allocate a packet, append ``APPEND`` bytes, free it; returns packets allocated."""
    for _ in repeat(None, iterations):
        m = alloc()
        m.append(APPEND)
        m.free()
    return iterations


def _appending_bursts(pool: pktflow.PktmbufPool, out: np.ndarray[Any, Any], iterations: int) -> int:
    """Allocate a burst, append ``APPEND`` bytes to each mbuf, free the burst; returns mbufs."""
    alloc_bulk, free_bulk, mbuf = pool.alloc_bulk, pool.free_bulk, pool.mbuf
    burst = out.shape[0]
    moved = 0
    for _ in repeat(None, iterations):
        got = alloc_bulk(out, burst)
        for h in out.tolist():
            mbuf(h).append(APPEND)
        free_bulk(out, got)
        moved += got
    return moved


def _held_pairs(
    pool: pktflow.Mempool, take: BurstFn, give: PutFn, burst: int, iterations: int, bound: bool
) -> Callable[[], int]:
    """Give back the burst held and take one again, ``iterations`` times; returns objects taken.

    ``take`` and ``give`` are the pool's methods (``get_bulk``/``put_bulk``,
    or an mbuf pool's ``alloc_bulk``/``free_bulk``); with ``bound`` the loop
    calls the operations of ``pool.bind(held)`` instead.
    """
    held = np.empty(burst, dtype=np.uint32)
    take(held, burst)  # start holding a burst, so each iteration gives one back first
    if not bound:
        return partial(bulk_pairs, give, take, held, held, iterations)
    take_n, give_n = pool.bind(held)  # (get_bulk, put_bulk) or (alloc_bulk, free_bulk)
    return partial(bound_pairs, give_n, take_n, burst, iterations)


def _pop_append(free: list[int], burst: int, iterations: int) -> int:
    """The list free list: taking n objects is n pops, giving them back n appends."""
    pop, append = free.pop, free.append
    if burst == 1:
        # One object: a user keeps it in a local, no list of taken handles.
        for _ in repeat(None, iterations):
            append(pop())
        return iterations
    taken = [0] * burst
    slots = range(burst)
    for _ in repeat(None, iterations):
        for i in slots:
            taken[i] = pop()
        for h in taken:
            append(h)
    return burst * iterations


def _slices(free: list[int], burst: int, iterations: int) -> int:
    """The fastest bulk idiom on a list: take the last ``burst`` by a slice, give back by extend."""
    extend = free.extend
    for _ in repeat(None, iterations):
        taken = free[-burst:]
        del free[-burst:]
        extend(taken)
    return burst * iterations


def _bytearrays(size: int, burst: int, iterations: int) -> int:
    """Allocate ``burst`` bytearrays of ``size`` bytes, then drop them; returns objects."""
    if burst == 1:
        for _ in repeat(None, iterations):
            bytearray(size)  # dropped at once: its refcount frees it
        return iterations
    held: list[bytearray] = []
    append, clear = held.append, held.clear
    each = range(burst)
    for _ in repeat(None, iterations):
        for _ in each:
            append(bytearray(size))
        clear()
    return burst * iterations


# -- the cases -------------------------------------------------------------------


class _Cases:
    """Builds the cases of one run, each sized to ``run_s``; each ``once`` sets up, tears down."""

    def __init__(self, settings: Settings, progress: Callable[[str], None]) -> None:
        self.settings = settings
        self.progress = progress

    def _case(
        self,
        name: str,
        group: str,
        backend: str,
        mode: str | None,
        burst: int,
        note: str,
        trial: Callable[[int], Span],
    ) -> Case:
        """The case of ``trial`` (iterations -> span), with the iterations that fill ``run_s``."""
        self.progress(f"sizing: {row_key(backend, mode, name, burst)}")
        iterations = _iterations_for(trial, self.settings.run_s)
        once = partial(trial, iterations)
        return Case(name, group, backend, mode, burst, iterations * burst, note, once)

    def _mempool(self, backend: str, mode: str) -> pktflow.Mempool:
        return pktflow.Mempool(
            _name(), self.settings.pool_size, ELT_SIZE, MODES[mode], backend=backend
        )

    def _mbuf_pool(self, backend: str) -> pktflow.PktmbufPool:
        return pktflow.pktmbuf_pool_create(
            _name(), self.settings.pool_size, CACHE_SIZE, 0, DATA_ROOM, backend=backend
        )

    # -- pktflow rows -----------------------------------------------------------
    # ``bound``: the loops call the operations of ``pool.bind(array)``, not the methods.

    def get_put(self, backend: str, mode: str, burst: int, bound: bool) -> Case:
        def trial(iterations: int) -> Span:
            pool = self._mempool(backend, mode)
            with pool, pinned(cpu_for(0)):
                if burst == 1 and not bound:
                    return timed(partial(_single_pairs, pool.get, pool.put, iterations))
                pairs = _held_pairs(pool, pool.get_bulk, pool.put_bulk, burst, iterations, bound)
                return timed(pairs)

        # The single-object API has no bound form: a bound row at burst 1 calls get_bulk(1).
        name, group = python_row(GET_PUT_ONE if burst == 1 and not bound else GET_PUT, bound)
        return self._case(name, group, backend, mode, burst, "from Python", trial)

    def jitted_get_put(self, backend: str, mode: str, burst: int) -> Case:
        from ._jitted_pool import mempool_pairs

        def trial(iterations: int) -> Span:
            pool = self._mempool(backend, mode)
            with pool, pinned(cpu_for(0)):
                state, row = pool.ring.state, pool.cache_rows[pktflow.lcore_id()]
                out = np.empty(burst, dtype=np.uint32)
                # The first call compiles (or loads numba's cache): never in a timed run.
                mempool_pairs(state, row, out, 1)
                return timed(partial(mempool_pairs, state, row, out, iterations))

        note = "reference: the loop runs inside @njit code, over pktflow.backends.jit"
        return self._case(JITTED_GET_PUT, "jitted", backend, mode, burst, note, trial)

    def packets(self, backend: str) -> Case:
        def trial(iterations: int) -> Span:
            pool = self._mbuf_pool(backend)
            with pool, pinned(cpu_for(0)):
                return timed(partial(_packets, pool.alloc, iterations))

        note = f"from Python: pool.alloc(), m.append({APPEND}), m.free()"
        return self._case(PACKET, "pktflow", backend, "cache", 1, note, trial)

    def appending(self, backend: str, burst: int) -> Case:
        def trial(iterations: int) -> Span:
            pool = self._mbuf_pool(backend)
            with pool, pinned(cpu_for(0)):
                held = np.empty(burst, dtype=np.uint32)
                return timed(partial(_appending_bursts, pool, held, iterations))

        note = f"from Python: pool.mbuf(h).append({APPEND}) on each"
        return self._case(ALLOC_APPEND_FREE, "pktflow", backend, "cache", burst, note, trial)

    def alloc_free(self, backend: str, burst: int, bound: bool) -> Case:
        def trial(iterations: int) -> Span:
            pool = self._mbuf_pool(backend)
            with pool, pinned(cpu_for(0)):
                take, give = pool.alloc_bulk, pool.free_bulk
                return timed(_held_pairs(pool, take, give, burst, iterations, bound))

        name, group = python_row(ALLOC_FREE, bound)
        return self._case(
            name, group, backend, "cache", burst, "from Python: no mbuf touched", trial
        )

    def jitted_alloc_free(self, backend: str, burst: int) -> Case:
        from ._jitted_pool import mbuf_pairs

        def trial(iterations: int) -> Span:
            pool = self._mbuf_pool(backend)
            with pool, pinned(cpu_for(0)):
                state, words = pool.ring.state, pool.header_words
                row = pool.cache_rows[pktflow.lcore_id()]
                out = np.empty(burst, dtype=np.uint32)
                mbuf_pairs(state, words, row, out, 1)  # compile or load the cache, untimed
                return timed(partial(mbuf_pairs, state, words, row, out, iterations))

        note = "reference: the loop runs inside @njit code, over pktflow.backends.jit"
        return self._case(JITTED_ALLOC_FREE, "jitted", backend, "cache", burst, note, trial)

    # -- peers -------------------------------------------------------------------

    def _free_list(self, name: str, loop: Callable[[list[int], int, int], int], burst: int) -> Case:
        def trial(iterations: int) -> Span:
            free = list(range(self.settings.pool_size))
            with pinned(cpu_for(0)):
                return timed(partial(loop, free, burst, iterations))

        note = f"a list of {self.settings.pool_size} handles"
        return self._case(name, "peer", FREE_LIST, None, burst, note, trial)

    def pop_append(self, burst: int) -> Case:
        return self._free_list(POP_APPEND, _pop_append, burst)

    def slices(self, burst: int) -> Case:
        return self._free_list(SLICES, _slices, burst)

    def bytearrays(self, size: int, burst: int) -> Case:
        def trial(iterations: int) -> Span:
            with pinned(cpu_for(0)):
                return timed(partial(_bytearrays, size, burst, iterations))

        note = "taking allocates (zero-filled), giving back drops"
        return self._case(ALLOCATE, "peer", _bytearray_peer(size), None, burst, note, trial)


def _measure_all(
    settings: Settings, peers: bool, backends: list[str], progress: Progress
) -> list[Row]:
    """Build and size every case, then run them in interleaved rounds.

    The calling thread is made an lcore meanwhile (its cache serves the
    ``cache`` rows), and given back afterwards unless it already was one.
    """
    was_lcore = pktflow.lcore_id() != pktflow.LCORE_ID_ANY
    pktflow.register_lcore()
    try:
        return measure(_cases(settings, peers, backends, progress), settings.repeats, progress)
    finally:
        if not was_lcore:
            pktflow.unregister_lcore()


def _cases(settings: Settings, peers: bool, backends: list[str], progress: Progress) -> list[Case]:
    make = _Cases(settings, progress)
    bursts = settings.bursts
    bulk = [b for b in bursts if b > 1]
    jitted = [b for b in backends if _has_jit_ops(b)]  # pure pools have no jitted kernels
    configs = [(b, mode, burst) for b in backends for mode in MODES for burst in bursts]
    cases = [make.get_put(*config, bound) for bound in CALL_WAYS for config in configs]
    cases += [make.jitted_get_put(*config) for config in configs if config[0] in jitted]
    for b in backends:
        # Per packet (always appending), then each bulk burst with and without appends.
        cases += [make.packets(b)] if 1 in bursts else []
        for burst in bulk:
            cases += [make.appending(b, burst), make.alloc_free(b, burst, False)]
    cases += [make.alloc_free(b, burst, True) for b in backends for burst in bulk]
    cases += [make.jitted_alloc_free(b, burst) for b in jitted for burst in bulk]
    if peers:
        cases += [make.pop_append(burst) for burst in bursts]
        cases += [make.slices(burst) for burst in bulk]
        cases += [make.bytearrays(size, b) for size in (ELT_SIZE, DATA_ROOM) for b in bursts]
    return cases


# The comparisons and targets the project set (DESIGN §9, and its issue), each
# for a row called by methods and for its twin by bound calls.
_B = HEADLINE_BURST
_JITTED = ("numba", "hugepage")
_POP_APPEND_1 = row_key(FREE_LIST, None, POP_APPEND, 1)
_POP_APPEND_32 = row_key(FREE_LIST, None, POP_APPEND, _B)
_SLICES_32 = row_key(FREE_LIST, None, SLICES, _B)
_MBUF_PEER_32 = row_key(_bytearray_peer(DATA_ROOM), None, ALLOCATE, _B)
_NUMBA_ONE = row_key("numba", "cache", GET_PUT_ONE, 1)
_NUMBA_BOUND_ONE = twin_keys("numba", "cache", GET_PUT, 1)[1]
COMPARISONS = [
    *(
        c
        for b in _JITTED
        for peer_label, peer, target in (
            ("list free list, pop+append each, 32", _POP_APPEND_32, 2.0),
            ("list free list, slice+del+extend, 32", _SLICES_32, None),
        )
        for c in compare_both(
            f"{b} get_bulk+put_bulk 32, cache",
            twin_keys(b, "cache", GET_PUT, _B),
            peer_label,
            peer,
            target,
        )
    ),
    # One object a call, the other way round: a ratio below 0.1 would print as 0.0x.
    Comparison(
        "list free list, pop+append, 1 vs numba get()+put(), cache", _POP_APPEND_1, _NUMBA_ONE
    ),
    Comparison(
        "list free list, pop+append, 1 vs numba get_bulk+put_bulk 1, cache, bound calls",
        _POP_APPEND_1,
        _NUMBA_BOUND_ONE,
    ),
    *(
        c
        for b in _JITTED
        for c in compare_both(
            f"{b} mbuf alloc_bulk+free_bulk 32",
            twin_keys(b, "cache", ALLOC_FREE, _B),
            f"bytearray({DATA_ROOM}) allocate+drop, 32",
            _MBUF_PEER_32,
        )
    ),
]
TARGETS = [
    t
    for label, name, minimum in (
        ("get_bulk+put_bulk 32, cache", GET_PUT, 30e6),
        ("mbuf alloc_bulk+free_bulk 32", ALLOC_FREE, 20e6),
    )
    for b in _JITTED
    for t in target_both(f"{b} {label}, from Python", twin_keys(b, "cache", name, _B), minimum)
]


def run_mempool_bench(
    *,
    quick: bool = False,
    as_json: bool = False,
    backends: list[str] | None = None,
    bursts: list[int] | None = None,
    repeats: int | None = None,
    run_s: float | None = None,
    pool_size: int | None = None,
    peers: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure mempools, mbuf pools and their peers, print a table (or JSON), return the result.

    The calling thread is made an lcore for the run (its cache serves the
    ``cache`` rows) and given back afterwards unless it already was one.

    Args:
        quick: shorter runs, bursts 1 and 32 only (under a minute).
        as_json: print the result as JSON on stdout instead of tables.
        backends: backends to measure (default: pure, numba, hugepage);
            unavailable ones are skipped with a note.
        bursts: objects per call (default 1, 8, 32, 128; quick: 1, 32);
            1 is the single-object API (``get()``, ``alloc()``).
        repeats: timed runs per row, after one warm-up run (default 7; quick: 5).
        run_s: about how long each timed run lasts (default 0.3 s; quick: 0.1 s).
        pool_size: objects in each pool (default 8191; at least 384, for the cache).
        peers: also measure the list free list and bytearray allocation.
        console: where tables and progress go (default: stdout).

    Returns:
        The result: ``rows`` (name, group, backend, mode, burst, median, min,
        max, runs, rates, in objects/s), ``ratios``, ``targets``, ``notes``,
        ``settings`` and ``machine``.

    Usage: ``result = run_mempool_bench(quick=True)``
    """
    defaults = QUICK if quick else FULL
    settings = Settings(
        bursts=list(bursts or defaults.bursts),
        run_s=defaults.run_s if run_s is None else run_s,
        repeats=defaults.repeats if repeats is None else repeats,
        pool_size=defaults.pool_size if pool_size is None else pool_size,
    )
    smallest_pool = CACHE_SIZE * 3 // 2  # the cache's flush threshold must fit in the pool
    if settings.pool_size < smallest_pool:
        raise ValueError(f"pool_size must be at least {smallest_pool}, not {settings.pool_size}")
    # Room for the burst a loop holds next to what the cache holds.
    max_burst = settings.pool_size // 4
    if not all(1 <= b <= max_burst for b in settings.bursts):
        raise ValueError(f"burst sizes must be in 1..{max_burst}, not {settings.bursts}")
    if settings.repeats < 1 or settings.run_s <= 0:
        raise ValueError("repeats must be at least 1 and run_s positive")
    notes = [
        "a rate counts objects taken and given back: a get and a put (an alloc and a free) "
        "count once",
        f"cache: a registered lcore with a cache of {CACHE_SIZE}; no cache: a pool with "
        f"cache_size 0; pools of {settings.pool_size} objects of {ELT_SIZE} bytes, "
        f"mbuf pools of {settings.pool_size} x {DATA_ROOM} bytes with a cache of {CACHE_SIZE}",
        f"burst 1 is the single-object API, get()/put(h), alloc()+append({APPEND})+free(), "
        "except in bound rows (get_bulk(1), put_bulk(1)); "
        f"alloc_bulk+append+free_bulk appends {APPEND} bytes to each mbuf (none written), "
        "alloc_bulk+free_bulk touches none",
        "rows marked bound: the loop calls the operations of io = mp.bind(buf), "
        "io.get_bulk(n) and io.put_bulk(n) (of pool.bind(buf) for mbufs: alloc_bulk(n), "
        "free_bulk(n)); the other rows call mp.get_bulk(buf, n), pool.alloc_bulk(buf, n)",
        "list free list: pop+append each takes n objects with n pops and gives them back "
        "with n appends; slice+del+extend is the fastest bulk idiom on a list",
        f"each row's iterations were sized once for runs of about {settings.run_s:g} s",
    ]
    return run_bench(
        "mempool",
        backends or BACKENDS,
        partial(_measure_all, settings, peers),
        repeats=settings.repeats,
        comparisons=COMPARISONS,
        targets=TARGETS,
        settings={
            **settings._asdict(),
            "quick": quick,
            "elt_size": ELT_SIZE,
            "cache_size": CACHE_SIZE,
            "data_room_size": DATA_ROOM,
        },
        notes=notes,
        as_json=as_json,
        console=console,
    )
