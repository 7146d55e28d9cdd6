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

from ._parse_kernels import parse_burst
from ._pool_data import pool_data

__all__ = ["Parse"]


class Parse(pktflow.Stage):
    """Classifies each frame; ``out`` for well-formed ones, ``invalid`` for the rest."""

    outputs = ("out", "invalid")
    keeps_lengths = True

    def process(self, burst: pktflow.Burst) -> None:
        pool = burst.pool
        n = burst.n
        valid = parse_burst(pool.header_words, pool_data(pool), pool._stride, burst.array, n)
        if valid == n:
            self.emit(burst)
            return
        # The kernel put the valid handles first: split there.
        self.emit(burst.take(slice(0, valid)))
        self.emit(burst.take(slice(valid, n)), "invalid")
