"""The generator's kernels: frames from per-flow header templates into fresh mbufs."""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._mbuf_layout import H_BUF, H_DATA, H_PKT_LEN, H_TIMESTAMP
from pktflow.backends.jit import mbuf_alloc_bulk

_SIG = (
    "void(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, uint64[:, ::1], int64, int64,"
    " int64)"
)


@njit(_SIG, cache=True, nogil=True)
def fill_frames(words, data, stride, handles, n, templates, size, first, timestamp):
    """Write ``size``-byte frames into the mbufs ``handles[:n]`` (just allocated: direct).

    Frame i gets the headers of flow ``(first + i) % flows``: a row of
    ``templates``, the header bytes padded to whole uint64 words, copied
    word by word (bytes past the headers land in the payload, which keeps
    whatever the buffer held). Sets data_len, pkt_len and the timestamp (ns).
    """
    flows = templates.shape[0]
    template_words = templates.shape[1]
    data64 = data.view(np.uint64)
    ts_lo = np.uint32(timestamp & 0xFFFFFFFF)
    ts_hi = np.uint32(timestamp >> 32)
    flow = first % flows
    for i in range(n):
        h = np.int64(handles[i])
        start = h * stride + np.int64(words[h, H_BUF] >> 16)
        if start & 7 == 0:
            at = start >> 3
            for j in range(template_words):
                data64[at + j] = templates[flow, j]
        else:  # a headroom that is not a multiple of 8: byte by byte
            row = templates[flow].view(np.uint8)
            for j in range(8 * template_words):
                data[start + j] = row[j]
        words[h, H_DATA] = (words[h, H_DATA] & np.uint32(0xFFFF0000)) | np.uint32(size)
        words[h, H_PKT_LEN] = size
        words[h, H_TIMESTAMP] = ts_lo
        words[h, H_TIMESTAMP + 1] = ts_hi
        flow += 1
        if flow == flows:
            flow = 0


_SIG_ALLOC = (
    "int64(uint32[::1], uint32[:, ::1], uint32[::1], uint8[::1], int64, uint64[:, ::1], int64,"
    " uint32[::1], int64, int64, int64)"
)


@njit(_SIG_ALLOC, cache=True, nogil=True)
def alloc_frames(ring, words, cache, data, stride, templates, size, out, n, first, timestamp):
    """Allocate ``n`` mbufs into ``out`` (all or none, DPDK's alloc_bulk) and fill them.

    One call per burst for pools whose free list is a jitted ring: ``ring``
    is its state, ``cache`` the calling lcore's cache row. Returns n or 0.
    """
    got = mbuf_alloc_bulk(ring, words, cache, out, n)
    if got > 0:
        fill_frames(words, data, stride, out, got, templates, size, first, timestamp)
    return got
