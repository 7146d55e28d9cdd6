"""CPUs and spawned workers: the pieces lcore executors and the benchmarks share."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import _worker_targets as targets
import pytest

import pktflow
from pktflow._affinity import cpu_for, cpu_list, lcore_cpus, pin, pinned
from pktflow._worker import Worker, WorkerError


def in_thread(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a fresh thread (pinning changes only that thread); its result."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(body())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]
    return result[0]


# -- CPUs -------------------------------------------------------------------------------


def test_cpu_list_is_the_affinity_mask() -> None:
    assert cpu_list() == sorted(os.sched_getaffinity(0))


def test_lcore_i_gets_the_ith_cpu_of_the_mask(caplog: pytest.LogCaptureFixture) -> None:
    cpus = cpu_list()
    with caplog.at_level(logging.WARNING, logger="pktflow"):
        assert lcore_cpus(len(cpus)) == cpus
    assert caplog.records == []
    assert lcore_cpus(2, cpus=[5, 3]) == [5, 3]
    assert [cpu_for(i, [4, 6]) for i in range(5)] == [4, 6, 4, 6, 4]


def test_more_lcores_than_cpus_wrap_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pktflow"):
        assert lcore_cpus(5, cpus=[2, 7]) == [2, 7, 2, 7, 2]
    (record,) = caplog.records
    assert "5 lcores on the 2 CPUs of runtime.cpus" in record.getMessage()
    with pytest.raises(pktflow.PktflowTypeError):
        lcore_cpus(2, cpus=[0, 1.0])  # type: ignore[list-item]


def test_pin_and_pinned_change_the_calling_thread_only() -> None:
    before = os.sched_getaffinity(0)
    cpu = cpu_list()[-1]

    def body() -> tuple[set[int], set[int]]:
        with pinned(cpu):
            inside = os.sched_getaffinity(0)
        pin(cpu)
        return inside, os.sched_getaffinity(0)

    inside, after_pin = in_thread(body)
    assert inside == after_pin == {cpu}
    assert os.sched_getaffinity(0) == before


def test_pinning_to_a_cpu_not_in_the_mask_says_which_are() -> None:
    missing = max(cpu_list()) + 1000
    with pytest.raises(pktflow.PktflowValueError, match=f"cannot pin to CPU {missing}"):
        in_thread(lambda: pin(missing))


# -- workers ----------------------------------------------------------------------------


def test_worker_ready_then_messages() -> None:
    with Worker(targets.echo, ("hello",), name="echo") as worker:
        worker.wait_ready(timeout=60)
        worker.send("there")
        assert worker.receive(timeout=10) == "hello there"
        assert worker.pid is not None and worker.pid != os.getpid()
    assert worker.exitcode == 0, "close asked it to stop and it did"


def test_worker_is_pinned_before_its_target_runs() -> None:
    cpu = cpu_list()[-1]
    with Worker(targets.report_cpus, name="pinned", cpu=cpu) as worker:
        worker.wait_ready(timeout=60)
        assert worker.receive(timeout=10) == [cpu]


def test_a_failing_worker_sends_its_traceback() -> None:
    worker = Worker(targets.fail_in_setup, name="setup")
    with pytest.raises(WorkerError, match="no frobnicator in this child") as info:
        worker.wait_ready(timeout=60)
    assert "RuntimeError" in str(info.value) and "'setup' failed" in str(info.value)
    assert isinstance(info.value, pktflow.PktflowError)
    assert worker.close() == 1


@pytest.mark.parametrize(("how", "status"), [("exit", "exit status 3"), ("kill", "SIGKILL")])
def test_a_dying_worker_is_an_error_not_a_hang(how: str, status: str) -> None:
    with Worker(targets.die, (how,), name="doomed") as worker:
        worker.wait_ready(timeout=60)
        worker.send("go")
        with pytest.raises(WorkerError, match=status):
            worker.receive(timeout=60)
        with pytest.raises(WorkerError, match="died"):
            worker.send("anyone?")


def test_a_silent_worker_times_out() -> None:
    worker = Worker(targets.silent, name="quiet")
    with worker, pytest.raises(WorkerError, match=r"no answer in 0\.2 s"):
        worker.wait_ready(timeout=0.2)
    assert worker.exitcode == 0


def test_the_engine_does_not_import_its_benchmark_tool() -> None:
    code = (
        "import importlib, pkgutil, sys, pktflow\n"
        "for m in pkgutil.iter_modules(pktflow.__path__):\n"
        "    if m.name not in ('bench', 'cli', '__main__'):\n"
        "        importlib.import_module('pktflow.' + m.name)\n"
        "sys.exit(any(name.startswith('pktflow.bench') for name in sys.modules))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
