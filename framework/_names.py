"""The creators of this process's named objects, so private ones can be looked up.

Shared objects are found by name in shared memory; private ones (the
``numba`` and ``pure`` backends) only here. Entries are weak: an object
dropped without ``close()`` frees its name.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from ._errors import ExistsError

T = TypeVar("T")


class LocalNames(Generic[T]):
    """Name -> creating object, for one kind of object (rings, mempools)."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._lock = threading.Lock()
        self._objects: weakref.WeakValueDictionary[str, T] = weakref.WeakValueDictionary()

    def register(self, name: str, obj: T, create: Callable[[], object]) -> None:
        """Run ``create()`` and record ``obj`` under ``name``; ExistsError if taken.

        Holding the lock across ``create`` keeps two threads from both
        creating the same name.
        """
        with self._lock:
            if name in self._objects:
                raise ExistsError(f"a {self._kind} named {name!r} already exists in this process")
            create()
            self._objects[name] = obj

    def get(self, name: str) -> T | None:
        with self._lock:
            return self._objects.get(name)

    def forget(self, name: str, obj: T) -> None:
        with self._lock:
            if self._objects.get(name) is obj:
                del self._objects[name]
