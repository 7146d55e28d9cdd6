"""The ``hugepage`` backend: the jitted ring in a shared zone, attachable by name.

The zone is a hugetlbfs file when 2 MiB pages are free, else a file in
/dev/shm; a process anywhere on the machine attaches with
``pktflow.Ring.lookup(name)`` (spawned children included). The ring's byte
layout is ``pktflow.backends._numba._layout`` (versioned).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pktflow._errors import NotFoundError, PktflowValueError
from pktflow._memory import Zone, hugepage_info, is_zone_name, zone_exists
from pktflow.abc import Backend, Ring
from pktflow.backends._numba._ring import JitRing, numba_missing, state_words

ZONE_KIND = "ring"


class HugepageBackend(Backend):
    name: ClassVar[str] = "hugepage"
    shared: ClassVar[bool] = True
    description: ClassVar[str] = "lock-free kernels in shared huge-page memory, across processes"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return numba_missing()

    def create_ring(self, name: str, size: int, capacity: int, flags: int) -> Ring:
        words = state_words(size, flags)
        zone = Zone.create(name, words * 4, shared=True, hugepages="auto", kind=ZONE_KIND)
        try:
            ring = JitRing.initialise(
                name, zone.array(np.uint32, words), size, capacity, flags, zone
            )
        except BaseException:
            zone.close()
            raise
        zone.publish()
        return ring

    def lookup_ring(self, name: str) -> Ring:
        if not is_zone_name(name):
            raise NotFoundError(f"no shared ring named {name!r} (not a valid shared name)")
        zone = Zone.attach(name, kind=ZONE_KIND)
        state = zone.array(np.uint32, zone.size // 4)
        problem = JitRing.check_header(state, f"zone {name!r}")
        if problem is not None:
            zone.close()
            raise PktflowValueError(problem)
        return JitRing(name, state, zone)

    def exists(self, name: str) -> bool:
        return zone_exists(name)

    def describe(self) -> dict[str, Any]:
        info = hugepage_info()
        return {
            **super().describe(),
            "page_size": info.page_size,
            "free_pages": info.free,
            "mount": info.mount,
        }
