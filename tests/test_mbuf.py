"""Mbufs: the cases of DPDK's app/test/test_mbuf.c, on every backend.

Pure pools run pktflow's Python reference (the oracle); numba and hugepage
pools run the jitted alloc/free kernels, except with ``debug=True``, which
takes the reference path with its double-free checks. Every test accounts
for each mbuf: pools end with ``avail_count() == n``.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import random
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import _mbuf_workers
import numpy as np
import pytest

import pktflow
import pktflow.backends
from pktflow import (
    MBUF_DEFAULT_BUF_SIZE,
    MBUF_F_INDIRECT,
    MBUF_MAX_NB_SEGS,
    MBUF_PORT_INVALID,
    PKTMBUF_HEADROOM,
    Mbuf,
    PktmbufPool,
)
from pktflow._cache_layout import C_LEN
from pktflow._mbuf_layout import H_BUF, H_DATA, H_PKT_LEN, P_MAGIC, P_VERSION

NO_NEXT = 0xFFFFFFFF
U32 = np.uint32


class Kind(NamedTuple):
    backend: str
    debug: bool


KINDS = {
    "pure": Kind("pure", False),
    "numba": Kind("numba", False),
    "hugepage": Kind("hugepage", False),
    # debug pools take the Python reference path even on jitted backends.
    "numba-debug": Kind("numba", True),
    "hugepage-debug": Kind("hugepage", True),
}
DEBUG_KINDS = [name for name, kind in KINDS.items() if kind.debug]


def require_backend(name: str) -> None:
    reason = pktflow.backend_unavailable_reason(name)
    if reason is not None:
        pytest.skip(f"backend {name} unavailable: {reason}")


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> Kind:
    """The backend and debug flag of the pools a test makes (override with indirect=True)."""
    chosen = KINDS[request.param]
    require_backend(chosen.backend)
    return chosen


def zone_files(token: str) -> list[Path]:
    """Every shared-memory file whose name holds ``token`` (pools and their rings)."""
    mount = pktflow.hugepage_info().mount
    dirs = [Path("/dev/shm"), *([Path(mount)] if mount else [])]
    return [p for d in dirs if d.is_dir() for p in d.glob(f"pktflow.*{token}*")]


class Pools:
    """Makes uniquely named pools of one kind; closes them all at teardown."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.token = uuid.uuid4().hex[:12]
        self.made: list[Any] = []

    def name(self) -> str:
        return f"tmbuf-{self.token}-{len(self.made)}"

    def __call__(
        self,
        n: int = 32,
        cache_size: int = 0,
        priv_size: int = 0,
        data_room_size: int = MBUF_DEFAULT_BUF_SIZE,
        *,
        backend: str | None = None,
        debug: bool | None = None,
    ) -> PktmbufPool:
        backend = self.kind.backend if backend is None else backend
        require_backend(backend)
        pool = pktflow.pktmbuf_pool_create(
            self.name(), n, cache_size, priv_size, data_room_size,
            backend=backend, debug=self.kind.debug if debug is None else debug,
        )  # fmt: skip
        self.made.append(pool)
        return pool

    def ring(self, count: int = 64) -> pktflow.Ring:
        ring = pktflow.Ring(self.name(), count, backend="hugepage")
        self.made.append(ring)
        return ring

    def close(self) -> None:
        failures = []
        for obj in reversed(self.made):  # every one, even after a failure
            try:
                obj.close()
            except Exception as exc:
                failures.append(exc)
        left = zone_files(self.token)
        for path in left:  # never leave them on the machine, even when failing
            path.unlink(missing_ok=True)
        assert left == [], "closed pools left their files behind"
        if failures:
            raise failures[0]


@pytest.fixture
def make_pool(kind: Kind) -> Iterator[Pools]:
    pools = Pools(kind)
    yield pools
    pools.close()


@pytest.fixture
def lcore() -> Iterator[int]:
    """The test thread as a registered lcore, so pools use its cache."""
    me = pktflow.register_lcore()
    yield me
    pktflow.unregister_lcore()


# -- helpers -------------------------------------------------------------------


def packet(pool: PktmbufPool, *parts: bytes) -> Mbuf:
    """A chain with one segment per part holding exactly those bytes."""
    segments = []
    for part in parts:
        m = pool.alloc()
        assert m is not None, "pool exhausted while building a packet"
        view = m.append(len(part))
        assert view is not None
        view[:] = part
        segments.append(m)
    head = segments[0]
    for segment in segments[1:]:
        assert head.chain(segment)
    return head


def segments(m: Mbuf) -> list[Mbuf]:
    chain, seg = [], m
    while seg is not None:
        chain.append(seg)
        seg = seg.next
    return chain


def content(m: Mbuf) -> bytes:
    """The packet's bytes, segment by segment (independent of read())."""
    return b"".join(bytes(seg.data) for seg in segments(m))


def rows(pool: PktmbufPool, *mbufs: Mbuf) -> np.ndarray:
    """A copy of the header words of these mbufs and their chains, to prove 'unchanged'."""
    handles = [seg.handle for m in mbufs for seg in segments(m)]
    return pool.header_words[handles].copy()


def assert_reset(pool: PktmbufPool, handles: np.ndarray) -> None:
    """Every mbuf is as rte_pktmbuf_alloc leaves it (header array and Mbuf view agree)."""
    room = pool.data_room_size
    h = pool.headers[handles.astype(np.intp)]
    expected = {
        "refcnt": 1, "next": NO_NEXT, "pkt_len": 0, "data_len": 0, "nb_segs": 1,
        "buf_len": room, "data_off": min(PKTMBUF_HEADROOM, room), "port": MBUF_PORT_INVALID,
        "vlan_tci": 0, "packet_type": 0, "ol_flags": 0, "direct_pool": pool.pool_id,
        "l2_len": 0, "l3_len": 0, "l4_len": 0,
    }  # fmt: skip
    for field, value in expected.items():
        bad = handles[h[field] != value]
        assert bad.size == 0, f"{field} != {value} after alloc for handles {bad[:8].tolist()}"
    assert (h["direct"] == handles).all(), "a fresh mbuf must use its own buffer"
    for handle in handles.tolist():
        m = pool.mbuf(handle)
        assert (m.data_len, m.pkt_len, m.nb_segs, m.refcnt) == (0, 0, 1, 1)
        assert m.next is None and not m.is_indirect
        assert m.port == MBUF_PORT_INVALID and m.ol_flags == 0
        assert (m.l2_len, m.l3_len, m.l4_len) == (0, 0, 0)
        assert m.headroom() == min(PKTMBUF_HEADROOM, room)
        assert m.tailroom() == room - m.headroom()
        assert bytes(m.data) == b""


def alloc_all(pool: PktmbufPool) -> np.ndarray:
    handles = np.empty(pool.n, dtype=U32)
    assert pool.alloc_bulk(handles) == pool.n
    return handles


# -- creation ------------------------------------------------------------------


def test_pool_is_a_mempool_with_headers(make_pool: Pools) -> None:
    pool = make_pool(n=16, priv_size=16, data_room_size=512)
    assert isinstance(pool, pktflow.Mempool)
    assert (pool.n, pool.data_room_size, pool.priv_size) == (16, 512, 16)
    assert pool.avail_count() == 16 and pool.in_use_count() == 0 and pool.full()
    assert pool.headers.dtype == pktflow.MBUF_HEADER_DTYPE and pool.headers.shape == (16,)
    assert pool.headers.dtype.itemsize == 64  # one cache line per header, as DPDK's
    assert pool.header_words.shape == (17, 16) and pool.header_words.dtype == np.uint32
    # Both views are the same memory: a write through one shows in the other.
    m = pool.alloc()
    assert m is not None
    m.port = 0x1234
    assert pool.headers["port"][m.handle] == 0x1234
    assert pool.header_words[m.handle, 5] & 0xFFFF == 0x1234
    assert pool.avail_count() == 15 and pool.in_use_count() == 1
    m.free()
    assert pool.full()
    # Shared pools are files (the pool's zone and its ring's): the teardown's
    # "nothing left behind" check looks at something real.
    assert bool(zone_files(make_pool.token)) is pktflow.get_backend(pool.backend).shared


