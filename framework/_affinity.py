"""CPUs: which ones this process may use, which one each lcore gets, pinning.

DESIGN §6: lcore i runs on ``cpus[i]`` when the runtime names its CPUs,
else on the i-th CPU of the process's affinity mask, wrapping (with a
warning on the ``pktflow`` logger) when there are more lcores than CPUs.
Pinning is per thread (Linux's ``sched_setaffinity`` with pid 0), so a
thread lcore pins itself and a process lcore pins its main thread.

Usage::

    cpus = lcore_cpus(3)          # e.g. [0, 1, 0] on 2 CPUs, with a warning
    with pinned(cpus[0]):
        run_main_lcore()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ._arrays import checked_int
from ._errors import PktflowValueError

__all__ = ["cpu_for", "cpu_list", "lcore_cpus", "pin", "pinned"]

log = logging.getLogger("pktflow")


def cpu_list() -> list[int]:
    """The CPUs the calling thread may run on, in order (its affinity mask).

    Take it before pinning anything: a thread pinned to one CPU sees only
    that one (and so do the threads it starts).

    Usage: ``cpus = cpu_list()  # [0, 1]``
    """
    return sorted(os.sched_getaffinity(0))


def cpu_for(index: int, cpus: Sequence[int] | None = None) -> int:
    """The CPU for the ``index``-th worker: round robin over ``cpus`` (default ``cpu_list()``).

    Usage: ``producer, consumer = cpu_for(0), cpu_for(1)``
    """
    pool = cpu_list() if cpus is None else cpus
    if not pool:
        raise PktflowValueError("no CPUs to choose from")
    return pool[checked_int(index, "index", 0) % len(pool)]


def lcore_cpus(count: int, cpus: Sequence[int] | None = None) -> list[int]:
    """The CPU of each of ``count`` lcores: ``cpus[i]``, or the i-th CPU of the mask.

    Wraps around when there are more lcores than CPUs, and logs a warning
    then (lcores sharing a CPU take turns, and spinning ones starve each other).

    Usage: ``lcore_cpus(2, cpus=[2, 3])  # [2, 3]``
    """
    count = checked_int(count, "lcore count", 0)
    pool = cpu_list() if cpus is None else [checked_int(c, "a CPU", 0) for c in cpus]
    if count > len(pool):
        where = "runtime.cpus" if cpus is not None else "this process's CPU set"
        log.warning(
            "%d lcores on the %d CPUs of %s %s: some lcores share a CPU",
            count, len(pool), where, pool,
        )  # fmt: skip
    return [cpu_for(i, pool) for i in range(count)]


def pin(cpu: int) -> None:
    """Pin the calling thread to one CPU (Linux: pid 0 is the calling thread).

    Raises ``PktflowValueError`` naming the usable CPUs when this one is not.

    Usage: ``pin(lcore_cpus(2)[1])``
    """
    cpu = checked_int(cpu, "cpu", 0)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        raise PktflowValueError(
            f"cannot pin to CPU {cpu} ({exc.strerror}); this thread may use {cpu_list()}"
        ) from exc


@contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """Pin the calling thread to ``cpu`` for a block, then restore its CPU set.

    Usage: ``with pinned(cpu_for(0)): rates = measure(...)``
    """
    before = os.sched_getaffinity(0)
    pin(cpu)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
