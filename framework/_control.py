"""The control block: the words and counters lcores share, in one zone per pipeline.

Every lcore of a pipeline maps it (the main lcore creates it, workers
attach by name); a one-lcore pipeline keeps it in private memory. It holds:

- a *finished flag* per (ring link, producer instance): set with release
  once that instance will enqueue nothing more (see ``_control_kernels``);
  the consumer treats the link as drained when every flag is set and the
  ring is empty;
- a row of stage counters per stage instance, which its lcore copies
  from its ``StageStats`` about twice a second and once at the end (plain
  int64 stores: one writer per row, readers want a recent value, not an
  ordered one), so ``Pipeline.stats()`` reads other processes' counters
  without a message per burst;
- a row per (ring link, producer instance): the edge's drops and backlog.

Usage::

    control = Control.create(tag, plan)          # main lcore
    control = Control.attach(tag, plan)          # a worker
    control.mark_finished(link, lcore)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pktflow.backends._numba._ring import _compiled

from ._control_kernels import load_flag as _load_flag_dispatcher
from ._control_kernels import store_flag as _store_flag_dispatcher
from ._memory import Zone

if TYPE_CHECKING:
    from ._placement import Link, Placement
    from ._stage import StageStats

__all__ = ["STAGE_FIELDS", "Control"]

load_flag = _compiled(_load_flag_dispatcher)
store_flag = _compiled(_store_flag_dispatcher)

# The columns of a stage row (StageStats' slots).
STAGE_FIELDS = ("packets_in", "bytes_in", "bursts", "handed", "drops", "freed")
_EDGE_FIELDS = 2  # drops, backlog


class Control:
    """Flags and counter rows of one pipeline, laid out from its placement."""

    def __init__(self, plan: Placement, memory: npt.NDArray[np.uint8], zone: Zone | None) -> None:
        self.zone = zone
        self.instances = [(s.name, lcore) for s in plan.spec.stages.values() for lcore in s.lcores]
        self.producers = [
            (link.index, lcore) for link in plan.ring_links for lcore in link.producer_lcores
        ]
        self._instance_row = {key: i for i, key in enumerate(self.instances)}
        self._producer_row = {key: i for i, key in enumerate(self.producers)}
        flags_bytes = _round8(4 * len(self.producers))
        stage_bytes = 8 * len(STAGE_FIELDS) * len(self.instances)
        self.flags: npt.NDArray[np.uint32] = memory[:flags_bytes].view(np.uint32)
        self.stage_rows: npt.NDArray[np.int64] = (
            memory[flags_bytes : flags_bytes + stage_bytes]
            .view(np.int64)
            .reshape(len(self.instances), len(STAGE_FIELDS))
        )
        edge_start = flags_bytes + stage_bytes
        self.edge_rows: npt.NDArray[np.int64] = (
            memory[edge_start : edge_start + 8 * _EDGE_FIELDS * len(self.producers)]
            .view(np.int64)
            .reshape(len(self.producers), _EDGE_FIELDS)
        )

    @staticmethod
    def size(plan: Placement) -> int:
        producers = sum(len(link.producer_lcores) for link in plan.ring_links)
        instances = sum(len(s.lcores) for s in plan.spec.stages.values())
        return max(64, _round8(4 * producers) + 8 * (len(STAGE_FIELDS) * instances + 2 * producers))

    @classmethod
    def private(cls, plan: Placement) -> Control:
        """A control block in this process's memory (one lcore)."""
        return cls(plan, np.zeros(cls.size(plan), np.uint8), None)

    @classmethod
    def create(cls, name: str, plan: Placement) -> Control:
        """The shared control block, made by the main lcore before the workers start."""
        zone = Zone.create(name, cls.size(plan), hugepages="never", kind="control")
        zone.publish()
        return cls(plan, zone.array(np.uint8, cls.size(plan)), zone)

    @classmethod
    def attach(cls, name: str, plan: Placement) -> Control:
        """A worker's mapping of the shared control block."""
        zone = Zone.attach(name, kind="control")
        return cls(plan, zone.array(np.uint8, cls.size(plan)), zone)

    # -- finished flags --------------------------------------------------------

    def flag_index(self, link: Link, lcore: int) -> int:
        return self._producer_row[(link.index, lcore)]

    def mark_finished(self, index: int) -> None:
        """Producer side: nothing more will be enqueued (after the last enqueue)."""
        store_flag(self.flags, index, 1)

    def finished(self, index: int) -> bool:
        """Consumer side: read before the ring's count (acquire pairs with the release)."""
        return bool(load_flag(self.flags, index))

    # -- counters --------------------------------------------------------------

    def publish_stage(self, name: str, lcore: int, stats: StageStats) -> None:
        row = self.stage_rows[self._instance_row[(name, lcore)]]
        row[:] = [getattr(stats, field) for field in STAGE_FIELDS]

    def stage_row(self, name: str, lcore: int) -> npt.NDArray[np.int64]:
        return self.stage_rows[self._instance_row[(name, lcore)]]

    def publish_edge(self, index: int, drops: int, backlog: int) -> None:
        self.edge_rows[index, 0] = drops
        self.edge_rows[index, 1] = backlog

    def close(self) -> None:
        """Unmap (the creator's close also removes the zone)."""
        if self.zone is not None:
            zone, self.zone = self.zone, None
            zone.close()  # the views keep the mapping until they go


def _round8(n: int) -> int:
    return (n + 7) & ~7
