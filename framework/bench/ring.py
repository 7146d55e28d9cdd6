"""``pktflow bench ring``: handles per second through rings, next to Python's queues.

For each backend and sync mode, at each burst size:

- ``1 thread``: enqueue_bulk a burst, then dequeue_bulk it into a
  preallocated array, from Python;
- ``1 -> 1 threads``: a producer thread and a consumer thread of one
  process, each a Python loop of burst calls (the kernels drop the GIL
  inside a call, the loops hold it between calls);
- ``1 -> 1 processes`` and ``2 -> 2 processes`` (``hugepage`` only):
  spawned workers, pinned to different CPUs, attached with
  ``Ring.lookup``, each a Python loop of burst calls;
- ``bound ...``: each of the rows above again, with the loops
  calling the operations of ``ring.bind(buf)`` (``tx.enqueue_burst(n)``,
  compiled calls that take only ``n``) instead of the ring's methods
  (``ring.enqueue_burst(buf, n)``); users will call both;
- ``jitted loop, 1 thread``: the single-thread loop inside ``@njit`` code
  calling the kernels ``ring.jit_ops`` names, a reference for what
  Python's calls cost.

Peers run in the same command: collections.deque, queue.Queue,
asyncio.Queue on uvloop, multiprocessing.Queue and faster-fifo, moving
integers one per call ("burst" 1) or as lists of 32 ("burst" 32).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any, NamedTuple

import numpy as np
from rich.console import Console

import pktflow
from pktflow._affinity import cpu_for, pinned
from pktflow.abc import RING_F_SC_DEQ, RING_F_SP_ENQ

from . import _peers
from ._command import Progress, run_bench
from ._loops import bound_pairs, bulk_pairs, ring_side, ring_worker
from ._measure import (
    CALL_WAYS,
    MIN_RUNS,
    Case,
    Row,
    Span,
    measure,
    python_row,
    row_key,
    run_threads,
    timed,
    twin_keys,
)
from ._report import compare_both, target_both
from ._team import Job, Team

__all__ = ["FULL", "QUICK", "RING_SIZE", "run_ring_bench"]

RING_SIZE = 4096  # the ring size of DPDK's ring_perf_autotest
MODES = {"SP/SC": RING_F_SP_ENQ | RING_F_SC_DEQ, "MP/MC": 0}
BACKENDS = ["pure", "numba", "hugepage"]
HEADLINE_BURST = 32  # DPDK's usual burst, and the length of the peers' lists
JITTED_SCALE = 16  # the jitted loop is ~30x faster: more handles keep its runs measurable

# Row names: what ran (the backend or peer is its own column).
ONE_THREAD = "1 thread"
THREADS = "1 -> 1 threads"
TASKS = "1 -> 1 tasks"
PROCESSES = "1 -> 1 processes"
PROCESSES_2 = "2 -> 2 processes"
JITTED = "jitted loop, 1 thread"
# Peers, in the backend column.
DEQUE = "collections.deque"
QUEUE = "queue.Queue"
ASYNCIO = "asyncio.Queue+uvloop"
MP_QUEUE = "multiprocessing.Queue"
FASTER_FIFO = "faster-fifo"


class Settings(NamedTuple):
    """How much a run measures."""

    bursts: list[int]
    handles: int  # handles per run at burst 32
    repeats: int  # timed runs per row, after one warm-up run


QUICK = Settings(bursts=[1, 32], handles=1 << 19, repeats=MIN_RUNS)
FULL = Settings(bursts=[1, 8, 32, 128], handles=1 << 22, repeats=7)


def _handles_at(burst: int, handles: int) -> int:
    """Handles per run at ``burst``, from ``handles`` at burst 32.

    Scaled so every burst size makes about as many calls (the call is what
    costs), and a multiple of 2 x burst, so two workers split it evenly.
    """
    unit = 2 * burst
    return max(unit, handles * burst // HEADLINE_BURST // unit * unit)


@contextmanager
def _ring(backend: str, flags: int) -> Iterator[pktflow.Ring]:
    # A fresh name per ring: runs never collide, and lookup finds this one.
    name = f"pktflow-bench-{uuid.uuid4().hex[:12]}"
    with pktflow.Ring(name, RING_SIZE, flags, backend=backend) as ring:
        yield ring


def _has_jit_ops(backend: str) -> bool:
    with _ring(backend, 0) as ring:
        return ring.jit_ops is not None


def _sleep0() -> None:
    # Drops the GIL and yields, so the other thread of a transfer runs
    # while this one finds the ring full or empty.
    time.sleep(0)


def _bursts(burst: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The preallocated arrays of a loop: handles to enqueue, room to dequeue into."""
    return np.arange(burst, dtype=np.uint32), np.zeros(burst, dtype=np.uint32)


