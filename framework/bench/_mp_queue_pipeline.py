"""The quickstart graph over two processes as a Python user would write it: the 2-lcore peer.

A generator process puts lists of ``burst`` frames (``bytes``) on a bounded
``multiprocessing.Queue``; a second process takes them, unpacks each
frame's headers with ``struct`` (the asyncio peer's ``valid_frames``) and
counts packets and bytes. Both are spawned and pinned to the two CPUs the
pktflow rows use; the time runs from the generator's first put to the
counter's last list (``perf_counter`` is CLOCK_MONOTONIC, comparable across
processes). As in the asyncio peer, frames are built once and reused.

Usage::

    span = run_mp_queue_peer(frames(16, 64), count=1 << 20, burst=32, maxsize=64)
"""

from __future__ import annotations

import multiprocessing
from time import perf_counter
from typing import Any

from pktflow._worker import Parent, Worker

from ._asyncio_pipeline import valid_frames
from ._measure import Span

__all__ = ["run_mp_queue_peer"]

_READY_S = 120.0


def _generate(parent: Parent, queue: Any, templates: list[bytes], count: int, burst: int) -> None:
    flows = len(templates)
    cycle = templates * (burst // flows + 2)
    put = queue.put
    parent.ready()
    parent.receive()  # go
    start = perf_counter()
    sent = 0
    while sent < count:
        k = min(burst, count - sent)
        first = sent % flows
        put(cycle[first : first + k])
        sent += k
    put(None)
    parent.send(start)


def _parse_and_count(parent: Parent, queue: Any) -> None:
    get = queue.get
    parent.ready()
    packets = nbytes = 0
    while (batch := get()) is not None:
        valid = valid_frames(batch)
        packets += len(valid)
        nbytes += sum(map(len, valid))
    parent.send((packets, nbytes, perf_counter()))


def run_mp_queue_peer(
    templates: list[bytes], count: int, burst: int, maxsize: int, *, cpus: list[int]
) -> Span:
    """One run: ``count`` frames in lists of ``burst`` through a queue of ``maxsize`` lists.

    ``cpus``: where the generator and the counter process run.

    Usage: ``span = run_mp_queue_peer(frames(16, 64), 1 << 20, 32, 64, cpus=[0, 1])``
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue(maxsize)
    with (
        Worker(_parse_and_count, (queue,), name="mp-peer-count", cpu=cpus[1]) as counter,
        Worker(
            _generate, (queue, templates, count, burst), name="mp-peer-gen", cpu=cpus[0]
        ) as generator,
    ):
        counter.wait_ready(_READY_S)
        generator.wait_ready(_READY_S)
        generator.send("go")
        start = generator.receive(_READY_S)
        packets, _nbytes, end = counter.receive(_READY_S)
    queue.close()
    queue.join_thread()
    if packets != count:
        raise RuntimeError(f"the multiprocessing.Queue peer counted {packets} of {count} packets")
    return Span(start, end, packets)
