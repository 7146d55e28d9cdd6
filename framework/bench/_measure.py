"""Timing and statistics shared by every ``pktflow bench`` command (CPUs: ``pktflow._affinity``).

A benchmark is a list of ``Case``s, each able to move handles once and
return a ``Span`` (when it started, when it ended, how many handles
arrived). ``measure`` runs them in interleaved rounds and gives a ``Row``
per case: the median rate with the min and max, as the field notes
report figures on these noisy machines.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, NamedTuple

from pktflow._affinity import cpu_for, cpu_list, pin

MIN_RUNS = 5  # a median of fewer runs says little on a noisy machine


class Span(NamedTuple):
    """One timed transfer: ``handles`` arrived between ``start`` and ``end`` (perf_counter).

    ``perf_counter`` is CLOCK_MONOTONIC on Linux, so spans taken in different
    processes of one machine are comparable.
    """

    start: float
    end: float
    handles: int

    @classmethod
    def combine(cls, spans: Sequence[Span]) -> Span:
        """The span of workers that ran together: first start to last end, all handles.

        Usage: ``Span.combine([producer_span, consumer_span])``
        """
        return cls(
            min(s.start for s in spans), max(s.end for s in spans), sum(s.handles for s in spans)
        )

    @property
    def rate(self) -> float:
        """Handles per second."""
        return self.handles / (self.end - self.start)


def timed(work: Callable[[], int]) -> Span:
    """Run ``work`` (which returns the handles it moved) once and time it.

    Usage: ``span = timed(lambda: loop(ring, 1 << 20))``
    """
    start = perf_counter()
    handles = work()
    return Span(start, perf_counter(), handles)


class Case(NamedTuple):
    """One row to measure: what it is, and how to run it once.

    ``once`` sets up (a ring, threads, a job on worker processes), times the
    transfer alone and tears down, so a case holds no resources between
    runs and many cases can be interleaved.

    Usage: ``Case("1 thread", "pktflow", "numba", "SP/SC", 32, 1 << 20, "", once)``
    """

    name: str  # what ran, e.g. "1 -> 1 processes"
    group: str  # "pktflow" (methods), "bound" (bound calls), "jitted" (reference) or "peer"
    backend: str | None  # the ring backend, or the peer's queue
    mode: str | None  # "SP/SC" or "MP/MC"; None for peers
    burst: int  # handles per call (for peers, integers per put)
    handles: int  # handles moved per run
    note: str
    once: Callable[[], Span]


def measure(
    cases: Sequence[Case], runs: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    """Run every case ``runs`` times, interleaved, after one untimed warm-up round.

    Interleaving (round after round of every case) spreads this noisy
    machine's slow phases, which last seconds, over all rows alike instead
    of sinking one row's five consecutive runs; the ratios stay fair. The
    warm-up round pays for first touches and lazy loading (numba's cache in
    a worker). The garbage collector is off while a run is timed, as
    timeit does.

    Usage: ``rows = measure(cases, runs=5)``
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    rates: list[list[float]] = [[] for _ in cases]
    for round_ in range(runs + 1):
        for i, case in enumerate(cases):
            if progress is not None:
                label = "warm-up" if round_ == 0 else f"run {round_}/{runs}"
                progress(f"{label}: {row_key(case.backend, case.mode, case.name, case.burst)}")
            with gc_paused():
                span = case.once()
            if round_:
                rates[i].append(span.rate)
    return [
        Row(c.name, c.group, c.backend, c.mode, c.burst, r, c.handles, c.note)
        for c, r in zip(cases, rates, strict=True)
    ]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Switch the cyclic garbage collector off for a timed section."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- threads ------------------------------------------------------------------


def run_threads(works: Sequence[Callable[[], int]]) -> Span:
    """Run each work in its own thread, pinned round robin, started together.

    Every thread pins itself, then waits at a barrier, so thread start-up is
    not timed; the span runs from the first start to the last end and
    counts the handles each work returns (consumers return what arrived,
    producers 0).

    Usage: ``span = run_threads([produce, consume])``
    """
    barrier = threading.Barrier(len(works))
    spans: list[Span | None] = [None] * len(works)
    errors: list[BaseException] = []

    def body(i: int, work: Callable[[], int]) -> None:
        try:
            pin(cpu_for(i))
            barrier.wait()
            spans[i] = timed(work)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=body, args=(i, w), name=f"bench-{i}", daemon=True)
        for i, w in enumerate(works)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return Span.combine([s for s in spans if s is not None])


