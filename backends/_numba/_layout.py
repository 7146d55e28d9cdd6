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

Last come the two *waiter tables* (``WAIT_DATA`` then ``WAIT_ROOM``), each
``MAX_WAITERS`` entries of four words: the sleeper's pid, the low 32 bits of
its start time, its eventfd number and its waker's token (see
``pktflow._wakeup``). Bit i of a side's registration word says entry i is
in use; bit i of its need-wakeup word says waiter i is armed (asleep, or
about to be). They sit at the end, not in the header, so the slots keep
their offset: every cached kernel that inlines a ring operation (mempool,
mbuf, stage kernels) keeps addressing the right words, and numba's cache,
which only watches a function's own file, cannot serve a stale one.
"""

from __future__ import annotations

MAGIC = 0x524E4731  # "RNG1"
LAYOUT_VERSION = 3  # 2: abort word, holes counter, repair lock, reservation records
# 3: waiter tables; the need-wakeup words are masks of armed waiters

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
# Sleepers (byte 384). Need-wakeup masks: bit i set by waiter i of that side
# before it sleeps (``arm``), taken to 0 by the notifier that wakes it. Read
# by every notifier call, written only around a sleep, so the line stays
# shared-clean while nobody sleeps.
W_CONS_NEED_WAKEUP = 96  # WAIT_DATA: consumers asleep until a producer publishes
W_PROD_NEED_WAKEUP = 97  # WAIT_ROOM: producers asleep until a consumer frees room
W_WAITERS = 98  # word offset of the waiter tables (``waiter_tables``)
W_CONS_WAITERS = 99  # registered WAIT_DATA entries: bit i = entry i in use
W_PROD_WAITERS = 100  # registered WAIT_ROOM entries

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

# Waiter tables: entries per side, words per entry and their fields.
MAX_WAITERS = 32  # one bit each in a uint32 mask
WAITER_WORDS = 4
E_PID = 0  # 0: a free entry
E_STIME = 1
E_FD = 2
E_TOKEN = 3
WAITER_TABLES_WORDS = 2 * MAX_WAITERS * WAITER_WORDS

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


def waiter_tables(size: int, flags: int) -> int:
    """Word offset of the WAIT_DATA waiter table; the WAIT_ROOM one follows it."""
    sides = (0 if flags & _SP else 1) + (0 if flags & _SC else 1)
    return W_SLOTS + size + sides * RECORD_WORDS * size


def state_words(size: int, flags: int = 0) -> int:
    """Length in uint32 words of the state array of a ring with ``size`` slots."""
    return waiter_tables(size, flags) + WAITER_TABLES_WORDS
