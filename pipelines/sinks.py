"""Sinks: ``counter`` (packets and bytes per input, then frees) and ``drop`` (frees, counted).

Usage (YAML)::

    count: {type: counter, inputs: [parse]}
    bad:   {type: drop, inputs: [parse.invalid]}
"""

from __future__ import annotations

from collections import defaultdict

import pktflow

__all__ = ["Counter", "Drop"]


class Counter(pktflow.Stage):
    """Counts packets and bytes per input edge, then frees them."""

    outputs = ()
    keeps_lengths = True

    def __init__(self, ctx: pktflow.StageContext) -> None:
        super().__init__(ctx)
        # input edge -> [packets, bytes]
        self.per_input: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        # The row of the input seen last (an input's name is one str object).
        self._input, self._row = "", [0, 0]

    def process(self, burst: pktflow.Burst) -> None:
        row = self._row
        if burst.input is not self._input:
            self._input, row = burst.input, self.per_input[burst.input]
            self._row = row
        row[0] += burst.n
        row[1] += burst.nbytes
        self.free(burst)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{input: {"packets", "bytes"}}`` so far.

        Usage: ``pipeline.stage("count").counts()``
        """
        return {name: {"packets": p, "bytes": b} for name, (p, b) in self.per_input.items()}


class Drop(pktflow.Stage):
    """Frees every packet and counts it as a drop."""

    outputs = ()
    keeps_lengths = True

    def process(self, burst: pktflow.Burst) -> None:
        self.drop(burst)
