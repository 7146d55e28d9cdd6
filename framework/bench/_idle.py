"""What an idle lcore costs: CPU while it waits on an empty edge, per poll mode.

The pipeline is a UDP source on lcore 0 (bound to a loopback port nobody
sends to) feeding a counter on lcore 1, a worker process: lcore 1 has
nothing to do but wait on its empty hugepage ring. Its CPU time comes from
``/proc/<pid>/stat`` (utime + stime, in clock ticks) over the window, so
the figure is the worker's own, whatever the main lcore does meanwhile.

Usage::

    percent = asyncio.run(idle_cpu("adaptive", seconds=5.0))
"""

from __future__ import annotations

import asyncio
import os
from time import perf_counter

import pktflow

__all__ = ["idle_cpu"]

_SETTLE_S = 0.5  # after start: the worker's first sleep


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(poll: str, seconds: float, cpus: list[int]) -> float:
    """Percent of one CPU lcore 1 uses over ``seconds`` while its input edge stays empty.

    ``cpus``: the CPUs of lcores 0 and 1.

    Usage: ``await idle_cpu("interrupt", 5.0, [0, 1])``
    """
    p = pktflow.Pipeline.from_dict(
        {
            "name": "pktflow-bench-idle",
            "runtime": {"poll": poll, "cpus": cpus},
            "mempools": {"pkts": {"n": 1023, "cache_size": 32, "priv_size": 8}},
            "stages": {
                "rx": {"type": "udp_source", "bind": "127.0.0.1:0"},
                "count": {"type": "counter", "inputs": ["rx"], "lcore": 1},
            },
        }
    )
    await p.start()
    try:
        await asyncio.sleep(_SETTLE_S)
        assert p._workers is not None
        pid = p._workers.workers[1].pid
        assert pid is not None
        cpu, wall = _cpu_seconds(pid), perf_counter()
        await asyncio.sleep(seconds)
        used = (_cpu_seconds(pid) - cpu) / (perf_counter() - wall)
    finally:
        await p.stop()
    return 100.0 * used
