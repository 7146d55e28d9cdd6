"""Remote edges, jitted: a burst of mbufs packed into one message's blocks, and back.

A message carries a burst as three blocks besides its small header: the
packets' bytes end to end (``data``), each packet's length (``lengths``,
uint32) and the header fields stages downstream read (``fields``, uint32
rows of ``FIELD_WORDS``: port and vlan_tci, packet_type, hash, ol_flags,
timestamp, the tx_offload lengths). Handles never cross: the receiver
allocates its own mbufs and copies the bytes in.

Usage (the remote edge stages')::

    total = packed_size(words, handles, n)
    k = pack(words, data, stride, handles, n, out_data, out_lengths, out_fields)
    unpack(words, data, stride, fresh, n, in_data, in_lengths, in_fields, first, offset)
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from pktflow._mbuf_layout import (
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
    H_TIMESTAMP,
    H_TX_OFFLOAD,
    MBUF_F_INDIRECT,
    NO_NEXT,
    P_POOL_ID,
)

# The header words a remote edge carries per packet, in this order.
FIELD_WORDS = 8
_FIELDS = (H_PORT, H_PACKET_TYPE, H_HASH, H_OL_FLAGS, H_OL_FLAGS + 1, H_TIMESTAMP,
           H_TIMESTAMP + 1, H_TX_OFFLOAD)  # fmt: skip
_F_PORT, _F_PTYPE, _F_HASH, _F_OL0, _F_OL1, _F_TS0, _F_TS1, _F_TXO = range(FIELD_WORDS)
# ol_flags' high word without the indirect bit: a received mbuf owns its buffer.
_OL_HIGH_MASK = np.uint32(~(MBUF_F_INDIRECT >> 32) & 0xFFFFFFFF)

_JIT = {"cache": True, "nogil": True}


@intrinsic
def _copy(typingctx, dst, at, src, start, n):
    """``dst[at:at + n] = src[start:start + n]`` as one memcpy (the callers check bounds).

    Not an atomic: a plain copy between two arrays that never overlap. A
    slice assignment checks for overlap and copies byte by byte: measured
    about 1 ns/byte here, 20 times numpy's copy, for 1,500-byte packets.
    """
    sig = types.void(dst, types.int64, src, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        to = context.make_array(signature.args[0])(context, builder, args[0])
        frm = context.make_array(signature.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(
            builder, builder.gep(to.data, [args[1]]), builder.gep(frm.data, [args[3]]), args[4], 1
        )
        return context.get_dummy_value()

    return sig, codegen


@njit("int64(uint32[:, ::1], uint32[::1], int64)", **_JIT)
def packed_size(words, handles, n):
    """Bytes of packet data in ``handles[:n]`` (the sum of pkt_len)."""
    total = np.int64(0)
    for i in range(n):
        total += np.int64(words[np.int64(handles[i]), H_PKT_LEN])
    return total


@njit(
    "int64(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, uint8[::1], uint32[::1],"
    " uint32[:, ::1])",
    **_JIT,
)
def pack(words, data, stride, handles, n, out_data, out_lengths, out_fields):
    """Copy each packet of ``handles[:n]`` (every segment) and its fields into the blocks.

    A packet with a segment in another pool's buffer (a clone it cannot
    reach) is left out: its length is written as 0 and it is counted.
    Returns how many packets were left out.
    """
    pool_id = words[words.shape[0] - 1, P_POOL_ID]
    p = np.int64(0)
    skipped = 0
    for i in range(n):
        h = np.int64(handles[i])
        reachable = True
        m = h
        while m != NO_NEXT:
            if words[m, H_DIRECT_POOL] != pool_id:
                reachable = False
                break
            m = np.int64(words[m, H_NEXT])
        if not reachable:
            out_lengths[i] = 0
            skipped += 1
            continue
        left = np.int64(words[h, H_PKT_LEN])
        out_lengths[i] = np.uint32(left)
        m = h
        while left > 0 and m != NO_NEXT:
            seg = min(np.int64(words[m, H_DATA] & 0xFFFF), left)
            start = np.int64(words[m, H_DIRECT]) * stride + np.int64(words[m, H_BUF] >> 16)
            _copy(out_data, p, data, start, seg)
            p += seg
            left -= seg
            m = np.int64(words[m, H_NEXT])
        for f in range(FIELD_WORDS):
            out_fields[i, f] = words[h, _FIELDS[f]]
    return skipped


@njit(
    "int64(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, uint8[::1], uint32[::1],"
    " uint32[:, ::1], int64, int64)",
    **_JIT,
)
def unpack(words, data, stride, fresh, n, in_data, in_lengths, in_fields, first, offset):
    """Fill the fresh mbufs ``fresh[:n]`` with packets ``first ..`` of a message.

    ``offset``: where packet ``first`` starts in ``in_data``. A packet longer
    than an mbuf's room is cut to it. Returns the offset after the last one.
    """
    for i in range(n):
        h = np.int64(fresh[i])
        r = first + i
        length = np.int64(in_lengths[r])
        data_off = np.int64(words[h, H_BUF] >> 16)
        room = np.int64(words[h, H_BUF] & 0xFFFF) - data_off
        kept = min(length, room)
        start = h * stride + data_off
        _copy(data, start, in_data, offset, kept)
        offset += length
        words[h, H_DATA] = (words[h, H_DATA] & np.uint32(0xFFFF0000)) | np.uint32(kept)
        words[h, H_PKT_LEN] = np.uint32(kept)
        words[h, H_PORT] = in_fields[r, _F_PORT]
        words[h, H_PACKET_TYPE] = in_fields[r, _F_PTYPE]
        words[h, H_HASH] = in_fields[r, _F_HASH]
        words[h, H_OL_FLAGS] = in_fields[r, _F_OL0]
        words[h, H_OL_FLAGS + 1] = in_fields[r, _F_OL1] & _OL_HIGH_MASK
        words[h, H_TIMESTAMP] = in_fields[r, _F_TS0]
        words[h, H_TIMESTAMP + 1] = in_fields[r, _F_TS1]
        words[h, H_TX_OFFLOAD] = in_fields[r, _F_TXO]
    return offset
