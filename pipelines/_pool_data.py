"""A pool's data area as one flat uint8 array, for packet kernels (cached per pool)."""

from __future__ import annotations

import weakref

import numpy as np
import numpy.typing as npt

import pktflow

_flat: weakref.WeakKeyDictionary[pktflow.PktmbufPool, npt.NDArray[np.uint8]] = (
    weakref.WeakKeyDictionary()
)


def pool_data(pool: pktflow.PktmbufPool) -> npt.NDArray[np.uint8]:
    """Every buffer of ``pool`` in one array: mbuf h's buffer starts at ``h * pool._stride``."""
    data = _flat.get(pool)
    if data is None:
        data = _flat[pool] = np.frombuffer(pool._object_bytes, np.uint8)
    return data