def _pairs(ring: pktflow.Ring, burst: int, iterations: int, bound: bool) -> Callable[[], int]:
    """The single-thread loop over ``ring``: its methods, or the operations bound to its arrays."""
    objs, out = _bursts(burst)
    if bound:
        tx, rx = ring.bind(objs), ring.bind(out)
        return partial(bound_pairs, tx.enqueue_bulk, rx.dequeue_bulk, burst, iterations)
    return partial(bulk_pairs, ring.enqueue_bulk, ring.dequeue_bulk, objs, out, iterations)


class _Cases:
    """Builds the cases of one run of the ring benchmark; each ``once`` sets up and tears down."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _handles(self, burst: int) -> int:
        return _handles_at(burst, self.settings.handles)

    # -- pktflow rows ---------------------------------------------------------
    # ``bound``: the loops call the operations of ``ring.bind(array)``, not the methods.

    def single_thread(self, backend: str, mode: str, burst: int, bound: bool) -> Case:
        handles = self._handles(burst)

        def once() -> Span:
            with _ring(backend, MODES[mode]) as ring, pinned(cpu_for(0)):
                return timed(_pairs(ring, burst, handles // burst, bound))

        name, group = python_row(ONE_THREAD, bound)
        return Case(name, group, backend, mode, burst, handles, "", once)

    def jitted(self, backend: str, mode: str, burst: int) -> Case:
        from ._jitted import jitted_bulk_pairs

        handles = self._handles(burst) * JITTED_SCALE

        def once() -> Span:
            with _ring(backend, MODES[mode]) as ring, pinned(cpu_for(0)):
                ops, state = ring.jit_ops, ring.state
                assert ops is not None and state is not None  # _has_jit_ops chose the backend
                objs, out = _bursts(burst)
                # The first call compiles (or loads numba's cache): never in a timed run.
                jitted_bulk_pairs(state, ops, objs, out, 1)
                return timed(partial(jitted_bulk_pairs, state, ops, objs, out, handles // burst))

        note = "reference: the loop runs inside @njit code, over the kernels of ring.jit_ops"
        return Case(JITTED, "jitted", backend, mode, burst, handles, note, once)

    def threads(self, backend: str, mode: str, burst: int, bound: bool) -> Case:
        handles = self._handles(burst)

        def once() -> Span:
            with _ring(backend, MODES[mode]) as ring:
                side = partial(ring_side, ring, burst, handles, _sleep0, bound=bound)
                return run_threads([side(send=True), side(send=False)])

        name, group = python_row(THREADS, bound)
        note = "Python loops: the GIL is held between calls"
        return Case(name, group, backend, mode, burst, handles, note, once)

    def processes(self, team: Team, mode: str, burst: int, pairs: int, bound: bool) -> Case:
        handles = self._handles(burst)

        def once() -> Span:
            with _ring("hugepage", MODES[mode]) as ring:
                quota = (ring.name, burst, handles // pairs)
                # Producer i and consumer i run on different CPUs, and with
                # more workers than CPUs every CPU holds a producer and a
                # consumer: a side that finds the ring full or empty yields
                # its CPU to the other side, never to its MP/MC twin.
                jobs = [Job(cpu_for(i), ring_worker, (*quota, True, bound)) for i in range(pairs)]
                jobs += [
                    Job(cpu_for(i + 1), ring_worker, (*quota, False, bound)) for i in range(pairs)
                ]
                (span,) = team.run(jobs, 1)
                return span

        name, group = python_row(PROCESSES if pairs == 1 else PROCESSES_2, bound)
        note = "spawned, pinned workers; first start to last handle"
        return Case(name, group, "hugepage", mode, burst, handles, note, once)

    # -- peers ---------------------------------------------------------------

    def deque(self, burst: int) -> Case:
        handles = self._handles(burst)

        def once() -> Span:
            with pinned(cpu_for(0)):
                return timed(partial(_peers.deque_pairs, burst, handles // burst))

        note = "extend by a list, popleft each"
        return Case(ONE_THREAD, "peer", DEQUE, None, burst, handles, note, once)

    def queue(self) -> Case:
        items = self._handles(1)
        once = partial(_peers.queue_threads, items, RING_SIZE)
        return Case(THREADS, "peer", QUEUE, None, 1, items, "items", once)

    def asyncio(self, runner: asyncio.Runner, per_put: int) -> Case:
        handles = self._handles(per_put)

        def once() -> Span:
            with pinned(cpu_for(0)):
                return runner.run(_peers.asyncio_transfer(per_put, handles, RING_SIZE // per_put))

        return Case(TASKS, "peer", ASYNCIO, None, per_put, handles, _per_put_note(per_put), once)

    def queue_processes(self, team: Team, which: int, peer: str, per_put: int) -> Case:
        handles = self._handles(per_put)
        args = (which, per_put, handles)
        jobs = [
            Job(cpu_for(0), _peers.queue_producer, args),
            Job(cpu_for(1), _peers.queue_consumer, args),
        ]

        def once() -> Span:
            (span,) = team.run(jobs, 1)
            return span

        return Case(PROCESSES, "peer", peer, None, per_put, handles, _per_put_note(per_put), once)


def _measure_all(
    settings: Settings, peers: bool, fifo: bool, backends: list[str], progress: Progress
) -> list[Row]:
    """Build every case, with faster-fifo's if ``fifo``, and run them in interleaved rounds."""
    make = _Cases(settings)
    bursts = settings.bursts
    jitted = [b for b in backends if _has_jit_ops(b)]  # pure rings have no jitted kernels
    configs = [(b, mode, burst) for b in backends for mode in MODES for burst in bursts]
    cases = [make.single_thread(*config, bound) for bound in CALL_WAYS for config in configs]
    cases += [make.jitted(*config) for config in configs if config[0] in jitted]
    cases += [make.threads(*config, bound) for bound in CALL_WAYS for config in configs]
    with ExitStack() as resources:
        mp_queue = fifo_queue = None
        if peers:
            import uvloop

            runner = resources.enter_context(asyncio.Runner(loop_factory=uvloop.new_event_loop))
            cases += [make.deque(burst) for burst in bursts]
            cases += [make.queue()]
            cases += [make.asyncio(runner, per_put) for per_put in (1, HEADLINE_BURST)]
            # Both queues reach the workers when they are spawned: neither
            # can be sent to a running process.
            mp_queue = multiprocessing.get_context("spawn").Queue(RING_SIZE)
            resources.callback(mp_queue.join_thread)
            resources.callback(mp_queue.close)
            fifo_queue = _peers.faster_fifo_queue() if fifo else None
        if "hugepage" in backends or peers:
            progress("starting worker processes")
            team = resources.enter_context(Team(4, (mp_queue, fifo_queue)))
            if "hugepage" in backends:
                for bound in CALL_WAYS:
                    cases += [
                        make.processes(team, mode, burst, 1, bound)
                        for mode in MODES
                        for burst in bursts
                    ]
                    cases += [make.processes(team, "MP/MC", burst, 2, bound) for burst in bursts]
            for which, queue, peer in ((0, mp_queue, MP_QUEUE), (1, fifo_queue, FASTER_FIFO)):
                if queue is not None:
                    cases += [
                        make.queue_processes(team, which, peer, per_put)
                        for per_put in (1, HEADLINE_BURST)
                    ]
        return measure(cases, settings.repeats, progress)