def test_tx_offload_lengths_sit_where_dpdk_keeps_them() -> None:
    fields = pktflow.MBUF_HEADER_DTYPE.fields
    assert fields is not None
    offsets = {
        name: (str(fields[name][0]), fields[name][1]) for name in ("l2_len", "l4_len", "l3_len")
    }
    assert offsets == {"l2_len": ("uint8", 56), "l4_len": ("uint8", 57), "l3_len": ("uint16", 58)}


@pytest.mark.parametrize("word", [P_MAGIC, P_VERSION], ids=["magic", "version"])
def test_attaching_checks_the_header_layout(make_pool: Pools, word: int) -> None:
    pool = make_pool(n=4)
    params = pool.header_words[pool.n]
    saved = int(params[word])
    params[word] = saved + 1  # another pktflow's layout, or no mbuf pool at all
    try:
        with pytest.raises(pktflow.PktflowValueError, match=r"mbuf header layout|bad magic"):
            PktmbufPool.lookup(pool.name)
    finally:
        params[word] = saved
    PktmbufPool.lookup(pool.name).close()


@pytest.mark.parametrize("priv_size", [1, 4, 12, 60])
def test_priv_size_must_be_a_multiple_of_8(make_pool: Pools, priv_size: int) -> None:
    name = make_pool.name()
    with pytest.raises(ValueError, match="multiple of 8"):
        pktflow.pktmbuf_pool_create(name, 8, 0, priv_size, 256, backend=make_pool.kind.backend)
    # Nothing was created: the name is free for a valid pool.
    pool = make_pool(n=8, priv_size=priv_size + 8 - priv_size % 8, data_room_size=256)
    assert pool.priv_size % 8 == 0


def test_data_room_size_bounds(make_pool: Pools) -> None:
    name = make_pool.name()
    for bad in (65536, 1 << 20, -1):
        with pytest.raises(ValueError):
            pktflow.pktmbuf_pool_create(name, 8, 0, 0, bad, backend=make_pool.kind.backend)
    with pytest.raises(TypeError):
        pktflow.pktmbuf_pool_create(name, 8, 0, 0, 2048.0, backend=make_pool.kind.backend)  # type: ignore[arg-type]
    # The largest data room works end to end: 65535 bytes, headroom included.
    pool = make_pool(n=1, data_room_size=0xFFFF)
    m = pool.alloc()
    assert m is not None
    assert m.buf_len == 0xFFFF and m.tailroom() == 0xFFFF - PKTMBUF_HEADROOM
    assert m.append(m.tailroom()) is not None and m.tailroom() == 0
    assert m.pkt_len == 0xFFFF - PKTMBUF_HEADROOM
    m.free()


# -- alloc resets ----------------------------------------------------------------


@pytest.mark.parametrize("data_room", [MBUF_DEFAULT_BUF_SIZE, 200, PKTMBUF_HEADROOM, 64, 0])
def test_alloc_gives_reset_mbufs_until_exhausted(make_pool: Pools, data_room: int) -> None:
    # DPDK test_pktmbuf_pool: take every mbuf, one more fails, a clone fails.
    pool = make_pool(n=16, data_room_size=data_room)
    mbufs = [pool.alloc() for _ in range(16)]
    assert all(m is not None for m in mbufs)
    handles = np.array([m.handle for m in mbufs if m is not None], dtype=U32)
    assert sorted(handles.tolist()) == list(range(16))
    assert_reset(pool, handles)
    assert pool.alloc() is None
    assert mbufs[0] is not None and mbufs[0].clone() is None
    one = np.empty(1, dtype=U32)
    assert pool.alloc_bulk(one) == 0
    assert pool.avail_count() == 0
    pool.free_bulk(handles)
    assert pool.full()
    # Twice: the frees gave every mbuf back.
    assert_reset(pool, alloc_all(pool))


def dirty_everything(pool: PktmbufPool, clones: PktmbufPool) -> list[Mbuf]:
    """Use every mbuf of ``pool`` every way; the heads to free (each exactly once)."""
    heads: list[Mbuf] = []
    a = pool.alloc()
    assert a is not None
    a.append(100)[:] = b"\xaa" * 100  # type: ignore[index]
    a.prepend(10)[:] = b"\xbb" * 10  # type: ignore[index]
    a.port, a.vlan_tci, a.packet_type = 3, 0x0FFF, 0x11
    a.hash, a.ol_flags, a.timestamp = 0xDEADBEEF, 0x1234_5678, 99
    a.l2_len, a.l3_len, a.l4_len = 14, 20, 8
    assert a.adj(5) and a.trim(5)
    heads.append(a)
    heads.append(packet(pool, b"first", b"second", b"third"))
    heads.append(heads[1].clone())  # same-pool clone of a chain
    heads.append(a.clone(clones))  # clone into the other pool
    heads.append(heads[-1].clone(clones))  # clone of that clone
    while (m := pool.alloc()) is not None:  # the rest: prepended and port-tagged
        assert m.prepend(min(8, m.headroom())) is not None
        m.port, m.l2_len, m.l3_len, m.l4_len = 1, 255, 0xFFFF, 255
        heads.append(m)
    assert pool.avail_count() == 0
    return heads


def test_alloc_resets_mbufs_that_were_used(make_pool: Pools) -> None:
    pool = make_pool(n=12)
    clones = make_pool(n=4, data_room_size=0)
    heads = dirty_everything(pool, clones)
    random.Random(7).shuffle(heads)
    for m in heads:
        m.free()
    assert pool.full() and clones.full()
    # Taking the whole pool guarantees we get every used mbuf back.
    assert_reset(pool, alloc_all(pool))
    # Clones were detached on free: the clone pool's buffers are their own again.
    assert_reset(clones, alloc_all(clones))


def test_alloc_from_lcore_cache_resets(make_pool: Pools, lcore: int) -> None:
    pool = make_pool(n=64, cache_size=16)
    burst = np.empty(8, dtype=U32)
    for _ in range(3):
        assert pool.alloc_bulk(burst) == 8
        assert_reset(pool, burst)
        for h in burst.tolist():
            m = pool.mbuf(h)
            m.append(33)
            m.prepend(7)
            m.port, m.ol_flags = 9, 0xF0
        pool.free_bulk(burst)
        # The frees went to this lcore's cache, and avail_count sees it.
        assert pool.cache_rows[lcore, C_LEN] > 0
        assert pool.avail_count() == 64
    pool.cache_flush()
    assert pool.full()


# -- data: append / prepend / adj / trim ----------------------------------------

DATA_LEN, DATA_LEN2, HDR1_LEN, HDR2_LEN = 1464, 50, 20, 30  # DPDK's test sizes


def test_one_pktmbuf(make_pool: Pools) -> None:
    # DPDK test_one_pktmbuf, step by step.
    pool = make_pool(n=8)
    m = pool.alloc()
    assert m is not None and m.pkt_len == 0
    data = m.append(DATA_LEN)
    assert data is not None and len(data) == DATA_LEN
    assert m.pkt_len == m.data_len == DATA_LEN
    data[:] = b"\x66" * DATA_LEN
    assert m.nb_segs == 1

    before = rows(pool, m)
    assert m.append(m.tailroom() + 1) is None
    assert (rows(pool, m) == before).all()

    assert m.append(DATA_LEN2) is not None
    assert m.pkt_len == m.data_len == DATA_LEN + DATA_LEN2
    assert m.trim(DATA_LEN2)
    assert m.pkt_len == m.data_len == DATA_LEN
    before = rows(pool, m)
    assert not m.trim(m.data_len + 1)
    assert (rows(pool, m) == before).all()

    hdr = m.prepend(HDR1_LEN)
    assert hdr is not None and len(hdr) == HDR1_LEN
    # The header sits right before the data: data - hdr == HDR1_LEN.
    assert m.data_off == PKTMBUF_HEADROOM - HDR1_LEN
    assert m.pkt_len == m.data_len == DATA_LEN + HDR1_LEN
    hdr[:] = b"\x55" * HDR1_LEN
    hdr = m.prepend(HDR2_LEN)
    assert hdr is not None
    assert m.data_off == PKTMBUF_HEADROOM - HDR1_LEN - HDR2_LEN
    assert m.pkt_len == m.data_len == DATA_LEN + HDR1_LEN + HDR2_LEN
    hdr[:] = b"\x55" * HDR2_LEN
    m.sanity_check(is_header=True)
    m.sanity_check(is_header=False)
    assert bytes(m.data) == b"\x55" * (HDR1_LEN + HDR2_LEN) + b"\x66" * DATA_LEN

    before = rows(pool, m)
    assert m.prepend(m.headroom() + 1) is None
    assert (rows(pool, m) == before).all()

    assert m.adj(HDR1_LEN + HDR2_LEN)
    assert m.data_off == PKTMBUF_HEADROOM
    assert m.pkt_len == m.data_len == DATA_LEN
    before = rows(pool, m)
    assert not m.adj(m.data_len + 1)
    assert (rows(pool, m) == before).all()
    assert m.nb_segs == 1
    assert bytes(m.data) == b"\x66" * DATA_LEN
    assert bytes(data) == b"\x66" * DATA_LEN  # the first view still points at the data
    m.free()
    assert pool.full()


