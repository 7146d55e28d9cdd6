"""The argument check every packet kernel makes first: a count within the
array and handles that are rows of this pool (so no read leaves the zone)."""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow.abc import ERR_COUNT, ERR_FOREIGN


@njit(inline="always")
def check_burst(words, handles, n):
    """0 when ``handles[:n]`` are handles of the pool whose header words are ``words``;
    ``ERR_COUNT`` for n outside 0..len(handles), ``ERR_FOREIGN`` for a handle past it."""
    if n < 0 or n > handles.shape[0]:
        return ERR_COUNT
    pool_n = np.int64(words.shape[0]) - 1
    for i in range(n):
        if np.int64(handles[i]) >= pool_n:
            return ERR_FOREIGN
    return 0
