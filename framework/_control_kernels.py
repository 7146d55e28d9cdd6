"""The control block's ordered word accesses (two tiny jitted calls).

A producer instance marks its ring link finished with ``store_flag``
(release) after its last enqueue; the consumer reads the flag with
``load_flag`` (acquire) *before* it reads the ring's count. The release
store pairs with the acquire load, so a consumer that sees the flag also
sees every handle enqueued before it: an empty count after a set flag
means the link is really drained.
"""

from __future__ import annotations

from numba import njit

from pktflow.backends._numba._atomics import load_acquire, store_release

_JIT = {"cache": True, "nogil": True}


@njit("void(uint32[::1], int64, int64)", **_JIT)
def store_flag(words, index, value):
    """Store ``words[index] = value`` with release."""
    store_release(words, index, value)


@njit("int64(uint32[::1], int64)", **_JIT)
def load_flag(words, index):
    """Load ``words[index]`` with acquire."""
    return load_acquire(words, index)
