"""Spawned worker processes: start one, wait until it is ready, hear how it failed.

A worker is a ``spawn``ed process (never relying on fork) running
``target(parent, *args)``, optionally pinned to a CPU first, joined to the
process that started it by a pipe. The protocol is small: the child calls
``parent.ready()`` once it has set up (attached zones, loaded kernels);
either side sends picklable messages; an exception in the child reaches
the parent as ``WorkerError`` carrying its traceback, and a child that
dies (SIGKILL included) as ``WorkerError`` with its exit status, instead
of a hang. ``None`` is the conventional "stop" message ``close`` sends.

Usage::

    def echo(parent: Parent, greeting: str) -> None:
        parent.ready()
        while (message := parent.receive()) is not None:
            parent.send(f"{greeting} {message}")

    with Worker(echo, ("hello",), name="echo", cpu=1) as worker:
        worker.wait_ready(timeout=30)
        worker.send("there")
        assert worker.receive(timeout=5) == "hello there"
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from ._affinity import pin
from ._errors import PktflowError

__all__ = ["READY", "Parent", "Worker", "WorkerError", "exit_text"]

READY = "ready"


class WorkerError(PktflowError, RuntimeError):
    """A worker process failed (with its traceback), died, or stopped answering."""


class _Failure(NamedTuple):
    traceback: str


class Parent:
    """The child's end of the pipe: what a worker's ``target`` gets first.

    Usage: ``parent.ready(); job = parent.receive()``
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def ready(self) -> None:
        """Tell the parent that set-up is done (``Worker.wait_ready`` returns).

        Usage: ``parent.ready()``
        """
        self._conn.send(READY)

    def send(self, message: Any) -> None:
        """Send a picklable message to the parent.

        Usage: ``parent.send(span)``
        """
        self._conn.send(message)

    def poll(self) -> bool:
        """Whether a message (or the parent's end) is waiting.

        Usage: ``while parent.poll(): handle(parent.receive())``
        """
        return self._conn.poll()

    def fileno(self) -> int:
        """The pipe's descriptor: readable when a message waits (for event loops)."""
        return self._conn.fileno()

    def receive(self) -> Any:
        """The parent's next message (blocks); None when the parent is gone or says stop.

        Usage: ``while (job := parent.receive()) is not None: ...``
        """
        try:
            return self._conn.recv()
        except EOFError:
            return None


def _child_main(
    conn: Connection, cpu: int | None, target: Callable[..., None], args: tuple[Any, ...]
) -> None:
    try:
        if cpu is not None:
            pin(cpu)
        target(Parent(conn), *args)
    except SystemExit:
        raise  # the target chose its exit status
    except BaseException:
        try:
            conn.send(_Failure(traceback.format_exc()))
        except OSError:
            pass  # the parent is gone: nobody to tell
        raise SystemExit(1) from None


def exit_text(exitcode: int | None) -> str:
    """How a process ended, in words: ``killed by SIGKILL``, ``exit status 1``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit status {exitcode}"


class _Thread(threading.Thread):
    """A worker thread shaped like a ``multiprocessing.Process``: exit code and sentinel.

    The sentinel is a pipe whose write end the thread closes as it ends, so
    an event loop watches a thread's end as it watches a process's. A
    thread cannot be killed: ``kill`` only stops waiting for it.
    """

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], **kwargs: Any) -> None:
        super().__init__(target=target, args=args, **kwargs)
        self._child_end = args[0]  # the thread's end of the pipe (Thread.run drops _args)
        self.exitcode: int | None = None
        self.sentinel, self._ended = os.pipe()

    @property
    def pid(self) -> int:
        return os.getpid()

    def run(self) -> None:
        try:
            super().run()
            self.exitcode = 0
        except SystemExit as exc:
            self.exitcode = exc.code if isinstance(exc.code, int) else 1
        finally:
            self._child_end.close()  # the parent sees EOF, as when a process ends
            os.close(self._ended)

    def kill(self) -> None:
        pass  # threads cannot be killed; close() has waited its timeout

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.sentinel)


class Worker:
    """A spawned worker process (or a thread) and the parent's end of its pipe.

    ``target`` must be importable by name (a module-level function), as
    ``spawn`` pickles it; so must ``args``. ``thread=True`` runs it in a
    thread of this process instead, with the same protocol.

    Usage::

        worker = Worker(serve, (ring_name,), name="lcore-1", cpu=1)
        worker.wait_ready(timeout=30)
    """

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...] = (),
        *,
        name: str,
        cpu: int | None = None,
        daemon: bool = True,
        thread: bool = False,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self._conn, child = ctx.Pipe()
        runner = _Thread if thread else ctx.Process
        self._process = runner(
            target=_child_main, args=(child, cpu, target, args), name=name, daemon=daemon
        )
        try:
            self._process.start()
        except BaseException:
            self._conn.close()
            raise
        finally:
            # Only the child may hold its end, or its death would not show as EOF here.
            if not thread:
                child.close()

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        """None while it runs; else its exit status (negative: the signal that ended it)."""
        return self._process.exitcode

    @property
    def sentinel(self) -> int:
        """A file descriptor that becomes readable when the worker ends (for event loops)."""
        return self._process.sentinel

    def fileno(self) -> int:
        """The pipe's descriptor: readable when the worker sent something (or died)."""
        return self._conn.fileno()

    def poll(self) -> bool:
        """Whether a message (or the worker's end) is waiting; never blocks.

        Usage: ``if worker.poll(): message = worker.receive(0)``
        """
        try:
            return self._conn.poll()
        except (OSError, EOFError):
            return True

    def join(self, timeout: float | None = None) -> int | None:
        """Wait at most ``timeout`` s for the process to end; its exit status or None.

        Usage: ``worker.join(1.0)``
        """
        self._process.join(timeout)
        return self._process.exitcode

    def send(self, message: Any) -> None:
        """Send a picklable message; ``WorkerError`` when the worker is gone.

        Usage: ``worker.send(job)``
        """
        try:
            self._conn.send(message)
        except OSError as exc:
            raise self._died() from exc

    def receive(self, timeout: float) -> Any:
        """The worker's next message, waiting at most ``timeout`` seconds.

        Raises ``WorkerError`` with the worker's traceback when it failed,
        with its exit status when it died, and when it said nothing in time.

        Usage: ``span = worker.receive(timeout=120)``
        """
        if not self._conn.poll(timeout):
            raise WorkerError(f"worker {self.name!r} gave no answer in {timeout:g} s")
        try:
            message = self._conn.recv()
        except EOFError as exc:
            raise self._died() from exc
        if isinstance(message, _Failure):
            raise WorkerError(f"worker {self.name!r} failed:\n{message.traceback}")
        return message

    def wait_ready(self, timeout: float) -> None:
        """Wait until the worker calls ``parent.ready()``; ``WorkerError`` otherwise.

        Usage: ``worker.wait_ready(timeout=30)``
        """
        message = self.receive(timeout)
        if message != READY:
            raise WorkerError(f"worker {self.name!r} said {message!r} before it was ready")

    def _died(self) -> WorkerError:
        self._process.join(1.0)
        return WorkerError(
            f"worker {self.name!r} (pid {self.pid}) died: {exit_text(self._process.exitcode)}"
        )

    def close(self, timeout: float = 5.0) -> int | None:
        """Ask the worker to stop (``None``), wait ``timeout`` s, then kill it; idempotent.

        Returns its exit status. Usage: ``worker.close()``
        """
        if not self._conn.closed:
            try:
                self._conn.send(None)
            except OSError:
                pass  # already gone
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout)
        self._conn.close()
        return self._process.exitcode

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
