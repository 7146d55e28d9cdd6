"""The generator's kernels: frames from per-flow header templates into fresh mbufs."""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._mbuf_layout import H_BUF, H_DATA, H_PKT_LEN, H_TIMESTAMP
from pktflow.abc import ERR_STALLED
from pktflow.backends._numba._address_kernels import descriptor, u8_at, u64_rows_at
from pktflow.backends._numba._atomics import realtime_ns
from pktflow.backends._numba._mbuf_kernels import BOUND_WORDS, bound_views
from pktflow.backends.jit import mbuf_alloc_bulk

# A template row: the 42 header bytes padded to 48, whole uint64 words.
TEMPLATE_WORDS = 6

_SIG = (
    "void(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, uint64[:, ::1], int64, int64,"
    " int64)"
)


@njit(_SIG, cache=True, nogil=True)
def fill_frames(words, data, stride, handles, n, templates, size, first, timestamp):
    """Write ``size``-byte frames into the mbufs ``handles[:n]`` (just allocated: direct).

    Frame i gets the headers of flow ``(first + i) % flows``: a row of
    ``templates``, the header bytes padded to ``TEMPLATE_WORDS`` uint64
    words (bytes past the headers land in the payload, which keeps whatever
    the buffer held). Sets data_len, pkt_len and the timestamp (ns).
    """
    if templates.shape[1] != TEMPLATE_WORDS:
        raise ValueError("fill_frames: a template row is not TEMPLATE_WORDS words")
    flows = templates.shape[0]
    data64 = data.view(np.uint64)
    template_bytes = templates.view(np.uint8)
    flow = first % flows
    # Two passes, frames then header words, each row loaded whole before it
    # is stored: one pass alternating loads and stores between the data area
    # and the headers (which the compiler cannot prove apart) ran 4x slower.
    for i in range(n):
        h = np.uint64(handles[i])  # unsigned indices: no negative-index wraparound
        start = np.uint64(h * stride + (words[h, H_BUF] >> 16))
        f = np.uint64(flow)
        if start & np.uint64(7) == 0:
            w0, w1, w2 = templates[f, 0], templates[f, 1], templates[f, 2]
            w3, w4, w5 = templates[f, 3], templates[f, 4], templates[f, 5]
            at = start >> np.uint64(3)
            data64[at] = w0
            data64[at + np.uint64(1)] = w1
            data64[at + np.uint64(2)] = w2
            data64[at + np.uint64(3)] = w3
            data64[at + np.uint64(4)] = w4
            data64[at + np.uint64(5)] = w5
        else:  # a headroom that is not a multiple of 8: byte by byte
            for j in range(8 * TEMPLATE_WORDS):
                data[start + np.uint64(j)] = template_bytes[f, j]
        flow += 1
        if flow == flows:
            flow = 0
    ts_lo = np.uint32(timestamp & 0xFFFFFFFF)
    ts_hi = np.uint32(timestamp >> 32)
    for i in range(n):
        h = np.uint64(handles[i])
        words[h, H_DATA] = (words[h, H_DATA] & np.uint32(0xFFFF0000)) | np.uint32(size)
        words[h, H_PKT_LEN] = size
        words[h, H_TIMESTAMP] = ts_lo
        words[h, H_TIMESTAMP + 1] = ts_hi


# The descriptor (pktflow._arrays.descriptor): a bound mbuf call's
# (ring state, header words, cache row, out), then these.
_DATA, _DATA_LEN, _STRIDE, _TEMPLATES, _FLOWS, _SIZE = range(BOUND_WORDS, BOUND_WORDS + 6)
ALLOC_FRAMES_WORDS = BOUND_WORDS + 6


@njit("int64(int64, int64, int64)", cache=True)
def alloc_frames(address, n, first):
    """Allocate ``n`` mbufs into ``out`` (all or none, DPDK's alloc_bulk) and fill them,
    stamped with the time (time.time_ns()).

    One call per burst, with ints only, for pools whose free list is a
    jitted ring; ``address`` is the descriptor's (see above). Returns n, 0
    or mbuf_alloc_bulk's negative code.
    """
    timestamp = realtime_ns()
    ring, words, cache, out = bound_views(address)
    d = descriptor(address, ALLOC_FRAMES_WORDS)
    got = mbuf_alloc_bulk(ring, words, cache, out, n)
    # ERR_STALLED...: the mbufs are ours, the free list's publish is pending
    # (the caller finishes it): fill them too.
    if got > 0 or got <= ERR_STALLED:
        data = u8_at(d[_DATA], d[_DATA_LEN])
        templates = u64_rows_at(d[_TEMPLATES], d[_FLOWS], TEMPLATE_WORDS)
        fill_frames(words, data, np.int64(d[_STRIDE]), out, n, templates,
                    np.int64(d[_SIZE]), first, timestamp)  # fmt: skip
    return got
