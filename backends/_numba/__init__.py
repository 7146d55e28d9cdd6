"""The ``numba`` backend: rte_ring's lock-free kernels over a private numpy array."""

from __future__ import annotations

from typing import ClassVar

from pktflow.abc import Backend, Ring

from ._ring import JitRing, numba_missing


class NumbaBackend(Backend):
    name: ClassVar[str] = "numba"
    description: ClassVar[str] = "lock-free MP/MC kernels (atomic CAS, nogil) in process memory"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return numba_missing()

    def create_ring(self, name: str, size: int, capacity: int, flags: int) -> Ring:
        return JitRing.private(name, size, capacity, flags)
