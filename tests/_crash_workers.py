"""Bodies of the processes tests/test_crash_safety.py and tests/stress/ spawn and kill.

A module of its own: ``spawn`` imports a child's target by name. Each
worker loops until told to stop (a byte in a shared file) and records
what it received in a file of its own, so that what a SIGKILLed worker
took before it died stays readable.
"""

from __future__ import annotations

import os

import numpy as np

import pktflow

# Flag words: producers stop, ready (one per worker), handles sent (per producer), consumers stop.
_STOP, _READY, _SENT, _DRAIN = 0, 1, 5, 7


def _flags(path: str) -> np.memmap:
    return np.memmap(path, dtype=np.uint32, mode="r+", shape=(8,))


def producer(ring_name: str, flags_path: str, index: int, count: int, burst: int) -> None:
    """Enqueue handles (index + 1) * count onwards in bursts until stopped (or out of them)."""
    ring = pktflow.Ring.lookup(ring_name)
    flags = _flags(flags_path)
    flags[_READY + 2 + index] = 1
    handles = np.arange((index + 1) * count, (index + 2) * count, dtype=np.uint32)
    sent = 0
    while sent < count and not flags[_STOP]:
        n = min(burst, count - sent)
        sent += ring.enqueue_burst(handles[sent : sent + n], n)
        flags[_SENT + index] = sent
    ring.close()


def consumer(ring_name: str, flags_path: str, index: int, record_path: str, total: int) -> None:
    """Dequeue bursts until told to drain and the ring is empty; append each handle to a record.

    Record: word 0 counts the handles after it (written after them). A plain
    copy per burst keeps the consumer faster than the producers, so the ring
    is seldom full and a kill often lands inside a transfer.
    """
    ring = pktflow.Ring.lookup(ring_name)
    flags = _flags(flags_path)
    record = np.memmap(record_path, dtype=np.uint32, mode="r+", shape=(total + 1,))
    flags[_READY + index] = 1
    out = np.empty(1 << 16, dtype=np.uint32)
    seen = 0
    while True:
        got = ring.dequeue_burst(out, len(out))
        if got:
            record[1 + seen : 1 + seen + got] = out[:got]
            seen += got
            record[0] = seen
        elif flags[_DRAIN] and ring.count() == 0:
            break
    ring.close()


def pool_worker(pool_name: str, flags_path: str, index: int, rounds: int, burst: int) -> None:
    """Loop get_bulk / put_bulk of ``burst`` objects ``rounds`` times (or until stopped)."""
    pool = pktflow.Mempool.lookup(pool_name)
    flags = _flags(flags_path)
    flags[_READY + index] = 1
    out = np.empty(burst, dtype=np.uint32)
    for _ in range(rounds):
        if flags[_STOP]:
            break
        if pool.get_bulk(out, burst) == burst:
            pool.put_bulk(out, burst)
    pool.close()


def pid() -> int:
    return os.getpid()


# -- scenarios (the parent's side), shared by tests/test_crash_safety.py and tests/stress/ --


def _spawn(target, *args):  # type: ignore[no-untyped-def]
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _wait_ready(flags: np.memmap, count: int, procs: list, timeout: float = 60.0) -> None:  # type: ignore[type-arg]
    import time

    deadline = time.monotonic() + timeout
    while int(flags[_READY : _READY + count].sum()) < count:
        if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
            raise AssertionError("a worker did not start")
        time.sleep(0.01)


def _join(procs: list, timeout: float) -> list:  # type: ignore[type-arg]
    import time

    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join(5)
    return hung


