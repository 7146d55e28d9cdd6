"""Mempool: a zone of ``n`` fixed-size objects, a ring as the free list, per-lcore caches.

DPDK's rte_mempool in one file: the objects, an optional private area per
object and the lcore caches live in one zone (shared when the backend is,
so other processes attach by name and see every cache's length); the free
list is a ``Ring`` of the same backend holding the handles ``0 .. n-1``.
The cache algorithm itself is the backend's ``CacheOps`` (jitted for
numba/hugepage) or pktflow's reference one.

Zone payload layout (byte offsets in the meta words, version ``LAYOUT_VERSION``)::

    meta (uint64[32]) | caches (uint32[MAX_LCORE + 1][CACHE_WORDS]) | debug flags (uint8[n])
    | per-object headers (subclasses) | private areas | objects
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _registry
from ._arrays import (
    U32,
    checked_count,
    checked_handle,
    checked_int,
    checked_out,
    ndarray,
    one_handle,
)
from ._bound import BoundCalls
from ._cache import MempoolCache, PyCache, check_cache_size, init_cache_row
from ._cache_layout import C_LEN, C_OBJS, CACHE_WORDS
from ._cache_layout import layout_problem as cache_layout_problem
from ._errors import ClosedError, MempoolError, NotFoundError, PktflowTypeError, PktflowValueError
from ._lcore import MAX_LCORE, add_lcore_hook, live_lcores, thread_state
from ._memory import CACHE_LINE, HugePages, Zone, is_zone_name
from ._names import LocalNames
from ._ring import RING_SZ_MAX, Ring
from .abc import (
    ERR_ABORTED,
    ERR_CORRUPT,
    ERR_COUNT,
    ERR_STALLED,
    RING_F_EXACT_SZ,
    CacheOps,
    U32Array,
)

__all__ = ["MEMPOOL_F_NO_CACHE_ALIGN", "BoundMempool", "Mempool"]

MEMPOOL_F_NO_CACHE_ALIGN = 0x0002  # DPDK's RTE_MEMPOOL_F_NO_CACHE_ALIGN
_KNOWN_FLAGS = MEMPOOL_F_NO_CACHE_ALIGN

MAGIC = 0x4D504C31  # "MPL1"
LAYOUT_VERSION = 1
_META_WORDS = 32
# meta words
(M_MAGIC, M_VERSION, M_N, M_ELT_SIZE, M_STRIDE, M_PRIV_SIZE, M_PRIV_STRIDE, M_CACHE_SIZE,
 M_FLAGS, M_DEBUG, M_CACHES_OFF, M_DEBUG_OFF, M_HEADERS_OFF, M_PRIV_OFF, M_OBJS_OFF,
 M_TOTAL) = range(16)  # fmt: skip
M_SUBCLASS = 16  # words 16..31 belong to subclasses (the mbuf pool's sizes)

# Row MAX_LCORE is the "no cache" row for threads that are not lcores
# (``cache_index()`` returns it for them).
_NO_CACHE_ROW = MAX_LCORE
_FREE, _TAKEN = 1, 0
_TAKEN_BY = 2  # debug flags >= 2: taken by lcore (flag - 2); 0: taken (older pools)

_local: LocalNames[Mempool] = LocalNames("mempool")


def _align(value: int, unit: int = CACHE_LINE) -> int:
    return (value + unit - 1) // unit * unit


def _ring_name(name: str) -> str:
    return f"MP_{name}"  # DPDK names a mempool's ring the same way


class Mempool:
    """A fixed pool of ``n`` objects of ``elt_size`` bytes handed out as handles.

    Usage::

        with pktflow.Mempool("objs", n=8191, elt_size=256, cache_size=256) as mp:
            out = np.empty(32, dtype=np.uint32)
            if mp.get_bulk(out, 32):          # all or nothing
                mp.obj(int(out[0]))[:5] = b"hello"
                mp.put_bulk(out, 32)
    """

    zone_kind: ClassVar[str] = "mempool"
    # Zone kinds ``lookup`` accepts: an mbuf pool is a mempool too.
    lookup_kinds: ClassVar[tuple[str, ...]] = ("mempool", "mbufpool")
    # uint32 words of the header each object gets (the mbuf pool's), or 0.
    # The section holds one row more, for parameters the kernels read.
    header_row_words: ClassVar[int] = 0

    def __init__(
        self,
        name: str,
        n: int,
        elt_size: int,
        cache_size: int = 0,
        private_data_size: int = 0,
        flags: int = 0,
        backend: str | None = None,
        *,
        debug: bool = False,
        hugepages: HugePages = "auto",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PktflowValueError(f"a mempool name must be a non-empty string, not {name!r}")
        n = checked_int(n, "n", 1, RING_SZ_MAX - 1)
        elt_size = checked_int(elt_size, "elt_size", 0, 1 << 32)
        private_data_size = checked_int(private_data_size, "private_data_size", 0, 1 << 16)
        flags = checked_int(flags, "flags", 0, 0xFFFFFFFF)
        if flags & ~_KNOWN_FLAGS:
            raise PktflowValueError(f"unknown mempool flags {flags:#x}; known: NO_CACHE_ALIGN")
        cache_size = check_cache_size(cache_size, n)
        chosen = _registry.get_backend(backend)
        meta = self._plan(n, elt_size, private_data_size, cache_size, flags, debug)

        def create() -> None:
            zone = Zone.create(
                name, int(meta[M_TOTAL]), shared=chosen.shared, hugepages=hugepages,
                kind=self.zone_kind,
            )  # fmt: skip
            try:
                ring = Ring(_ring_name(name), n, RING_F_EXACT_SZ, backend=chosen.name)
            except BaseException:
                zone.close()
                raise
            try:
                zone.array(np.uint64, _META_WORDS)[:] = meta
                self._bind(zone, ring, creator=True)
                for row in self._caches[:MAX_LCORE]:
                    init_cache_row(row, cache_size, n)
                init_cache_row(self._caches[_NO_CACHE_ROW], 0, n)
                self._debug_flags[:] = _FREE
                self._init_headers()
                if ring.enqueue_bulk(np.arange(n, dtype=np.uint32)) != n:
                    raise MempoolError(f"could not populate the free list of {name!r}")
            except BaseException:
                ring.close()
                zone.close()
                raise
            zone.publish()

        _local.register(name, self, create)

    def _plan(
        self, n: int, elt_size: int, priv_size: int, cache_size: int, flags: int, debug: bool
    ) -> npt.NDArray[np.uint64]:
        """The meta words: sizes and the offset of every section."""
        aligned = not flags & MEMPOOL_F_NO_CACHE_ALIGN
        stride = _align(elt_size) if aligned else max(elt_size, 1)
        priv_stride = _align(priv_size) if aligned else priv_size
        header_size = self.header_row_words * 4
        meta = np.zeros(_META_WORDS, dtype=np.uint64)
        offset = _META_WORDS * 8
        meta[M_CACHES_OFF] = offset = _align(offset)
        offset += (MAX_LCORE + 1) * CACHE_WORDS * 4
        meta[M_DEBUG_OFF] = offset
        offset += n
        meta[M_HEADERS_OFF] = offset = _align(offset)
        offset += (n + 1) * header_size if header_size else 0
        meta[M_PRIV_OFF] = offset = _align(offset)
        offset += n * priv_stride
        meta[M_OBJS_OFF] = offset = _align(offset)
        offset += n * stride
        meta[[M_MAGIC, M_VERSION, M_N, M_ELT_SIZE, M_STRIDE, M_PRIV_SIZE, M_PRIV_STRIDE]] = [
            MAGIC, LAYOUT_VERSION, n, elt_size, stride, priv_size, priv_stride,
        ]  # fmt: skip
        meta[[M_CACHE_SIZE, M_FLAGS, M_DEBUG, M_TOTAL]] = [cache_size, flags, debug, offset]
        return meta

    def _init_headers(self) -> None:
        """Subclasses write their per-object headers' initial state."""

    def _bind(self, zone: Zone, ring: Ring, *, creator: bool, owns_zone: bool = True) -> None:
        meta = zone.array(np.uint64, _META_WORDS)
        if int(meta[M_MAGIC]) != MAGIC or int(meta[M_VERSION]) != LAYOUT_VERSION:
            raise PktflowValueError(
                f"zone {zone.name!r} holds no mempool of layout {LAYOUT_VERSION}"
            )
        self._zone: Zone | None = zone
        self._ring: Ring = ring
        self._creator = creator
        self._owns_zone = owns_zone
        self._meta = meta
        self.name: str = zone.name
        self.n: int = int(meta[M_N])
        self.elt_size: int = int(meta[M_ELT_SIZE])
        self.cache_size: int = int(meta[M_CACHE_SIZE])
        self.private_data_size: int = int(meta[M_PRIV_SIZE])
        self.flags: int = int(meta[M_FLAGS])
        self.debug: bool = bool(meta[M_DEBUG])
        self.backend: str = ring.backend
        self._bound = BoundCalls()
        n = self.n
        caches = zone.array(np.uint32, (MAX_LCORE + 1) * CACHE_WORDS, int(meta[M_CACHES_OFF]))
        self._caches = caches.reshape(MAX_LCORE + 1, CACHE_WORDS)
        if not creator and (problem := cache_layout_problem(self._caches)) is not None:
            raise PktflowValueError(f"mempool {self.name!r}: {problem}")
        self._lcore_cache_lens = self._caches[:MAX_LCORE, C_LEN]
        self._rows: list[U32Array] = list(self._caches)
        self._debug_flags = zone.array(np.uint8, n, int(meta[M_DEBUG_OFF]))
        stride, priv_stride = int(meta[M_STRIDE]), int(meta[M_PRIV_STRIDE])
        objects = zone.array(np.uint8, n * stride, int(meta[M_OBJS_OFF]))
        self._objects = objects.reshape(n, stride)[:, : self.elt_size]
        # Flat bytes for views of parts of objects (a slice of a memoryview
        # costs a tenth of a numpy slice turned into one).
        self._object_bytes = objects.data
        self._stride = stride
        private = zone.array(np.uint8, n * priv_stride, int(meta[M_PRIV_OFF]))
        self._private = private.reshape(n, priv_stride)[:, : self.private_data_size]
        if self.header_row_words:
            width = self.header_row_words
            words = zone.array(np.uint32, (n + 1) * width, int(meta[M_HEADERS_OFF]))
            self._header_words = words.reshape(n + 1, width)
        impl = ring.impl
        ops = impl.cache_ops() or PyCache(impl).ops()
        if self.debug:
            ops = self._with_debug_checks(ops)
        self._cache_get = ops.get_bulk
        self._cache_put = ops.put_bulk
        self._cache_flush = ops.flush
        add_lcore_hook(self)  # flush a retiring lcore's row; reclaim a dead one's on claim

    @classmethod
    def lookup(cls, name: str) -> Mempool:
        """Attach to a pool by name: one of this process, or a shared one.

        Usage: ``mp = pktflow.Mempool.lookup("objs")``
        """
        creator = _local.get(name) if isinstance(name, str) else None
        if creator is not None and creator._zone is not None:
            if not isinstance(creator, cls):
                raise PktflowValueError(
                    f"{name!r} is a {type(creator).__name__}, not a {cls.__name__}"
                )
            pool = cls.__new__(cls)
            # The creator's zone, shared: closing this pool must leave it mapped.
            pool._bind(creator._zone, Ring.lookup(_ring_name(name)), creator=False, owns_zone=False)
            return pool
        if not is_zone_name(name):  # None, "a/b": what Ring.lookup answers for them
            raise NotFoundError(f"no mempool named {name!r} in this process (not a shared name)")
        try:
            zone = Zone.attach(name)
        except NotFoundError:
            raise NotFoundError(
                f"no mempool named {name!r} in this process or in shared memory"
            ) from None
        if zone.kind not in cls.lookup_kinds:
            zone.close()
            raise PktflowValueError(f"zone {name!r} holds a {zone.kind}, not a {cls.zone_kind}")
        try:
            ring = Ring.lookup(_ring_name(name))
        except BaseException:
            zone.close()
            raise
        pool = cls.__new__(cls)
        try:
            pool._bind(zone, ring, creator=False)
        except BaseException:
            ring.close()
            zone.close()
            raise
        return pool

    # -- the hot path: one call per burst -----------------------------------

    def _row(self, cache: MempoolCache | None) -> U32Array:
        return self._rows[thread_state.cache_index] if cache is None else self._user_row(cache)

    def _user_row(self, cache: MempoolCache) -> U32Array:
        if not isinstance(cache, MempoolCache):
            raise PktflowTypeError(f"cache must be a MempoolCache, not {type(cache).__name__}")
        if cache.pool_name != self.name:
            raise MempoolError(
                f"this cache belongs to mempool {cache.pool_name!r}, not {self.name!r}"
            )
        return cache.row

    def get_bulk(
        self, out: U32Array, n: int | None = None, *, cache: MempoolCache | None = None
    ) -> int:
        """Take ``n`` handles (default ``len(out)``) into ``out``, all or none; n or 0.

        Uses the calling lcore's cache (or ``cache``); 0 objects succeed.

        Usage: ``if mp.get_bulk(out, 32) == 0: ...  # pool exhausted``
        """
        # Types here; the count against the array in the ops (ERR_COUNT).
        if not (
            type(out) is ndarray
            and out.dtype is U32
            and out.ndim == 1
            and out.flags.writeable
            and type(n) is int
        ):
            n = checked_out(out, n)
        row = self._rows[thread_state.cache_index] if cache is None else self._user_row(cache)
        got: int = self._cache_get(row, out, n)
        if got < 0:
            return self._settle(got, n, out)
        return got

    def put_bulk(
        self, objs: U32Array, n: int | None = None, *, cache: MempoolCache | None = None
    ) -> None:
        """Return ``objs[:n]`` (default all) to the pool.

        Raises ``MempoolError`` for a handle that is not from this pool (and,
        with ``debug=True``, for a double put); nothing is put then.

        Usage: ``mp.put_bulk(out, 32)``
        """
        if not (type(objs) is ndarray and objs.dtype is U32 and objs.ndim == 1 and type(n) is int):
            n = checked_count(objs, n, "objs")
        row = self._rows[thread_state.cache_index] if cache is None else self._user_row(cache)
        result = self._cache_put(row, objs, n)
        if result < 0:
            self._settle(result, n, objs)

    def bind(self, array: U32Array, *, cache: MempoolCache | None = None) -> BoundMempool:
        """``get_bulk``/``put_bulk`` bound to one array and this thread's cache, for hot loops.

        Each takes only ``n`` and is a compiled call with no Python frame in
        between. Use it from the thread that bound it (its lcore cache is
        bound too). Errors come back as negative codes of ``pktflow.abc``,
        not exceptions: ERR_COUNT (n outside the array), ERR_FOREIGN (a
        handle not of this pool; nothing put), ERR_OVERFLOW (a double put),
        ERR_CLOSED (the pool was closed; nothing touched).

        Usage::

            pool_io = mp.bind(burst)
            if pool_io.get_bulk(32) == 32: ...; pool_io.put_bulk(32)
        """
        checked_out(array, None)
        self._live()
        row = self._row(cache)
        return BoundMempool(
            get_bulk=self._bound.bind(self._cache_get, row, array),
            put_bulk=self._bound.bind(self._cache_put, row, array),
        )

    def get(self) -> int | None:
        """Take one handle; None when the pool is exhausted.

        Usage: ``h = mp.get()``
        """
        one = np.empty(1, dtype=np.uint32)
        return int(one[0]) if self.get_bulk(one, 1) else None

    def put(self, handle: int) -> None:
        """Return one handle to the pool.

        Usage: ``mp.put(h)``
        """
        h = checked_handle(handle, self.n, MempoolError)
        self.put_bulk(one_handle(h), 1)

    def _settle(self, code: int, n: int, array: U32Array) -> int:
        """The slow path of a negative answer from the cache ops: finish, or raise.

        ``ERR_STALLED...``: the handles moved and the free list's publish is
        pending (an earlier transfer has not published yet): finish it,
        repairing a dead process's reservation on the way; returns n.
        """
        if code <= ERR_STALLED:
            self._ring.complete(code)
            return n
        if code == ERR_COUNT:
            raise _count_error(array, n)
        if code == ERR_ABORTED:
            raise MempoolError(f"mempool {self.name!r}: its free list was aborted (Ring.abort)")
        if code == ERR_CORRUPT:
            raise MempoolError(
                f"mempool {self.name!r} is corrupt: a cache row or its free list holds a word "
                "out of range (nothing was touched)"
            )
        raise self._put_error(array, n, code)

    def _put_error(self, objs: U32Array, n: int, code: int) -> Exception:
        if code == ERR_COUNT:
            return _count_error(objs, n)
        foreign = [int(h) for h in objs[:n] if h >= self.n][:5]
        if foreign:
            return MempoolError(
                f"handles {foreign} are not from mempool {self.name!r} (n={self.n})"
            )
        return MempoolError(
            f"mempool {self.name!r} overflowed: more handles were put than it holds "
            "(a double put? create it with debug=True to find it)"
        )

    # -- debug checks (debug=True only) -------------------------------------

    def _with_debug_checks(self, ops: CacheOps) -> CacheOps:
        """The same ops with checks for double puts and foreign handles around them."""

        def get_bulk(cache: U32Array, out: U32Array, n: int) -> int:
            got = ops.get_bulk(cache, out, n)
            if got <= ERR_STALLED:
                got = self._settle(got, n, out)
            if got > 0:
                self._debug_take(out[:got])
            return got

        def put_bulk(cache: U32Array, objs: U32Array, n: int) -> int:
            if not 0 <= n <= len(objs):
                return ERR_COUNT
            self._debug_check_put(objs[:n])
            result = ops.put_bulk(cache, objs, n)
            if result <= ERR_STALLED:
                result = self._settle(result, n, objs)
            if result >= 0:
                self._debug_flags[objs[:n]] = _FREE
            return result

        return CacheOps(get_bulk, put_bulk, ops.flush)

    def _debug_take(self, handles: U32Array) -> None:
        flags = self._debug_flags
        if (flags[handles] != _FREE).any():
            raise MempoolError(f"mempool {self.name!r} handed out a handle twice: it is corrupt")
        # Where it went: the taker's lcore id + 2 (MAX_LCORE + 2: not an lcore), for audit().
        flags[handles] = _TAKEN_BY + thread_state.cache_index

    def _debug_check_put(self, handles: U32Array) -> None:
        if handles.size == 0:
            return
        if int(handles.max()) >= self.n:
            raise self._put_error(handles, handles.size, -1)
        if np.unique(handles).size != handles.size:
            raise MempoolError(f"the same handle appears twice in one put to {self.name!r}")
        already = handles[self._debug_flags[handles] == _FREE]
        if already.size:
            raise MempoolError(
                f"double put to mempool {self.name!r}: handles {already[:5].tolist()} are free"
            )

    # -- counts --------------------------------------------------------------

    def avail_count(self) -> int:
        """Objects available: the free list plus every live lcore's cache (any process).

        Objects stranded by a dead process (in its lcore's cache row, or in a
        reservation of the free list it never published) are reclaimed first
        (see ``reclaim``), so what is counted can be taken.

        Usage: ``mp.avail_count()``
        """
        self._live()
        self.reclaim()
        return self._ring.count() + int(self._lcore_cache_lens.sum())

    # -- dead and retired lcores (issue: crash safety) -------------------------

    def reclaim(self) -> int:
        """Give back what dead processes stranded; returns how many objects came back.

        The cache rows of lcore ids that no live thread holds go back to the
        free list, and reservations of the free list whose owner died are
        published past (``Ring.repair``). ``avail_count`` calls it; an lcore
        that unregisters flushes its own rows, and a new holder of an id
        reclaims the row its dead predecessor left.

        Usage: ``mp.reclaim()``
        """
        self._live()
        moved = self._ring.repair()
        lens = self._lcore_cache_lens
        if not lens.any():
            return moved
        with live_lcores() as live:  # no id changes hands meanwhile
            for lcore in np.flatnonzero(lens).tolist():
                if lcore not in live:
                    moved += self._flush_row(lcore)
        return moved

    def _flush_row(self, lcore: int) -> int:
        length = int(self._caches[lcore, C_LEN])
        result = self._cache_flush(self._caches[lcore])
        if result < 0:
            self._settle(result, length, _EMPTY)
        return length

    def lcore_retiring(self, lcore: int) -> None:
        """Hook (``pktflow._lcore``): lcore ``lcore`` of this thread unregisters: flush its row."""
        if self._zone is not None and int(self._caches[lcore, C_LEN]):
            self._flush_row(lcore)

    def lcore_claimed(self, lcore: int) -> None:
        """Hook: this thread now holds ``lcore``; objects in its row are a dead holder's."""
        if self._zone is not None and int(self._caches[lcore, C_LEN]):
            self._flush_row(lcore)

    def audit(self) -> dict[str, Any]:
        """Check the pool and say where its objects are (DPDK's rte_mempool_audit).

        Returns ``{"n", "ring", "caches": {lcore: count}, "dead_caches":
        {lcore: count}, "avail", "in_use", "problems": [...]}``; for a debug
        pool also ``"out": {handle: lcore or None}`` (who took each object
        that is out; None: a thread that is not an lcore). Problems found:
        a handle free twice (in the ring or a cache row), a handle out of
        range, a free handle flagged as taken (debug), counts that do not
        add up. Changes nothing. Exact only while nobody uses the pool.

        Usage: ``assert not mp.audit()["problems"]``
        """
        self._live()
        with live_lcores() as live:
            live_ids = live
        lens = self._lcore_cache_lens
        caches = {int(i): int(lens[i]) for i in np.flatnonzero(lens)}
        dead = {lcore: count for lcore, count in caches.items() if lcore not in live_ids}
        ring_count = self._ring.count()
        problems: list[str] = []
        cached = sum(caches.values())
        if cached > self.n or ring_count > self.n:
            problems.append(f"cache rows hold {cached} and the ring {ring_count} of {self.n}")
        report: dict[str, Any] = {
            "n": self.n,
            "ring": ring_count,
            "caches": caches,
            "dead_caches": dead,
            "avail": ring_count + cached - sum(dead.values()),
            "in_use": self.n - ring_count - cached,
            "problems": problems,
        }
        in_ring = self._ring.impl.peek()
        if in_ring is None:
            return report
        parts = [in_ring] + [
            self._caches[lcore, C_OBJS : C_OBJS + min(count, CACHE_WORDS - C_OBJS)]
            for lcore, count in caches.items()
        ]
        free = np.concatenate(parts).astype(np.int64)
        if free.size and int(free.max()) >= self.n:
            problems.append(
                f"handles out of range: {sorted(set(free[free >= self.n].tolist()))[:5]}"
            )
            free = free[free < self.n]
        values, counts = np.unique(free, return_counts=True)
        if (counts > 1).any():
            problems.append(f"handles free twice: {values[counts > 1][:5].tolist()}")
        if self.debug:
            flags = self._debug_flags
            taken = flags != _FREE
            if taken[values].any():
                problems.append(
                    f"free handles flagged as taken: {values[taken[values]][:5].tolist()}"
                )
            out = np.flatnonzero(taken)
            report["out"] = {
                int(h): (
                    int(flags[h]) - _TAKEN_BY
                    if _TAKEN_BY <= flags[h] < _TAKEN_BY + MAX_LCORE
                    else None
                )
                for h in out.tolist()
            }
        return report

    def in_use_count(self) -> int:
        """Objects handed out (user-owned caches count as in use, as in DPDK).

        Usage: ``mp.in_use_count()``
        """
        return self.n - self.avail_count()

    def full(self) -> bool:
        """Whether every object is in the pool.

        Usage: ``mp.full()``
        """
        return self.avail_count() == self.n

    def empty(self) -> bool:
        """Whether no object is available.

        Usage: ``mp.empty()``
        """
        return self.avail_count() == 0

    # -- caches --------------------------------------------------------------

    def cache_create(self, size: int) -> MempoolCache:
        """A cache the caller owns, for threads that are not lcores.

        Usage: ``cache = mp.cache_create(64)``
        """
        self._live()
        return MempoolCache(size, self.n, self.name)

    def cache_flush(self, cache: MempoolCache | None = None) -> None:
        """Return a cache's objects to the free list (default: the calling lcore's).

        Usage: ``mp.cache_flush()``
        """
        self._live()
        result = self._cache_flush(self._row(cache))
        if result <= ERR_STALLED or result in (ERR_ABORTED, ERR_CORRUPT):
            self._settle(result, 0, _EMPTY)
        elif result < 0:
            raise MempoolError(
                f"mempool {self.name!r} overflowed on a cache flush: more handles were put "
                "than it holds (a double put? create it with debug=True to find it)"
            )

    # -- objects --------------------------------------------------------------

    def obj(self, handle: int) -> memoryview:
        """The object's ``elt_size`` bytes, writable, 64-byte aligned (by default).

        Usage: ``mp.obj(h)[:4] = b"abcd"``
        """
        self._live()
        return memoryview(self._objects[checked_handle(handle, self.n, MempoolError)])

    def priv(self, handle: int) -> memoryview:
        """The object's private area (``private_data_size`` bytes).

        Usage: ``mp.priv(h)[:8] = cookie``
        """
        self._live()
        return memoryview(self._private[checked_handle(handle, self.n, MempoolError)])

    @property
    def objects(self) -> npt.NDArray[np.uint8]:
        """All objects as a uint8 array of shape (n, elt_size): row h is handle h."""
        self._live()
        return self._objects

    @property
    def private(self) -> npt.NDArray[np.uint8]:
        """All private areas as a uint8 array of shape (n, private_data_size)."""
        self._live()
        return self._private

    @property
    def ring(self) -> Ring:
        """The free list (for jitted code: ``ring.state``)."""
        return self._ring

    @property
    def cache_rows(self) -> npt.NDArray[np.uint32]:
        """Every cache row (lcore id -> row; the last row is "no cache")."""
        return self._caches

    # -- lifecycle -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._zone is None

    def _live(self) -> Zone:
        if self._zone is None:
            raise ClosedError(f"mempool {self.name!r} is closed")
        return self._zone

    def close(self) -> None:
        """Release the pool; the creator's close destroys it. Idempotent.

        Usage: ``mp.close()``
        """
        zone, self._zone = self._zone, None
        if zone is None:
            return
        self._cache_get = self._cache_put = self._cache_flush = _closed
        self._bound.close()
        self._ring.close()
        if self._creator:
            _local.forget(self.name, self)
        if self._owns_zone:
            zone.close()

    def __enter__(self) -> Mempool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._zone is None:
            return f"<{type(self).__name__} {self.name!r} closed>"
        return (
            f"<{type(self).__name__} {self.name!r} n={self.n} elt_size={self.elt_size} "
            f"cache_size={self.cache_size} backend={self.backend} avail={self.avail_count()}>"
        )


class BoundMempool(NamedTuple):
    """A mempool's bulk operations bound to one array (see ``Mempool.bind``); each takes n."""

    get_bulk: Callable[[int], int]
    put_bulk: Callable[[int], int]


def _count_error(array: U32Array, n: int) -> Exception:
    try:
        checked_count(array, n, "objs")
    except PktflowValueError as exc:
        return exc
    return PktflowValueError(f"n={n} does not fit an array of {len(array)}")


_EMPTY: U32Array = np.zeros(0, dtype=np.uint32)


def _closed(*args: object) -> Any:
    raise ClosedError("the mempool is closed")
