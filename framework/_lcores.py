"""The main lcore's view of its worker lcores: start them, hear them, stop them, notice death.

One ``Worker`` per lcore other than 0: a spawned process pinned by
itself, or a pinned thread of this process (``runtime.lcores: {N: thread}``)
running the same code. Start-up waits until every worker is ready and turns the first
failure into one ``PipelineError`` naming the lcore and the stage. While
the pipeline runs, the main lcore's event loop watches each worker's pipe
(its "done" report) and its process sentinel: a worker that ends before
reporting — SIGKILL included — is noticed at once, and ``on_death`` stops
the rest.

Usage (the runtime's)::

    lcores = WorkerLcores(name, plan, jobs, on_death=abort_all, on_failure=stop_all)
    await lcores.wait_ready(timeout=120)
    lcores.go()
    await lcores.wait_done()
    lcores.close()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ._errors import PipelineError
from ._lcore import release_dead_claims
from ._lcore_main import ABORT, GO, STOP, LcoreJob, lcore_main
from ._placement import Placement
from ._worker import Worker, WorkerError, exit_text

__all__ = ["WorkerLcores"]

# Ready means imported, attached and started: a cold numba cache makes that slow.
READY_TIMEOUT_S = 300.0


class WorkerLcores:
    """The worker lcores of one pipeline, seen from the main lcore."""

    def __init__(
        self,
        name: str,
        plan: Placement,
        jobs: list[LcoreJob],
        *,
        on_death: Callable[[PipelineError], None],
        on_failure: Callable[[PipelineError], None],
        threads: frozenset[int] = frozenset(),
    ) -> None:
        self.plan = plan
        self.on_death = on_death
        self.on_failure = on_failure
        self.workers: dict[int, Worker] = {}
        self.reports: dict[int, Any] = {}  # lcore -> its "done" report (None: no failure)
        self.failure: PipelineError | None = None
        self._closing = False
        self._done: asyncio.Future[None] | None = None
        try:
            for job in jobs:
                self.workers[job.lcore] = Worker(
                    lcore_main, (job,), name=f"{name} lcore {job.lcore}",
                    thread=job.lcore in threads,
                )  # fmt: skip
        except BaseException:
            self.close()
            raise

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait for every worker's ready; ``PipelineError`` for the first that cannot start."""
        loop = asyncio.get_running_loop()
        waits = {
            lcore: loop.run_in_executor(None, _ready_or_failure, worker, timeout)
            for lcore, worker in self.workers.items()
        }
        failures = []
        for lcore, wait in waits.items():
            problem = await wait
            if problem is not None:
                failures.append(self._start_error(lcore, *problem))
        if failures:
            raise failures[0]
        self._done = loop.create_future()
        for lcore, worker in self.workers.items():
            loop.add_reader(worker.fileno(), self._on_message, lcore)
            loop.add_reader(worker.sentinel, self._on_exit, lcore)

    def _start_error(self, lcore: int, stage: str | None, text: str, cause: Any) -> PipelineError:
        where = f"stage {stage!r} on lcore {lcore}" if stage else f"lcore {lcore}"
        error = PipelineError(f"{where} cannot start: {text}", stage=stage, lcore=lcore)
        if isinstance(cause, BaseException):
            error.__cause__ = cause
        return error

    def go(self) -> None:
        """Let every ready worker start its walk."""
        for worker in self.workers.values():
            worker.send(GO)

    def request_stop(self) -> None:
        """Ask every worker to stop its sources and drain (safe to repeat)."""
        self._tell(STOP)

    def abort(self) -> None:
        """Ask every worker to end at once (another lcore died)."""
        self._tell(ABORT)

    def _tell(self, message: str) -> None:
        for lcore, worker in self.workers.items():
            if lcore not in self.reports and worker.exitcode is None:
                with contextlib.suppress(WorkerError):
                    worker.send(message)

    async def wait_done(self) -> None:
        """Until every worker reported done (or died)."""
        if self._done is not None and self.workers:
            await asyncio.shield(self._done)

    def _on_message(self, lcore: int) -> None:
        worker = self.workers[lcore]
        if not worker.poll():
            return  # a spurious wake-up
        try:
            message = worker.receive(0)
        except WorkerError as exc:  # it died, or failed outside its walk
            self._on_exit(lcore, str(exc))
            return
        if not isinstance(message, tuple):
            return
        if message[0] in ("failure", "done") and message[1] is not None:
            self._record_failure(lcore, *message[1])
        if message[0] == "done":
            self.reports[lcore] = message[1]
            self._stop_watching(lcore)
            self._settle()

    def _record_failure(self, lcore: int, stage: str | None, text: str, cause: Any) -> None:
        """The first failure wins; it stops every lcore (``on_failure``)."""
        if self.failure is not None:
            return
        self.failure = PipelineError(text, stage=stage, lcore=lcore)
        if isinstance(cause, BaseException):
            self.failure.__cause__ = cause
        self.on_failure(self.failure)

    def _on_exit(self, lcore: int, detail: str | None = None) -> None:
        worker = self.workers[lcore]
        self._stop_watching(lcore)
        if lcore in self.reports or self._closing:
            return
        worker.join(1.0)
        stages = ", ".join(self.plan.stages_of(lcore))
        how = exit_text(worker.exitcode)
        if detail is not None and "failed:" in detail:
            how += ", after: " + detail
        error = PipelineError(f"lcore {lcore} (stages {stages}) died: {how}", lcore=lcore)
        self.reports[lcore] = "died"
        release_dead_claims()  # its lcore id (its caches die with the pipeline's pools)
        if self.failure is None:
            self.failure = error
        self.on_death(error)
        self._settle()

    def _stop_watching(self, lcore: int) -> None:
        loop = asyncio.get_running_loop()
        worker = self.workers[lcore]
        with contextlib.suppress(Exception):
            loop.remove_reader(worker.fileno())
        with contextlib.suppress(Exception):
            loop.remove_reader(worker.sentinel)

    def _settle(self) -> None:
        if (
            self._done is not None
            and not self._done.done()
            and len(self.reports) == len(self.workers)
        ):
            self._done.set_result(None)

    def close(self, timeout: float = 10.0) -> None:
        """Tell every worker to exit, wait for them, kill what is left; idempotent."""
        self._closing = True
        for lcore in list(self.workers):
            with contextlib.suppress(Exception):
                self._stop_watching(lcore)
        for worker in self.workers.values():
            worker.close(timeout)


def _ready_or_failure(worker: Worker, timeout: float) -> tuple[str | None, str, Any] | None:
    """None when the worker is ready; else (stage, what went wrong, cause)."""
    try:
        message = worker.receive(timeout)
    except WorkerError as exc:
        return None, str(exc), None
    if isinstance(message, tuple) and message[0] == "failed":
        return message[1], message[2], message[3]
    if message != "ready":
        return None, f"said {message!r} before it was ready", None
    return None
