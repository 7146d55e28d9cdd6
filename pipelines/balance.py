"""``balance``: a symmetric RSS hash per packet, then ``ways`` outputs by hash.

Each packet's 5-tuple goes through RSS's Toeplitz hash with the symmetric
key 0x6d5a... (``_balance_kernels.py``): a flow always lands on one output,
and both of its directions on the same one. The hash is written into the
mbuf's ``hash`` field (with DPDK's ``RX_RSS_HASH`` flag), the output is
``hash % ways``. It reads the layers ``parse`` found, so put ``parse``
upstream: frames it did not parse (packet type 0) and non-IP frames hash
to 0 and go to ``out0``; fragments and protocols without ports hash on the
addresses alone. One kernel call per burst hashes and groups the handles;
each non-empty group is emitted as one burst.

Usage (YAML)::

    bal: {type: balance, inputs: [parse], ways: 2}
    a:   {type: counter, inputs: [bal.out0]}
    b:   {type: counter, inputs: [bal.out1]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import pktflow
from pktflow.backends._numba._ring import _compiled

from ._balance_kernels import TABLE, balance_burst
from ._pool_data import PoolArraysCache

__all__ = ["MAX_WAYS", "Balance"]

_balance_burst = _compiled(balance_burst)
MAX_WAYS = 1024


def _outputs(ways: object) -> tuple[str, ...]:
    if isinstance(ways, bool) or not isinstance(ways, int) or not 1 <= ways <= MAX_WAYS:
        raise pktflow.ConfigError(f"ways is an integer in 1..{MAX_WAYS}, not {ways!r}")
    return tuple(f"out{i}" for i in range(ways))


class Balance(pktflow.Stage):
    """Sends each flow to one of ``out0`` ... ``out{ways-1}`` by a symmetric RSS hash.

    Options:
        ways: Number of outputs, 1..1024.
    """

    outputs: tuple[str, ...] = ("out0", "out1")  # ways: 2; an instance: out0 .. out{ways-1}
    keeps_lengths = True

    @classmethod
    def outputs_for(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        return _outputs(options.get("ways", 2))

    def __init__(self, ctx: pktflow.StageContext, *, ways: int = 2) -> None:
        self.outputs = _outputs(ways)
        super().__init__(ctx)
        self.ways = ways
        self._arrays = PoolArraysCache()
        self._counts = np.zeros(2 * ways, dtype=np.int64)  # packets, then bytes, per output
        self._scratch = np.empty(2 * ctx.burst_size, dtype=np.uint32)

    def process(self, burst: pktflow.Burst) -> None:
        words, data, stride = self._arrays.of(burst.pool)
        n = burst.n
        if self._scratch.shape[0] < 2 * n:
            self._scratch = np.empty(2 * burst.capacity, dtype=np.uint32)
        done = _balance_burst(words, data, stride, burst.array, n, self.ways, TABLE,
                              self._scratch, self._counts)  # fmt: skip
        if done < 0:
            raise pktflow.MbufError(
                f"balance: a handle of the burst is not an mbuf of pool {burst.pool.name!r}"
            )
        counts = self._counts.tolist()
        start = 0
        for way, output in enumerate(self.outputs):
            count = counts[way]
            if count == n:
                self.emit(burst, output)
                return
            if count:
                part = burst.take(slice(start, start + count))
                part.nbytes = counts[self.ways + way]  # counted by the kernel
                self.emit(part, output)
                start += count
