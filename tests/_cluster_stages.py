"""Stages for the cluster tests, importable by the shards (tests/ is on their path)."""

from __future__ import annotations

import time

import pktflow


class Slow(pktflow.Stage):
    """A sink that takes ``pause`` seconds per burst: a stalled consumer."""

    outputs = ()

    def __init__(self, ctx: pktflow.StageContext, *, pause: float = 0.005) -> None:
        super().__init__(ctx)
        self.pause = pause

    def process(self, burst: pktflow.Burst) -> None:
        time.sleep(self.pause)
        self.free(burst)
