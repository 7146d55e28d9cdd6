"""The ring's state array: one uint32 array holding the header, the slots and the records.

The numba backend keeps it in process memory, the hugepage backend in a
shared zone; the same kernels run over both. Other processes read this
layout, so any change to it bumps ``LAYOUT_VERSION``.

Word offsets (uint32 units). Producer and consumer counters sit two cache
lines apart so that neither the line nor its prefetch-paired neighbour is
shared between the two sides (DPDK pads the same way).

After the slots come the *reservation records* of each multi-producer /
multi-consumer side (none for SP/SC: a single owner never makes anyone
wait). A reservation of ``k`` slots starting at head ``h`` is recorded at
record ``h & mask`` of its side: four words, ``R_START`` (the full 32-bit
head, written last with release, so a record is valid only for the lap it
names), ``R_LEN`` (``k``, with ``R_COPIED`` set once the handles are copied),
and the owner's pid and start time. A survivor stalled behind the
reservation at its side's tail reads the record there, and when the owner is
dead publishes past it (see ``pktflow.backends._numba._repair``).
"""

from __future__ import annotations

MAGIC = 0x524E4731  # "RNG1"
LAYOUT_VERSION = 2  # 2: abort word, holes counter, repair lock, reservation records

# Line 0: read-mostly (every transfer reads size and capacity here).
W_MAGIC = 0
W_VERSION = 1
W_SIZE = 2  # number of slots, a power of two
W_MASK = 3  # size - 1
W_CAPACITY = 4  # usable slots: size - 1, or exactly count with RING_F_EXACT_SZ
W_FLAGS = 5
# Non-zero: every wait returns at once (ERR_ABORTED, or ERR_STALLED when the
# caller's handles have already moved). Written by ``Ring.abort()``.
W_ABORT = 6
# Slots a repair filled with HOLE (a dead producer had reserved them but not
# finished copying): consumers drop HOLE values while this is non-zero.
W_HOLES = 7
# Pid of the process repairing a dead reservation (0: none): one repairer at a time.
W_REPAIR = 8
# Reservations repaired so far (diagnostics: ``Ring.repairs``).
W_REPAIRED = 9
# Word offsets of each side's reservation records (0: that side is single).
W_PROD_REC = 10
W_CONS_REC = 11

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

# The value a repaired hole holds; never a handle a consumer receives.
HOLE = 0xFFFFFFFF

# Reservation records: words per record and their fields.
RECORD_WORDS = 4
R_START = 0
R_LEN = 1
R_PID = 2
R_STIME = 3
R_COPIED = 0x80000000  # in R_LEN: the copy is complete (capacity < 2**30 leaves the bit free)

_SP = 0x1  # pktflow.abc.RING_F_SP_ENQ (the layout must not import upward)
_SC = 0x2  # pktflow.abc.RING_F_SC_DEQ


def prod_records(size: int, flags: int) -> int:
    """Word offset of the producer records (0: single producer, none)."""
    return 0 if flags & _SP else W_SLOTS + size


def cons_records(size: int, flags: int) -> int:
    """Word offset of the consumer records (0: single consumer, none)."""
    if flags & _SC:
        return 0
    return W_SLOTS + size + (0 if flags & _SP else RECORD_WORDS * size)


def state_words(size: int, flags: int = 0) -> int:
    """Length in uint32 words of the state array of a ring with ``size`` slots."""
    sides = (0 if flags & _SP else 1) + (0 if flags & _SC else 1)
    return HEADER_WORDS + size + sides * RECORD_WORDS * size