def test_non_ascii_data(make_pool: Pools) -> None:
    # DPDK test_pktmbuf_with_non_ascii_data, plus every byte value.
    pool = make_pool(n=4)
    m = pool.alloc()
    assert m is not None
    view = m.append(DATA_LEN)
    assert view is not None
    view[:] = b"\xff" * DATA_LEN
    assert m.pkt_len == m.data_len == DATA_LEN and m.nb_segs == 1
    assert bytes(m.read(0, DATA_LEN)) == b"\xff" * DATA_LEN  # type: ignore[arg-type]
    every = bytes(range(256))
    tail = m.append(256)
    assert tail is not None
    tail[:] = every
    assert bytes(m.read(DATA_LEN, 256)) == every  # type: ignore[arg-type]
    m.free()
    assert pool.full()


@pytest.mark.parametrize("data_room", [MBUF_DEFAULT_BUF_SIZE, 300, PKTMBUF_HEADROOM, 64, 0])
def test_append_and_prepend_fill_the_buffer_exactly(make_pool: Pools, data_room: int) -> None:
    pool = make_pool(n=4, data_room_size=data_room)
    m = pool.alloc()
    assert m is not None
    headroom = min(PKTMBUF_HEADROOM, data_room)
    assert m.headroom() == headroom and m.tailroom() == data_room - headroom
    assert m.buf_len == data_room

    tail = m.append(m.tailroom())  # up to the tailroom exactly, 0 included
    assert tail is not None and len(tail) == data_room - headroom
    assert m.tailroom() == 0
    before = rows(pool, m)
    assert m.append(1) is None
    assert (rows(pool, m) == before).all()

    head = m.prepend(m.headroom())
    assert head is not None and len(head) == headroom
    assert m.headroom() == 0 and m.data_off == 0
    before = rows(pool, m)
    assert m.prepend(1) is None
    assert (rows(pool, m) == before).all()

    assert m.pkt_len == m.data_len == data_room
    pattern = bytes(i * 31 & 0xFF for i in range(data_room))
    head[:] = pattern[:headroom]
    tail[:] = pattern[headroom:]
    assert bytes(m.data) == pattern
    assert bytes(m.read(0, data_room)) == pattern  # type: ignore[arg-type]
    m.sanity_check()
    m.free()
    assert pool.full()


def test_adj_and_trim_edges(make_pool: Pools) -> None:
    pool = make_pool(n=4)
    m = packet(pool, b"0123456789")
    before = rows(pool, m)
    assert not m.adj(11) and not m.trim(11)
    assert (rows(pool, m) == before).all()
    assert m.adj(0) and m.trim(0)
    assert (rows(pool, m) == before).all()

    assert m.adj(3)
    assert bytes(m.data) == b"3456789" and m.pkt_len == 7
    assert m.headroom() == PKTMBUF_HEADROOM + 3
    assert m.trim(2)
    assert bytes(m.data) == b"34567" and m.pkt_len == 5
    assert m.tailroom() == MBUF_DEFAULT_BUF_SIZE - PKTMBUF_HEADROOM - 3 - 5
    assert m.trim(5)  # down to nothing
    assert m.data_len == m.pkt_len == 0
    assert m.adj(0) and m.trim(0) and not m.adj(1) and not m.trim(1)
    m.free()

    # On a chain, adj works on the first segment and trim on the last only.
    m = packet(pool, b"abcde", b"xyz")
    before = rows(pool, m)
    assert not m.trim(4)  # the last segment holds 3, though pkt_len is 8
    assert not m.adj(6)  # the first holds 5
    assert (rows(pool, m) == before).all()
    assert m.trim(3)
    assert m.pkt_len == 5 and m.nb_segs == 2
    assert m.next is not None and m.next.data_len == 0
    assert m.adj(5)
    assert m.pkt_len == 0 and m.data_len == 0
    m.sanity_check()
    m.free()
    assert pool.full()


@pytest.mark.parametrize("method", ["append", "prepend", "adj", "trim", "read-offset", "read-len"])
def test_lengths_must_be_non_negative_ints(make_pool: Pools, method: str) -> None:
    pool = make_pool(n=4)
    m = packet(pool, b"0123456789")

    def call(value: Any) -> Any:
        if method == "read-offset":
            return m.read(value, 1)
        if method == "read-len":
            return m.read(1, value)
        return getattr(m, method)(value)

    before = rows(pool, m)
    for bad in (-1, -(1 << 40)):
        with pytest.raises(pktflow.PktflowValueError):
            call(bad)
    for bad in (1.0, "1", None, True, b"\x01"):
        with pytest.raises(TypeError):
            call(bad)
    assert (rows(pool, m) == before).all()
    # numpy integers are integers.
    assert call(np.uint16(2)) not in (None, False)
    m.free()
    assert pool.full()


def test_writable_fields_land_in_the_header(make_pool: Pools) -> None:
    pool = make_pool(n=4)
    m = pool.alloc()
    assert m is not None
    m.port, m.vlan_tci, m.packet_type, m.hash = 0xFFFE, 0xABC, 0x0101_0202, 0xFFFF_FFFF
    m.ol_flags, m.timestamp = (1 << 63) | 5, (1 << 64) - 1
    row = pool.headers[m.handle]
    assert (row["port"], row["vlan_tci"], row["packet_type"], row["hash"]) == (
        0xFFFE, 0xABC, 0x0101_0202, 0xFFFF_FFFF,
    )  # fmt: skip
    assert (int(row["ol_flags"]), int(row["timestamp"])) == ((1 << 63) | 5, (1 << 64) - 1)
    assert m.data_len == 0 and m.refcnt == 1  # neighbours in the same words untouched
    m.l2_len, m.l3_len, m.l4_len = 14, 0x1234, 0xAB  # DPDK's tx_offload lengths
    assert (row["l2_len"], row["l3_len"], row["l4_len"]) == (14, 0x1234, 0xAB)
    assert pool.header_words[m.handle, 14] == 14 | 0xAB << 8 | 0x1234 << 16
    m.l4_len = 20
    assert (m.l2_len, m.l3_len, m.l4_len) == (14, 0x1234, 20)
    with pytest.raises(ValueError):
        m.l2_len = 256
    # The indirect flag is the pool's: setting it through ol_flags does nothing.
    m.ol_flags = MBUF_F_INDIRECT | 1
    assert m.ol_flags == 1 and not m.is_indirect
    with pytest.raises(ValueError):
        m.port = 0x10000
    with pytest.raises(ValueError):
        m.ol_flags = -1
    with pytest.raises(AttributeError):
        m.data_len = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        m.refcnt = 2  # type: ignore[misc]
    m.free()
    assert pool.full()


# -- read across segments --------------------------------------------------------

PARTS = (b"ABCDE", b"", b"f", b"ghijklm", b"NOP")