def _per_put_note(per_put: int) -> str:
    return "items" if per_put == 1 else f"lists of {per_put}"


# The comparisons and targets the project set (DESIGN §9, and its issue), each
# for a row called by methods and for its twin by bound calls.
_B = HEADLINE_BURST
_HUGEPAGE_1_1 = twin_keys("hugepage", "SP/SC", PROCESSES, _B)
_NUMBA_1 = twin_keys("numba", "SP/SC", ONE_THREAD, _B)
_MP_QUEUE_32 = row_key(MP_QUEUE, None, PROCESSES, _B)
COMPARISONS = [
    *compare_both(
        "hugepage 1 -> 1 processes, burst 32",
        _HUGEPAGE_1_1,
        "multiprocessing.Queue, lists of 32",
        _MP_QUEUE_32,
        10.0,
    ),
    *compare_both(
        "hugepage 1 -> 1 processes, burst 32",
        _HUGEPAGE_1_1,
        "faster-fifo, lists of 32",
        row_key(FASTER_FIFO, None, PROCESSES, _B),
        15.0,
    ),
    *compare_both(
        "hugepage 1 -> 1 processes, burst 1",
        twin_keys("hugepage", "SP/SC", PROCESSES, 1),
        "multiprocessing.Queue, items",
        row_key(MP_QUEUE, None, PROCESSES, 1),
    ),
    *compare_both(
        "hugepage 2 -> 2 processes, burst 32",
        twin_keys("hugepage", "MP/MC", PROCESSES_2, _B),
        "multiprocessing.Queue 1 -> 1, lists of 32",
        _MP_QUEUE_32,
    ),
    *compare_both(
        "numba 1 thread, burst 32",
        _NUMBA_1,
        "collections.deque, burst 32",
        row_key(DEQUE, None, ONE_THREAD, _B),
    ),
    *compare_both(
        "numba 1 -> 1 threads, burst 32",
        twin_keys("numba", "SP/SC", THREADS, _B),
        "asyncio.Queue+uvloop, lists of 32",
        row_key(ASYNCIO, None, TASKS, _B),
    ),
    *compare_both(
        "numba 1 -> 1 threads, burst 1",
        twin_keys("numba", "SP/SC", THREADS, 1),
        "queue.Queue, items",
        row_key(QUEUE, None, THREADS, 1),
    ),
]
TARGETS = [
    *target_both("hugepage 1 -> 1 processes, burst 32", _HUGEPAGE_1_1, 40e6),
    *target_both("numba 1 thread, burst 32", _NUMBA_1, 30e6),
]


