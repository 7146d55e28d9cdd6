"""The sleepers of one jitted ring: registering wakers, arming them, waking them.

The handshake itself is jitted (``_wakeup_kernels``); this is the Python
around it: which entries this process owns, the notifier partials, and the
slow path a notifier takes when some waiter is armed (``wake``: signal each
taken waiter through ``pktflow._wakeup``, reclaiming the entries of dead
processes).
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from pktflow._errors import PktflowValueError, RingError
from pktflow._wakeup import Waker, forget, signal_waiter, start_time
from pktflow.abc import ERR_CORRUPT, U32Array

from . import _wakeup_kernels as wk
from ._atomics import set_wake_handler
from ._layout import (
    E_FD,
    E_PID,
    E_STIME,
    E_TOKEN,
    HEADER_WORDS,
    LAYOUT_VERSION,
    MAGIC,
    MAX_WAITERS,
    W_FLAGS,
    W_MAGIC,
    W_SIZE,
    W_VERSION,
    W_WAITERS,
    WAITER_WORDS,
    state_words,
)

_SIDES = ("WAIT_DATA", "WAIT_ROOM")

# Address of each live state array -> the array: the wake handler gets only
# the address from jitted code. Weak, so a ring's memory goes with the ring.
_states: weakref.WeakValueDictionary[int, np.ndarray[Any, Any]] = weakref.WeakValueDictionary()
_me: tuple[int, int] = (0, 0)


def _identity() -> tuple[int, int]:
    """(pid, start time) of this process, computed once per process."""
    global _me
    pid = os.getpid()
    if _me[0] != pid:
        _me = (pid, start_time(pid))
    return _me


def _compiled(dispatcher: Any) -> Callable[..., Any]:
    (signature,) = dispatcher.signatures
    return dispatcher.overloads[signature].entry_point  # type: ignore[no-any-return]


def _entries(state: U32Array, side: int) -> int:
    return int(state[W_WAITERS]) + side * MAX_WAITERS * WAITER_WORDS


def _reclaim_dead(state: U32Array, side: int) -> int:
    """Free the entries of ``side`` whose process is gone; how many."""
    used = int(wk.registered(state, side))
    base = _entries(state, side)
    freed = 0
    for index in range(MAX_WAITERS):
        if not used >> index & 1:
            continue
        entry = base + index * WAITER_WORDS
        pid, stime, fd, token = (int(v) for v in state[entry : entry + WAITER_WORDS])
        if pid == 0 or pid == os.getpid():
            continue  # being written, or ours (our own entries go through remove)
        if start_time(pid) != stime and wk.release_waiter(state, side, index, token):
            forget(pid, stime, fd, token)
            freed += 1
    return freed


def _state_at(address: int) -> U32Array | None:
    """The state array at ``address``, for jitted code notifying a ring no handle here set up.

    Not cached: the mapping belongs to whoever passed the array in.
    """
    header = np.ctypeslib.as_array((ctypes.c_uint32 * HEADER_WORDS).from_address(address))
    if int(header[W_MAGIC]) != MAGIC or int(header[W_VERSION]) != LAYOUT_VERSION:
        return None
    words = state_words(int(header[W_SIZE]), int(header[W_FLAGS]) & 0x7)
    return np.ctypeslib.as_array((ctypes.c_uint32 * words).from_address(address))


def wake(address: int, side: int, mask: int) -> int:
    """The notifiers' slow path: signal the waiters in ``mask``; how many were reached."""
    state = _states.get(address)
    if state is None:
        state = _state_at(address)
        if state is None:
            return 0
    base = _entries(state, side)
    woken = 0
    while mask:
        index = (mask & -mask).bit_length() - 1
        mask &= mask - 1
        entry = base + index * WAITER_WORDS
        pid = int(state[entry + E_PID])
        if pid == 0:
            continue  # removed since it armed
        stime, fd, token = (
            int(state[entry + E_STIME]), int(state[entry + E_FD]), int(state[entry + E_TOKEN])
        )  # fmt: skip
        if signal_waiter(pid, stime, fd, token):
            woken += 1
        elif wk.release_waiter(state, side, index, token):
            forget(pid, stime, fd, token)  # its process died: the entry is free again
    return woken


set_wake_handler(wake)


class Waiters:
    """This process's sleepers on one jitted ring, and the ring's notifiers.

    Usage: ``waiters = Waiters(state, "rx0"); i = waiters.add(WAIT_DATA, waker)``
    """

    def __init__(self, state: U32Array, name: str) -> None:
        self._state = state
        self._name = name
        self._mine: dict[tuple[int, int], int] = {}  # (side, index) -> token
        _states[state.ctypes.data] = state
        self._arm = (_compiled(wk.arm_data), _compiled(wk.arm_room))
        self._disarm = _compiled(wk.disarm)
        self._notifiers = (
            partial(_compiled(wk.notify_data), state),
            partial(_compiled(wk.notify_room), state),
        )

    @staticmethod
    def initialise(state: U32Array, base: int) -> None:
        """Write empty waiter tables at ``base`` (a new ring, not yet published)."""
        wk.init_waiters(state, base)

    def _token(self, side: int, index: int) -> int:
        token = self._mine.get((side, index))
        if token is None:
            raise PktflowValueError(
                f"ring {self._name!r}: {index} is not a waiter this process added on "
                f"{_SIDES[side]} (add_waiter returns the index)"
            )
        return token

    def add(self, side: int, waker: Waker) -> int:
        if waker.closed or waker.pid != os.getpid():
            raise PktflowValueError(f"{waker!r} is closed or belongs to another process")
        pid, stime = _identity()
        for _ in range(2):
            index = int(wk.add_waiter(self._state, side, pid, stime, waker.eventfd, waker.token))
            if index == ERR_CORRUPT:
                raise RingError(f"ring {self._name!r} has a corrupt waiter-table offset")
            if index >= 0:
                self._mine[(side, index)] = waker.token
                waker.on_close(partial(_drop_on_close, weakref.ref(self), side, index, waker.token))
                return index
            if not _reclaim_dead(self._state, side):
                break
        raise RingError(
            f"ring {self._name!r}: all {MAX_WAITERS} waiter entries of {_SIDES[side]} are "
            "in use by live processes"
        )

    def remove(self, side: int, index: int) -> None:
        token = self._token(side, index)
        del self._mine[(side, index)]
        wk.release_waiter(self._state, side, index, token)

    def arm(self, side: int, index: int) -> bool:
        self._token(side, index)
        return bool(self._arm[side](self._state, index))

    def disarm(self, side: int, index: int) -> None:
        self._token(side, index)
        self._disarm(self._state, side, index)

    def notifier(self, side: int) -> Callable[[], int]:
        return self._notifiers[side]

    def close(self) -> None:
        """Remove every waiter this handle added (the ring keeps no trace of them)."""
        for (side, index), token in list(self._mine.items()):
            wk.release_waiter(self._state, side, index, token)
        self._mine.clear()
        _states.pop(self._state.ctypes.data, None)


def _drop_on_close(ref: weakref.ref[Waiters], side: int, index: int, token: int) -> None:
    waiters = ref()
    if waiters is not None and waiters._mine.get((side, index)) == token:
        waiters.remove(side, index)
