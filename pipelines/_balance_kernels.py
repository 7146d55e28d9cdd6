"""The ``balance`` stage's kernel: a symmetric Toeplitz (RSS) hash per packet, then a split.

RSS's Toeplitz hash with the 16-bit periodic key 0x6d5a (Woo and Park,
"Scalable TCP Session Monitoring with Symmetric Receive-side Scaling",
2012) is symmetric: swapping source and destination (addresses and ports)
leaves the hash unchanged, so both directions of a flow land on one output.
With a key of period 16 bits, the 32-bit window that an input bit XORs in
depends only on its position modulo 16, so each input byte is one lookup in
``TABLE[position & 1, byte]`` (2 x 256 words, built here once).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._burst_checks import check_burst
from pktflow._mbuf_layout import (
    H_BUF,
    H_DATA,
    H_DIRECT,
    H_DIRECT_POOL,
    H_HASH,
    H_OL_FLAGS,
    H_PACKET_TYPE,
    H_PKT_LEN,
    H_TX_OFFLOAD,
    P_POOL_ID,
)
from pktflow.abc import ERR_COUNT

__all__ = ["MBUF_F_RX_RSS_HASH", "SYMMETRIC_RSS_KEY", "TABLE", "balance_burst", "toeplitz"]

SYMMETRIC_RSS_KEY = 0x6D5A6D5A  # any 32 bits of the periodic key
MBUF_F_RX_RSS_HASH = 1 << 1  # DPDK's ol_flags bit: ``hash`` holds the RSS hash

# parse's packet types (pipelines/_parse_kernels.py): the layers this kernel reads.
_L3_MASK = 0xF0
_L3_IPV4 = 0x10
_L3_IPV4_EXT = 0x30
_L3_IPV6 = 0x40
_L3_IPV6_EXT = 0xC0
_L4_MASK = 0xF00
_L4_TCP = 0x100
_L4_UDP = 0x200
_L4_SCTP = 0x400


def _window(shift: int) -> int:
    """The key's 32 bits starting at bit ``shift`` (MSB first) of the periodic key."""
    k = SYMMETRIC_RSS_KEY
    return ((k << shift) | (k >> (32 - shift))) & 0xFFFFFFFF if shift else k


def _table() -> np.ndarray:
    table = np.zeros((2, 256), dtype=np.uint32)
    for parity in range(2):
        for value in range(256):
            h = 0
            for bit in range(8):  # MSB first, as RSS reads its input
                if value & (0x80 >> bit):
                    h ^= _window(8 * parity + bit)
            table[parity, value] = h
    return table


TABLE = _table()


def toeplitz(data: bytes) -> int:
    """The symmetric RSS hash of ``data`` (src addr, dst addr, sport, dport), bit by bit.

    The reference the table-driven kernel is tested against.

    Usage: ``toeplitz(src_ip + dst_ip + sport.to_bytes(2) + dport.to_bytes(2))``
    """
    h = 0
    for i in range(8 * len(data)):
        if data[i >> 3] & (0x80 >> (i & 7)):
            h ^= _window(i % 16)
    return h


@njit(
    "int64(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, int64, uint32[:, ::1],"
    " uint32[::1], int64[::1])",
    cache=True,
    nogil=True,
)
def balance_burst(words, data, stride, handles, n, ways, table, scratch, counts):
    """Hash ``handles[:n]`` into ``hash`` and group them by ``hash % ways``.

    Reads what ``parse`` wrote (packet type, l2_len, l3_len): IPv4 and IPv6
    addresses, plus the ports of TCP, UDP and SCTP (not of fragments). Other
    frames, and clones of another pool's buffer, hash to 0 (output 0).
    Sets ``MBUF_F_RX_RSS_HASH`` in ``ol_flags``. On return ``handles[:n]``
    holds the handles of output 0, then 1, ..., each in arrival order,
    ``counts[:ways]`` how many each got and ``counts[ways:2 * ways]`` their
    bytes (sum of pkt_len, so the runtime need not count them again).
    ``scratch`` holds at least 2n.
    Returns 0, ``ERR_COUNT`` (n outside 0..len(handles), or scratch or
    counts too short) or ``ERR_FOREIGN`` (a handle not below pool_n).
    """
    checked = check_burst(words, handles, n)
    if checked:
        return checked
    if scratch.shape[0] < 2 * n or counts.shape[0] < 2 * ways:
        return ERR_COUNT
    pool_n = np.int64(words.shape[0]) - 1
    pool_id = words[pool_n, P_POOL_ID]
    data_size = np.int64(data.shape[0])
    for w in range(2 * ways):
        counts[w] = 0
    for i in range(n):
        m = np.uint64(handles[i])
        h = np.uint32(0)
        ptype = np.int64(words[m, H_PACKET_TYPE])
        l3type = ptype & _L3_MASK
        direct = np.int64(words[m, H_DIRECT])
        if words[m, H_DIRECT_POOL] == pool_id and direct < pool_n and l3type != 0:
            dlen = np.int64(words[m, H_DATA]) & 0xFFFF
            b = direct * stride + (np.int64(words[m, H_BUF]) >> 16)
            lens = np.int64(words[m, H_TX_OFFLOAD])
            l2 = lens & 0xFF
            l3 = lens >> 16
            if l3type in (_L3_IPV4, _L3_IPV4_EXT):
                first, size = l2 + 12, np.int64(8)
            elif l3type in (_L3_IPV6, _L3_IPV6_EXT):
                first, size = l2 + 8, np.int64(32)
            else:
                size = np.int64(0)
                first = np.int64(0)
            limit = min(dlen, data_size - b)
            if size and first + size <= limit:
                p = np.uint64(b + first)
                for j in range(size):  # src and dst: same parities, so symmetric
                    # Unsigned indices: numba then skips its negative-index wraparound.
                    h ^= table[np.uint64(j & 1), np.uint64(data[p + np.uint64(j)])]
                l4type = ptype & _L4_MASK
                l4 = l2 + l3
                if (l4type in (_L4_TCP, _L4_UDP, _L4_SCTP)) and (l4 + 4 <= limit):
                    p = np.uint64(b + l4)
                    for j in range(4):  # sport, dport at even positions after the addresses
                        h ^= table[np.uint64(j & 1), np.uint64(data[p + np.uint64(j)])]
        words[m, H_HASH] = h
        words[m, H_OL_FLAGS] |= np.uint32(MBUF_F_RX_RSS_HASH)
        way = np.int64(h) % ways
        scratch[i] = np.uint32(way)
        counts[way] += 1
        counts[ways + way] += np.int64(words[m, H_PKT_LEN])
    # A stable counting sort through scratch[n:2n].
    start = np.empty(ways, np.int64)
    at = np.int64(0)
    for w in range(ways):
        start[w] = at
        at += counts[w]
    for i in range(n):
        w = scratch[i]
        scratch[n + start[w]] = handles[i]
        start[w] += 1
    for i in range(n):
        handles[i] = scratch[n + i]
    return 0
