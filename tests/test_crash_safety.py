"""Crash safety of the shared rings and mempools (issue 7, parts 1 and 5).

Every wait inside a ring kernel is bounded and checks the ring's abort
word; a reservation whose owner died is repaired (its copied handles
delivered once, unfinished slots dropped); a corrupt shared word is an
error, never a wild memory access. The SIGKILL loop with real processes
runs here once per case and 100 times in tests/stress/ (marked slow).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from _crash_workers import (
    check_churn_result,
    check_pool_result,
    check_ring_result,
    churn_kill_scenario,
    pool_kill_scenario,
    ring_kill_scenario,
)

import pktflow
from pktflow import _registry
from pktflow.abc import ERR_ABORTED, ERR_STALLED
from pktflow.backends._numba import _layout as L
from pktflow.backends._numba._atomics import owner_token_value

pytestmark = pytest.mark.timeout(300)

JIT_BACKENDS = ["numba", "hugepage"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def _fake_reservation(
    state: np.ndarray, is_prod: bool, k: int, pid: int, stime: int, copied: bool, value: int = 7
) -> int:
    """Reserve ``k`` slots on one side as another process would, and stop there."""
    head_word = L.W_PROD_HEAD if is_prod else L.W_CONS_HEAD
    rec_word = L.W_PROD_REC if is_prod else L.W_CONS_REC
    head = int(state[head_word])
    size = int(state[L.W_SIZE])
    for i in range(k):
        if is_prod:
            state[L.W_SLOTS + ((head + i) & (size - 1))] = value + i
    rec = int(state[rec_word]) + (head & (size - 1)) * L.RECORD_WORDS
    state[rec + L.R_LEN] = k | (L.R_COPIED if copied else 0)
    state[rec + L.R_PID] = pid
    state[rec + L.R_STIME] = stime
    state[rec + L.R_START] = head
    state[head_word] = (head + k) & 0xFFFFFFFF
    return head


def _me() -> tuple[int, int]:
    token = owner_token_value()
    return token & 0xFFFFFFFF, token >> 32


@pytest.mark.parametrize("backend", JIT_BACKENDS)
def test_a_live_blocker_gives_control_back_naming_the_ring(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pktflow.backends._numba import _repair

    monkeypatch.setattr(_repair, "STALL_TIMEOUT_S", 0.2)
    with pktflow.Ring("stall0", 64, backend=backend) as ring:
        pid, stime = _me()
        _fake_reservation(ring.state, True, 4, pid, stime, copied=True)  # "live", never publishes
        burst = np.arange(8, dtype=np.uint32)
        tx = ring.bind(burst)
        started = time.monotonic()
        code = tx.enqueue_burst(8)
        waited = time.monotonic() - started
        assert code <= ERR_STALLED  # moved, publish pending
        assert waited < 0.5, f"the kernel's bounded wait took {waited:.3f} s"
        with pytest.raises(pktflow.RingStalledError, match="stall0") as info:
            ring.complete(code, timeout=0.05)
        assert info.value.code == code
        # The facade's own methods raise the same way (after the default timeout).
        started = time.monotonic()
        with pytest.raises(pktflow.RingStalledError, match=r"stall0.*live pid"):
            ring.enqueue_burst(burst, 8)
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("backend", JIT_BACKENDS)
def test_the_abort_word_ends_every_wait(backend: str) -> None:
    with pktflow.Ring("abort0", 64, backend=backend) as ring:
        pid, stime = _me()
        _fake_reservation(ring.state, True, 4, pid, stime, copied=True)
        burst = np.arange(8, dtype=np.uint32)
        code = ring.bind(burst).enqueue_burst(8)
        other = pktflow.Ring.lookup("abort0") if backend == "hugepage" else ring
        other.abort()
        started = time.monotonic()
        with pytest.raises(pktflow.RingStalledError, match="aborted"):
            ring.complete(code, timeout=30)
        assert time.monotonic() - started < 0.5
        # A transfer that has not reserved anything yet is refused at once... when it must wait.
        assert ring.impl.state[L.W_ABORT] == 1
        ring.abort(False)
        assert ring.impl.state[L.W_ABORT] == 0
        if other is not ring:
            other.close()
    assert ERR_ABORTED < 0


@pytest.mark.parametrize("backend", JIT_BACKENDS)
@pytest.mark.parametrize("copied", [True, False])
def test_a_dead_producers_reservation_is_repaired(backend: str, copied: bool) -> None:
    with pktflow.Ring("dead0", 64, backend=backend) as ring:
        _fake_reservation(ring.state, True, 4, _dead_pid(), 1, copied=copied, value=100)
        mine = np.arange(8, dtype=np.uint32)
        assert ring.enqueue_burst(mine, 8) == 8  # stalled, repaired, published
        assert ring.repairs == 1
        out = np.empty(64, dtype=np.uint32)
        got = ring.dequeue_burst(out, 64)
        expected = ([100, 101, 102, 103] if copied else []) + list(range(8))
        assert out[:got].tolist() == expected  # delivered once, or dropped; never garbage
        assert ring.count() == 0
        # The ring goes on as usual, holes and all accounted for.
        assert ring.enqueue_burst(mine, 8) == 8
        assert ring.dequeue_burst(out, 64) == 8
        assert ring.impl.state[L.W_HOLES] == 0


@pytest.mark.parametrize("backend", JIT_BACKENDS)
def test_a_dead_consumers_reservation_is_discarded(backend: str) -> None:
    with pktflow.Ring("dead1", 64, backend=backend) as ring:
        ring.enqueue_burst(np.arange(10, dtype=np.uint32), 10)
        _fake_reservation(ring.state, False, 3, _dead_pid(), 1, copied=True)  # took 0, 1, 2
        out = np.empty(16, dtype=np.uint32)
        got = ring.dequeue_burst(out, 16)
        assert out[:got].tolist() == list(range(3, 10))
        assert ring.repairs == 1
        assert ring.free_count() == ring.capacity  # the dead one's slots are free again


def test_a_single_dequeue_behind_a_dead_consumer() -> None:
    with pktflow.Ring("dead2", 16, backend="numba") as ring:
        for h in (5, 6, 7):
            ring.enqueue(h)
        _fake_reservation(ring.state, False, 1, _dead_pid(), 1, copied=True)
        assert ring.dequeue() == 6
        assert ring.dequeue() == 7
        assert ring.dequeue() is None


def test_a_mempool_behind_a_dead_reservation() -> None:
    with pktflow.Mempool("deadpool", 63, 16, backend="hugepage") as pool:
        state = pool.ring.state
        assert state is not None
        _fake_reservation(state, False, 5, _dead_pid(), 1, copied=True)  # a get that died
        out = np.empty(8, dtype=np.uint32)
        assert pool.get_bulk(out, 8) == 8
        assert pool.ring.repairs == 1
        pool.put_bulk(out, 8)
        assert pool.avail_count() == 63 - 5  # what the dead process took is gone, nothing twice


# -- part 5: a corrupt shared word is an error, never a segfault --------------


@pytest.mark.parametrize(
    ("word", "value", "match"),
    [
        (L.W_CAPACITY, 1 << 20, "capacity"),
        (L.W_SIZE, 3, "corrupt"),
        (L.W_MASK, 5, "corrupt"),
        (L.W_PROD_REC, 1 << 30, "record"),
    ],
)
def test_a_corrupt_ring_header_is_refused_on_attach(word: int, value: int, match: str) -> None:
    with pktflow.Ring("corrupt0", 64, backend="hugepage") as ring:
        state = ring.state
        assert state is not None
        saved = int(state[word])
        state[word] = value
        try:
            with pytest.raises(pktflow.PktflowError, match=match):
                # Attach through the zone, as another process does.
                _registry.get_backend("hugepage").lookup_ring("corrupt0").close(unlink=False)
            # The kernels check the words they index with on every call too.
            burst = np.arange(4, dtype=np.uint32)
            if word in (L.W_CAPACITY, L.W_SIZE, L.W_PROD_REC):
                with pytest.raises(pktflow.RingError, match="corrupt"):
                    ring.enqueue_burst(burst, 4)
        finally:
            state[word] = saved


def test_a_corrupt_cache_row_length_is_an_error() -> None:
    from pktflow._cache_layout import C_LEN

    with pktflow.Mempool("corrupt1", 1023, 16, cache_size=32, backend="numba") as pool:
        cache = pool.cache_create(32)
        cache.row[C_LEN] = 1 << 30
        out = np.empty(8, dtype=np.uint32)
        with pytest.raises(pktflow.MempoolError, match="corrupt"):
            pool.get_bulk(out, 8, cache=cache)
        with pytest.raises(pktflow.MempoolError, match="corrupt"):
            pool.put_bulk(np.arange(4, dtype=np.uint32), 4, cache=cache)
        with pytest.raises(pktflow.MempoolError, match="corrupt"):
            pool.cache_flush(cache)


def test_a_corrupt_mbuf_next_is_an_error() -> None:
    from pktflow._mbuf_layout import H_DATA, H_NEXT

    with pktflow.pktmbuf_pool_create("corrupt2", 63, 0, 0, 256, backend="numba") as pool:
        m = pool.alloc()
        assert m is not None
        words = pool.header_words
        words[m.handle, H_NEXT] = 1 << 30
        words[m.handle, H_DATA] = (words[m.handle, H_DATA] & 0xFFFF) | (2 << 16)  # 2 segments
        with pytest.raises(pktflow.PktflowError, match=r"corrupt|cycle|chain"):
            pool.free_bulk(np.array([m.handle], dtype=np.uint32), 1)


# -- the SIGKILL loop, once per case (100 times: tests/stress/) ---------------


@pytest.mark.parametrize("victim", ["producer", "consumer"])
def test_sigkill_on_an_mpmc_ring(tmp_path, victim: str) -> None:  # type: ignore[no-untyped-def]
    result = ring_kill_scenario(str(tmp_path), f"kill_{victim}", victim, 0.15)
    check_ring_result(result, victim)


def test_the_issues_reproducer_no_longer_hangs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    repairs = 0
    for round_ in range(3):
        result = churn_kill_scenario(str(tmp_path), f"churn{round_}", 0.05 + 0.05 * round_)
        check_churn_result(result)
        repairs += result["repairs"]
    assert repairs >= 1  # a kill lands inside a 65,536-handle transfer nearly every time


def test_sigkill_on_a_mempool(tmp_path) -> None:  # type: ignore[no-untyped-def]
    check_pool_result(pool_kill_scenario(str(tmp_path), "kill_pool", 0.15))


# -- part 2: dead and retired lcores' objects come back ------------------------


def test_unregister_flushes_the_lcores_caches() -> None:
    from pktflow._cache_layout import C_LEN

    with pktflow.Mempool("retire0", 1023, 16, cache_size=32, backend="numba") as pool:
        out = np.empty(8, dtype=np.uint32)
        seen: list[int] = []

        def lcore_thread() -> None:
            lcore = pktflow.register_lcore()
            pool.get_bulk(out, 8)
            pool.put_bulk(out, 8)
            seen.append(int(pool.cache_rows[lcore, C_LEN]))
            pktflow.unregister_lcore()
            seen.append(int(pool.cache_rows[lcore, C_LEN]))

        import threading

        thread = threading.Thread(target=lcore_thread)
        thread.start()
        thread.join()
        assert seen == [40, 0]
        assert pool.ring.count() == pool.n


def _die_with_a_full_cache(pool: pktflow.Mempool) -> tuple[int, list[int]]:
    from _mempool_workers import leave_objects_in_cache, spawn_child

    proc, conn, (lcore, kept, length) = spawn_child(leave_objects_in_cache, pool.name, 8, 3)
    proc.join(60)
    conn.close()
    assert proc.exitcode == 0 and length == 35
    return lcore, kept


def test_a_dead_lcores_row_is_reclaimed_explicitly() -> None:
    with pktflow.Mempool("dead_row0", 255, 16, cache_size=32, backend="hugepage") as pool:
        lcore, kept = _die_with_a_full_cache(pool)
        assert int(pool.cache_rows[lcore, 2]) == 35
        assert pool.audit()["dead_caches"] == {lcore: 35}
        assert pool.reclaim() == 35
        assert pool.ring.count() == 255 - 5
        assert pool.audit()["dead_caches"] == {}
        pool.put_bulk(np.asarray(kept, dtype=np.uint32))
        assert pool.full()


def test_the_next_holder_of_a_dead_lcore_id_reclaims_its_row() -> None:
    with pktflow.Mempool("dead_row1", 255, 16, cache_size=32, backend="hugepage") as pool:
        lcore, _ = _die_with_a_full_cache(pool)
        assert pktflow.register_lcore(lcore) == lcore
        try:
            assert int(pool.cache_rows[lcore, 2]) == 0  # flushed on the claim
            assert pool.ring.count() == 255 - 5
        finally:
            pktflow.unregister_lcore()


def test_audit_says_where_the_objects_are() -> None:
    with pktflow.Mempool("audit0", 127, 16, cache_size=8, backend="numba", debug=True) as pool:
        out = np.empty(4, dtype=np.uint32)
        assert pool.get_bulk(out, 4) == 4  # not an lcore: straight from the ring
        report = pool.audit()
        assert report["problems"] == []
        assert report["ring"] == 123 and report["in_use"] == 4
        assert report["out"] == {int(h): None for h in out}
        import threading

        def lcore_thread() -> None:
            pktflow.register_lcore(3)
            try:
                got = np.empty(2, dtype=np.uint32)
                pool.get_bulk(got, 2)
                report = pool.audit()
                assert {report["out"][int(h)] for h in got} == {3}
                assert report["caches"] == {3: 8}
                pool.put_bulk(got, 2)
            finally:
                pktflow.unregister_lcore()

        thread = threading.Thread(target=lcore_thread)
        thread.start()
        thread.join()
        pool.put_bulk(out, 4)
        report = pool.audit()
        assert report["problems"] == [] and report["out"] == {} and report["avail"] == 127


def test_audit_finds_a_handle_free_twice() -> None:
    with pktflow.Mempool("audit1", 63, 16, backend="numba") as pool:
        h, other = pool.get(), pool.get()
        assert h is not None and other is not None
        pool.put(h)
        assert pool.ring.enqueue(h)  # behind the pool's back: h is free twice
        assert "free twice" in " ".join(pool.audit()["problems"])


# -- part 6: errors of the right class ------------------------------------------


def test_mempool_n_that_is_not_an_int_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        pktflow.Mempool("n_float", n=1.5, elt_size=8)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [None, "", "a/b", 7])
def test_mempool_lookup_of_a_bad_name_matches_ring_lookup(name: object) -> None:
    with pytest.raises(pktflow.NotFoundError):
        pktflow.Ring.lookup(name)  # type: ignore[arg-type]
    with pytest.raises(pktflow.NotFoundError):
        pktflow.Mempool.lookup(name)  # type: ignore[arg-type]


def test_mbufs_and_headers_of_a_closed_pool_raise_closed_error() -> None:
    pool = pktflow.pktmbuf_pool_create("closed_mb", 63, 0, 0, 256, backend="numba")
    m = pool.alloc()
    assert m is not None
    pool.close()
    for touch in (
        lambda: pool.headers,
        lambda: pool.header_words,
        lambda: m.data_len,
        lambda: m.refcnt,
        lambda: m.data,
        lambda: m.append(4),
        lambda: m.headroom(),
        lambda: m.free(),
    ):
        with pytest.raises(pktflow.ClosedError):
            touch()


def test_ctrl_c_interrupts_a_stalled_transfer() -> None:
    import signal

    script = """
