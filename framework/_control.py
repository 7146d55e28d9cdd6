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
- a row per (ring link, producer instance): the edge's drops and backlog;
- a row per lcore: the wake-up signals its process sent and how often it slept.

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
_LCORE_FIELDS = 2  # wake-up signals sent (its process's), sleeps


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
        edge_bytes = 8 * _EDGE_FIELDS * len(self.producers)
        self.edge_rows: npt.NDArray[np.int64] = (
            memory[edge_start : edge_start + edge_bytes]
            .view(np.int64)
            .reshape(len(self.producers), _EDGE_FIELDS)
        )
        lcore_start = edge_start + edge_bytes
        self._lcore_row = {lcore: i for i, lcore in enumerate(plan.lcores)}
        # Per lcore: wake-up signals its process sent, and the times it slept.
        self.lcore_rows: npt.NDArray[np.int64] = (
            memory[lcore_start : lcore_start + 8 * _LCORE_FIELDS * len(plan.lcores)]
            .view(np.int64)
            .reshape(len(plan.lcores), _LCORE_FIELDS)
        )

    @staticmethod
    def size(plan: Placement) -> int:
        producers = sum(len(link.producer_lcores) for link in plan.ring_links)
        instances = sum(len(s.lcores) for s in plan.spec.stages.values())
        words = len(STAGE_FIELDS) * instances + _EDGE_FIELDS * producers
        words += _LCORE_FIELDS * len(plan.lcores)
        return max(64, _round8(4 * producers) + 8 * words)

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
        row: npt.NDArray[np.int64] = self.stage_rows[self._instance_row[(name, lcore)]]
        return row

    def publish_edge(self, index: int, drops: int, backlog: int) -> None:
        self.edge_rows[index, 0] = drops
        self.edge_rows[index, 1] = backlog

    def publish_lcore(self, lcore: int, signals: int, sleeps: int) -> None:
        row = self.lcore_rows[self._lcore_row[lcore]]
        row[0], row[1] = signals, sleeps

    def close(self) -> None:
        """Unmap (the creator's close also removes the zone)."""
        if self.zone is not None:
            zone, self.zone = self.zone, None
            zone.close()  # the views keep the mapping until they go


def _round8(n: int) -> int:
    return (n + 7) & ~7
