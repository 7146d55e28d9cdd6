"""The ring's state array: one uint32 array holding the header and the slots.

The numba backend keeps it in process memory, the hugepage backend in a
shared zone; the same kernels run over both. Other processes read this
layout, so any change to it bumps ``LAYOUT_VERSION``.

Word offsets (uint32 units). Producer and consumer counters sit two cache
lines apart so that neither the line nor its prefetch-paired neighbour is
shared between the two sides (DPDK pads the same way).
"""

from __future__ import annotations

MAGIC = 0x524E4731  # "RNG1"
LAYOUT_VERSION = 1

# Line 0: immutable after creation.
W_MAGIC = 0
W_VERSION = 1
W_SIZE = 2  # number of slots, a power of two
W_MASK = 3  # size - 1
W_CAPACITY = 4  # usable slots: size - 1, or exactly count with RING_F_EXACT_SZ
W_FLAGS = 5

# Producer side (byte 128).
W_PROD_HEAD = 32
W_PROD_TAIL = 33
# Consumer side (byte 256).
W_CONS_HEAD = 64
W_CONS_TAIL = 65
# Waiters (byte 384): set by a consumer that is about to sleep, cleared by it on wake.
W_CONS_NEED_WAKEUP = 96
W_PROD_NEED_WAKEUP = 97

HEADER_WORDS = 128  # 512 bytes, a multiple of the cache line
W_SLOTS = HEADER_WORDS


def state_words(size: int) -> int:
    """Length in uint32 words of the state array of a ring with ``size`` slots."""
    return HEADER_WORDS + size
