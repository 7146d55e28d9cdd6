"""The ``pure`` backend: a ring in Python objects, for threads of one process.

No numba needed. Each side takes a lock when several threads may use it
(MP/MC); a single-producer or single-consumer side takes none, because the
GIL makes its counter update visible only after its slot writes. It is the
oracle the jitted backends are tested against.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import ClassVar

from pktflow._errors import PktflowValueError, RingError
from pktflow._wakeup import Waker
from pktflow.abc import ERR_COUNT, RING_F_SC_DEQ, RING_F_SP_ENQ, Backend, Ring, U32Array

_U32_MASK = 0xFFFFFFFF
MAX_WAITERS = 32  # per side, as the jitted rings' tables
_SIDES = ("WAIT_DATA", "WAIT_ROOM")


def _side_lock(single: bool) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext() if single else threading.Lock()


class PureRing(Ring):
    def __init__(self, name: str, size: int, capacity: int, flags: int) -> None:
        self.name, self.size, self.capacity, self.flags = name, size, capacity, flags
        self._slots = [0] * size
        self._mask = size - 1
        self._prod = 0  # the head and tail of each side coincide: a transfer
        self._cons = 0  # happens whole under that side's lock
        self._prod_lock = _side_lock(bool(flags & RING_F_SP_ENQ))
        self._cons_lock = _side_lock(bool(flags & RING_F_SC_DEQ))
        # Sleepers, per side: the Waker objects themselves (one process), the
        # need-wakeup mask as a one-item list the notifiers read without a
        # lock. Under the GIL each bytecode is sequentially consistent, which
        # is the full fence the handshake needs on both sides: a sleeper sets
        # its bit then re-reads the counters; a notifier's caller moved its
        # counter, then the notifier reads the mask.
        self._wakers: tuple[dict[int, Waker], dict[int, Waker]] = ({}, {})
        self._need: tuple[list[int], list[int]] = ([0], [0])
        self._wait_lock = threading.Lock()
        self._notifiers = (self._make_notifier(0), self._make_notifier(1))

    def _put(self, objs: U32Array, n: int, fixed: bool) -> int:
        if not 0 <= n <= len(objs):
            return ERR_COUNT
        with self._prod_lock:
            room = (self.capacity + self._cons - self._prod) & _U32_MASK
            k = n if n <= room else (0 if fixed else room)
            if k:
                first = self._prod & self._mask
                run = min(k, self.size - first)
                values = objs[:k].tolist()
                self._slots[first : first + run] = values[:run]
                self._slots[: k - run] = values[run:]
                self._prod = (self._prod + k) & _U32_MASK
            return k

    def _get(self, out: U32Array, n: int, fixed: bool) -> int:
        if not 0 <= n <= len(out):
            return ERR_COUNT
        with self._cons_lock:
            waiting = (self._prod - self._cons) & _U32_MASK
            k = n if n <= waiting else (0 if fixed else waiting)
            if k:
                first = self._cons & self._mask
                run = min(k, self.size - first)
                out[:run] = self._slots[first : first + run]
                out[run:k] = self._slots[: k - run]
                self._cons = (self._cons + k) & _U32_MASK
            return k

    def enqueue_bulk(self, objs: U32Array, n: int) -> int:
        return self._put(objs, n, True)

    def enqueue_burst(self, objs: U32Array, n: int) -> int:
        return self._put(objs, n, False)

    def dequeue_bulk(self, out: U32Array, n: int) -> int:
        return self._get(out, n, True)

    def dequeue_burst(self, out: U32Array, n: int) -> int:
        return self._get(out, n, False)

    def enqueue(self, handle: int) -> bool:
        with self._prod_lock:
            if (self._prod - self._cons) & _U32_MASK >= self.capacity:
                return False
            self._slots[self._prod & self._mask] = handle
            self._prod = (self._prod + 1) & _U32_MASK
            return True

    def dequeue(self) -> int | None:
        with self._cons_lock:
            if self._prod == self._cons:
                return None
            handle = self._slots[self._cons & self._mask]
            self._cons = (self._cons + 1) & _U32_MASK
            return handle

    def count(self) -> int:
        return (self._prod - self._cons) & _U32_MASK

    def reset(self, counter_start: int = 0) -> None:
        with self._prod_lock, self._cons_lock:
            self._prod = self._cons = counter_start & _U32_MASK

    # -- sleeping ---------------------------------------------------------------

    def _waker(self, side: int, index: int) -> Waker:
        waker = self._wakers[side].get(index)
        if waker is None:
            raise PktflowValueError(
                f"ring {self.name!r}: {index} is not a waiter of {_SIDES[side]} "
                "(add_waiter returns the index)"
            )
        return waker

    def add_waiter(self, side: int, waker: Waker) -> int:
        if waker.closed:
            raise PktflowValueError(f"{waker!r} is closed")
        with self._wait_lock:
            table = self._wakers[side]
            index = next((i for i in range(MAX_WAITERS) if i not in table), -1)
            if index < 0:
                raise RingError(
                    f"ring {self.name!r}: all {MAX_WAITERS} waiter entries of {_SIDES[side]} "
                    "are in use"
                )
            table[index] = waker
        waker.on_close(lambda: self._drop(side, index, waker))
        return index

    def _drop(self, side: int, index: int, waker: Waker) -> None:
        if self._wakers[side].get(index) is waker:
            self.remove_waiter(side, index)

    def remove_waiter(self, side: int, index: int) -> None:
        self._waker(side, index)
        with self._wait_lock:
            self._need[side][0] &= ~(1 << index)
            del self._wakers[side][index]

    def _still_waiting(self, side: int) -> bool:
        if side == 0:
            return self._prod == self._cons  # empty
        return (self.capacity + self._cons - self._prod) & _U32_MASK == 0  # no room

    def arm(self, side: int, index: int) -> bool:
        self._waker(side, index)
        bit = 1 << index
        with self._wait_lock:
            self._need[side][0] |= bit
        if self._still_waiting(side):
            return True
        with self._wait_lock:
            self._need[side][0] &= ~bit
        return False

    def disarm(self, side: int, index: int) -> None:
        self._waker(side, index)
        with self._wait_lock:
            self._need[side][0] &= ~(1 << index)

    def _wake(self, side: int) -> int:
        with self._wait_lock:  # take the mask: one signal per sleep
            need = self._need[side]
            taken, need[0] = need[0], 0
            wakers = [self._wakers[side].get(i) for i in range(MAX_WAITERS) if taken >> i & 1]
        woken = 0
        for waker in wakers:
            if waker is not None and not waker.closed:
                waker.signal()
                woken += 1
        return woken

    def _make_notifier(self, side: int) -> Callable[[], int]:
        need, wake = self._need[side], self._wake

        def notify() -> int:
            return wake(side) if need[0] else 0

        return notify

    def notifier(self, side: int) -> Callable[[], int]:
        return self._notifiers[side]

    def close(self, unlink: bool) -> None:
        # Nothing to release: the slots go with the last facade using them
        # (an in-process lookup keeps working, as an attached shared ring does).
        pass


class PureBackend(Backend):
    name: ClassVar[str] = "pure"
    description: ClassVar[str] = "Python list and locks; threads of one process; no numba"

    def create_ring(self, name: str, size: int, capacity: int, flags: int) -> Ring:
        return PureRing(name, size, capacity, flags)
