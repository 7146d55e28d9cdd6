"""``l2fwd``: swap or set the Ethernet addresses in place, then forward (DPDK's l2fwd).

``swap: true`` exchanges destination and source; ``src_mac`` / ``dst_mac``
("aa:bb:cc:dd:ee:ff") set them (after a swap, when both are given). One
jitted call per burst rewrites the frames where they are: an mbuf shared by
fan-out (refcnt > 1) is rewritten for every consumer, as in DPDK.

Usage (YAML)::

    fwd: {type: l2fwd, inputs: [parse], swap: true}
    set: {type: l2fwd, inputs: [fwd], src_mac: "02:00:00:00:00:01"}
"""

from __future__ import annotations

import re

import numpy as np

import pktflow
from pktflow.backends._numba._ring import _compiled

from ._l2fwd_kernels import MODE_SET_DST, MODE_SET_SRC, MODE_SWAP, l2fwd_burst
from ._pool_data import PoolArraysCache

__all__ = ["L2fwd", "parse_mac"]

_l2fwd_burst = _compiled(l2fwd_burst)
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


def parse_mac(text: str, what: str = "a MAC address") -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` (or with ``-``) as 6 bytes; ``ConfigError`` otherwise.

    Usage: ``parse_mac("02:00:00:00:00:01")``
    """
    if not _MAC.fullmatch(text):
        raise pktflow.ConfigError(f"{what} is six hex bytes like 02:00:00:00:00:01, not {text!r}")
    return bytes.fromhex(text.replace(":", "").replace("-", ""))


class L2fwd(pktflow.Stage):
    """Swaps or sets the MAC addresses of every frame and emits it to ``out``.

    Options:
        swap: Exchange destination and source addresses.
        src_mac: Set the source address ("aa:bb:cc:dd:ee:ff").
        dst_mac: Set the destination address.
    """

    keeps_lengths = True

    def __init__(
        self,
        ctx: pktflow.StageContext,
        *,
        swap: bool = False,
        src_mac: str | None = None,
        dst_mac: str | None = None,
    ) -> None:
        super().__init__(ctx)
        if not swap and src_mac is None and dst_mac is None:
            raise pktflow.ConfigError("l2fwd needs swap: true, src_mac or dst_mac")
        macs = bytearray(12)
        mode = MODE_SWAP if swap else 0
        if dst_mac is not None:
            macs[0:6] = parse_mac(dst_mac, "dst_mac")
            mode |= MODE_SET_DST
        if src_mac is not None:
            macs[6:12] = parse_mac(src_mac, "src_mac")
            mode |= MODE_SET_SRC
        self.mode = mode
        self.macs = np.frombuffer(bytes(macs), np.uint8).copy()
        self._arrays = PoolArraysCache()

    def process(self, burst: pktflow.Burst) -> None:
        words, data, stride = self._arrays.of(burst.pool)
        if _l2fwd_burst(words, data, stride, burst.array, burst.n, self.mode, self.macs) < 0:
            raise pktflow.MbufError(
                f"l2fwd: a handle of the burst is not an mbuf of pool {burst.pool.name!r}"
            )
        self.emit(burst)
