"""Lcore ids: which worker the calling thread is, unique across processes.

An lcore owns the mempool caches at its index, so two threads (in any two
processes sharing a pool) must never hold the same id. Ids are claimed in
a small machine-wide table under an ``flock``; a claim dies with its
thread or process, and the claims of processes that no longer exist are
taken back. Registration is rare; ``lcore_id()`` is a thread-local read.

The table is ``/dev/shm/pktflow-lcores`` unless the environment variable
``PKTFLOW_LCORE_TABLE`` names another file (read each time the table is
opened, so set it before registering; spawned children inherit it).
Programs that share pools must share the table; a test run can keep its
own. Layout: a header (magic ``PKTFLCOR``, layout version, slot count)
checked on every open, then one slot per lcore id.

Usage::

    pktflow.lcore_id()            # LCORE_ID_ANY: not an lcore, mempools use no cache
    pktflow.register_lcore()      # -> the lowest free id, now this thread's
    pktflow.unregister_lcore()
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._arrays import checked_int
from ._errors import ExistsError, PktflowValueError
from ._memory import open_private_file, process_start_time

__all__ = ["LCORE_ID_ANY", "MAX_LCORE", "lcore_id", "register_lcore", "unregister_lcore"]

LCORE_ID_ANY = 0xFFFFFFFF  # DPDK's LCORE_ID_ANY (UINT32_MAX)
MAX_LCORE = 128  # DPDK's default RTE_MAX_LCORE

TABLE_ENV = "PKTFLOW_LCORE_TABLE"
DEFAULT_TABLE_PATH = Path("/dev/shm/pktflow-lcores")
MAGIC = b"PKTFLCOR"
LAYOUT_VERSION = 1
_HEADER = struct.Struct("<8sII")  # magic, layout version, slots
# One slot per lcore id: claiming pid, its start time, native thread id.
_SLOT = struct.Struct("<IQI")
_FREE = (0, 0, 0)
_TABLE_SIZE = _HEADER.size + MAX_LCORE * _SLOT.size


def table_path() -> Path:
    """The lcore table this process uses now: ``$PKTFLOW_LCORE_TABLE`` or the default.

    Usage: ``pktflow._lcore.table_path()``
    """
    return Path(os.environ.get(TABLE_ENV) or DEFAULT_TABLE_PATH)


class _ThreadState(threading.local):
    """Per thread: the claim, and the cache row a mempool uses for this thread."""

    claim: _Claim | None = None
    # The lcore id, or MAX_LCORE (the "no cache" row) when not an lcore: lets
    # a mempool pick its cache row with one attribute read and one index.
    cache_index: int = MAX_LCORE


_local = thread_state = _ThreadState()


class _Claim:
    """Holds one thread's lcore id; releasing it when the thread's locals die."""

    def __init__(self, lcore: int, slot: tuple[int, int, int], table: Path) -> None:
        self.lcore = lcore
        self.slot = slot
        self.table = table  # where it was claimed, whatever the environment says later

    def release(self) -> None:
        if self.slot[0] == os.getpid():
            _free_slot(self.table, self.lcore, self.slot)

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


@contextmanager
def _locked_table(path: Path) -> Iterator[int]:
    """The table's file descriptor under an exclusive flock; creates the table if new."""
    # Never through a symlink, never a FIFO or another user's file: 0600, ours.
    fd = open_private_file(path, os.O_RDWR, what="pktflow lcore table", create=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # dropped by the close
        if os.fstat(fd).st_size == 0:  # we created it: a header, then free slots
            header = _HEADER.pack(MAGIC, LAYOUT_VERSION, MAX_LCORE)
            os.pwrite(fd, header.ljust(_TABLE_SIZE, b"\0"), 0)
        problem = _table_problem(fd)
        if problem is not None:
            raise PktflowValueError(
                f"{path} {problem}: remove it when no pktflow program runs, "
                f"or point {TABLE_ENV} at another file"
            )
        yield fd
    finally:
        os.close(fd)


def _table_problem(fd: int) -> str | None:
    if os.fstat(fd).st_size < _TABLE_SIZE:
        return "is too small for an lcore table"
    magic, version, slots = _HEADER.unpack(os.pread(fd, _HEADER.size, 0))
    if magic != MAGIC:
        return "is not a pktflow lcore table (bad magic)"
    if (version, slots) != (LAYOUT_VERSION, MAX_LCORE):
        return f"has lcore table layout {version} with {slots} slots, expected {LAYOUT_VERSION}"
    return None


def _read_slots(fd: int) -> list[tuple[int, int, int]]:
    raw = os.pread(fd, MAX_LCORE * _SLOT.size, _HEADER.size)
    return [_SLOT.unpack_from(raw, i * _SLOT.size) for i in range(MAX_LCORE)]


def _write_slot(fd: int, lcore: int, slot: tuple[int, int, int]) -> None:
    os.pwrite(fd, _SLOT.pack(*slot), _HEADER.size + lcore * _SLOT.size)


def _is_live(slot: tuple[int, int, int]) -> bool:
    pid, start, _tid = slot
    return pid != 0 and process_start_time(pid) == start


def _free_slot(table: Path, lcore: int, owner: tuple[int, int, int]) -> None:
    with _locked_table(table) as fd:
        if _read_slots(fd)[lcore] == owner:
            _write_slot(fd, lcore, _FREE)


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
    table = table_path()
    with _locked_table(table) as fd:
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
        _write_slot(fd, chosen, me)
    if current is not None:
        _run_hooks("lcore_retiring", current.lcore)
        current.release()
    _local.claim = _Claim(chosen, me, table)
    _local.cache_index = chosen
    _run_hooks("lcore_claimed", chosen)
    return chosen


def unregister_lcore() -> None:
    """Give the calling thread's lcore id back; it is ``LCORE_ID_ANY`` afterwards.

    Usage: ``pktflow.unregister_lcore()``
    """
    claim = _local.claim
    if claim is not None:
        _run_hooks("lcore_retiring", claim.lcore)  # e.g. mempools flush this lcore's caches
        _local.claim = None
        _local.cache_index = MAX_LCORE
        claim.release()


# -- hooks: what higher layers do when an lcore id is claimed or given back ---
#
# Mempools sit above this module, so they register themselves here instead of
# being imported: an owner with ``lcore_claimed(lcore)`` (the id's previous
# holder may have died with objects in its cache rows) and
# ``lcore_retiring(lcore)`` (flush them back before the id goes). Held weakly.

_hooks: weakref.WeakSet[Any] = weakref.WeakSet()
_hooks_lock = threading.Lock()


def add_lcore_hook(owner: Any) -> None:
    """Call ``owner.lcore_claimed(id)`` / ``owner.lcore_retiring(id)`` from now on (weakly).

    Usage: ``add_lcore_hook(pool)``
    """
    with _hooks_lock:
        _hooks.add(owner)


def _run_hooks(method: str, lcore: int) -> None:
    with _hooks_lock:
        owners = list(_hooks)
    for owner in owners:
        try:
            getattr(owner, method)(lcore)
        except Exception as exc:  # a closed or broken pool must not stop registration
            logging.getLogger("pktflow").warning("lcore %d: %s failed: %s", lcore, method, exc)


def lcore_claims() -> list[tuple[int, int, int, bool]]:
    """Every claimed lcore id: ``(id, pid, native thread id, alive)``; for ``pktflow info``.

    Usage: ``[c for c in lcore_claims() if not c[3]]  # claims of dead processes``
    """
    path = table_path()
    if not path.exists():
        return []
    with _locked_table(path) as fd:
        return [
            (i, slot[0], slot[2], _is_live(slot))
            for i, slot in enumerate(_read_slots(fd))
            if slot != _FREE
        ]


def release_dead_claims() -> list[int]:
    """Free the ids of processes that are gone (a worker that died); the ids freed.

    Usage: ``release_dead_claims()  # [3]``
    """
    path = table_path()
    if not path.exists():
        return []
    freed = []
    with _locked_table(path) as fd:
        for i, slot in enumerate(_read_slots(fd)):
            if slot != _FREE and not _is_live(slot):
                _write_slot(fd, i, _FREE)
                freed.append(i)
    return freed


@contextmanager
def live_lcores() -> Iterator[set[int]]:
    """The ids live threads hold, with the table locked meanwhile (no claim changes).

    Usage: ``with live_lcores() as live: ...  # rows of other ids have no owner``
    """
    with _locked_table(table_path()) as fd:
        yield {i for i, slot in enumerate(_read_slots(fd)) if _is_live(slot)}


def _forget_in_child() -> None:
    # A forked child is a new process: the parent's claims are not its own.
    # Reset in place: other modules hold this object.
    _local.claim = None
    _local.cache_index = MAX_LCORE


os.register_at_fork(after_in_child=_forget_in_child)
