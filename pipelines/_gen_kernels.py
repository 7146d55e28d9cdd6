"""The generator's kernel: frames from per-flow header templates into fresh mbufs."""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._mbuf_layout import H_BUF, H_DATA, H_PKT_LEN, H_TIMESTAMP

_SIG = "void(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, uint8[:, ::1], int64, int64, int64)"


@njit(_SIG, cache=True, nogil=True)
def fill_frames(words, data, stride, handles, n, templates, size, first, timestamp):
    """Write ``size``-byte frames into the mbufs ``handles[:n]`` (just allocated: direct).

    Frame i gets the headers of flow ``(first + i) % flows`` (a row of
    ``templates``); the payload keeps whatever the buffer held. Sets
    data_len, pkt_len and the timestamp (ns).
    """
    flows = templates.shape[0]
    header_len = templates.shape[1]
    ts_lo = np.uint32(timestamp & 0xFFFFFFFF)
    ts_hi = np.uint32(timestamp >> 32)
    flow = first % flows
    for i in range(n):
        h = np.int64(handles[i])
        start = h * stride + np.int64(words[h, H_BUF] >> 16)
        for j in range(header_len):
            data[start + j] = templates[flow, j]
        words[h, H_DATA] = (words[h, H_DATA] & np.uint32(0xFFFF0000)) | np.uint32(size)
        words[h, H_PKT_LEN] = size
        words[h, H_TIMESTAMP] = ts_lo
        words[h, H_TIMESTAMP + 1] = ts_hi
        flow += 1
        if flow == flows:
            flow = 0
