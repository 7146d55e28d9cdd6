"""Bodies of the processes the conformance suites spawn.

Spawned children import their target by module path, so these live in an
importable module rather than in a test file. They use only the public
API, attach by name (``pktflow.Ring.lookup``, ``pktflow.Zone.attach``) and
never import pytest. A failure is an exception, which makes the child's
exit code non-zero; the parent checks it.
"""

from __future__ import annotations

import os
import time

import numpy as np

import pktflow

# A consumer's results live in a "control" zone the parent creates: one
# int64 count per consumer (written only by that consumer, read by all to
# know when everything has arrived), then one uint32 stream per consumer,
# each large enough to hold every handle, in arrival order.
CONTROL_KIND = "testctl"
_HEADER_BYTES = 64
# Burst kinds the producers and consumers draw from.
_SCHEDULE = 4096


def control_layout(consumers: int, total: int) -> tuple[int, int]:
    """(zone payload size, bytes between consumer streams) for a control zone.

    Usage: ``size, stride = control_layout(2, 1_000_000)``
    """
    assert consumers * 8 <= _HEADER_BYTES
    stride = -(-total * 4 // 64) * 64  # each stream starts on a cache line
    return _HEADER_BYTES + consumers * stride, stride


def control_views(
    zone: pktflow.Zone, consumers: int, total: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The counts array and one stream array per consumer, as views of ``zone``.

    Usage: ``counts, streams = control_views(zone, 2, 1_000_000)``
    """
    _, stride = control_layout(consumers, total)
    counts = zone.array(np.int64, consumers)
    streams = [
        zone.array(np.uint32, total, offset=_HEADER_BYTES + i * stride) for i in range(consumers)
    ]
    return counts, streams


def _schedule(seed: int, max_burst: int) -> tuple[list[int], list[bool]]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_burst + 1, size=_SCHEDULE).tolist()
    bulk = (rng.random(_SCHEDULE) < 0.5).tolist()
    return sizes, bulk


def produce(ring_name: str, lo: int, hi: int, seed: int, max_burst: int, timeout_s: float) -> None:
    """Enqueue the handles ``lo .. hi - 1`` in order, in random bulks and bursts.

    Usage: ``ctx.Process(target=produce, args=("rx0", 0, 1000, 1, 32, 60.0))``
    """
    deadline = time.monotonic() + timeout_s
    sizes, bulk = _schedule(seed, max_burst)
    ring = pktflow.Ring.lookup(ring_name)
    try:
        j = 0
        chunk = 1 << 20  # generate the handles a piece at a time: 10**8 would be 400 MB
        for start in range(lo, hi, chunk):
            src = np.arange(start, min(start + chunk, hi), dtype=np.uint32)
            pos, end = 0, src.shape[0]
            while pos < end:
                n = min(sizes[j], end - pos)
                view = src[pos : pos + n]
                sent = ring.enqueue_bulk(view, n) if bulk[j] else ring.enqueue_burst(view, n)
                j = (j + 1) % _SCHEDULE
                if sent:
                    pos += sent
                    continue
                if time.monotonic() > deadline:
                    raise TimeoutError(f"producer {lo}..{hi}: stuck at {start + pos}")
                # Full: give the CPU to a consumer (more processes than cores).
                os.sched_yield()
    finally:
        ring.close()


def consume(
    ring_name: str,
    control_name: str,
    index: int,
    consumers: int,
    total: int,
    seed: int,
    max_burst: int,
    timeout_s: float,
) -> None:
    """Dequeue into this consumer's stream until all consumers together hold ``total``.

    Dequeues straight into the shared stream (no copy), in random bulks and
    bursts; a bulk that fails is followed by a burst, so the tail end of the
    traffic, smaller than a bulk, still drains.

    Usage: ``ctx.Process(target=consume, args=("rx0", "ctl", 0, 2, 10**6, 7, 32, 60.0))``
    """
    deadline = time.monotonic() + timeout_s
    sizes, bulk = _schedule(seed, max_burst)
    ring = pktflow.Ring.lookup(ring_name)
    zone = pktflow.Zone.attach(control_name, kind=CONTROL_KIND)
    try:
        counts, streams = control_views(zone, consumers, total)
        stream = streams[index]
        pos = 0
        j = 0
        use_bulk = True
        while True:
            n = min(sizes[j], total - pos)
            view = stream[pos : pos + n]
            if use_bulk and bulk[j]:
                got = ring.dequeue_bulk(view, n)
                use_bulk = got != 0
            else:
                got = ring.dequeue_burst(view, n)
                use_bulk = True
            j = (j + 1) % _SCHEDULE
            if got:
                pos += got
                counts[index] = pos  # only this process writes its count
                continue
            if not use_bulk:
                continue  # a failed bulk: try a burst before concluding anything
            if int(counts.sum()) >= total:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"consumer {index}: {int(counts.sum())} of {total} handles arrived"
                )
            os.sched_yield()
    finally:
        del stream, streams, counts  # views of the zone: drop them before it unmaps
        zone.close()
        ring.close()


def ring_echo(ring_name: str, expect_size: int, expect_capacity: int, expect_flags: int) -> None:
    """Attach, check the ring's geometry, drain it and enqueue what came back reversed.

    Usage: ``ctx.Process(target=ring_echo, args=("rx0", 16, 15, 0))``
    """
    ring = pktflow.Ring.lookup(ring_name)
    try:
        got = (ring.size, ring.capacity, ring.flags)
        if got != (expect_size, expect_capacity, expect_flags):
            raise AssertionError(f"attached ring has (size, capacity, flags) {got}")
        out = np.zeros(ring.capacity, dtype=np.uint32)
        k = ring.dequeue_burst(out)
        if ring.count() != 0:
            raise AssertionError(f"ring still holds {ring.count()} after a full burst")
        if ring.enqueue_bulk(out[:k][::-1].copy()) != k:
            raise AssertionError("could not send the handles back")
    finally:
        ring.close()


def ring_lookup_fails(ring_name: str) -> None:
    """Exit 0 only if ``Ring.lookup(ring_name)`` raises ``NotFoundError`` here.

    Usage: ``ctx.Process(target=ring_lookup_fails, args=("gone",))``
    """
    try:
        ring = pktflow.Ring.lookup(ring_name)
    except pktflow.NotFoundError:
        return
    ring.close()
    raise AssertionError(f"ring {ring_name!r} is still attachable")


def zone_echo(name: str, count: int) -> None:
    """Attach zone ``name``, check ``0 .. count - 1`` is in it, and write its negation after.

    Usage: ``ctx.Process(target=zone_echo, args=("z0", 256))``
    """
    zone = pktflow.Zone.attach(name)
    try:
        words = zone.array(np.uint32, 2 * count)
        if not np.array_equal(words[:count], np.arange(count, dtype=np.uint32)):
            raise AssertionError("the child does not see what the creator wrote")
        words[count:] = ~words[:count]
        del words
    finally:
        zone.close()


def zone_create_and_return(name: str) -> None:
    """Create and publish a shared zone, then return without closing it.

    Usage: ``ctx.Process(target=zone_create_and_return, args=("z0",))``
    """
    zone = pktflow.Zone.create(name, 4096, shared=True, hugepages="never")
    zone.publish()
    _keep.append(zone)  # alive until the interpreter exits normally


_keep: list[pktflow.Zone] = []


def zone_abandon(names: list[str], hugepages: list[str]) -> None:
    """Create and publish shared zones, then exit without any cleanup (as a crash would).

    Usage: ``ctx.Process(target=zone_abandon, args=(["z0"], ["never"]))``
    """
    # Held until the exit: a zone dropped earlier would be closed (and unlinked).
    zones = [
        pktflow.Zone.create(name, 4096, shared=True, hugepages=pages)  # type: ignore[arg-type]
        for name, pages in zip(names, hugepages, strict=True)
    ]
    for zone in zones:
        zone.publish()
    os._exit(0)  # skips finalizers and atexit: the files stay behind
