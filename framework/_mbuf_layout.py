"""The mbuf header's byte layout: the one home of every word index and field offset.

A pktmbuf pool's zone holds ``n + 1`` rows of ``H_WORDS`` uint32 words: row
h is mbuf h's header (64 bytes, one cache line), row n the pool's
parameters (``P_*``) for the jitted kernels, stamped with ``MAGIC`` and
``LAYOUT_VERSION``, which a process attaching to the pool checks. Other
processes and jitted code read these bytes, so any change to them bumps
``LAYOUT_VERSION``. Two uint16 fields share a word as (low half, high
half), little-endian; ``MBUF_HEADER_DTYPE`` names the same bytes field by
field.

Usage::

    from pktflow._mbuf_layout import H_DATA, H_WORDS
    data_len = pool.header_words[h, H_DATA] & 0xFFFF
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "H_BUF",
    "H_DATA",
    "H_DIRECT",
    "H_DIRECT_POOL",
    "H_HASH",
    "H_NEXT",
    "H_OL_FLAGS",
    "H_PACKET_TYPE",
    "H_PKT_LEN",
    "H_PORT",
    "H_REFCNT",
    "H_TIMESTAMP",
    "H_TX_OFFLOAD",
    "H_WORDS",
    "LAYOUT_VERSION",
    "MAGIC",
    "MBUF_F_INDIRECT",
    "MBUF_HEADER_DTYPE",
    "NO_NEXT",
    "P_BUF_LEN",
    "P_HEADROOM",
    "P_MAGIC",
    "P_POOL_ID",
    "P_VERSION",
    "layout_problem",
]

MAGIC = 0x4D425546  # "MBUF"
LAYOUT_VERSION = 1

H_WORDS = 16
H_REFCNT = 0  # updated atomically once an mbuf may be shared
H_NEXT = 1  # handle of the next segment (same pool), or NO_NEXT
H_PKT_LEN = 2
H_BUF = 3  # buf_len | data_off << 16
H_DATA = 4  # data_len | nb_segs << 16
H_PORT = 5  # port | vlan_tci << 16
H_PACKET_TYPE = 6  # DPDK's RTE_PTYPE_* bits
H_HASH = 7
H_OL_FLAGS = 8  # uint64: words 8 and 9
H_TIMESTAMP = 10  # uint64: words 10 and 11
H_DIRECT = 12  # handle of the mbuf whose buffer holds the data (itself if direct)
H_DIRECT_POOL = 13  # pool id of that mbuf
H_TX_OFFLOAD = 14  # DPDK's tx_offload lengths: l2_len (byte 0), l4_len (1), l3_len (2-3)
# Word 15 is free.
NO_NEXT = 0xFFFFFFFF
MBUF_F_INDIRECT = 1 << 62  # ol_flags: attached to another mbuf's buffer (DPDK's bit)

# Row n: the pool's parameters.
P_POOL_ID = 0
P_BUF_LEN = 1  # data room size: buf_len of every direct mbuf
P_HEADROOM = 2  # data_off after alloc: min(PKTMBUF_HEADROOM, buf_len)
P_MAGIC = 3
P_VERSION = 4

MBUF_HEADER_DTYPE = np.dtype(
    {
        "names": [
            "refcnt", "next", "pkt_len", "buf_len", "data_off", "data_len", "nb_segs",
            "port", "vlan_tci", "packet_type", "hash", "ol_flags", "timestamp",
            "direct", "direct_pool", "l2_len", "l4_len", "l3_len",
        ],
        "formats": [
            "<u4", "<u4", "<u4", "<u2", "<u2", "<u2", "<u2",
            "<u2", "<u2", "<u4", "<u4", "<u8", "<u8",
            "<u4", "<u4", "u1", "u1", "<u2",
        ],
        "offsets": [
            4 * H_REFCNT, 4 * H_NEXT, 4 * H_PKT_LEN, 4 * H_BUF, 4 * H_BUF + 2, 4 * H_DATA,
            4 * H_DATA + 2, 4 * H_PORT, 4 * H_PORT + 2, 4 * H_PACKET_TYPE, 4 * H_HASH,
            4 * H_OL_FLAGS, 4 * H_TIMESTAMP, 4 * H_DIRECT, 4 * H_DIRECT_POOL,
            4 * H_TX_OFFLOAD, 4 * H_TX_OFFLOAD + 1, 4 * H_TX_OFFLOAD + 2,
        ],
        "itemsize": 4 * H_WORDS,
    }
)  # fmt: skip


def layout_problem(words: npt.NDArray[np.uint32]) -> str | None:
    """Why the (n + 1, H_WORDS) header words are not of this layout, or None.

    Usage: ``if (why := layout_problem(words)): raise PktflowValueError(why)``
    """
    if words.ndim != 2 or words.shape[1] != H_WORDS or words.shape[0] < 1:
        return f"mbuf headers of shape {words.shape}, expected (n + 1, {H_WORDS})"
    params = words[-1]
    if int(params[P_MAGIC]) != MAGIC:
        return "no mbuf headers (bad magic)"
    if int(params[P_VERSION]) != LAYOUT_VERSION:
        return f"mbuf header layout {int(params[P_VERSION])}, expected {LAYOUT_VERSION}"
    return None
