"""Mbufs: packet buffers with headroom, refcounts, chains and clones (DPDK's rte_mbuf).

A pktmbuf pool is a ``Mempool`` whose objects are data buffers and whose
zone also holds one 64-byte header per mbuf (``MBUF_HEADER_DTYPE``), so
any process and any jitted stage reads them without Python objects. An
``Mbuf`` is a thin (pool, handle) view; stages pass handles.

Usage::

    pool = pktflow.pktmbuf_pool_create("MBUF_POOL", 8191, 256, 0,
                                       pktflow.MBUF_DEFAULT_BUF_SIZE)
    m = pool.alloc()
    m.append(5)[:] = b"hello"
    m.free()
"""

from __future__ import annotations

import ctypes
import secrets
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from ._arrays import (
    U32,
    checked_count,
    checked_handle,
    checked_int,
    checked_out,
    ndarray,
    one_handle,
)
from ._cache import MempoolCache
from ._errors import ClosedError, MbufError, MempoolError, PktflowTypeError, PktflowValueError
from ._lcore import thread_state
from ._mbuf_layout import (
    H_BUF,
    H_DATA,
    H_DIRECT,
    H_DIRECT_POOL,
    H_HASH,
    H_NEXT,
    H_OL_FLAGS,
    H_PACKET_TYPE,
    H_PKT_LEN,
    H_PORT,
    H_REFCNT,
    H_TIMESTAMP,
    H_TX_OFFLOAD,
    H_WORDS,
    MBUF_F_INDIRECT,
    MBUF_HEADER_DTYPE,
    NO_NEXT,
    P_BUF_LEN,
    P_HEADROOM,
    P_MAGIC,
    P_POOL_ID,
    P_VERSION,
    layout_problem,
)
from ._mbuf_layout import LAYOUT_VERSION as HEADER_LAYOUT_VERSION
from ._mbuf_layout import MAGIC as HEADER_MAGIC
from ._memory import HugePages
from ._mempool import M_SUBCLASS, Mempool
from .abc import ERR_CORRUPT, ERR_COUNT, ERR_FOREIGN, ERR_STALLED, MbufOps, U32Array

__all__ = [
    "BoundMbufPool",
    "MBUF_DEFAULT_BUF_SIZE",
    "MBUF_DEFAULT_DATAROOM",
    "MBUF_F_INDIRECT",
    "MBUF_HEADER_DTYPE",
    "MBUF_MAX_NB_SEGS",
    "MBUF_PORT_INVALID",
    "PKTMBUF_HEADROOM",
    "SOCKET_ID_ANY",
    "Mbuf",
    "PktmbufPool",
    "pktmbuf_pool_create",
    "socket_id",
]

PKTMBUF_HEADROOM = 128  # RTE_PKTMBUF_HEADROOM
MBUF_DEFAULT_DATAROOM = 2048
MBUF_DEFAULT_BUF_SIZE = MBUF_DEFAULT_DATAROOM + PKTMBUF_HEADROOM
MBUF_MAX_NB_SEGS = 0xFFFF  # nb_segs is 16 bits
MBUF_PORT_INVALID = 0xFFFF
MBUF_PRIV_ALIGN = 8
SOCKET_ID_ANY = -1

_INDIRECT_HI = MBUF_F_INDIRECT >> 32  # the flag within the high word of ol_flags

# Subclass meta words of the pool zone.
_M_POOL_ID = M_SUBCLASS
_M_DATA_ROOM = M_SUBCLASS + 1

# Pools attached in this process by id: an indirect mbuf names its direct
# mbuf's pool by id, and freeing it must reach that pool.
_pools_lock = threading.Lock()
_pools_by_id: weakref.WeakValueDictionary[int, PktmbufPool] = weakref.WeakValueDictionary()


def socket_id() -> int:
    """The NUMA node of the CPU running the caller (0 where that is unknown).

    Usage: ``pktflow.pktmbuf_pool_create(..., socket_id=pktflow.socket_id())``
    """
    try:
        cpu = ctypes.CDLL(None).sched_getcpu()
        nodes = list(Path(f"/sys/devices/system/cpu/cpu{cpu}").glob("node[0-9]*"))
    except (OSError, AttributeError):
        return 0
    return int(nodes[0].name[4:]) if nodes else 0


def _lo(word: int) -> int:
    return word & 0xFFFF


def _hi(word: int) -> int:
    return word >> 16


