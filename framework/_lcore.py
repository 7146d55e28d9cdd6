"""Lcore ids: which worker the calling thread is, unique across processes.

An lcore owns the mempool caches at its index, so two threads (in any two
processes sharing a pool) must never hold the same id. Ids are claimed in
a small machine-wide table (``/dev/shm/pktflow-lcores``) under an ``flock``;
a claim dies with its thread or process, and the claims of processes that
no longer exist are taken back. Registration is rare; ``lcore_id()`` is a
thread-local read.

Usage::

    pktflow.lcore_id()            # LCORE_ID_ANY: not an lcore, mempools use no cache
    pktflow.register_lcore()      # -> the lowest free id, now this thread's
    pktflow.unregister_lcore()
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
from pathlib import Path

from ._arrays import checked_int
from ._errors import ExistsError
from ._memory import process_start_time

__all__ = ["LCORE_ID_ANY", "MAX_LCORE", "lcore_id", "register_lcore", "unregister_lcore"]

LCORE_ID_ANY = 0xFFFFFFFF  # DPDK's LCORE_ID_ANY (UINT32_MAX)
MAX_LCORE = 128  # DPDK's default RTE_MAX_LCORE

TABLE_PATH = Path("/dev/shm/pktflow-lcores")
# One slot per lcore id: claiming pid, its start time, native thread id.
_SLOT = struct.Struct("<IQI")
_FREE = (0, 0, 0)


class _ThreadState(threading.local):
    """Per thread: the claim, and the cache row a mempool uses for this thread."""

    claim: _Claim | None = None
    # The lcore id, or MAX_LCORE (the "no cache" row) when not an lcore: lets
    # a mempool pick its cache row with one attribute read and one index.
    cache_index: int = MAX_LCORE


_local = thread_state = _ThreadState()


class _Claim:
    """Holds one thread's lcore id; releasing it when the thread's locals die."""

    def __init__(self, lcore: int, slot: tuple[int, int, int]) -> None:
        self.lcore = lcore
        self.slot = slot

    def release(self) -> None:
        if self.slot[0] == os.getpid():
            _free_slot(self.lcore, self.slot)

    def __del__(self) -> None:
        # Runs when the owning thread ends (its threading.local is freed).
        try:
            self.release()
        except Exception:
            pass  # interpreter shutdown: the dead-pid rule frees the slot later


def lcore_id() -> int:
    """The calling thread's lcore id, or ``LCORE_ID_ANY`` if it is not an lcore.

    Usage: ``if pktflow.lcore_id() == pktflow.LCORE_ID_ANY: ...``
    """
    claim = _local.claim
    return LCORE_ID_ANY if claim is None else claim.lcore


def _open_table() -> int:
    fd = os.open(TABLE_PATH, os.O_RDWR | os.O_CREAT, 0o666)
    if os.fstat(fd).st_size < MAX_LCORE * _SLOT.size:
        os.ftruncate(fd, MAX_LCORE * _SLOT.size)
    return fd


def _read_slots(fd: int) -> list[tuple[int, int, int]]:
    raw = os.pread(fd, MAX_LCORE * _SLOT.size, 0)
    return [_SLOT.unpack_from(raw, i * _SLOT.size) for i in range(MAX_LCORE)]


def _is_live(slot: tuple[int, int, int]) -> bool:
    pid, start, _tid = slot
    return pid != 0 and process_start_time(pid) == start


def _free_slot(lcore: int, owner: tuple[int, int, int]) -> None:
    fd = _open_table()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _read_slots(fd)[lcore] == owner:
            os.pwrite(fd, _SLOT.pack(*_FREE), lcore * _SLOT.size)
    finally:
        os.close(fd)  # also drops the flock


def register_lcore(lcore_id: int | None = None) -> int:
    """Make the calling thread an lcore: the given id, or the lowest free one.

    Raises ``ExistsError`` when a live thread (in any process) holds that id,
    ``PktflowValueError`` for an id outside ``0..MAX_LCORE-1``. Registering
    again from the same thread returns its id (or moves it to ``lcore_id``).

    Usage: ``me = pktflow.register_lcore()``
    """
    if lcore_id is not None:
        lcore_id = checked_int(lcore_id, "an lcore id", 0, MAX_LCORE - 1)
    current = _local.claim
    if current is not None and lcore_id in (None, current.lcore):
        return current.lcore
    me = (os.getpid(), process_start_time(os.getpid()) or 0, threading.get_native_id())
    fd = _open_table()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        slots = _read_slots(fd)
        if lcore_id is None:
            free = [i for i, slot in enumerate(slots) if not _is_live(slot)]
            if not free:
                raise ExistsError(f"all {MAX_LCORE} lcore ids are taken")
            chosen = free[0]
        else:
            if _is_live(slots[lcore_id]) and slots[lcore_id] != me:
                pid, _, tid = slots[lcore_id]
                raise ExistsError(f"lcore {lcore_id} is held by pid {pid} thread {tid}")
            chosen = lcore_id
        os.pwrite(fd, _SLOT.pack(*me), chosen * _SLOT.size)
    finally:
        os.close(fd)
    if current is not None:
        current.release()
    _local.claim = _Claim(chosen, me)
    _local.cache_index = chosen
    return chosen


def unregister_lcore() -> None:
    """Give the calling thread's lcore id back; it is ``LCORE_ID_ANY`` afterwards.

    Usage: ``pktflow.unregister_lcore()``
    """
    claim = _local.claim
    if claim is not None:
        _local.claim = None
        _local.cache_index = MAX_LCORE
        claim.release()


def _forget_in_child() -> None:
    # A forked child is a new process: the parent's claims are not its own.
    # Reset in place: other modules hold this object.
    _local.claim = None
    _local.cache_index = MAX_LCORE


os.register_at_fork(after_in_child=_forget_in_child)
