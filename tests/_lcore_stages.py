"""Stages the multi-lcore tests run in worker processes (imported there by path)."""

from __future__ import annotations

import os
import time

import pktflow


class Slow(pktflow.Stage):
    """A sink that frees each burst after ``delay`` seconds: a consumer that falls behind."""

    outputs = ()

    def __init__(self, ctx: pktflow.StageContext, *, delay: float = 0.001) -> None:
        super().__init__(ctx)
        self.delay = delay

    def process(self, burst: pktflow.Burst) -> None:
        time.sleep(self.delay)
        self.free(burst)


class FailsToStart(pktflow.Stage):
    """A stage whose ``start()`` raises."""

    async def start(self) -> None:
        raise OSError("the device is not there")

    def process(self, burst: pktflow.Burst) -> None:
        self.emit(burst)


class WhereAmI(pktflow.Stage):
    """Records the process and lcore id it runs in (into the packets' port field)."""

    def process(self, burst: pktflow.Burst) -> None:
        burst.pool.headers["port"][burst.handles] = os.getpid() & 0xFFFF
        self.emit(burst)