class PktmbufPool(Mempool):
    """A mempool of packet buffers with DPDK's mbuf headers; see ``pktmbuf_pool_create``."""

    zone_kind: ClassVar[str] = "mbufpool"
    lookup_kinds: ClassVar[tuple[str, ...]] = ("mbufpool",)
    header_row_words: ClassVar[int] = H_WORDS

    def __init__(
        self,
        name: str,
        n: int,
        cache_size: int = 0,
        priv_size: int = 0,
        data_room_size: int = MBUF_DEFAULT_BUF_SIZE,
        *,
        backend: str | None = None,
        debug: bool = False,
        hugepages: HugePages = "auto",
    ) -> None:
        priv_size = checked_int(priv_size, "priv_size", 0, 1 << 16)
        if priv_size % MBUF_PRIV_ALIGN:
            raise PktflowValueError(f"priv_size {priv_size} is not a multiple of {MBUF_PRIV_ALIGN}")
        data_room_size = checked_int(data_room_size, "data_room_size", 0, 0xFFFF)
        self._new_pool_id = secrets.randbits(31) + 1
        super().__init__(
            name, n, data_room_size, cache_size, priv_size, 0, backend,
            debug=debug, hugepages=hugepages,
        )  # fmt: skip

    def _plan(
        self, n: int, elt_size: int, priv_size: int, cache_size: int, flags: int, debug: bool
    ) -> npt.NDArray[np.uint64]:
        meta = super()._plan(n, elt_size, priv_size, cache_size, flags, debug)
        meta[_M_POOL_ID] = self._new_pool_id
        meta[_M_DATA_ROOM] = elt_size
        return meta

    def _init_headers(self) -> None:
        words, n = self._header_words, self.n
        buf_len = self.data_room_size
        headroom = min(PKTMBUF_HEADROOM, buf_len)
        words[n, P_POOL_ID] = self.pool_id
        words[n, P_BUF_LEN] = buf_len
        words[n, P_HEADROOM] = headroom
        words[n, P_VERSION] = HEADER_LAYOUT_VERSION
        words[n, P_MAGIC] = HEADER_MAGIC
        words[:n] = 0
        words[:n, H_REFCNT] = 1
        words[:n, H_NEXT] = NO_NEXT
        _reset_headers(words, np.arange(n, dtype=np.uint32), self.pool_id, buf_len, headroom)

    def _bind(self, zone: Any, ring: Any, *, creator: bool, owns_zone: bool = True) -> None:
        super()._bind(zone, ring, creator=creator, owns_zone=owns_zone)
        if not creator and (problem := layout_problem(self._header_words)) is not None:
            raise PktflowValueError(f"mbuf pool {self.name!r}: {problem}")
        self.pool_id: int = int(self._meta[_M_POOL_ID])
        self.data_room_size: int = int(self._meta[_M_DATA_ROOM])
        self.priv_size: int = self.private_data_size
        # The header words as a flat memoryview: Mbuf views index it for plain
        # Python ints, several times faster than numpy scalar indexing.
        self._hw = self._header_words.data.cast("B").cast("I")
        self._headers: np.ndarray[Any, np.dtype[Any]] = (
            self._header_words[: self.n].view(MBUF_HEADER_DTYPE).reshape(self.n)
        )
        self._reference = PyMbufOps(self, ring.impl.mbuf_ops(self._header_words))
        fast = self._reference.fast
        # Debug pools take the reference path: its puts carry the debug checks.
        ops = fast if fast is not None and not self.debug else self._reference.ops()
        self._alloc_bulk = ops.alloc_bulk
        self._free_bulk = ops.free_bulk
        self._refcnt_add = ops.refcnt_add
        with _pools_lock:
            known = _pools_by_id.get(self.pool_id)
            if known is None or known.closed:
                _pools_by_id[self.pool_id] = self

    @property
    def header_words(self) -> npt.NDArray[np.uint32]:
        """The headers as (n + 1, H_WORDS) uint32 words, for jitted code (row n: parameters)."""
        self._live()
        return self._header_words

    @property
    def headers(self) -> np.ndarray[Any, np.dtype[Any]]:
        """Every mbuf header as a numpy structured array (row h: handle h).

        Raises ``ClosedError`` once the pool is closed.
        """
        self._live()
        return self._headers

    # -- alloc / free ---------------------------------------------------------

    def alloc_bulk(self, out: U32Array, n: int | None = None) -> int:
        """Allocate ``n`` mbufs (default ``len(out)``) into ``out``, all or none; n or 0.

        Each is reset: data_off = headroom, lengths 0, refcnt 1, one segment.

        Usage: ``if pool.alloc_bulk(burst, 32): ...``
        """
        if not (
            type(out) is ndarray and out.dtype is U32 and out.ndim == 1 and out.flags.writeable
            and type(n) is int
        ):  # fmt: skip
            n = checked_out(out, n)
        row = self._rows[thread_state.cache_index]
        got: int = self._alloc_bulk(row, out, n)
        if got < 0:
            return self._settle(got, n, out)
        return got

    def free_bulk(self, handles: U32Array, n: int | None = None) -> None:
        """Free ``n`` mbufs (default all): each whole chain, honouring refcnts.

        Raises ``MempoolError`` for a handle that is not from this pool
        (nothing is freed then) and, with ``debug=True``, for a double free.

        Usage: ``pool.free_bulk(burst, k)``
        """
        if not (
            type(handles) is ndarray and handles.dtype is U32 and handles.ndim == 1
            and type(n) is int
        ):  # fmt: skip
            n = checked_count(handles, n, "handles")
        row = self._rows[thread_state.cache_index]
        done: int = self._free_bulk(row, handles, n)
        while 0 <= done < n:
            # The kernel stopped at a chain holding another pool's indirect
            # segment: free that one here, then let it go on.
            result = self._reference.free_chain(row, int(handles[done]))
            if result < 0:
                raise self._free_error(handles, n, result)
            rest = handles[done + 1 : n]
            n = len(rest)
            done = self._free_bulk(row, rest, n)
            handles = rest
        if done <= ERR_STALLED:
            self._settle(done, n, handles)  # freed; the free list's publish finishes here
        elif done < 0:
            raise self._free_error(handles, n, done)

    def close(self) -> None:
        if not self.closed:
            self._alloc_bulk = self._free_bulk = self._refcnt_add = _closed_pool
            # Mbuf objects reach the headers and data through these: after the
            # close every access raises ClosedError instead of touching memory.
            closed = _ClosedView(self.name)
            self._hw = closed  # type: ignore[assignment]
            self._data_view = closed  # type: ignore[assignment]
        super().close()

    def bind(  # type: ignore[override]
        self, array: U32Array, *, cache: MempoolCache | None = None
    ) -> BoundMbufPool:
        """``alloc_bulk``/``free_bulk`` bound to one array and this thread's cache.

        Each takes only ``n`` and is a compiled call with no Python frame in
        between; use it from the thread that bound it. Errors come back as
        negative ``pktflow.abc`` codes, not exceptions (ERR_CLOSED once the
        pool is closed: nothing is touched then). ``free_bulk`` returns
        how many chains it freed: fewer than n when chain ``array[k]`` holds
        a clone attached to another pool's buffer; free the rest with
        ``pool.free_bulk(array[k:n])``.

        Usage::

            rx = pool.bind(burst)
            if rx.alloc_bulk(32) == 32: ...; rx.free_bulk(32)
        """
        checked_out(array, None)
        self._live()
        row = self._row(cache)
        fast = self._reference.fast
        if (
            fast is not None and fast.bind_args is not None and not self.debug
            and array.flags.c_contiguous
        ):  # fmt: skip
            args, keep = fast.bind_args(row, array)
            assert fast.alloc_bound is not None and fast.free_bound is not None
            return BoundMbufPool(
                alloc_bulk=self._bound.bind(fast.alloc_bound, *args, keep=keep),
                free_bulk=self._bound.bind(fast.free_bound, *args, keep=keep),
            )
        return BoundMbufPool(
            alloc_bulk=self._bound.bind(self._alloc_bulk, row, array),
            free_bulk=self._bound.bind(self._free_bulk, row, array),
        )

    def _free_error(self, handles: U32Array, n: int, code: int) -> Exception:
        if code == ERR_COUNT:
            return PktflowValueError(f"n={n} is outside 0..{len(handles)}")
        if code == ERR_FOREIGN:
            foreign = [int(h) for h in handles[:n] if h >= self.n][:5]
            return MempoolError(f"handles {foreign} are not mbufs of pool {self.name!r}")
        if code == ERR_CORRUPT:
            return MbufError(f"a chain in pool {self.name!r} is longer than the pool: a cycle")
        return MempoolError(
            f"pool {self.name!r} overflowed: an mbuf was freed twice "
            "(create the pool with debug=True to find it)"
        )

    def alloc(self) -> Mbuf | None:
        """One fresh mbuf, or None when the pool is exhausted.

        Usage: ``m = pool.alloc()``
        """
        one = np.empty(1, dtype=np.uint32)
        return Mbuf(self, int(one[0])) if self.alloc_bulk(one, 1) else None

    def mbuf(self, handle: int) -> Mbuf:
        """The mbuf view of a handle of this pool.

        Usage: ``m = pool.mbuf(int(burst[0]))``
        """
        self._live()
        return Mbuf(self, checked_handle(handle, self.n, MbufError))

    def _data_view(self, handle: int, offset: int, length: int) -> memoryview:
        """``length`` bytes at ``offset`` of the buffer an mbuf uses (its direct mbuf's)."""
        hw, base = self._hw, handle * H_WORDS
        owner, direct = self, handle
        if hw[base + H_OL_FLAGS + 1] & _INDIRECT_HI:
            owner = _pool_by_id(hw[base + H_DIRECT_POOL])
            direct = hw[base + H_DIRECT]
        start = direct * owner._stride + offset
        return owner._object_bytes[start : start + length]