def test_read_across_segments(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    m = packet(pool, *PARTS)
    whole = b"".join(PARTS)
    assert m.nb_segs == len(PARTS) and m.pkt_len == len(whole) == 16
    assert content(m) == whole
    # Segment spans [start, end) of the non-empty segments.
    spans, start = [], 0
    for part in PARTS:
        spans.append((start, start + len(part)))
        start += len(part)
    for off in range(len(whole) + 2):
        for length in range(len(whole) + 2):
            got = m.read(off, length)
            if off + length > len(whole):
                assert got is None, (off, length)
                continue
            assert got is not None and bytes(got) == whole[off : off + length], (off, length)
            inside_one = any(s <= off and off + length <= e for s, e in spans if e > s)
            if length and inside_one:
                assert isinstance(got, memoryview), (off, length)
    # A single-segment read is a view of the packet: writes go through.
    view = m.read(7, 3)
    assert isinstance(view, memoryview)
    view[:] = b"XYZ"
    assert content(m) == b"ABCDEfgXYZklmNOP"
    # Offsets right on the boundaries.
    assert bytes(m.read(5, 1)) == b"f"  # type: ignore[arg-type]
    assert bytes(m.read(4, 2)) == b"Ef"  # type: ignore[arg-type]
    assert bytes(m.read(13, 3)) == b"NOP"  # type: ignore[arg-type]
    assert m.read(16, 1) is None and m.read(0, 17) is None
    m.free()
    assert pool.full()


# -- chains ------------------------------------------------------------------------


def test_chain_sums_segments_and_lengths(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    a, b, c, d = (packet(pool, bytes([65 + i]) * (i + 1)) for i in range(4))
    assert a.chain(b)
    assert (a.nb_segs, a.pkt_len) == (2, 3)
    assert a.next == b and b.next is None
    assert b.pkt_len == b.data_len  # a middle segment describes itself only (as DPDK)
    assert c.chain(d)
    assert a.chain(c)  # a chain onto a chain
    assert (a.nb_segs, a.pkt_len) == (4, 10)
    assert [s.handle for s in segments(a)] == [a.handle, b.handle, c.handle, d.handle]
    assert content(a) == b"A" + b"BB" + b"CCC" + b"DDDD"
    a.sanity_check()
    for seg in segments(a)[1:]:
        seg.sanity_check(is_header=False)
    # append grows the last segment and the head's pkt_len.
    more = a.append(2)
    assert more is not None
    more[:] = b"!!"
    assert d.data_len == 6 and a.pkt_len == 12 and a.data_len == 1
    assert content(a) == b"ABBCCCDDDD!!"
    assert pool.avail_count() == 4
    a.free()
    assert pool.full()


def test_chain_into_itself_is_refused(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    a = packet(pool, b"aa", b"bbb")
    b = a.next
    assert b is not None
    lone = packet(pool, b"z")
    before = rows(pool, a, lone)
    with pytest.raises(pktflow.MbufError):
        lone.chain(lone)
    with pytest.raises(pktflow.MbufError):
        a.chain(a)
    with pytest.raises(pktflow.MbufError):
        a.chain(b)  # a segment already in the chain
    with pytest.raises(pktflow.MbufError):
        b.chain(a)  # would close a cycle through the head
    assert (rows(pool, a, lone) == before).all()
    a.sanity_check()
    a.free()
    lone.free()
    assert pool.full()


def test_chain_refuses_another_pools_tail(make_pool: Pools) -> None:
    pool, other = make_pool(n=4), make_pool(n=4)
    a, t = packet(pool, b"head"), packet(other, b"tail")
    before_a, before_t = rows(pool, a), rows(other, t)
    with pytest.raises(pktflow.MbufError):
        a.chain(t)
    with pytest.raises(TypeError):
        a.chain(t.handle)  # type: ignore[arg-type]
    assert (rows(pool, a) == before_a).all() and (rows(other, t) == before_t).all()
    a.free()
    t.free()
    assert pool.full() and other.full()


def test_chain_across_views_of_one_pool(make_pool: Pools) -> None:
    pool = make_pool(n=4)
    view = PktmbufPool.lookup(pool.name)
    try:
        assert view.pool_id == pool.pool_id
        a, t = packet(pool, b"ab"), packet(view, b"cd")
        chained = a.chain(t)
        assert chained
        assert a.nb_segs == 2 and bytes(a.read(0, 4)) == b"abcd"
        a.free()  # the whole chain, t included
        assert pool.full()
    finally:
        view.close()


def build_tree(mbufs: list[Mbuf]) -> Mbuf:
    """One chain of all ``mbufs`` with O(n log n) segment walks (pairwise, level by level).

    Chaining one mbuf at a time walks the whole chain each time: O(n^2).
    """
    level = mbufs
    while len(level) > 1:
        merged = []
        for i in range(0, len(level) - 1, 2):
            assert level[i].chain(level[i + 1])
            merged.append(level[i])
        if len(level) % 2:
            merged.append(level[-1])
        level = merged
    return level[0]


@pytest.mark.parametrize("kind", ["numba"], indirect=True)
def test_chain_segment_limit(make_pool: Pools) -> None:
    # nb_segs is 16 bits: a chain may hold 65535 segments, not one more.
    # About 2 s on a 2-core machine thanks to build_tree (numba only: the
    # limit check is backend-independent Python; the free is the kernel's).
    n = MBUF_MAX_NB_SEGS + 1
    pool = make_pool(n=n, data_room_size=1)  # 1 byte of headroom, no tailroom
    handles = alloc_all(pool)
    mbufs = [pool.mbuf(h) for h in handles.tolist()]
    for i, m in enumerate(mbufs):
        m.prepend(1)[0] = i & 0xFF  # type: ignore[index]
    first = build_tree(mbufs[: n // 2])
    second = build_tree(mbufs[n // 2 : n - 1])
    last = mbufs[-1]
    assert first.nb_segs + second.nb_segs == MBUF_MAX_NB_SEGS
    assert first.chain(second)
    assert first.nb_segs == MBUF_MAX_NB_SEGS and first.pkt_len == MBUF_MAX_NB_SEGS
    before_first = pool.header_words[[first.handle, segments(first)[-1].handle]].copy()
    before_last = rows(pool, last)
    assert not first.chain(last)  # 65536 segments: refused, both unchanged
    assert (pool.header_words[[first.handle, segments(first)[-1].handle]] == before_first).all()
    assert (rows(pool, last) == before_last).all()
    first.sanity_check()
    # The segments are in tree order; the bytes follow that order.
    assert first.read(n // 2 - 1, 2) == bytes([(n // 2 - 1) & 0xFF, (n // 2) & 0xFF])
    first.free()
    last.free()
    assert pool.full()


# -- linearize ---------------------------------------------------------------------


def test_linearize_copies_and_frees_the_rest(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    parts = (b"ABC", b"defg", b"", b"HI" * 100)
    m = packet(pool, *parts)
    assert pool.avail_count() == 4
    assert m.linearize()
    assert bytes(m.data) == b"".join(parts)
    assert m.nb_segs == 1 and m.next is None
    assert m.pkt_len == m.data_len == sum(map(len, parts))
    assert pool.avail_count() == 7  # the three other segments went back
    m.sanity_check()
    # A single segment is already linear.
    before = rows(pool, m)
    assert m.linearize()
    assert (rows(pool, m) == before).all()
    m.free()
    assert pool.full()


def test_linearize_exact_fit_and_refusals(make_pool: Pools) -> None:
    pool = make_pool(n=8, data_room_size=256)
    # 128 bytes of tailroom per fresh mbuf.
    # Exactly fits: the rest is the head's tailroom to the byte.
    m = packet(pool, b"a" * 100, b"b" * 20, b"c" * 8)
    assert m.linearize()
    assert bytes(m.data) == b"a" * 100 + b"b" * 20 + b"c" * 8 and m.tailroom() == 0
    m.free()
    # One byte more does not: False, nothing changed, nothing freed.
    m = packet(pool, b"a" * 100, b"b" * 20, b"c" * 9)
    before, avail = rows(pool, m), pool.avail_count()
    assert not m.linearize()
    assert (rows(pool, m) == before).all() and pool.avail_count() == avail
    m.free()
    # A clone shares its buffer: it cannot be linearized in place.
    m = packet(pool, b"x" * 10, b"y" * 10)
    clone = m.clone()
    assert clone is not None
    before, avail = rows(pool, clone), pool.avail_count()
    assert not clone.linearize()
    assert (rows(pool, clone) == before).all() and pool.avail_count() == avail
    clone.free()
    m.free()
    assert pool.full()


def test_linearize_keeps_a_shared_segment(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    m = packet(pool, b"one", b"two", b"three")
    last = segments(m)[-1]
    last.refcnt_update(1)  # someone else holds the last segment too
    assert m.linearize()
    assert bytes(m.data) == b"onetwothree"
    assert pool.avail_count() == 6  # "two" went back; "three" is still referenced
    assert last.refcnt == 1 and bytes(last.data) == b"three"
    m.free()
    last.free()
    assert pool.full()


def test_linearize_a_chain_holding_a_clone(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    source = packet(pool, b"cloned")
    clone = source.clone()
    assert clone is not None
    m = packet(pool, b"head:")
    assert m.chain(clone)
    assert source.refcnt == 2
    assert m.linearize()
    assert bytes(m.data) == b"head:cloned"
    # The clone went back to the pool and let go of the source's buffer.
    assert source.refcnt == 1 and pool.avail_count() == 6
    m.free()
    source.free()
    assert pool.full()


# -- refcnt ------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 7])
def test_refcnt_update_then_k_plus_one_frees(make_pool: Pools, k: int) -> None:
    pool = make_pool(n=4)
    m = packet(pool, b"shared")
    assert m.refcnt_update(k) == k + 1 and m.refcnt == k + 1
    for left in range(k, 0, -1):
        m.free()
        # Not the last owner: the mbuf stays out of the pool, data intact.
        assert m.refcnt == left and pool.avail_count() == 3
        assert bytes(m.data) == b"shared"
    m.free()
    assert pool.full()


def test_refcnt_update_bounds(make_pool: Pools) -> None:
    pool = make_pool(n=2)
    m = pool.alloc()
    assert m is not None
    with pytest.raises(pktflow.MbufError):
        m.refcnt_update(-1)  # would drop the last reference without a free
    assert m.refcnt == 1
    assert m.refcnt_update(0xFFFF - 1) == 0xFFFF
    with pytest.raises(pktflow.MbufError):
        m.refcnt_update(1)  # 16 bits, as DPDK's refcnt
    assert m.refcnt_update(-(0xFFFF - 1)) == 1
    m.free()
    assert pool.full()


def test_chain_free_keeps_only_the_shared_segment(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    m = packet(pool, b"aa", b"bb", b"cc")
    last = segments(m)[-1]
    last.refcnt_update(1)
    m.free()
    assert pool.avail_count() == 7  # only the shared segment survives
    assert last.refcnt == 1 and bytes(last.data) == b"cc" and last.next is None
    last.free()
    assert pool.full()


def test_refcnt_update_covers_the_whole_chain(make_pool: Pools) -> None:
    pool = make_pool(n=8, debug=True)
    m = packet(pool, b"aa", b"bb", b"cc")
    try:
        m.refcnt_update(1)
        assert [seg.refcnt for seg in segments(m)] == [2, 2, 2]
    finally:
        for seg in segments(m)[1:]:  # leave the pool consistent whatever happened
            if seg.refcnt == 1:
                seg.refcnt_update(1)
        m.free()
        m.free()
        assert pool.full()


# -- clones ------------------------------------------------------------------------


def test_clone_shares_the_data(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    m = packet(pool, b"hello world")
    m.port, m.vlan_tci, m.packet_type, m.hash, m.ol_flags = 7, 42, 0x11, 0xABCD, 0x3
    m.l2_len, m.l3_len, m.l4_len = 14, 20, 8
    c = m.clone()
    assert c is not None and c.pool is pool and c.handle != m.handle
    assert c.is_indirect and not m.is_indirect
    assert m.refcnt == 2 and c.refcnt == 1
    assert (c.pkt_len, c.data_len, c.nb_segs) == (11, 11, 1)
    assert (c.port, c.vlan_tci, c.packet_type, c.hash) == (7, 42, 0x11, 0xABCD)
    assert (c.l2_len, c.l3_len, c.l4_len) == (14, 20, 8)  # rte_pktmbuf_attach copies them
    assert c.ol_flags == 0x3 | MBUF_F_INDIRECT  # the flags, plus "attached" (as DPDK)
    assert c.headroom() == m.headroom()
    row = pool.headers[c.handle]
    assert row["direct"] == m.handle and row["direct_pool"] == pool.pool_id
    assert int(row["ol_flags"]) & MBUF_F_INDIRECT
    c.sanity_check()
    # Write through the original, read through the clone (and back).
    m.data[:5] = b"HELLO"
    assert bytes(c.read(0, 5)) == b"HELLO"  # type: ignore[arg-type]
    c.data[6:] = b"WORLD"
    assert bytes(m.data) == b"HELLO WORLD"

    m.free()
    # The clone still holds the buffer: the direct mbuf is not back in the pool.
    assert pool.avail_count() == 6 and m.refcnt == 1
    others = np.empty(6, dtype=U32)
    assert pool.alloc_bulk(others) == 6
    assert m.handle not in others.tolist()
    for h in others.tolist():  # scribble over every other buffer
        pool.mbuf(h).append(64)[:] = b"\x00" * 64  # type: ignore[index]
    assert bytes(c.data) == b"HELLO WORLD"
    pool.free_bulk(others)
    c.free()
    assert pool.full()
    assert_reset(pool, alloc_all(pool))


def test_clone_of_a_clone_attaches_to_the_direct_mbuf(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    for order in itertools.permutations(range(3)):
        m = packet(pool, b"payload")
        c1 = m.clone()
        assert c1 is not None
        c2 = c1.clone()
        assert c2 is not None and c2.is_indirect
        assert m.refcnt == 3 and c1.refcnt == 1 and c2.refcnt == 1
        assert pool.headers["direct"][c2.handle] == m.handle
        owners = [m, c1, c2]
        for step, i in enumerate(order):
            owners[i].free()
            alive = [owners[j] for j in order[step + 1 :]]
            for other in alive:
                assert bytes(other.data) == b"payload"
        assert pool.full(), order


def test_shared_clone_detaches_at_its_last_free(make_pool: Pools) -> None:
    pool = make_pool(n=4)
    m = packet(pool, b"data")
    c = m.clone()
    assert c is not None
    c.refcnt_update(1)  # the clone itself has two owners
    c.free()
    assert c.is_indirect and m.refcnt == 2 and pool.avail_count() == 2
    m.free()
    assert pool.avail_count() == 2 and bytes(c.data) == b"data"
    c.free()
    assert pool.full()


def test_clone_needs_an_mbuf_pool(make_pool: Pools) -> None:
    pool = make_pool(n=4)
    plain = pktflow.Mempool(make_pool.name(), 4, 64, backend=pool.backend)
    make_pool.made.append(plain)
    m = packet(pool, b"x")
    with pytest.raises(TypeError):
        m.clone(plain)  # type: ignore[arg-type]
    assert m.refcnt == 1 and plain.full()
    m.free()
    assert pool.full()


def test_clone_of_a_chain(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    m = packet(pool, b"abc", b"defg", b"hijkl")
    c = m.clone()
    assert c is not None
    assert (c.nb_segs, c.pkt_len) == (3, 12)
    assert content(c) == b"abcdefghijkl" == c.read(0, 12)
    assert all(seg.is_indirect for seg in segments(c))
    assert [seg.refcnt for seg in segments(m)] == [2, 2, 2]
    c.sanity_check()
    assert pool.avail_count() == 2
    m.free()
    assert pool.avail_count() == 2  # every direct segment is still referenced
    assert content(c) == b"abcdefghijkl"
    c.free()
    assert pool.full()
    # The other way round too.
    m = packet(pool, b"abc", b"defg", b"hijkl")
    c = m.clone()
    assert c is not None
    c.free()
    assert [seg.refcnt for seg in segments(m)] == [1, 1, 1] and pool.avail_count() == 5
    m.free()
    assert pool.full()


def test_clone_into_a_second_pool_freed_in_any_order(make_pool: Pools) -> None:
    # DPDK clones into a pool of data_room_size 0: clones need no buffer.
    pool = make_pool(n=8)
    clones = make_pool(n=8, data_room_size=0)
    for order in itertools.permutations(range(4)):
        m = packet(pool, b"abc", b"defgh")
        c = m.clone(clones)
        assert c is not None and c.pool is clones and c.is_indirect
        assert clones.headers["direct_pool"][c.handle] == pool.pool_id
        cc = c.clone()  # in the clone pool, attached to m's buffers
        back = c.clone(pool)  # back in the first pool
        assert cc is not None and back is not None
        assert [seg.refcnt for seg in segments(m)] == [4, 4]
        owners = [m, c, cc, back]
        for step, i in enumerate(order):
            owners[i].free()
            for j in order[step + 1 :]:
                assert owners[j].read(0, 8) == b"abcdefgh"
        assert pool.full() and clones.full(), order
    assert_reset(clones, alloc_all(clones))


@pytest.mark.parametrize(
    ("direct_backend", "clone_backend"),
    [("pure", "numba"), ("numba", "pure"), ("hugepage", "numba"), ("numba", "hugepage")],
)
@pytest.mark.parametrize("kind", ["pure"], indirect=True)
def test_clone_across_backends(make_pool: Pools, direct_backend: str, clone_backend: str) -> None:
    pool = make_pool(n=8, backend=direct_backend)
    clones = make_pool(n=8, data_room_size=0, backend=clone_backend)
    m = packet(pool, b"cross", b"backend")
    c = m.clone(clones)
    assert c is not None and content(c) == b"crossbackend"
    c2 = c.clone(pool)
    assert c2 is not None
    m.free()
    c.free()
    # c2 holds m's two buffers: they stay out of the pool with c2's own two.
    assert pool.avail_count() == 4 and clones.full()
    assert content(c2) == b"crossbackend"
    c2.free()
    assert pool.full()


def test_clone_fails_cleanly_when_the_clone_pool_is_empty(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    clones = make_pool(n=2, data_room_size=0)
    m = packet(pool, b"a", b"b", b"c")
    before = rows(pool, m)
    # Two free clone mbufs for three segments: all or nothing.
    assert m.clone(clones) is None
    assert clones.full() and (rows(pool, m) == before).all()
    held = alloc_all(clones)
    single = packet(pool, b"z")
    assert single.clone(clones) is None
    assert single.refcnt == 1
    clones.free_bulk(held)
    m.free()
    single.free()
    assert pool.full() and clones.full()


def test_free_bulk_of_mixed_chains(make_pool: Pools) -> None:
    pool = make_pool(n=128)
    clones = make_pool(n=64, data_room_size=0)
    rng = random.Random(1234)
    heads: list[Mbuf] = []
    for i in range(10):
        parts = [bytes([i]) * rng.randint(0, 40) for _ in range(rng.randint(1, 4))]
        heads.append(packet(pool, *parts))
    for source in heads[:6]:
        c = source.clone()  # same-pool indirect chain
        assert c is not None
        heads.append(c)
    for source in heads[2:8]:
        c = source.clone(clones)  # another pool's clones
        assert c is not None
        heads.append(c)
    # Clone-pool chains mixing its own direct mbufs with indirect ones, the
    # indirect segment first, last or in the middle.
    for position in range(3):
        c = heads[position].clone(clones)
        plain = [clones.alloc() for _ in range(2)]
        assert c is not None and all(p is not None for p in plain)
        order = [*plain]
        order.insert(position, c)
        head = order[0]
        for seg in order[1:]:
            assert head.chain(seg)  # type: ignore[union-attr,arg-type]
        heads.append(head)  # type: ignore[arg-type]
    cc = heads[-1].clone()  # a clone of a mixed chain, in the clone pool
    assert cc is not None
    heads.append(cc)
    expected = {id(m): content(m) for m in heads}

    rng.shuffle(heads)
    by_pool: dict[int, list[Mbuf]] = {id(pool): [], id(clones): []}
    for m in heads:
        by_pool[id(m.pool)].append(m)
    # Free half of each pool's chains, check the rest is intact, free the rest.
    for part in (0, 1):
        for owner in (clones, pool) if part else (pool, clones):
            mine = by_pool[id(owner)]
            half = mine[: len(mine) // 2] if part == 0 else mine[len(mine) // 2 :]
            owner.free_bulk(np.array([m.handle for m in half], dtype=U32))
        if part == 0:
            for owner in (pool, clones):
                mine = by_pool[id(owner)]
                for m in mine[len(mine) // 2 :]:
                    assert content(m) == expected[id(m)]
                    m.sanity_check()
    assert pool.full() and clones.full()
    assert_reset(pool, alloc_all(pool))
    assert_reset(clones, alloc_all(clones))


# -- bad input -----------------------------------------------------------------------


def test_free_bulk_with_a_foreign_handle_frees_nothing(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    a, b = packet(pool, b"a", b"aa"), packet(pool, b"b")
    avail = pool.avail_count()
    before = rows(pool, a, b)
    for foreign in (8, 1000, NO_NEXT):
        with pytest.raises(pktflow.MempoolError):
            pool.free_bulk(np.array([a.handle, b.handle, foreign], dtype=U32))
        assert pool.avail_count() == avail
        assert (rows(pool, a, b) == before).all()
    with pytest.raises(pktflow.MbufError):
        pool.mbuf(8)
    with pytest.raises(TypeError):
        pool.free_bulk(np.array([a.handle], dtype=np.int64))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pool.free_bulk([a.handle])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pool.free_bulk(np.array([a.handle], dtype=U32), 2)
    assert pool.avail_count() == avail
    pool.free_bulk(np.array([a.handle, b.handle], dtype=U32))
    assert pool.full()


@pytest.mark.parametrize("kind", DEBUG_KINDS, indirect=True)
def test_double_free_is_detected_with_debug(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    held = packet(pool, b"keep")  # the pool is not full: only debug can tell
    m = packet(pool, b"x", b"y")
    m.free()
    with pytest.raises(pktflow.MempoolError):
        m.free()
    assert pool.avail_count() == 7
    n = pool.alloc()
    assert n is not None
    with pytest.raises(pktflow.MempoolError):
        pool.free_bulk(np.array([n.handle, n.handle], dtype=U32))  # twice in one call
    assert pool.avail_count() == 7
    held.free()
    assert pool.full()
    with pytest.raises(pktflow.MempoolError):
        pool.mbuf(3).free()  # never allocated
    assert pool.full()


def test_freeing_into_a_full_pool_is_an_error(make_pool: Pools) -> None:
    # Without debug checks a double free is caught when it overflows the pool.
    pool = make_pool(n=4)
    m = pool.alloc()
    assert m is not None
    m.free()
    with pytest.raises(pktflow.MempoolError):
        m.free()
    assert pool.full()


@pytest.mark.parametrize("cached", [False, True])
def test_alloc_bulk_is_all_or_nothing(make_pool: Pools, cached: bool) -> None:
    pool = make_pool(n=32, cache_size=8 if cached else 0)
    if cached:
        pktflow.register_lcore()
    try:
        held = np.empty(30, dtype=U32)
        assert pool.alloc_bulk(held) == 30
        out = np.full(3, 0xDEAD, dtype=U32)
        assert pool.alloc_bulk(out) == 0
        assert pool.avail_count() == 2
        assert (out == 0xDEAD).all()
        assert pool.alloc_bulk(out, 0) == 0  # zero succeeds and does nothing
        assert pool.alloc_bulk(out, 2) == 2
        assert pool.avail_count() == 0
        with pytest.raises(ValueError):
            pool.alloc_bulk(out, 4)
        with pytest.raises(TypeError):
            pool.alloc_bulk(np.empty(3, dtype=np.int32), 1)  # type: ignore[arg-type]
        pool.free_bulk(out, 2)
        pool.free_bulk(held, 0)
        assert pool.avail_count() == 2
        pool.free_bulk(held)
    finally:
        if cached:
            pktflow.unregister_lcore()
    assert pool.full()


def test_freeing_a_cyclic_chain_frees_nothing_twice(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    a, b = packet(pool, b"a"), packet(pool, b"b")
    held = [packet(pool, b"held") for _ in range(2)]  # room in the free list
    # Corrupt headers: a -> b -> a (chain() itself refuses to build this).
    pool.headers["next"][a.handle] = b.handle
    pool.headers["next"][b.handle] = a.handle
    pool.headers["nb_segs"][a.handle] = 2
    with pytest.raises(pktflow.MbufError):
        a.free()
    # The chain is refused whole: nothing of it was freed.
    assert pool.avail_count() == 4
    for m in held:
        m.free()


@pytest.mark.parametrize(
    "kind",
    [
        "pure",
        "numba",
        "hugepage",
        "numba-debug",
        "hugepage-debug",
    ],
    indirect=True,
)
def test_a_closed_pool_refuses_alloc_and_free(make_pool: Pools) -> None:
    pool = make_pool(n=4)
    m = packet(pool, b"x")
    pool.close()
    with pytest.raises(pktflow.ClosedError):
        pool.alloc()
    with pytest.raises(pktflow.ClosedError):
        pool.alloc_bulk(np.empty(2, dtype=U32))
    with pytest.raises(pktflow.ClosedError):
        m.free()
    with pytest.raises(pktflow.ClosedError):
        pool.avail_count()


# -- sanity checks -------------------------------------------------------------------


def test_sanity_check_passes_on_good_mbufs(make_pool: Pools) -> None:
    pool = make_pool(n=16)
    fresh = pool.alloc()
    chain = packet(pool, b"a" * 10, b"", b"b" * 2000)
    clone = chain.clone()
    assert fresh is not None and clone is not None
    full = packet(pool, b"f" * (MBUF_DEFAULT_BUF_SIZE - PKTMBUF_HEADROOM))
    full.prepend(PKTMBUF_HEADROOM)
    for m in (fresh, chain, clone, full):
        m.sanity_check()
        m.sanity_check(is_header=False)
    for seg in segments(chain)[1:]:
        seg.sanity_check(is_header=False)
    for m in (fresh, chain, clone, full):
        m.free()
    assert pool.full()


def _data_len_beyond_buf(pool: PktmbufPool, m: Mbuf) -> None:
    h = pool.headers
    h["data_len"][m.handle] = h["buf_len"][m.handle] - h["data_off"][m.handle] + 1
    h["pkt_len"][m.handle] = h["data_len"][m.handle]


def _data_off_beyond_buf(pool: PktmbufPool, m: Mbuf) -> None:
    pool.headers["data_off"][m.handle] = pool.headers["buf_len"][m.handle] + 1


def _pkt_len_mismatch(pool: PktmbufPool, m: Mbuf) -> None:
    pool.headers["pkt_len"][m.handle] += 1


def _nb_segs_mismatch(pool: PktmbufPool, m: Mbuf) -> None:
    pool.headers["nb_segs"][m.handle] = 3


def _nb_segs_zero(pool: PktmbufPool, m: Mbuf) -> None:
    pool.headers["nb_segs"][m.handle] = 0


def _refcnt_zero(pool: PktmbufPool, m: Mbuf) -> None:
    pool.headers["refcnt"][m.handle] = 0


def _tail_refcnt_zero(pool: PktmbufPool, m: Mbuf) -> None:
    pool.headers["refcnt"][segments(m)[-1].handle] = 0


def _tail_data_len_beyond_buf(pool: PktmbufPool, m: Mbuf) -> None:
    tail = segments(m)[-1].handle
    pool.headers["data_len"][tail] = 0xFFFF
    pool.headers["pkt_len"][m.handle] = 2 + 0xFFFF


def _cycle(pool: PktmbufPool, m: Mbuf) -> None:
    pool.headers["next"][segments(m)[-1].handle] = m.handle


CORRUPTIONS: dict[str, tuple[Callable[[PktmbufPool, Mbuf], None], bool]] = {
    # name: (corrupt, caught by the segment-only check too)
    "data_len beyond buf_len": (_data_len_beyond_buf, True),
    "data_off beyond buf_len": (_data_off_beyond_buf, True),
    "pkt_len mismatch": (_pkt_len_mismatch, False),
    "nb_segs mismatch": (_nb_segs_mismatch, False),
    "nb_segs zero": (_nb_segs_zero, False),
    "refcnt zero": (_refcnt_zero, True),
    "tail refcnt zero": (_tail_refcnt_zero, False),
    "tail data_len beyond buf_len": (_tail_data_len_beyond_buf, False),
    "cycle": (_cycle, False),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_sanity_check_catches_corrupt_headers(make_pool: Pools, corruption: str) -> None:
    # DPDK test_failing_mbuf_sanity_check: break one rule at a time.
    corrupt, segment_level = CORRUPTIONS[corruption]
    pool = make_pool(n=4)
    m = packet(pool, b"ab", b"cd")
    m.sanity_check()
    saved = pool.header_words.copy()
    corrupt(pool, m)
    try:
        with pytest.raises(pktflow.MbufError):
            m.sanity_check()
        if segment_level:
            with pytest.raises(pktflow.MbufError):
                m.sanity_check(is_header=False)
        else:
            m.sanity_check(is_header=False)  # the first segment alone is fine
    finally:
        pool.header_words[:] = saved
    m.sanity_check()
    m.free()
    assert pool.full()


# -- other processes, jitted code, threads ----------------------------------------------


@pytest.mark.parametrize("kind", ["hugepage", "hugepage-debug"], indirect=True)
def test_spawned_child_fills_mbufs_by_name(make_pool: Pools) -> None:
    count, port, shared_count = 16, 0x0A0B, 8
    pool = make_pool(n=64)
    to_parent, to_child = make_pool.ring(64), make_pool.ring(64)
    # Mbufs with one extra reference each: the child drops those references.
    shared = np.empty(shared_count, dtype=U32)
    assert pool.alloc_bulk(shared) == shared_count
    for h in shared.tolist():
        pool.mbuf(h).append(4)[:] = b"keep"  # type: ignore[index]
        pool.mbuf(h).refcnt_update(1)
    assert to_child.enqueue_bulk(shared) == shared_count

    child = multiprocessing.get_context("spawn").Process(
        target=_mbuf_workers.fill_mbufs,
        args=(pool.name, to_parent.name, to_child.name, count, port),
    )
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0, "the child failed; its traceback is in the captured stderr"

    assert pool.avail_count() == 64 - shared_count - 2 * count
    assert (pool.headers["refcnt"][shared] == 1).all()
    heads = np.empty(count, dtype=U32)
    assert to_parent.dequeue_bulk(heads) == count and to_parent.empty()
    h = pool.headers[heads.astype(np.intp)]
    assert (h["port"] == port).all() and (h["nb_segs"] == 2).all()
    assert (h["data_off"] == PKTMBUF_HEADROOM).all()
    assert (h["data_len"] == _mbuf_workers.FIRST_SEG).all()
    for i, handle in enumerate(heads.tolist()):
        m = pool.mbuf(handle)
        data = _mbuf_workers.payload(i)
        assert m.pkt_len == len(data) == h["pkt_len"][i]
        assert m.read(0, m.pkt_len) == data and content(m) == data
        assert (m.vlan_tci, m.hash) == (i, 0xC0DE0000 + i)
        m.sanity_check()
    pool.free_bulk(heads)
    pool.free_bulk(shared)
    assert pool.full()


@pytest.mark.parametrize("kind", ["numba", "hugepage"], indirect=True)
def test_jitted_code_reads_the_header_words(make_pool: Pools) -> None:
    numba = pytest.importorskip("numba")

    @numba.njit(cache=False)
    def header_fields(words: Any, handles: Any, out: Any) -> None:
        for i in range(handles.shape[0]):
            h = handles[i]
            out[i, 0] = words[h, H_BUF] >> 16  # data_off
            out[i, 1] = words[h, H_DATA] & 0xFFFF  # data_len
            out[i, 2] = words[h, H_DATA] >> 16  # nb_segs
            out[i, 3] = words[h, H_PKT_LEN]

    pool = make_pool(n=16)
    fresh = pool.alloc()
    appended = packet(pool, b"x" * 300)
    prepended = packet(pool, b"y" * 10)
    prepended.prepend(42)
    adjusted = packet(pool, b"z" * 50)
    adjusted.adj(17)
    chain = packet(pool, b"a" * 5, b"b" * 6, b"c" * 7)
    clone = chain.clone()
    assert fresh is not None and clone is not None
    mbufs = [fresh, appended, prepended, adjusted, chain, *segments(chain)[1:], clone]
    handles = np.array([m.handle for m in mbufs], dtype=U32)
    out = np.zeros((len(mbufs), 4), dtype=np.uint32)
    header_fields(pool.header_words, handles, out)
    expected = [(m.data_off, m.data_len, m.nb_segs, m.pkt_len) for m in mbufs]
    assert [tuple(row) for row in out.tolist()] == expected
    h = pool.headers[handles.astype(np.intp)]
    assert out[:, 0].tolist() == h["data_off"].tolist()
    assert out[:, 1].tolist() == h["data_len"].tolist()
    assert expected[2][:2] == (PKTMBUF_HEADROOM - 42, 52)
    assert expected[3][:2] == (PKTMBUF_HEADROOM + 17, 33)
    assert expected[4][2:] == (3, 18)
    for m in (fresh, appended, prepended, adjusted, clone, chain):
        m.free()
    assert pool.full()


@pytest.mark.parametrize("kind", ["pure", "numba", "hugepage"], indirect=True)
def test_refcnt_updates_from_threads_are_atomic(make_pool: Pools) -> None:
    threads, rounds = 4, 5000
    pool = make_pool(n=4)
    m = pool.alloc()
    assert m is not None
    m.refcnt_update(2)
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def bump(delta: int) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                m.refcnt_update(delta)
        except BaseException as exc:
            errors.append(exc)

    for delta in (+1, -1):
        workers = [threading.Thread(target=bump, args=(delta,)) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        assert m.refcnt == 3 + (threads * rounds if delta > 0 else 0)
    for _ in range(3):
        m.free()
    assert pool.full()


@pytest.mark.parametrize("kind", ["pure", "numba", "hugepage", "numba-debug"], indirect=True)
def test_refcnt_frees_from_threads(make_pool: Pools) -> None:
    # DPDK test_refcnt_mbuf: the main thread takes each mbuf, raises its refcnt
    # and queues it that many times; workers free what they dequeue. Every
    # mbuf must come back exactly once.
    n, iterations, max_ref = 64, 4, 8
    pool = make_pool(n=n)
    ring = pktflow.Ring(make_pool.name(), 1024, backend=make_pool.kind.backend)
    make_pool.made.append(ring)
    stop = threading.Event()
    errors: list[BaseException] = []
    freed = [0, 0]

    def worker(index: int) -> None:
        burst = np.empty(32, dtype=U32)
        try:
            while not stop.is_set() or not ring.empty():
                got = ring.dequeue_burst(burst)
                if got:
                    pool.free_bulk(burst, got)
                    freed[index] += got
                else:
                    time.sleep(0)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    rng = random.Random(99)
    references = 0
    try:
        for _ in range(iterations):
            for _ in range(n):
                m = pool.alloc()
                assert m is not None
                ref = rng.randint(1, max_ref)
                references += ref
                m.refcnt_update(ref)
                for _ in range(ref):
                    while not ring.enqueue(m.handle):
                        assert not errors, errors  # a dead worker would never drain it
                        time.sleep(0)
                m.free()
            deadline = time.monotonic() + 30
            while not (ring.empty() and pool.full()) and not errors:
                assert time.monotonic() < deadline, f"only {pool.avail_count()} of {n} came back"
                time.sleep(0.001)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert errors == []
    assert sum(freed) == references
    assert pool.full()
    assert (pool.headers["refcnt"] == 1).all()


@pytest.mark.parametrize("kind", ["numba", "hugepage"], indirect=True)
def test_alloc_free_bursts_allocate_nothing(make_pool: Pools, lcore: int) -> None:
    # Speed-independent: the memory pktflow's own lines hold must not grow with
    # the number of bursts (1000 vs 11000), i.e. no per-call allocation survives.
    pool = make_pool(n=256, cache_size=64)
    burst = np.empty(32, dtype=U32)

    def bursts(count: int) -> None:
        for _ in range(count):
            if pool.alloc_bulk(burst, 32) != 32:
                raise AssertionError("pool exhausted")
            pool.free_bulk(burst, 32)

    bursts(100)  # warm up: compiled dispatch, the lcore cache filled
    roots = {Path(pktflow.__file__).parent, Path(pktflow.backends.__file__).parent}
    only_pktflow = [tracemalloc.Filter(True, f"{root}/*") for root in roots]
    tracemalloc.start()
    try:
        bursts(1000)
        after_1000 = tracemalloc.take_snapshot().filter_traces(only_pktflow)
        bursts(10000)
        after_11000 = tracemalloc.take_snapshot().filter_traces(only_pktflow)
        # Control: what pktflow's lines keep alive is seen (Mbuf objects here).
        kept = [pool.alloc() for _ in range(8)]
        control = tracemalloc.take_snapshot().filter_traces(only_pktflow)
    finally:
        tracemalloc.stop()
    growth = after_11000.compare_to(after_1000, "lineno")
    grown = [stat for stat in growth if stat.size_diff > 0]
    assert sum(stat.size_diff for stat in grown) == 0, [str(stat) for stat in grown[:5]]
    seen = control.compare_to(after_11000, "filename")
    assert sum(stat.size_diff for stat in seen) > 0, "the filter sees none of pktflow's memory"
    assert pool.cache_rows[lcore, C_LEN] > 0  # the bursts went through the cache
    for m in kept:
        assert m is not None
        m.free()
    pool.cache_flush()
    assert pool.full()


# -- bound arrays ---------------------------------------------------------------


def test_bound_alloc_and_free_match_the_methods(make_pool: Pools) -> None:
    pool = make_pool(n=64)
    burst = np.zeros(16, dtype=np.uint32)
    io = pool.bind(burst)
    assert io.alloc_bulk(16) == 16
    assert pool.in_use_count() == 16
    assert all(pool.mbuf(int(h)).refcnt == 1 for h in burst)
    assert io.free_bulk(16) == 16
    assert pool.full()
    assert io.alloc_bulk(17) == pktflow.abc.ERR_COUNT
    assert io.free_bulk(-1) == pktflow.abc.ERR_COUNT
    assert pool.full()


def test_bound_calls_on_a_strided_array_and_after_the_caller_drops_it(make_pool: Pools) -> None:
    pool = make_pool(n=64)
    strided = np.zeros(32, dtype=np.uint32)[::2]  # not contiguous: bound through arrays
    io = pool.bind(strided)
    assert io.alloc_bulk(16) == 16 and pool.in_use_count() == 16
    assert io.free_bulk(16) == 16 and pool.full()
    # The bound calls keep what they point into alive (kernels may take addresses).
    io = pool.bind(np.zeros(8, dtype=np.uint32))
    gc.collect()
    assert io.alloc_bulk(8) == 8 and pool.in_use_count() == 8
    assert io.free_bulk(8) == 8 and pool.full()


def test_free_bulk_of_plain_and_shared_mbufs_in_one_burst(make_pool: Pools) -> None:
    pool = make_pool(n=16)
    burst = np.zeros(8, dtype=np.uint32)
    assert pool.alloc_bulk(burst) == 8
    shared = pool.mbuf(int(burst[3]))
    assert shared is not None
    shared.refcnt_update(1)  # another owner: freeing the burst drops one reference
    pool.free_bulk(burst)
    assert pool.in_use_count() == 1 and shared.refcnt == 1
    pool.free_bulk(burst[3:4])
    assert pool.full()


def test_bound_free_stops_before_a_clone_of_another_pool(make_pool: Pools) -> None:
    pool, clones = make_pool(n=8), make_pool(n=8, data_room_size=0)
    original = packet(pool, b"shared")
    copy = original.clone(clones)
    assert copy is not None
    burst = np.array([copy.handle], dtype=np.uint32)
    # The jitted path leaves the chain that needs the other pool to the
    # caller; the reference path (pure, debug) frees it itself.
    done = clones.bind(burst).free_bulk(1)
    expect_all = make_pool.kind.backend == "pure" or make_pool.kind.debug
    assert done == (1 if expect_all else 0)
    if done == 0:
        clones.free_bulk(burst)
    original.free()
    assert pool.full() and clones.full()


def test_a_corrupt_chain_in_a_burst_frees_nothing(make_pool: Pools) -> None:
    pool = make_pool(n=8)
    good, bad = packet(pool, b"good"), packet(pool, b"b1", b"b2")
    pool.headers["nb_segs"][bad.handle] = 1  # its second segment is not its own
    burst = np.array([good.handle, bad.handle], dtype=np.uint32)
    with pytest.raises(pktflow.MbufError):
        pool.free_bulk(burst)
    assert pool.avail_count() == 5, "the good chain was not freed either"
    pool.headers["nb_segs"][bad.handle] = 2
    pool.free_bulk(burst)
    assert pool.full()


def test_bound_operations_fail_after_close(make_pool: Pools) -> None:
    pool = make_pool(n=8, cache_size=2)
    burst = np.empty(4, dtype=U32)
    io = pool.bind(burst)
    assert io.alloc_bulk(4) == 4 and io.free_bulk(4) == 4
    pool.close()
    burst[:] = 99
    for op in (io.alloc_bulk, io.free_bulk):
        assert op(4) == pktflow.abc.ERR_CLOSED
    assert burst.tolist() == [99] * 4, "a bound alloc reached a closed pool"
