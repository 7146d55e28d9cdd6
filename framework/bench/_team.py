"""Spawned worker processes that run timed jobs on command.

Starting a process and loading numba's cache costs about a second, far
more than a run, so a team is spawned once and kept for every process
benchmark of a command. A job names a context manager (importable, so a
spawned child can unpickle it) that sets up in the child and yields the
function to time; the team pins each worker, waits until all are set up,
then starts every timed run with one message per worker and times each
worker in the worker itself.

Objects that multiprocessing only shares by inheritance (its queues,
faster-fifo's) are handed to the workers when they are spawned, as
``shared``, and reach every job's context manager as its first argument.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from ._measure import Span, gc_paused, pin, timed

# A setup for one worker: called as ``target(shared, *args)`` in the child,
# it yields the function to time, which returns the handles it received.
JobTarget = Callable[..., AbstractContextManager[Callable[[], int]]]

_READY = "ready"
_RESULT_TIMEOUT_S = 120.0  # a lost handle or a dead peer shows as a hang: give up


class BenchError(RuntimeError):
    """A worker process failed or stopped answering; carries its traceback."""


class Job(NamedTuple):
    """One worker's part of a process benchmark.

    Usage: ``Job(cpu=1, target=ring_consumer, args=(ring.name, 32, handles))``
    """

    cpu: int
    target: JobTarget
    args: tuple[Any, ...]


def _serve(conn: Connection, shared: tuple[Any, ...]) -> None:
    """A worker's loop: one job at a time; None ends it."""
    while (job := conn.recv()) is not None:
        try:
            pin(job.cpu)
            with job.target(shared, *job.args) as work:
                conn.send(_READY)
                while conn.recv():  # True starts a timed run, False ends the job
                    with gc_paused():
                        span = timed(work)
                    conn.send(span)
        except BaseException:
            conn.send(traceback.format_exc())
            return


class Team:
    """``size`` spawned worker processes, kept for several benchmarks.

    Usage::

        with Team(2, shared=(queue,)) as team:
            spans = team.run([Job(0, produce, (n,)), Job(1, consume, (n,))], runs=5)
    """

    def __init__(self, size: int, shared: tuple[Any, ...] = ()) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        try:
            for i in range(size):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_serve, args=(child, shared), name=f"pktflow-bench-{i}", daemon=True
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
        except BaseException:
            self.close()
            raise

    def run(self, jobs: Sequence[Job], runs: int) -> list[Span]:
        """Set the jobs up on the first workers, then time ``runs`` runs of them together.

        Returns one combined span per run (first start to last end, the
        handles every worker received). A failure in any worker closes the
        team and raises ``BenchError`` with the worker's traceback.

        Usage: ``spans = team.run(jobs, runs=6)``
        """
        if len(jobs) > len(self._conns):
            raise ValueError(f"{len(jobs)} jobs for a team of {len(self._conns)}")
        conns = self._conns[: len(jobs)]
        try:
            for conn, job in zip(conns, jobs, strict=True):
                conn.send(job)
            for conn in conns:
                self._expect(conn, _READY)
            spans = []
            for _ in range(runs):
                for conn in conns:
                    conn.send(True)
                spans.append(Span.combine([self._expect(conn, Span) for conn in conns]))
            for conn in conns:
                conn.send(False)
            return spans
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _expect(conn: Connection, expected: Any) -> Any:
        """The worker's next answer: ``expected`` itself, or an instance of the type."""
        if not conn.poll(_RESULT_TIMEOUT_S):
            raise BenchError(f"a benchmark worker gave no answer in {_RESULT_TIMEOUT_S:.0f} s")
        try:
            answer = conn.recv()
        except EOFError as exc:
            raise BenchError("a benchmark worker died") from exc
        if answer == expected or (isinstance(expected, type) and isinstance(answer, expected)):
            return answer
        if isinstance(answer, str):  # the traceback _serve sends on failure
            raise BenchError(f"a benchmark worker failed:\n{answer}")
        raise BenchError(f"a benchmark worker answered {answer!r}")

    def close(self) -> None:
        """Stop every worker (politely, then by force); idempotent."""
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass  # that worker is already gone
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> Team:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