class _ClosedView:
    """Stands in for a closed pool's header and data views: every access raises."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getitem__(self, index: object) -> Any:
        raise ClosedError(f"mbuf pool {self._name!r} is closed")

    def __setitem__(self, index: object, value: object) -> None:
        raise ClosedError(f"mbuf pool {self._name!r} is closed")

    def __call__(self, *args: object) -> Any:
        raise ClosedError(f"mbuf pool {self._name!r} is closed")


class BoundMbufPool(NamedTuple):
    """An mbuf pool's bulk operations bound to one array (see ``PktmbufPool.bind``)."""

    alloc_bulk: Callable[[int], int]
    free_bulk: Callable[[int], int]


def _closed_pool(*args: object) -> Any:
    raise ClosedError("the mbuf pool is closed")


def _pool_by_id(pool_id: int) -> PktmbufPool:
    with _pools_lock:
        pool = _pools_by_id.get(pool_id)
    if pool is None or pool.closed:
        raise MbufError(
            f"an mbuf uses the buffer of pool id {pool_id:#x}, which this process has not "
            "attached: look it up with pktflow.Mempool.lookup(name) first"
        )
    return pool


def _chain(hw: memoryview, head: int) -> list[int] | None:
    """The segments from ``head``, or None unless they end after its nb_segs.

    Catches cycles, and a shared middle segment freed on its own (its next
    segments belong to the chain it was taken from). ``hw``: flat header words.
    """
    segments, m = [], head
    for _ in range(hw[head * H_WORDS + H_DATA] >> 16):
        if m == NO_NEXT:
            return None
        segments.append(m)
        m = hw[m * H_WORDS + H_NEXT]
    return segments if m == NO_NEXT else None


