"""``parse``: Ethernet, VLAN, IPv4, IPv6, UDP, TCP, ICMP, jitted (DPDK's packet types).

Writes DPDK's ``RTE_PTYPE_*`` bits into ``packet_type`` and the header
lengths into ``l2_len``/``l3_len``/``l4_len`` (DPDK's tx_offload fields),
then emits well-formed frames to ``out`` and truncated or malformed ones
to ``invalid``. One kernel call per burst.

Usage (YAML)::

    parse: {type: parse, inputs: [gen]}
    bad:   {type: drop, inputs: [parse.invalid]}
"""

from __future__ import annotations

import pktflow
from pktflow.backends._numba._ring import _compiled

from ._parse_kernels import parse_burst, parse_burst_at
from ._pool_data import PoolArraysCache

__all__ = ["Parse"]

# Arguments typed by construction (runtime bursts, pool views): no dispatch.
_parse_burst = _compiled(parse_burst)
_parse_burst_at = _compiled(parse_burst_at)


class Parse(pktflow.Stage):
    """Classifies each frame; ``out`` for well-formed ones, ``invalid`` for the rest."""

    outputs = ("out", "invalid")
    keeps_lengths = True

    def __init__(self, ctx: pktflow.StageContext) -> None:
        super().__init__(ctx)
        self._arrays = PoolArraysCache()
        # Whether ``process`` may do what Stage.emit does itself (no subclass changed it).
        self._emit_inline = type(self).emit is pktflow.Stage.emit

    def process(self, burst: pktflow.Burst) -> None:
        pool = burst.pool
        arrays = self._arrays
        if pool is not arrays._pool:
            arrays.of(pool)
        n = burst.n
        handles = burst._address
        valid = (
            _parse_burst_at(arrays.address, handles, n) if handles
            else _parse_burst(*arrays.of(pool), burst.array, n)
        )  # fmt: skip
        if valid == n:
            if n and self._emit_inline:
                # Stage.emit, inlined (lengths kept): the whole burst goes on through "out".
                burst._sent = True
                self.stats.handed += n
                self._outlets["out"](burst)
            else:
                self.emit(burst)
        elif valid >= 0:
            # The kernel put the valid handles first: split there.
            self.emit(burst.take(slice(0, valid)))
            self.emit(burst.take(slice(valid, n)), "invalid")
        else:
            raise pktflow.MbufError(
                f"parse: a handle of the burst is not an mbuf of pool {burst.pool.name!r}"
            )