# -- what else ran ------------------------------------------------------------

_PROC_STAT = "/proc/stat"
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float | None:
    """CPU-seconds the whole machine has spent busy (steal included), from /proc/stat."""
    try:
        with open(_PROC_STAT) as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    ticks = [int(x) for x in fields[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS_PER_S


def _own_cpu_s() -> float:
    t = os.times()  # children count once they are joined, as the team's workers are
    return t.user + t.system + t.children_user + t.children_system


@contextmanager
def cpu_audit() -> Iterator[dict[str, float]]:
    """Measure how much CPU other work took while the block ran.

    Fills the yielded dict on exit with ``others_cpu_s`` (busy CPU-seconds
    of the machine not spent by this process or its joined children) and
    ``others_share`` (that, as a fraction of all CPUs over the block); empty
    where /proc/stat is missing. On a shared 2-CPU machine this says
    whether a run's figures can be trusted.

    Usage: ``with cpu_audit() as audit: ...; audit.get("others_share")``
    """
    audit: dict[str, float] = {}
    busy, own, start = _machine_busy_s(), _own_cpu_s(), perf_counter()
    try:
        yield audit
    finally:
        busy_after = _machine_busy_s()
        if busy is not None and busy_after is not None:
            wall = perf_counter() - start
            others = max(0.0, busy_after - busy - (_own_cpu_s() - own))
            audit["others_cpu_s"] = others
            audit["others_share"] = others / (wall * len(cpu_list()))


# -- results ------------------------------------------------------------------


def row_key(backend: str | None, mode: str | None, name: str, burst: int) -> str:
    """The key of a row, by which comparisons find it.

    Usage: ``row_key("hugepage", "SP/SC", "1 -> 1 processes", 32)``
    """
    return " ".join(p for p in (backend, mode, name, f"burst {burst}") if p)


CALL_WAYS = (False, True)  # a row called from Python by methods, then its twin by bound calls


def python_row(name: str, bound: bool) -> tuple[str, str]:
    """The name and group of a row whose loop calls from Python: methods, or bound operations.

    The loop of a ``bound`` row calls the operations of ``x.bind(array)``
    (``tx.enqueue_burst(n)``) instead of the methods (``ring.enqueue_burst(buf, n)``).

    Usage: ``python_row("1 thread", True) == ("bound 1 thread", "bound")``
    """
    return (f"bound {name}", "bound") if bound else (name, "pktflow")


def twin_keys(backend: str, mode: str, name: str, burst: int) -> tuple[str, str]:
    """The keys of the row ``name`` called by methods and of its twin called by bound operations.

    Usage: ``row, bound_row = twin_keys("numba", "SP/SC", "1 thread", 32)``
    """
    bound_name, _ = python_row(name, True)
    return row_key(backend, mode, name, burst), row_key(backend, mode, bound_name, burst)


@dataclass(frozen=True)
class Row:
    """The rates of one benchmark: a pktflow ring configuration or a peer.

    Usage: ``Row("1 thread", "pktflow", "numba", "SP/SC", 32, rates, 1 << 20)``
    """

    name: str  # what ran, e.g. "1 -> 1 processes"
    group: str  # "pktflow" (methods), "bound" (bound calls), "jitted" (reference) or "peer"
    backend: str | None  # the ring backend; for a peer, the queue it uses
    mode: str | None  # "SP/SC" or "MP/MC"; None for peers
    burst: int  # handles per call (per put for peers: 1 = items, 32 = lists of 32)
    rates: list[float]  # handles/s of each timed run
    handles: int  # handles moved per run
    note: str = field(default="")

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def key(self) -> str:
        """A stable identifier, e.g. ``hugepage SP/SC 1 -> 1 processes burst 32``."""
        return row_key(self.backend, self.mode, self.name, self.burst)

    def as_dict(self) -> dict[str, Any]:
        """The row for ``--json``: medians and extremes in handles/s."""
        return {
            "key": self.key,
            "name": self.name,
            "group": self.group,
            "backend": self.backend,
            "mode": self.mode,
            "burst": self.burst,
            "median": self.median,
            "min": min(self.rates),
            "max": max(self.rates),
            "runs": len(self.rates),
            "rates": self.rates,
            "handles_per_run": self.handles,
            "note": self.note,
        }