def _reset_headers(
    words: U32Array, handles: U32Array, pool_id: int, buf_len: int, headroom: int
) -> None:
    """rte_pktmbuf_reset of the given headers (the vectorised reference).

    Free mbufs already hold refcnt 1 and no next; hash and timestamp are the
    application's, as in DPDK; the tx_offload lengths start at 0.
    """
    rows = handles.astype(np.intp)
    words[rows, H_PKT_LEN] = 0
    words[rows, H_BUF] = buf_len | (headroom << 16)
    words[rows, H_DATA] = 1 << 16
    words[rows, H_PORT] = MBUF_PORT_INVALID
    words[rows, H_PACKET_TYPE] = 0
    words[rows, H_OL_FLAGS] = 0
    words[rows, H_OL_FLAGS + 1] = 0
    words[rows, H_TX_OFFLOAD] = 0
    words[rows, H_DIRECT] = handles
    words[rows, H_DIRECT_POOL] = pool_id


class PyMbufOps:
    """The mbuf alloc/free algorithm in Python: the reference, and the path for
    pools without jitted kernels, debug pools and chains that reach other pools.
    """

    def __init__(self, pool: PktmbufPool, fast: MbufOps | None) -> None:
        self._pool = weakref.proxy(pool)
        self._words = pool._header_words
        self.fast = fast
        self._lock = threading.Lock()

    def ops(self) -> MbufOps:
        refcnt_add = self.fast.refcnt_add if self.fast is not None else self.refcnt_add
        return MbufOps(self.alloc_bulk, self.free_bulk, refcnt_add)

    def refcnt_add(self, handle: int, delta: int) -> int:
        """Add to a refcnt under a lock: threads of one process (the pure backend)."""
        with self._lock:
            value = (int(self._words[handle, H_REFCNT]) + delta) & 0xFFFFFFFF
            self._words[handle, H_REFCNT] = value
            return value

    def _add(self, handle: int, delta: int) -> int:
        return (self.fast.refcnt_add if self.fast is not None else self.refcnt_add)(handle, delta)

    def alloc_bulk(self, cache: U32Array, out: U32Array, n: int) -> int:
        pool = self._pool
        got: int = pool._cache_get(cache, out, n)
        if got > 0:
            words = self._words
            params = words[pool.n]
            _reset_headers(
                words, out[:got], int(params[P_POOL_ID]), int(params[P_BUF_LEN]),
                int(params[P_HEADROOM]),
            )  # fmt: skip
        return got

    def free_bulk(self, cache: U32Array, handles: U32Array, n: int) -> int:
        if not 0 <= n <= len(handles):
            return ERR_COUNT
        if n and int(handles[:n].max()) >= self._pool.n:
            return ERR_FOREIGN
        heads = handles[:n].tolist()
        # Every chain is checked before any is freed, as the kernel does.
        if any(_chain(self._pool._hw, head) is None for head in heads):
            return ERR_CORRUPT
        for head in heads:
            result = self.free_chain(cache, head)
            if result < 0:
                return result
        return n

    def _release(self, handle: int) -> bool:
        """Drop one reference; True when it was the last."""
        if int(self._words[handle, H_REFCNT]) == 1:
            return True
        return self._add(handle, -1) == 0

    def _recycle(self, handle: int) -> None:
        words = self._words
        words[handle, H_REFCNT] = 1
        words[handle, H_NEXT] = NO_NEXT
        words[handle, H_DATA] = _lo(int(words[handle, H_DATA])) | (1 << 16)

    def free_chain(self, cache: U32Array, head: int) -> int:
        """Free one chain; 0, or an ERR_* code (ERR_CORRUPT before freeing any of it)."""
        pool, words = self._pool, self._words
        segments = _chain(pool._hw, head)
        if segments is None:
            return ERR_CORRUPT
        freed: list[int] = []
        for m in segments:
            if self._release(m):
                if int(words[m, H_OL_FLAGS + 1]) & _INDIRECT_HI:
                    owner = _pool_by_id(int(words[m, H_DIRECT_POOL]))
                    direct = int(words[m, H_DIRECT])
                    words[m, H_OL_FLAGS + 1] &= ~np.uint32(_INDIRECT_HI)
                    words[m, H_DIRECT] = m
                    params = words[pool.n]
                    words[m, H_BUF] = int(params[P_BUF_LEN]) | (int(params[P_HEADROOM]) << 16)
                    owner._reference.release_direct(direct)
                self._recycle(m)
                freed.append(m)
        if freed:
            batch = np.array(freed, dtype=np.uint32)
            result: int = pool._cache_put(cache, batch, len(batch))
            if result < 0:
                return result
        return 0

    def release_direct(self, handle: int) -> None:
        """Drop the reference an indirect mbuf held; free the mbuf if it was the last."""
        if self._release(handle):
            self._recycle(handle)
            pool = self._pool
            row = pool._rows[thread_state.cache_index]
            if pool._cache_put(row, one_handle(handle), 1) < 0:
                raise MempoolError(f"pool {pool.name!r} overflowed: an mbuf was freed twice")


