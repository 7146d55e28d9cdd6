"""The operations ``bind`` hands out, and how ``close`` disarms them.

A bound operation is a ``functools.partial`` over a backend's (often
compiled) batch function, its state and the caller's array, so a call
from Python is one C call with no Python frame in between. Checking an
"alive" flag inside the kernel would cost every call an argument (about
70 ns); instead the owner's ``close`` rewrites each partial it handed out,
in place, into a call that returns ``ERR_CLOSED``: the hot path is
unchanged, and a closed ring or pool is never reached through them again
(the partial drops its references to the state, so the memory can go).

Usage::

    calls = BoundCalls()
    get = calls.bind(cache_get, row, array)     # get(n) -> int
    calls.close()                               # get(n) == ERR_CLOSED from now on
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from .abc import ERR_CLOSED

__all__ = ["BoundCalls"]


def _closed_call(n: int) -> int:
    """What every operation of a closed owner does: nothing."""
    return ERR_CLOSED


class BoundCalls:
    """The bound operations one ring or pool handed out; ``close`` disarms them all.

    Usage: ``enqueue = calls.bind(impl.enqueue_burst, array); calls.close()``
    """

    __slots__ = ("_closed", "_lock", "_made")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: weakref.WeakSet[partial[int]] = weakref.WeakSet()
        self._closed = False

    def bind(
        self, func: Callable[..., int], *args: Any, keep: object = None
    ) -> Callable[[int], int]:
        """``func`` with ``args`` bound in front: a call that takes only ``n``.

        ``keep``: what the call needs alive besides its arguments (the
        arrays that address arguments point into), until it is disarmed.

        Usage: ``dequeue = calls.bind(impl.dequeue_burst, out)``
        """
        call: partial[int] = partial(func, *args)
        if keep is not None:
            call.keep = keep  # type: ignore[attr-defined]
        with self._lock:
            if self._closed:  # a bind racing the close: disarmed from the start
                _disarm(call)
            else:
                self._made.add(call)
        return call

    def close(self) -> None:
        """Make every operation bound here return ``ERR_CLOSED``; idempotent.

        Usage: ``calls.close()``
        """
        with self._lock:
            self._closed = True
            made, self._made = list(self._made), weakref.WeakSet()
        for call in made:
            _disarm(call)


def _disarm(call: partial[int]) -> None:
    # The pickle protocol's way to replace a partial's function and arguments
    # (typeshed does not declare it).
    call.__setstate__((_closed_call, (), None, None))  # type: ignore[attr-defined]
