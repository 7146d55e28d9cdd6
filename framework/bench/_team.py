"""Spawned worker processes that run timed jobs on command.

Starting a process and loading numba's cache costs about a second, far
more than a run, so a team is spawned once (``pktflow._worker.Worker``)
and kept for every process benchmark of a command. A job names a context
manager (importable, so a spawned child can unpickle it) that sets up in
the child and yields the function to time; the team pins each worker,
waits until all are set up, then starts every timed run with one message
per worker and times each worker in the worker itself.

Objects that multiprocessing only shares by inheritance (its queues,
faster-fifo's) are handed to the workers when they are spawned, as
``shared``, and reach every job's context manager as its first argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from pktflow._affinity import pin
from pktflow._worker import Parent, Worker, WorkerError

from ._measure import Span, gc_paused, timed

# A setup for one worker: called as ``target(shared, *args)`` in the child,
# it yields the function to time, which returns the handles it received.
JobTarget = Callable[..., AbstractContextManager[Callable[[], int]]]

_RESULT_TIMEOUT_S = 120.0  # a lost handle or a dead peer shows as a hang: give up


class Job(NamedTuple):
    """One worker's part of a process benchmark.

    Usage: ``Job(cpu=1, target=ring_consumer, args=(ring.name, 32, handles))``
    """

    cpu: int
    target: JobTarget
    args: tuple[Any, ...]


def _serve(parent: Parent, shared: tuple[Any, ...]) -> None:
    """A worker's loop: one job at a time; None ends it."""
    while (job := parent.receive()) is not None:
        pin(job.cpu)
        with job.target(shared, *job.args) as work:
            parent.ready()
            while parent.receive():  # True starts a timed run, False ends the job
                with gc_paused():
                    span = timed(work)
                parent.send(span)


class Team:
    """``size`` spawned worker processes, kept for several benchmarks.

    Usage::

        with Team(2, shared=(queue,)) as team:
            spans = team.run([Job(0, produce, (n,)), Job(1, consume, (n,))], runs=5)
    """

    def __init__(self, size: int, shared: tuple[Any, ...] = ()) -> None:
        self._workers: list[Worker] = []
        try:
            for i in range(size):
                self._workers.append(Worker(_serve, (shared,), name=f"pktflow-bench-{i}"))
        except BaseException:
            self.close()
            raise

    def run(self, jobs: Sequence[Job], runs: int) -> list[Span]:
        """Set the jobs up on the first workers, then time ``runs`` runs of them together.

        Returns one combined span per run (first start to last end, the
        handles every worker received). A failure in any worker closes the
        team and raises ``pktflow._worker.WorkerError`` with the worker's traceback.

        Usage: ``spans = team.run(jobs, runs=6)``
        """
        if len(jobs) > len(self._workers):
            raise ValueError(f"{len(jobs)} jobs for a team of {len(self._workers)}")
        workers = self._workers[: len(jobs)]
        try:
            for worker, job in zip(workers, jobs, strict=True):
                worker.send(job)
            for worker in workers:
                worker.wait_ready(_RESULT_TIMEOUT_S)
            spans = []
            for _ in range(runs):
                for worker in workers:
                    worker.send(True)
                spans.append(Span.combine([_span(worker) for worker in workers]))
            for worker in workers:
                worker.send(False)
            return spans
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every worker (politely, then by force); idempotent."""
        for worker in self._workers:
            worker.close()
        self._workers = []

    def __enter__(self) -> Team:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _span(worker: Worker) -> Span:
    answer = worker.receive(_RESULT_TIMEOUT_S)
    if not isinstance(answer, Span):
        raise WorkerError(f"a benchmark worker answered {answer!r}")
    return answer
