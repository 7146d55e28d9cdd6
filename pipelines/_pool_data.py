"""What packet kernels need of an mbuf pool, cached per stage: words, data, stride."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

import pktflow


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

    __slots__ = ("_arrays", "_pool")

    def __init__(self) -> None:
        self._pool: pktflow.PktmbufPool | None = None
        self._arrays: PoolArrays | None = None

    def of(self, pool: pktflow.PktmbufPool) -> PoolArrays:
        if pool is not self._pool or self._arrays is None:
            data = np.frombuffer(pool._object_bytes, np.uint8)
            self._pool, self._arrays = pool, PoolArrays(pool.header_words, data, pool._stride)
        return self._arrays
