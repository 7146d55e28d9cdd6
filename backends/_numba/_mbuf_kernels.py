"""DPDK's mbuf alloc/free jitted over a pool's header words (layout: ``pktflow._mbuf_layout``).

``words`` is the pool's (n + 1, H_WORDS) uint32 header array; row n holds
the pool's parameters (``P_*``). Refcounts change with atomic adds once an
mbuf may be shared (DPDK's rte_mbuf_refcnt_update); a refcnt of 1 means
the caller owns the mbuf alone, so freeing it needs no atomic.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._mbuf_layout import (
    H_BUF,
    H_DATA,
    H_DIRECT,
    H_DIRECT_POOL,
    H_NEXT,
    H_OL_FLAGS,
    H_PACKET_TYPE,
    H_PKT_LEN,
    H_PORT,
    H_REFCNT,
    H_TX_OFFLOAD,
    H_WORDS,
    NO_NEXT,
    P_BUF_LEN,
    P_HEADROOM,
    P_POOL_ID,
)
from pktflow.abc import ERR_CORRUPT, ERR_COUNT, ERR_FOREIGN, ERR_OVERFLOW, ERR_STALLED

from ._address_kernels import descriptor, u32_at, u32_rows_at
from ._atomics import fence_acquire, fetch_add, load_acquire
from ._mempool_kernels import mempool_get_bulk, mempool_put_bulk

_JIT = {"cache": True, "nogil": True}
_INDIRECT_HI = np.uint32(1 << 30)  # MBUF_F_INDIRECT (bit 62) within the high word
_PORT_INVALID = 0xFFFF  # DPDK's RTE_MBUF_PORT_INVALID


@njit(inline="always")
def _reset(words, h, buf, pool_id):
    """rte_pktmbuf_reset: one segment, no data, default headroom, no flags or lengths.

    A free mbuf already holds refcnt 1 and no next (``_recycle``); like DPDK,
    the hash and timestamp are left for the application to set.
    """
    words[h, H_PKT_LEN] = 0
    words[h, H_BUF] = buf
    words[h, H_DATA] = 1 << 16  # data_len 0, nb_segs 1
    words[h, H_PORT] = _PORT_INVALID  # vlan_tci 0
    words[h, H_PACKET_TYPE] = 0
    words[h, H_OL_FLAGS] = 0
    words[h, H_OL_FLAGS + 1] = 0
    words[h, H_TX_OFFLOAD] = 0
    words[h, H_DIRECT] = h
    words[h, H_DIRECT_POOL] = pool_id


# (ring, words) come first: they are fixed per pool, so Python binds them once.
_SIG_BULK = "int64(uint32[::1], uint32[:, ::1], uint32[::1], uint32[:], int64)"


@njit(_SIG_BULK, **_JIT)
def mbuf_alloc_bulk(ring, words, cache, out, n):
    """Take ``n`` mbufs into ``out``, all or none, each reset; n or 0 (or ERR_COUNT)."""
    got = mempool_get_bulk(ring, cache, out, n)
    # ERR_STALLED...: the handles moved (publishing is pending): reset them too.
    count = got if got > 0 else (n if got <= ERR_STALLED else 0)
    if count:
        params = words.shape[0] - 1
        pool_id = words[params, P_POOL_ID]
        buf = words[params, P_BUF_LEN] | (words[params, P_HEADROOM] << 16)
        for i in range(count):
            h = np.int64(out[i])
            if h < params:  # a corrupt free list never makes us write outside the headers
                _reset(words, h, buf, pool_id)
    return got


@njit(inline="always")
def _is_indirect(words, h):
    return (words[h, H_OL_FLAGS + 1] & _INDIRECT_HI) != 0


@njit(inline="always")
def _release(flat, h):
    """Drop one reference; True when it was the last (DPDK's prefree refcnt part).

    ``flat`` is the header words as one 1-D view (the atomics take 1-D arrays).
    """
    index = h * H_WORDS + H_REFCNT
    # Acquire: pairs with the release half of other owners' fetch_add, so
    # their last writes to this mbuf happen before we recycle it.
    if load_acquire(flat, index) == 1:
        return True
    return fetch_add(flat, index, 0xFFFFFFFF) == 1  # refcnt - 1, modulo 2**32


@njit(inline="always")
def _recycle(words, h):
    """The state a free mbuf keeps in the pool: one ref, one segment, no next."""
    words[h, H_REFCNT] = 1
    words[h, H_NEXT] = NO_NEXT
    words[h, H_DATA] = (words[h, H_DATA] & 0xFFFF) | (1 << 16)


_CHAIN_LOCAL = 0
_CHAIN_FOREIGN = 1


@njit(inline="always")
def _survey_chain(words, head, pool_id):
    """Check a chain before freeing any of it.

    ERR_CORRUPT when it does not end after the head's nb_segs segments (a
    cycle, or a shared middle segment freed on its own, whose next segments
    are not its to free); _CHAIN_FOREIGN when a segment is attached to
    another pool's buffer (the caller frees that chain); else _CHAIN_LOCAL.
    """
    segments = np.int64(words[head, H_DATA] >> 16)
    pool_n = words.shape[0] - 1
    foreign = False
    h = head
    for _ in range(segments):
        # A next (or direct) word past the pool is corrupt: never index with it.
        if h == NO_NEXT or h >= pool_n:
            return ERR_CORRUPT
        if _is_indirect(words, h):
            if words[h, H_DIRECT_POOL] != pool_id:
                foreign = True
            elif words[h, H_DIRECT] >= pool_n:
                return ERR_CORRUPT
        h = np.int64(words[h, H_NEXT])
    if h != NO_NEXT:
        return ERR_CORRUPT
    return _CHAIN_FOREIGN if foreign else _CHAIN_LOCAL


@njit(_SIG_BULK, **_JIT)
def mbuf_free_bulk(ring, words, cache, handles, n):
    """Free ``n`` chains (rte_pktmbuf_free_bulk); see ``pktflow.abc.MbufOps``.

    Every chain is checked before anything is freed, so a foreign handle or
    a corrupt chain frees nothing; a chain holding another pool's clone
    stops the work before it (the caller frees it and calls again). A burst
    of plain mbufs (the common case) goes back to the pool as it is.
    """
    if n < 0 or n > handles.shape[0]:
        return ERR_COUNT
    pool_n = words.shape[0] - 1
    pool_id = words[pool_n, P_POOL_ID]
    plain = True
    for i in range(n):
        h = np.int64(handles[i])
        if h >= pool_n:
            return ERR_FOREIGN
        # Plain: one direct segment the caller alone holds, so freeing it changes
        # no word (a free mbuf keeps refcnt 1, no next, one segment: _recycle).
        # Written out here: as an inlined helper this loop ran at half the speed.
        if plain and not (
            words[h, H_REFCNT] == 1
            and words[h, H_NEXT] == NO_NEXT
            and words[h, H_DATA] >> 16 == 1
            and (words[h, H_OL_FLAGS + 1] & _INDIRECT_HI) == 0
        ):
            plain = False
    if plain:
        # The loads above were plain: this fence pairs with the release half of
        # other owners' refcnt decrements (as _release's acquire load does), so
        # their writes happen before the reuse.
        fence_acquire()
        put = mempool_put_bulk(ring, cache, handles, n)
        return put if put >= 0 or put <= ERR_STALLED else ERR_OVERFLOW
    stop = n
    segments = 0
    for i in range(n):
        survey = _survey_chain(words, np.int64(handles[i]), pool_id)
        if survey == ERR_CORRUPT:
            return ERR_CORRUPT
        if survey == _CHAIN_FOREIGN and stop == n:
            stop = i
        if stop == n:
            segments += np.int64(words[handles[i], H_DATA] >> 16)
    # Room for every segment, and for the direct mbuf each clone may release.
    freed = np.empty(2 * segments, np.uint32)
    flat = words.reshape(words.size)
    k = 0
    for i in range(stop):
        m = np.int64(handles[i])
        while m != NO_NEXT:
            following = np.int64(words[m, H_NEXT])
            if _release(flat, m):
                if _is_indirect(words, m):
                    # Detach: give the buffer back to its direct mbuf (same pool).
                    direct = np.int64(words[m, H_DIRECT])
                    words[m, H_OL_FLAGS + 1] &= ~_INDIRECT_HI
                    words[m, H_DIRECT] = m
                    words[m, H_BUF] = words[pool_n, P_BUF_LEN] | (words[pool_n, P_HEADROOM] << 16)
                    if _release(flat, direct):
                        _recycle(words, direct)
                        freed[k] = direct
                        k += 1
                _recycle(words, m)
                freed[k] = m
                k += 1
            m = following
    if k:
        put = mempool_put_bulk(ring, cache, freed, k)
        if put <= ERR_STALLED:
            # Freed; the free list's publish is pending: the caller finishes it
            # (``Ring.complete``) and counts the chains before ``stop`` as freed
            # (all n unless a foreign chain stopped the work: see _mbuf.py).
            return put
        if put < 0:
            return ERR_OVERFLOW
    return stop


@njit("int64(uint32[:, ::1], int64, int64)", **_JIT)
def mbuf_refcnt_add(words, h, delta):
    """Atomically add ``delta`` to the refcnt of ``h``; returns the new value."""
    old = fetch_add(words.reshape(words.size), h * H_WORDS + H_REFCNT, delta & 0xFFFFFFFF)
    return (np.int64(old) + delta) & 0xFFFFFFFF


# The bound calls (``PktmbufPool.bind``): one int instead of four arrays,
# whose meminfos would cost about half of a burst's call. The descriptor is
# ``descriptor(ring_state, header_words, cache_row, array)`` (pktflow._arrays),
# made when the call is bound; anything after its first BOUND_WORDS words is
# the caller's (the generator keeps its own arguments there).
BOUND_WORDS = 8


@njit(inline="always")
def bound_views(address):
    """(ring, words, cache, array) from a bound call's descriptor."""
    d = descriptor(address, BOUND_WORDS)
    return (
        u32_at(d[0], d[1]),
        u32_rows_at(d[2], d[3], H_WORDS),
        u32_at(d[4], d[5]),
        u32_at(d[6], d[7]),
    )


# Holding the GIL: these run for microseconds at most, and releasing it
# costs each call about 40 ns.
@njit("int64(int64, int64)", cache=True)
def mbuf_alloc_bulk_bound(address, n):
    """``mbuf_alloc_bulk`` over the arrays of a bound call's descriptor."""
    ring, words, cache, out = bound_views(address)
    return mbuf_alloc_bulk(ring, words, cache, out, n)


@njit("int64(int64, int64)", cache=True)
def mbuf_free_bulk_bound(address, n):
    """``mbuf_free_bulk`` over the arrays of a bound call's descriptor."""
    ring, words, cache, handles = bound_views(address)
    return mbuf_free_bulk(ring, words, cache, handles, n)
