"""AF_PACKET rings, jitted: the kernel's TPACKET_V3 RX blocks into mbufs, mbufs into a V2 TX ring.

RX (``rx_burst``): the kernel fills whole blocks of frames and hands a
block over by setting its ``block_status`` to ``TP_STATUS_USER``; we walk
its frames (``tpacket3_hdr``: ``tp_next_offset`` chains them), copy each
into a fresh mbuf, and give the block back (``TP_STATUS_KERNEL``) once its
last frame is copied. One call per burst; the cursor (block, frames left,
offset of the next frame) persists between calls, so a burst may end in
the middle of a block and the next call resumes there.

TX (``tx_burst``): a TPACKET_V2 ring of fixed-size frames; each packet is
copied into the next free frame (``TP_STATUS_AVAILABLE``), its length set,
and the frame handed to the kernel (``TP_STATUS_SEND_REQUEST``); the stage
then kicks the socket with one ``send()`` per burst.

Memory order: the ring's status words are shared with the kernel, which
writes a frame or block fully before it publishes the status (a store
with release semantics on the kernel side: ``smp_wmb`` then the status
word), and reads it only after seeing our status word. So we load status
with acquire (pairs with the kernel's publication) and return a block or
hand a frame over with a release store (our reads of the block, our writes
of the frame stay before it).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._byte_kernels import put_u32_le
from pktflow._mbuf_layout import (
    H_BUF,
    H_DATA,
    H_DIRECT,
    H_NEXT,
    H_PKT_LEN,
    H_TIMESTAMP,
    NO_NEXT,
)
from pktflow.backends._numba._atomics import load_acquire, store_relaxed, store_release

# linux/if_packet.h
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_SENDING = 2
TP_STATUS_WRONG_FORMAT = 4

# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1.
BLOCK_STATUS = 8  # byte offsets
BLOCK_NUM_PKTS = 12
BLOCK_FIRST = 16
# struct tpacket3_hdr
P3_NEXT = 0
P3_SEC = 4
P3_NSEC = 8
P3_SNAPLEN = 12
P3_LEN = 16
P3_STATUS = 20
P3_MAC = 24  # u16
P3_VLAN_TCI = 32
P3_VLAN_TPID = 36  # u16
# struct tpacket2_hdr: status, len, snaplen, mac (u16), net (u16), ...; the
# frame's data starts after the aligned header (TPACKET2_HDRLEN - sizeof(sockaddr_ll)).
T2_STATUS = 0
T2_LEN = 4
T2_SNAPLEN = 8
T2_DATA = 32

# Cursor words (int64) kept by the source between calls.
CUR_BLOCK, CUR_LEFT, CUR_OFFSET = range(3)
# Counter slots the kernels add to.
C_FRAMES, C_BYTES, C_TOO_LONG, C_VLAN, C_TX_ERRORS = range(5)
COUNTERS = 5

_JIT = {"cache": True, "nogil": True}


@njit(inline="always")
def _u32(ring, p):
    return (
        np.int64(ring[p])
        | (np.int64(ring[p + 1]) << 8)
        | (np.int64(ring[p + 2]) << 16)
        | (np.int64(ring[p + 3]) << 24)
    )


@njit(inline="always")
def _u16(ring, p):
    return np.int64(ring[p]) | (np.int64(ring[p + 1]) << 8)


@njit(
    "int64(uint8[::1], uint32[::1], int64, int64, int64[::1], uint32[:, ::1], uint8[::1], int64,"
    " int64, uint32[::1], int64, int64[::1])",
    **_JIT,
)
def rx_burst(ring, status, block_size, blocks, cursor, words, data, stride, room, out, n, counts):
    """Copy up to ``n`` frames from the RX ring into the fresh mbufs ``out[:n]``.

    ``ring`` and ``status`` are byte and uint32 views of the same mapping.
    A frame the kernel marked with a stripped VLAN tag gets the tag put back
    (802.1Q or the TPID the kernel reports) so the mbuf holds the frame as it
    was on the wire. A frame longer than ``room`` is skipped and counted
    (``C_TOO_LONG``). Returns how many mbufs were filled; the caller frees
    the rest. Blocks whose frames are all copied go back to the kernel.
    """
    k = 0
    block = cursor[CUR_BLOCK]
    while k < n:
        base = block * block_size
        if cursor[CUR_LEFT] == 0:  # start of a block: is it ours?
            # Acquire: pairs with the kernel publishing the block (frames first).
            if (load_acquire(status, base // 4 + BLOCK_STATUS // 4) & TP_STATUS_USER) == 0:
                break
            cursor[CUR_LEFT] = _u32(ring, base + BLOCK_NUM_PKTS)
            cursor[CUR_OFFSET] = _u32(ring, base + BLOCK_FIRST)
            if cursor[CUR_LEFT] == 0:  # an empty block (retired by the timer): give it back
                store_release(status, base // 4 + BLOCK_STATUS // 4, TP_STATUS_KERNEL)
                block = (block + 1) % blocks
                cursor[CUR_BLOCK] = block
                continue
        p = base + cursor[CUR_OFFSET]
        snaplen = _u32(ring, p + P3_SNAPLEN)
        frame = p + _u16(ring, p + P3_MAC)
        frame_status = _u32(ring, p + P3_STATUS)
        tagged = (frame_status & TP_STATUS_VLAN_VALID) != 0 and snaplen >= 12
        length = snaplen + (4 if tagged else 0)
        if length > room:
            counts[C_TOO_LONG] += 1
        else:
            h = np.int64(out[k])
            start = h * stride + np.int64(words[h, H_BUF] >> 16)
            if tagged:
                tpid = np.int64(0x8100)
                if frame_status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = _u16(ring, p + P3_VLAN_TPID)
                tci = _u32(ring, p + P3_VLAN_TCI) & 0xFFFF
                data[start : start + 12] = ring[frame : frame + 12]  # the two MACs
                data[start + 12] = (tpid >> 8) & 0xFF
                data[start + 13] = tpid & 0xFF
                data[start + 14] = (tci >> 8) & 0xFF
                data[start + 15] = tci & 0xFF
                data[start + 16 : start + length] = ring[frame + 12 : frame + snaplen]
                counts[C_VLAN] += 1
            else:
                data[start : start + length] = ring[frame : frame + length]
            words[h, H_DATA] = (words[h, H_DATA] & np.uint32(0xFFFF0000)) | np.uint32(length)
            words[h, H_PKT_LEN] = length
            ts = _u32(ring, p + P3_SEC) * 1_000_000_000 + _u32(ring, p + P3_NSEC)
            words[h, H_TIMESTAMP] = np.uint32(ts & 0xFFFFFFFF)
            words[h, H_TIMESTAMP + 1] = np.uint32(ts >> 32)
            counts[C_FRAMES] += 1
            counts[C_BYTES] += length
            k += 1
        cursor[CUR_LEFT] -= 1
        cursor[CUR_OFFSET] += _u32(ring, p + P3_NEXT)
        if cursor[CUR_LEFT] == 0:
            # Release: every read of the block above stays before the kernel may refill it.
            store_release(status, base // 4 + BLOCK_STATUS // 4, TP_STATUS_KERNEL)
            block = (block + 1) % blocks
            cursor[CUR_BLOCK] = block
    return k


@njit("boolean(uint32[::1], int64, int64[::1])", **_JIT)
def rx_ready(status, block_size, cursor):
    """True when the source has frames to copy now (a block in progress, or the next is ours)."""
    if cursor[CUR_LEFT] > 0:
        return True
    word = cursor[CUR_BLOCK] * block_size // 4 + BLOCK_STATUS // 4
    return (load_acquire(status, word) & TP_STATUS_USER) != 0  # pairs as in rx_burst


@njit(
    "int64(uint8[::1], uint32[::1], int64, int64, int64[::1], uint32[:, ::1], uint8[::1], int64,"
    " uint32[::1], int64, int64, int64[::1])",
    **_JIT,
)
def tx_burst(
    ring, status, frame_size, frames, cursor, words, data, stride, handles, n, longest, counts
):
    """Copy packets ``handles[:n]`` into free TX frames and hand them to the kernel.

    Walks every segment of a chain. Stops at the first frame the kernel still
    owns (the ring is full until it sends); returns how many of the handles
    it dealt with (queued, or skipped). A packet longer than a frame's room or
    than ``longest`` (the MTU plus the Ethernet header; 4 more for a VLAN-tagged
    frame, as the kernel allows) is skipped and counted (``C_TOO_LONG``): the
    kernel would drop it silently. A frame the kernel marked refused is counted
    (``C_TX_ERRORS``) and reused.
    """
    room = frame_size - T2_DATA
    i = 0
    while i < n:
        f = cursor[CUR_BLOCK]
        base = f * frame_size
        # Acquire: pairs with the kernel's release of the frame after sending it.
        state = load_acquire(status, base // 4 + T2_STATUS // 4)
        if state == TP_STATUS_WRONG_FORMAT:
            counts[C_TX_ERRORS] += 1
            store_relaxed(status, base // 4 + T2_STATUS // 4, TP_STATUS_AVAILABLE)  # ours now
        elif state != TP_STATUS_AVAILABLE:
            break  # still queued or being sent: the ring is full
        h = np.int64(handles[i])
        pkt_len = np.int64(words[h, H_PKT_LEN])
        i += 1
        first = np.int64(words[h, H_DIRECT]) * stride + np.int64(words[h, H_BUF] >> 16)
        limit = longest
        if (words[h, H_DATA] & 0xFFFF) >= 14:
            ethertype = (np.int64(data[first + 12]) << 8) | np.int64(data[first + 13])
            if ethertype == 0x8100 or ethertype == 0x88A8:
                limit += 4
        if pkt_len > room or pkt_len > limit:
            counts[C_TOO_LONG] += 1
            continue
        at = base + T2_DATA
        left = pkt_len
        m = h
        while left > 0 and m != NO_NEXT:
            seg_len = min(np.int64(words[m, H_DATA] & 0xFFFF), left)
            start = np.int64(words[m, H_DIRECT]) * stride + np.int64(words[m, H_BUF] >> 16)
            ring[at : at + seg_len] = data[start : start + seg_len]
            at += seg_len
            left -= seg_len
            m = np.int64(words[m, H_NEXT])
        put_u32_le(ring, base + T2_LEN, pkt_len)
        put_u32_le(ring, base + T2_SNAPLEN, pkt_len)
        # Release: the frame's bytes and length are written before the kernel may read them.
        store_release(status, base // 4 + T2_STATUS // 4, TP_STATUS_SEND_REQUEST)
        counts[C_FRAMES] += 1
        counts[C_BYTES] += pkt_len
        cursor[CUR_BLOCK] = (f + 1) % frames
    return i


@njit("int64(uint32[::1], int64, int64)", **_JIT)
def tx_pending(status, frame_size, frames):
    """How many TX frames the kernel still owns (queued or being sent)."""
    pending = 0
    for f in range(frames):
        state = load_acquire(status, f * frame_size // 4 + T2_STATUS // 4)  # pairs as in tx_burst
        if state in (TP_STATUS_SEND_REQUEST, TP_STATUS_SENDING):
            pending += 1
    return pending