import sys, numpy as np, pktflow
from pktflow.backends._numba import _layout as L
from pktflow.backends._numba._atomics import owner_token_value
ring = pktflow.Ring("ctrlc", 64, backend="numba")
state = ring.state
token = owner_token_value()
rec = int(state[L.W_PROD_REC])
state[rec + L.R_LEN] = 4 | L.R_COPIED
state[rec + L.R_PID] = token & 0xFFFFFFFF
state[rec + L.R_STIME] = token >> 32
state[rec + L.R_START] = 0
state[L.W_PROD_HEAD] = 4  # a live owner's reservation that never publishes
print("waiting", flush=True)
try:
    ring.enqueue_burst(np.arange(8, dtype=np.uint32), 8)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.3)  # inside the stalled transfer by now
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 3
        assert time.monotonic() - started < 1.0
        assert proc.stdout.read().strip() == "interrupted"


@pytest.mark.parametrize("backend", JIT_BACKENDS)
def test_the_generator_finishes_an_alloc_stalled_by_a_dead_consumer(backend: str) -> None:
    from pktflow.pipelines.generator import Generator

    with pktflow.PktmbufPool("genstall0", 63, cache_size=0, backend=backend) as pool:
        # A dead process took 4 handles off the free list and never published.
        _fake_reservation(pool.ring.state, False, 4, _dead_pid(), 1, copied=True)
        ctx = pktflow.StageContext(
            "gen", lcore=0, pool=pool, pools={"p": pool}, burst_size=8, options={}
        )
        gen = Generator(ctx, count=8, size=60)
        burst = pktflow.Burst(np.zeros(8, dtype=np.uint32), pool)
        assert gen.poll(burst) == 8  # stalled behind it, repaired, and delivered filled
        assert pool.ring.repairs == 1
        assert pool.headers["pkt_len"][burst.array].tolist() == [60] * 8
        pool.free_bulk(burst.array)