def ring_kill_scenario(tmp: str, name: str, victim: str, delay: float) -> dict:  # type: ignore[type-arg]
    """2 producers and 2 consumers on an MP/MC hugepage ring; SIGKILL ``victim`` after ``delay``.

    ``victim`` is "producer" or "consumer" (index 1 of its kind); the
    survivors go on for a while, then the producers stop and the consumers
    drain. Returns what the caller asserts on: hung workers, exit codes, how
    often each handle was received, how many each producer sent.
    """
    import signal
    import time

    # Bursts as large as the reproducer's: a kill often lands inside one.
    # count: more than a producer sends in the 0.15 s before the kill (1 << 23
    # was not always: a producer once finished first, and exited 0).
    count, burst = 1 << 24, 1 << 16
    total = 3 * count
    flags_path = os.path.join(tmp, f"{name}.flags")
    np.zeros(8, dtype=np.uint32).tofile(flags_path)
    flags = _flags(flags_path)
    seen_paths = []
    for i in range(2):
        path = os.path.join(tmp, f"{name}.rec{i}")
        with open(path, "wb") as f:
            f.truncate(4 * (total + 1))  # sparse: only what is written takes room
        seen_paths.append(path)
    ring = pktflow.Ring(name, 1 << 17, backend="hugepage")
    try:
        consumers = [_spawn(consumer, name, flags_path, i, seen_paths[i], total) for i in range(2)]
        producers = [_spawn(producer, name, flags_path, i, count, burst) for i in range(2)]
        everyone = consumers + producers
        _wait_ready(flags, 4, everyone)
        deadline = time.monotonic() + 30
        while not (flags[_SENT] and flags[_SENT + 1]) and time.monotonic() < deadline:
            time.sleep(0.001)  # both producers are sending: the kill lands mid-run
        time.sleep(min(delay, 0.15))
        killed = (producers if victim == "producer" else consumers)[1]
        os.kill(killed.pid, signal.SIGKILL)
        killed.join(10)
        time.sleep(0.2)  # the survivors go on meanwhile
        flags[_STOP] = 1
        hung = _join([p for p in producers if p is not killed], 60)
        flags[_DRAIN] = 1
        hung += _join([c for c in consumers if c is not killed], 60)
        seen = np.zeros(total, dtype=np.uint8)
        for path in seen_paths:
            record = np.memmap(path, dtype=np.uint32, mode="r")
            got = np.array(record[1 : 1 + int(record[0])])
            del record
            os.unlink(path)
            if got.size and int(got.max()) >= total:
                raise AssertionError(f"a handle that nobody sent: {int(got.max())}")
            np.add.at(seen, got, 1)
        return {
            "hung": hung,
            "killed_exit": killed.exitcode,
            "exits": [p.exitcode for p in everyone if p is not killed],
            "seen": seen,
            "count": count,
            "sent": [int(flags[_SENT]), int(flags[_SENT + 1])],
            "repairs": ring.repairs,
        }
    finally:
        flags[_STOP] = flags[_DRAIN] = 1
        ring.close()


def pool_kill_scenario(tmp: str, name: str, delay: float) -> dict:  # type: ignore[type-arg]
    """Four workers loop get_bulk/put_bulk on a hugepage mempool; one is SIGKILLed."""
    import signal
    import time

    n, burst = 65535, 4096
    flags_path = os.path.join(tmp, f"{name}.flags")
    np.zeros(8, dtype=np.uint32).tofile(flags_path)
    flags = _flags(flags_path)
    pool = pktflow.Mempool(name, n, 64, backend="hugepage")
    try:
        workers = [_spawn(pool_worker, name, flags_path, i, 10**9, burst) for i in range(4)]
        _wait_ready(flags, 4, workers)
        time.sleep(delay)
        os.kill(workers[1].pid, signal.SIGKILL)
        workers[1].join(10)
        time.sleep(0.2)  # the survivors go on meanwhile
        flags[_STOP] = 1
        survivors = [w for i, w in enumerate(workers) if i != 1]
        hung = _join(survivors, 60)
        pool.ring.repair()  # a reservation nobody waits behind
        out = np.empty(n, dtype=np.uint32)
        free = pool.ring.dequeue_burst(out, n)
        return {
            "hung": hung,
            "killed_exit": workers[1].exitcode,
            "exits": [w.exitcode for w in survivors],
            "free": out[:free].copy(),
            "n": n,
            "burst": burst,
            "repairs": pool.ring.repairs,
        }
    finally:
        flags[_STOP] = 1
        pool.close()