def run_ring_bench(
    *,
    quick: bool = False,
    as_json: bool = False,
    backends: list[str] | None = None,
    bursts: list[int] | None = None,
    repeats: int | None = None,
    handles: int | None = None,
    peers: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure rings and their peers, print a table (or JSON), and return the result.

    Args:
        quick: fewer handles per run, bursts 1 and 32 only (under a minute).
        as_json: print the result as JSON on stdout instead of tables.
        backends: ring backends to measure (default: pure, numba, hugepage);
            unavailable ones are skipped with a note.
        bursts: burst sizes (default 1, 8, 32, 128; quick: 1, 32).
        repeats: timed runs per row, after one warm-up run (default 7; quick: 5).
        handles: handles per run at burst 32 (default 2**22; quick: 2**19);
            other bursts scale, so every burst size makes about as many calls.
        peers: also measure deque, queue.Queue, asyncio.Queue,
            multiprocessing.Queue and faster-fifo.
        console: where tables and progress go (default: stdout).

    Returns:
        The result: ``rows`` (name, group, backend, mode, burst, median, min,
        max, runs, rates, in handles/s), ``ratios``, ``targets``, ``notes``,
        ``settings`` and ``machine``.

    Usage: ``result = run_ring_bench(quick=True)``
    """
    defaults = QUICK if quick else FULL
    settings = Settings(
        bursts=list(bursts or defaults.bursts),
        handles=defaults.handles if handles is None else handles,
        repeats=defaults.repeats if repeats is None else repeats,
    )
    if not all(1 <= b <= RING_SIZE // 2 for b in settings.bursts):
        raise ValueError(f"burst sizes must be in 1..{RING_SIZE // 2}, not {settings.bursts}")
    if settings.repeats < 1 or settings.handles < 1:
        raise ValueError("repeats and handles must be at least 1")
    fifo_missing = _peers.faster_fifo_missing() if peers else None
    notes = [fifo_missing] if fifo_missing else []
    notes += [
        "rows marked bound: the loops call the operations of tx = ring.bind(buf), "
        "e.g. tx.enqueue_burst(n); the other pktflow rows call ring.enqueue_burst(buf, n)",
        "for peers, burst is integers per put: 1 = items, 32 = lists of 32; "
        "queue.Queue, asyncio.Queue and multiprocessing.Queue are bounded like the ring",
    ]
    return run_bench(
        "ring",
        backends or BACKENDS,
        partial(_measure_all, settings, peers, fifo_missing is None),
        repeats=settings.repeats,
        comparisons=COMPARISONS,
        targets=TARGETS,
        settings={**settings._asdict(), "quick": quick, "ring_size": RING_SIZE},
        notes=notes,
        as_json=as_json,
        console=console,
    )