class _Field:
    """An mbuf header field read (and, for the plain ones, written) by word."""

    def __init__(self, word: int, shift: int = 0, bits: int = 32, writable: bool = False) -> None:
        self.word, self.shift, self.mask, self.writable = word, shift, (1 << bits) - 1, writable

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, mbuf: Mbuf | None, owner: type) -> Any:
        if mbuf is None:
            return self
        return (mbuf.pool._hw[mbuf.handle * H_WORDS + self.word] >> self.shift) & self.mask

    def __set__(self, mbuf: Mbuf, value: int) -> None:
        if not self.writable:
            raise AttributeError(f"{self.name} changes through append/prepend/adj/trim/chain")
        value = checked_int(value, self.name, 0, self.mask)
        hw, index = mbuf.pool._hw, mbuf.handle * H_WORDS + self.word
        keep = hw[index] & ~(self.mask << self.shift) & 0xFFFFFFFF
        hw[index] = keep | (value << self.shift)


class _Field64:
    """A uint64 header field (two words), writable."""

    def __init__(self, word: int, reserved: int = 0) -> None:
        self.word, self.reserved = word, reserved

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, mbuf: Mbuf | None, owner: type) -> Any:
        if mbuf is None:
            return self
        hw, index = mbuf.pool._hw, mbuf.handle * H_WORDS + self.word
        return hw[index] | (hw[index + 1] << 32)

    def __set__(self, mbuf: Mbuf, value: int) -> None:
        value = checked_int(value, self.name, 0, (1 << 64) - 1)
        value = (value & ~self.reserved) | (self.__get__(mbuf, Mbuf) & self.reserved)
        hw, index = mbuf.pool._hw, mbuf.handle * H_WORDS + self.word
        hw[index] = value & 0xFFFFFFFF
        hw[index + 1] = value >> 32


