"""Targets for spawned workers in test_worker.py (importable by name, as spawn needs)."""

from __future__ import annotations

import os
import signal

from pktflow._worker import Parent


def echo(parent: Parent, greeting: str) -> None:
    """Ready at once; answers every message with the greeting until told to stop."""
    parent.ready()
    while (message := parent.receive()) is not None:
        parent.send(f"{greeting} {message}")


def report_cpus(parent: Parent) -> None:
    """Sends the CPUs it may run on (after the worker pinned it)."""
    parent.ready()
    parent.send(sorted(os.sched_getaffinity(0)))
    parent.receive()


def fail_in_setup(parent: Parent) -> None:
    """Raises before it is ready."""
    raise RuntimeError("no frobnicator in this child")


def die(parent: Parent, how: str) -> None:
    """Ready, then ends without a word: an exit status, or SIGKILL."""
    parent.ready()
    parent.receive()
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


def silent(parent: Parent) -> None:
    """Never says it is ready; waits for the parent's stop."""
    parent.receive()
