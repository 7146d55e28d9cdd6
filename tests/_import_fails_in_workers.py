"""A stage module that imports in the main process and fails in a worker."""

from __future__ import annotations

import multiprocessing

import pktflow

if multiprocessing.parent_process() is not None:
    raise ImportError("this module refuses to load in a child process")


class Passthrough(pktflow.Stage):
    def process(self, burst: pktflow.Burst) -> None:
        self.emit(burst)