class Mbuf:
    """A view of one mbuf: its pool and handle. Cheap to make; holds no state.

    Usage::

        m = pool.alloc()
        m.append(4)[:] = b"data"
        m.prepend(2)[:] = b"hd"
        bytes(m.data)       # b"hddata"
        m.free()
    """

    __slots__ = ("handle", "pool")

    refcnt = _Field(H_REFCNT)
    pkt_len = _Field(H_PKT_LEN)
    buf_len = _Field(H_BUF, 0, 16)
    data_off = _Field(H_BUF, 16, 16)
    data_len = _Field(H_DATA, 0, 16)
    nb_segs = _Field(H_DATA, 16, 16)
    port = _Field(H_PORT, 0, 16, writable=True)
    vlan_tci = _Field(H_PORT, 16, 16, writable=True)
    packet_type = _Field(H_PACKET_TYPE, writable=True)
    hash = _Field(H_HASH, writable=True)
    ol_flags = _Field64(H_OL_FLAGS, reserved=MBUF_F_INDIRECT)
    timestamp = _Field64(H_TIMESTAMP)
    l2_len = _Field(H_TX_OFFLOAD, 0, 8, writable=True)
    l4_len = _Field(H_TX_OFFLOAD, 8, 8, writable=True)
    l3_len = _Field(H_TX_OFFLOAD, 16, 16, writable=True)

    def __init__(self, pool: PktmbufPool, handle: int) -> None:
        self.pool = pool
        self.handle = handle

    def _word(self, word: int) -> int:
        return self.pool._hw[self.handle * H_WORDS + word]

    def _set(self, word: int, value: int) -> None:
        self.pool._hw[self.handle * H_WORDS + word] = value

    def _segments(self) -> list[Mbuf]:
        handles = _chain(self.pool._hw, self.handle)
        if handles is None:
            raise MbufError(
                f"the chain of mbuf {self.handle} does not end after its {self.nb_segs} "
                "segments: a cycle, or a middle segment of another chain"
            )
        return [Mbuf(self.pool, h) for h in handles]

    @property
    def next(self) -> Mbuf | None:
        """The next segment, or None."""
        following = self._word(H_NEXT)
        return None if following == NO_NEXT else Mbuf(self.pool, following)

    @property
    def is_indirect(self) -> bool:
        """Whether this mbuf is attached to another mbuf's buffer (a clone)."""
        return bool(self._word(H_OL_FLAGS + 1) & _INDIRECT_HI)

    # -- data ---------------------------------------------------------------

    @property
    def data(self) -> memoryview:
        """This segment's data, writable (DPDK's rte_pktmbuf_mtod)."""
        return self.pool._data_view(self.handle, self.data_off, self.data_len)

    def headroom(self) -> int:
        """Bytes free before the data in this segment.

        Usage: ``m.headroom()``
        """
        return int(self.data_off)

    def tailroom(self) -> int:
        """Bytes free after the data in this segment.

        Usage: ``m.tailroom()``
        """
        return int(self.buf_len - self.data_off - self.data_len)

    def _last(self) -> int:
        """Handle of the last segment (at most nb_segs steps, so a cycle cannot hang)."""
        hw, m = self.pool._hw, self.handle
        for _ in range((hw[m * H_WORDS + H_DATA] >> 16) - 1):
            following = hw[m * H_WORDS + H_NEXT]
            if following == NO_NEXT:
                break
            m = following
        return m

    def append(self, length: int) -> memoryview | None:
        """Grow the last segment by ``length`` bytes; their view, or None if no room.

        Usage: ``m.append(4)[:] = b"abcd"``
        """
        length = checked_int(length, "length", 0)
        hw, last = self.pool._hw, self._last()
        buf, data = hw[last * H_WORDS + H_BUF], hw[last * H_WORDS + H_DATA]
        end = _hi(buf) + _lo(data)  # data_off + data_len
        if length > _lo(buf) - end:  # the tailroom
            return None
        hw[last * H_WORDS + H_DATA] = data + length  # data_len is the low half
        hw[self.handle * H_WORDS + H_PKT_LEN] += length
        return self.pool._data_view(last, end, length)

    def prepend(self, length: int) -> memoryview | None:
        """Grow the data at its front by ``length`` bytes of headroom; their view, or None.

        Usage: ``m.prepend(14)[:] = ethernet_header``
        """
        length = checked_int(length, "length", 0)
        hw, base = self.pool._hw, self.handle * H_WORDS
        buf = hw[base + H_BUF]
        if length > _hi(buf):  # the headroom
            return None
        off = _hi(buf) - length
        hw[base + H_BUF] = _lo(buf) | (off << 16)
        hw[base + H_DATA] += length
        hw[base + H_PKT_LEN] += length
        return self.pool._data_view(self.handle, off, length)

    def adj(self, length: int) -> bool:
        """Drop ``length`` bytes from the front of the first segment; False if too many.

        Usage: ``m.adj(14)  # strip the Ethernet header``
        """
        length = checked_int(length, "length", 0)
        hw, base = self.pool._hw, self.handle * H_WORDS
        if length > _lo(hw[base + H_DATA]):
            return False
        hw[base + H_BUF] += length << 16  # data_off is the high half
        hw[base + H_DATA] -= length
        hw[base + H_PKT_LEN] -= length
        return True

    def trim(self, length: int) -> bool:
        """Drop ``length`` bytes from the end of the last segment; False if too many.

        Usage: ``m.trim(4)  # strip the FCS``
        """
        length = checked_int(length, "length", 0)
        hw, last = self.pool._hw, self._last()
        if length > _lo(hw[last * H_WORDS + H_DATA]):
            return False
        hw[last * H_WORDS + H_DATA] -= length
        hw[self.handle * H_WORDS + H_PKT_LEN] -= length
        return True

    def read(self, offset: int, length: int) -> memoryview | bytes | None:
        """``length`` packet bytes from ``offset``, across segments; None past pkt_len.

        A view when they lie in one segment, else a copy (rte_pktmbuf_read).

        Usage: ``header = m.read(0, 14)``
        """
        offset, length = checked_int(offset, "offset", 0), checked_int(length, "length", 0)
        if offset + length > self.pkt_len:
            return None
        pieces = []
        for segment in self._segments():
            if length == 0:
                break
            if offset >= segment.data_len:
                offset -= segment.data_len
                continue
            take = min(length, segment.data_len - offset)
            pieces.append(segment.data[offset : offset + take])
            offset, length = 0, length - take
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    # -- chains ------------------------------------------------------------

    def chain(self, tail: Mbuf) -> bool:
        """Append ``tail``'s chain to this one (rte_pktmbuf_chain); False past the segment limit.

        Raises ``MbufError`` for a tail of another pool or one already in this chain.

        Usage: ``head.chain(second)``
        """
        if not isinstance(tail, Mbuf):
            raise PktflowTypeError(f"tail must be an Mbuf, not {type(tail).__name__}")
        if tail.pool.pool_id != self.pool.pool_id:
            raise MbufError("chained segments must come from the same pool")
        mine = self._segments()
        theirs = tail._segments()
        if {m.handle for m in mine} & {m.handle for m in theirs}:
            raise MbufError(f"cannot chain mbuf {tail.handle} into a chain that holds it")
        if self.nb_segs + tail.nb_segs > MBUF_MAX_NB_SEGS:
            return False
        mine[-1]._set(H_NEXT, tail.handle)
        self._set(H_DATA, self.data_len | ((self.nb_segs + tail.nb_segs) << 16))
        self._set(H_PKT_LEN, self.pkt_len + tail.pkt_len)
        # The tail is a middle segment now: its own totals describe itself only.
        tail._set(H_PKT_LEN, tail.data_len)
        tail._set(H_DATA, tail.data_len | (1 << 16))
        return True

    def linearize(self) -> bool:
        """Copy every segment's data into the first one and free the rest.

        False (and unchanged) when the data does not fit the first segment's
        tailroom or the first segment shares its buffer (a clone).

        Usage: ``if m.linearize(): bytes(m.data)``
        """
        segments = self._segments()
        if len(segments) == 1:
            return True
        rest = sum(s.data_len for s in segments[1:])
        if self.is_indirect or rest > self.tailroom():
            return False
        end = self.data_off + self.data_len
        for segment in segments[1:]:
            length = segment.data_len
            self.pool._data_view(self.handle, end, length)[:] = segment.data
            end += length
        # The rest goes back as one chain headed by the second segment.
        second = segments[1]
        second._set(H_DATA, second.data_len | ((len(segments) - 1) << 16))
        following = one_handle(second.handle)
        self._set(H_NEXT, NO_NEXT)
        self._set(H_DATA, (self.data_len + rest) | (1 << 16))
        self.pool.free_bulk(following, 1)
        return True

    # -- sharing -----------------------------------------------------------

    def refcnt_update(self, delta: int) -> int:
        """Add ``delta`` to the refcnt of every segment, atomically; the head's new value.

        As rte_pktmbuf_refcnt_update: ``free()`` releases a whole chain, so
        an extra owner must hold every segment.

        Usage: ``m.refcnt_update(1)  # one more owner``
        """
        segments = self._segments()
        for segment in segments:
            if not 1 <= segment.refcnt + delta <= 0xFFFF:
                raise MbufError(
                    f"refcnt {segment.refcnt} + {delta} of segment {segment.handle} leaves 1..65535"
                )
        values = [self.pool._refcnt_add(s.handle, delta) for s in segments]
        return values[0]

    def clone(self, pool: PktmbufPool | None = None) -> Mbuf | None:
        """An indirect copy sharing this chain's data (rte_pktmbuf_clone); None if no mbufs.

        Each segment of the clone comes from ``pool`` (default: this one) and
        holds a reference on the segment whose buffer it uses.

        Usage: ``copy = m.clone(clone_pool)``
        """
        target = self.pool if pool is None else pool
        if not isinstance(target, PktmbufPool):
            raise PktflowTypeError("clone needs a pktmbuf pool")
        segments = self._segments()
        handles = np.empty(len(segments), dtype=np.uint32)
        if not target.alloc_bulk(handles):
            return None
        for source, handle in zip(segments, handles.tolist(), strict=True):
            _attach(Mbuf(target, handle), source)
        words = target._header_words
        for i in range(len(segments) - 1):
            words[handles[i], H_NEXT] = handles[i + 1]
        head = Mbuf(target, int(handles[0]))
        head._set(H_PKT_LEN, self.pkt_len)
        head._set(H_DATA, head.data_len | (len(segments) << 16))
        return head

    def free(self) -> None:
        """Free the whole chain, honouring each segment's refcnt.

        Usage: ``m.free()``
        """
        self.pool.free_bulk(one_handle(self.handle), 1)

    def sanity_check(self, is_header: bool = True) -> None:
        """Raise ``MbufError`` when the header breaks one of DPDK's rules (rte_mbuf_check).

        Usage: ``m.sanity_check()``
        """
        if not 1 <= self.refcnt <= 0xFFFF:
            raise MbufError(f"mbuf {self.handle}: bad refcnt {self.refcnt}")
        for segment in self._segments() if is_header else [self]:
            if segment.refcnt == 0:
                raise MbufError(f"segment {segment.handle}: refcnt 0 in a live chain")
            if segment.data_off > segment.buf_len:
                raise MbufError(f"segment {segment.handle}: data offset beyond the buffer")
            if segment.data_off + segment.data_len > segment.buf_len:
                raise MbufError(f"segment {segment.handle}: data_len beyond the buffer")
        if not is_header:
            return
        segments = self._segments()
        if self.nb_segs != len(segments):
            raise MbufError(f"mbuf {self.handle}: nb_segs {self.nb_segs} for {len(segments)}")
        total = sum(s.data_len for s in segments)
        if self.pkt_len != total:
            raise MbufError(f"mbuf {self.handle}: pkt_len {self.pkt_len} != data {total}")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Mbuf)
            and other.pool.pool_id == self.pool.pool_id
            and other.handle == self.handle
        )

    def __hash__(self) -> int:
        return hash((self.pool.pool_id, self.handle))

    def __repr__(self) -> str:
        kind = "indirect " if self.is_indirect else ""
        return (
            f"<{kind}Mbuf {self.handle} of {self.pool.name!r} pkt_len={self.pkt_len} "
            f"data_len={self.data_len} nb_segs={self.nb_segs} refcnt={self.refcnt}>"
        )


