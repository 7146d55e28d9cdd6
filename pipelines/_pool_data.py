"""What packet kernels need of an mbuf pool, cached per stage: words, data, stride."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

import pktflow
from pktflow._arrays import descriptor


class PoolArrays(NamedTuple):
    """A pool's header words and its data area as one flat uint8 array.

    Mbuf h's buffer starts at ``data[h * stride]``; the arrays are views of
    the pool's zone, made once.
    """

    words: npt.NDArray[np.uint32]
    data: npt.NDArray[np.uint8]
    stride: int


class PoolArraysCache:
    """The ``PoolArrays`` of the pool a stage saw last (stages mostly see one).

    Usage: ``words, data, stride = self._arrays.of(burst.pool)``
    """

    __slots__ = ("_arrays", "_described", "_pool", "address")

    def __init__(self) -> None:
        self._pool: pktflow.PktmbufPool | None = None
        self._arrays: PoolArrays | None = None
        # descriptor(words, data, stride) of the same pool, for kernels called
        # with addresses (see backends/_numba/_address_kernels.py), and its address.
        self._described: npt.NDArray[np.uint64] | None = None
        self.address = 0

    def of(self, pool: pktflow.PktmbufPool) -> PoolArrays:
        if pool is not self._pool or self._arrays is None:
            data = np.frombuffer(pool._object_bytes, np.uint8)
            arrays = PoolArrays(pool.header_words, data, pool._stride)
            self._described = descriptor(*arrays)
            self._pool, self._arrays = pool, arrays
            self.address = self._described.ctypes.data
        return self._arrays