def check_ring_result(result: dict, victim: str) -> None:  # type: ignore[type-arg]
    """What a ring scenario must show: no hang, survivors exit 0, nothing twice."""
    assert not result["hung"], f"workers hung: {result['hung']}"
    assert result["killed_exit"] == -9, (
        f"the victim exited {result['killed_exit']} before the kill: it had finished"
    )
    assert result["exits"] == [0] * len(result["exits"]), result["exits"]
    seen, count = result["seen"], result["count"]
    twice = np.flatnonzero(seen > 1)
    assert twice.size == 0, f"delivered twice: {twice[:10]}"
    assert not seen[:count].any()  # no handle that nobody sent
    if victim == "producer":
        # The surviving producer (handles count ..) delivered everything it sent.
        sent = result["sent"][0]
        lost = sent - int(seen[count : count + sent].sum())
        assert lost == 0, f"{lost} of the surviving producer's {sent} handles lost"


def check_pool_result(result: dict) -> None:  # type: ignore[type-arg]
    assert not result["hung"], f"workers hung: {result['hung']}"
    assert result["killed_exit"] == -9
    assert result["exits"] == [0, 0, 0], result["exits"]
    free = result["free"]
    values, counts = np.unique(free, return_counts=True)
    assert (counts == 1).all(), f"in the free list twice: {values[counts > 1][:10]}"
    assert int(free.max(initial=0)) < result["n"]
    # Only what the dead worker held (one burst) or had reserved (one more) is gone.
    assert free.size >= result["n"] - 2 * result["burst"], free.size


def churn(ring_name: str, flags_path: str, burst: int) -> None:
    """The issue's reproducer: loop enqueue_burst / dequeue_burst of ``burst`` handles."""
    ring = pktflow.Ring.lookup(ring_name)
    flags = _flags(flags_path)
    handles = np.arange(burst, dtype=np.uint32)
    out = np.empty(burst, dtype=np.uint32)
    flags[_READY] = 1
    while True:
        ring.enqueue_burst(handles, burst)
        ring.dequeue_burst(out, burst)


MARK = 1 << 20  # the survivor's handle: none of the child's (0..65535)


def churn_kill_scenario(tmp: str, name: str, delay: float) -> dict:  # type: ignore[type-arg]
    """The issue's reproducer: a creator holds a 2**20 hugepage ring, a child churns
    bursts of 65,536 through it and is SIGKILLed; then the creator's enqueue(5)."""
    import signal
    import time

    flags_path = os.path.join(tmp, f"{name}.flags")
    np.zeros(8, dtype=np.uint32).tofile(flags_path)
    flags = _flags(flags_path)
    with pktflow.Ring(name, 1 << 20, backend="hugepage") as ring:
        child = _spawn(churn, name, flags_path, 1 << 16)
        _wait_ready(flags, 1, [child])
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        started = time.monotonic()
        enqueued = ring.enqueue(MARK)
        out = np.empty(1 << 20, dtype=np.uint32)
        got = ring.dequeue_burst(out)
        return {
            "killed_exit": child.exitcode,
            "enqueued": enqueued,
            "seconds": time.monotonic() - started,
            "received": out[:got].copy(),
            "repairs": ring.repairs,
            "left": ring.count(),
        }


def check_churn_result(result: dict) -> None:  # type: ignore[type-arg]
    assert result["killed_exit"] == -9
    assert result["enqueued"]
    assert result["seconds"] < 2.0, f"the survivor waited {result['seconds']:.2f} s"
    received = result["received"]
    assert int((received == MARK).sum()) == 1  # ours, once
    # The child's handles are 0..65535 (one burst in the ring at most): each
    # at most once, never a hole value.
    theirs = received[received != MARK]
    values, counts = np.unique(theirs, return_counts=True)
    assert (counts == 1).all() and int(values.max(initial=0)) < 1 << 16
    assert result["left"] == 0
