"""The ``l2fwd`` stage's kernel: swap or set the Ethernet addresses of a burst in place."""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._burst_checks import check_burst
from pktflow._mbuf_layout import H_BUF, H_DATA, H_DIRECT, H_DIRECT_POOL, P_POOL_ID

__all__ = ["MODE_SET_DST", "MODE_SET_SRC", "MODE_SWAP", "l2fwd_burst"]

MODE_SWAP = 1  # exchange destination and source (before any set)
MODE_SET_SRC = 2
MODE_SET_DST = 4
_ETH_ADDRS = 12  # destination (0..5) and source (6..11)


@njit("int64(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, int64, uint8[::1])",
      cache=True, nogil=True)  # fmt: skip
def l2fwd_burst(words, data, stride, handles, n, mode, macs):
    """Rewrite the MAC addresses of ``handles[:n]`` in place; returns how many were rewritten.

    ``mode`` is ``MODE_*`` bits; ``macs`` holds the destination (bytes 0..5)
    then the source (6..11) to set. A frame shorter than 12 bytes, or a
    clone of another pool's buffer (unreachable from ``data``), is left as
    it is. ``ERR_COUNT`` for ``n`` outside ``0..len(handles)``,
    ``ERR_FOREIGN`` for a handle not below pool_n, touching nothing.
    """
    checked = check_burst(words, handles, n)
    if checked:
        return checked
    pool_n = np.int64(words.shape[0]) - 1
    pool_id = words[pool_n, P_POOL_ID]
    data_size = np.int64(data.shape[0])
    done = np.int64(0)
    for i in range(n):
        m = np.uint64(handles[i])
        direct = np.int64(words[m, H_DIRECT])
        if words[m, H_DIRECT_POOL] != pool_id or direct >= pool_n:
            continue
        dlen = np.int64(words[m, H_DATA]) & 0xFFFF
        b = direct * stride + (np.int64(words[m, H_BUF]) >> 16)
        if dlen < _ETH_ADDRS or b + _ETH_ADDRS > data_size:
            continue
        at = np.uint64(b)
        if mode & MODE_SWAP:
            for j in range(6):
                t = data[at + j]
                data[at + j] = data[at + 6 + j]
                data[at + 6 + j] = t
        if mode & MODE_SET_DST:
            for j in range(6):
                data[at + j] = macs[j]
        if mode & MODE_SET_SRC:
            for j in range(6, _ETH_ADDRS):
                data[at + j] = macs[j]
        done += 1
    return done
