"""Lcore ids: unique across the threads and processes of the machine, as DPDK's are per EAL.

A mempool keeps lcore i's cache in row i of its shared zone, so two live
threads holding one id would corrupt each other's cache. These tests pin
who may hold an id and when it is free again. Explicit ids come from the
top of the range so that they do not meet the lowest-free ids other tests
(or other pktflow programs on the machine) take.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _mempool_workers import claim_lcore_and_die, hold_lcore, spawn_child

import pktflow
from pktflow import _lcore

HIGH = pktflow.MAX_LCORE - 8  # ids HIGH .. MAX_LCORE-1 are this file's


class Holder:
    """A thread that registers an lcore (or fails to) and lives until ``end()``."""

    def __init__(self, lcore_id: int | None = None, *, unregister: bool = False) -> None:
        self.id: int | None = None
        self.seen: int | None = None  # lcore_id() inside the thread after registering
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(lcore_id, unregister))
        self._thread.start()
        assert self._ready.wait(30), "the thread did not register in time"

    def _run(self, lcore_id: int | None, unregister: bool) -> None:
        try:
            self.id = pktflow.register_lcore(lcore_id)
            self.seen = pktflow.lcore_id()
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()
        self._stop.wait(60)
        if unregister:
            pktflow.unregister_lcore()

    def end(self) -> None:
        """Let the thread finish, and wait until it has."""
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    """Holders a test starts; every one is ended at teardown, even after a failure."""
    made: list[Holder] = []
    yield made
    for holder in made:
        holder.end()


def hold(made: list[Holder], lcore_id: int | None = None) -> Holder:
    holder = Holder(lcore_id)
    made.append(holder)
    if holder.error is not None:
        raise holder.error
    return holder


@pytest.fixture(autouse=True)
def main_thread_is_no_lcore() -> Iterator[None]:
    # Every test starts and ends with the test thread unregistered: a test
    # that leaked a registration would change what the next one sees.
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
    yield
    pktflow.unregister_lcore()


def test_not_an_lcore_by_default(holders: list[Holder]) -> None:
    assert pktflow.LCORE_ID_ANY == 0xFFFFFFFF  # DPDK's UINT32_MAX
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(pktflow.lcore_id()))
    thread.start()
    thread.join(30)
    assert seen == [pktflow.LCORE_ID_ANY]
    # A thread's registration is its own: the others stay unregistered.
    holder = hold(holders)
    assert holder.seen == holder.id != pktflow.LCORE_ID_ANY
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY


def test_register_takes_the_lowest_free_id(holders: list[Holder]) -> None:
    a, b, c = (hold(holders) for _ in range(3))
    assert a.id is not None and b.id is not None and c.id is not None
    # Each took the lowest free id: every id below `a` is held elsewhere,
    # so the next ones come in order.
    assert a.id < b.id < c.id < pktflow.MAX_LCORE
    for holder in (a, b, c):
        assert holder.seen == holder.id
    b.end()
    # b's id is the lowest free one again.
    d = hold(holders)
    assert d.id == b.id


def test_concurrent_registrations_get_distinct_ids() -> None:
    count = 8
    start = threading.Barrier(count)
    everyone_registered = threading.Barrier(count)
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait(30)
            mine = pktflow.register_lcore()
            results.append((mine, pktflow.lcore_id()))
            # Hold it until everyone has one: no id is reused in between.
            everyone_registered.wait(30)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(mine == seen for mine, seen in results)
    assert len({mine for mine, _ in results}) == count


def test_explicit_id(holders: list[Holder]) -> None:
    holder = hold(holders, HIGH)
    assert holder.id == holder.seen == HIGH
    me = pktflow.register_lcore(HIGH + 1)
    assert me == pktflow.lcore_id() == HIGH + 1
    assert type(me) is int


def test_id_held_by_another_thread(holders: list[Holder]) -> None:
    holder = hold(holders, HIGH + 2)
    with pytest.raises(pktflow.ExistsError) as info:
        pktflow.register_lcore(HIGH + 2)
    assert isinstance(info.value, FileExistsError)
    # The failed attempt left the caller unregistered.
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
    # A registered thread asking for a taken id keeps the id it had.
    mine = pktflow.register_lcore(HIGH + 3)
    with pytest.raises(pktflow.ExistsError):
        pktflow.register_lcore(HIGH + 2)
    assert pktflow.lcore_id() == mine
    holder.end()
    # Released when its thread ended.
    assert pktflow.register_lcore(HIGH + 2) == HIGH + 2


def test_id_held_by_another_process() -> None:
    proc, conn, (child_id,) = spawn_child(hold_lcore, HIGH + 4)
    try:
        assert child_id == HIGH + 4
        with pytest.raises(pktflow.ExistsError):
            pktflow.register_lcore(HIGH + 4)
        assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
    finally:
        conn.send("release")
        proc.join(60)
        conn.close()
    assert proc.exitcode == 0
    assert pktflow.register_lcore(HIGH + 4) == HIGH + 4


def _slot_owner(lcore_id: int) -> int:
    """The pid recorded for ``lcore_id`` in the machine-wide table (0: free)."""
    with open(_lcore.table_path(), "rb") as table:
        raw = table.read()
    offset = _lcore._HEADER.size + lcore_id * _lcore._SLOT.size
    pid, _start, _tid = _lcore._SLOT.unpack_from(raw, offset)
    return int(pid)


def test_dead_process_id_is_reclaimed() -> None:
    proc, conn, (child_id, child_pid) = spawn_child(claim_lcore_and_die, HIGH + 5)
    proc.join(60)
    conn.close()
    assert proc.exitcode == 0
    assert child_id == HIGH + 5
    # The child died without releasing its claim: the table still names it,
    # so what follows is a reclaim, not a clean release.
    assert _slot_owner(HIGH + 5) == child_pid
    assert child_pid != os.getpid()
    assert pktflow.register_lcore(HIGH + 5) == HIGH + 5
    assert _slot_owner(HIGH + 5) == os.getpid()


@pytest.mark.parametrize("bad", [-1, pktflow.MAX_LCORE, 1000, 2**32])
def test_out_of_range(bad: object) -> None:
    with pytest.raises(pktflow.PktflowValueError) as info:
        pktflow.register_lcore(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
    # A registered thread keeps its id after a bad request.
    mine = pktflow.register_lcore()
    with pytest.raises(pktflow.PktflowValueError):
        pktflow.register_lcore(bad)  # type: ignore[arg-type]
    assert pktflow.lcore_id() == mine


@pytest.mark.parametrize("bad", [1.5, "1"])
def test_not_an_int(bad: object) -> None:
    with pytest.raises(pktflow.PktflowTypeError) as info:
        pktflow.register_lcore(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY


def test_numpy_int_is_an_id() -> None:
    assert pktflow.register_lcore(np.int64(HIGH + 7)) == HIGH + 7
    assert type(pktflow.lcore_id()) is int
    pktflow.unregister_lcore()


def test_bool_is_not_an_id() -> None:
    with pytest.raises(pktflow.PktflowTypeError):
        pktflow.register_lcore(True)
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY


def test_register_again_from_the_same_thread(holders: list[Holder]) -> None:
    first = pktflow.register_lcore()
    assert pktflow.register_lcore() == first
    assert pktflow.register_lcore(first) == first
    assert pktflow.lcore_id() == first
    # Asking for another id moves the thread there and frees the old one.
    assert pktflow.register_lcore(HIGH + 6) == HIGH + 6
    assert pktflow.lcore_id() == HIGH + 6
    assert hold(holders, first).id == first


def test_released_when_the_thread_ends() -> None:
    taken: list[int] = []
    # The thread registers and ends without unregistering.
    thread = threading.Thread(target=lambda: taken.append(pktflow.register_lcore(HIGH + 7)))
    thread.start()
    thread.join(30)
    assert taken == [HIGH + 7]
    assert _slot_owner(HIGH + 7) == 0
    assert pktflow.register_lcore(HIGH + 7) == HIGH + 7


def test_unregister(holders: list[Holder]) -> None:
    pktflow.unregister_lcore()  # not registered: nothing to do
    mine = pktflow.register_lcore()
    pktflow.unregister_lcore()
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
    pktflow.unregister_lcore()  # twice: still nothing to do
    # The id is free for anyone now.
    assert hold(holders, mine).id == mine


# -- the table: where it lives, its header ---------------------------------------------


def test_the_test_run_has_its_own_table() -> None:
    assert _lcore.table_path() != _lcore.DEFAULT_TABLE_PATH
    assert str(_lcore.table_path()) == os.environ[_lcore.TABLE_ENV]


def test_the_table_path_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv(_lcore.TABLE_ENV, str(first))
    assert pktflow.register_lcore(HIGH + 6) == HIGH + 6
    assert _slot_owner(HIGH + 6) == os.getpid()
    header = first.read_bytes()[: _lcore._HEADER.size]
    assert _lcore._HEADER.unpack(header) == (b"PKTFLCOR", 1, pktflow.MAX_LCORE)
    # A claim is released in the table it was made in, wherever the variable points now.
    monkeypatch.setenv(_lcore.TABLE_ENV, str(second))
    pktflow.unregister_lcore()
    monkeypatch.setenv(_lcore.TABLE_ENV, str(first))
    assert _slot_owner(HIGH + 6) == 0
    assert not second.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\0" * 4096, "bad magic"),  # an older pktflow's table had no header
        (b"PKTFLCOR\x02\0\0\0\x80\0\0\0".ljust(4096, b"\0"), "layout 2"),
        (b"PKTFLCOR", "too small"),
    ],
    ids=["no-header", "other-version", "truncated"],
)
def test_a_table_of_another_layout_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes, problem: str
) -> None:
    table = tmp_path / "lcores"
    table.write_bytes(content)
    monkeypatch.setenv(_lcore.TABLE_ENV, str(table))
    with pytest.raises(pktflow.PktflowValueError, match=problem) as info:
        pktflow.register_lcore()
    assert _lcore.TABLE_ENV in str(info.value) and str(table) in str(info.value)
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
    assert table.read_bytes() == content, "a table it does not understand is left alone"
