"""Byte-order helpers the packet kernels inline (pcap records, TPACKET frames, remote edges).

Numba's cache keys a kernel on its own file only: a change here needs the
kernels that inline it recompiled (clear their cache), so it stays this small.
"""

from __future__ import annotations

from numba import njit


@njit(inline="always")
def put_u32_le(out, p, value):
    """Store ``value`` as 4 little-endian bytes at ``out[p:p + 4]`` (a uint8 array)."""
    out[p] = value & 0xFF
    out[p + 1] = (value >> 8) & 0xFF
    out[p + 2] = (value >> 16) & 0xFF
    out[p + 3] = (value >> 24) & 0xFF