def _attach(clone: Mbuf, source: Mbuf) -> None:
    """Make ``clone`` use ``source``'s buffer (rte_pktmbuf_attach), one more ref on its owner."""
    words = source.pool._header_words
    owner_pool, owner = source.pool, source.handle
    if source.is_indirect:
        owner_pool = _pool_by_id(int(words[source.handle, H_DIRECT_POOL]))
        owner = int(words[source.handle, H_DIRECT])
    owner_pool._refcnt_add(owner, 1)
    target = clone.pool._header_words
    row = target[clone.handle]
    for word in (
        H_BUF, H_PORT, H_PACKET_TYPE, H_HASH, H_TIMESTAMP, H_TIMESTAMP + 1, H_OL_FLAGS,
        H_TX_OFFLOAD,
    ):  # fmt: skip
        row[word] = words[source.handle, word]
    row[H_OL_FLAGS + 1] = words[source.handle, H_OL_FLAGS + 1] | _INDIRECT_HI
    row[H_DATA] = _lo(int(words[source.handle, H_DATA])) | (1 << 16)
    row[H_PKT_LEN] = _lo(int(words[source.handle, H_DATA]))
    row[H_DIRECT] = owner
    row[H_DIRECT_POOL] = owner_pool.pool_id


def pktmbuf_pool_create(
    name: str,
    n: int,
    cache_size: int,
    priv_size: int,
    data_room_size: int,
    socket_id: int = SOCKET_ID_ANY,
    *,
    backend: str | None = None,
    debug: bool = False,
    hugepages: HugePages = "auto",
) -> PktmbufPool:
    """A pool of ``n`` packet buffers of ``data_room_size`` bytes (headroom included).

    ``socket_id`` is accepted for DPDK parity; memory is local to the caller.

    Usage::

        pool = pktflow.pktmbuf_pool_create("MBUF_POOL", 8191, 256, 0,
                                           pktflow.MBUF_DEFAULT_BUF_SIZE, pktflow.socket_id())
    """
    checked_int(socket_id, "socket_id (SOCKET_ID_ANY or a node number)", SOCKET_ID_ANY)
    return PktmbufPool(
        name, n, cache_size, priv_size, data_room_size,
        backend=backend, debug=debug, hugepages=hugepages,
    )  # fmt: skip
