"""Stages for the cluster tests, importable by the shards (tests/ is on their path)."""

from __future__ import annotations

import time

import pktflow
from pktflow._cluster_stages import RemoteReceive, RemoteSend


class Slow(pktflow.Stage):
    """A sink that takes ``pause`` seconds per burst: a stalled consumer."""

    outputs = ()

    def __init__(self, ctx: pktflow.StageContext, *, pause: float = 0.005) -> None:
        super().__init__(ctx)
        self.pause = pause

    def process(self, burst: pktflow.Burst) -> None:
        time.sleep(self.pause)
        self.free(burst)


class EdgeIn(RemoteReceive):
    """The receiving end of a remote edge, as a YAML stage (``edge`` is a reserved key)."""

    def __init__(self, ctx: pktflow.StageContext, *, key: str, senders: list[list[int]]) -> None:
        super().__init__(ctx, edge=key, senders=senders)


class EdgeOut(RemoteSend):
    """The sending end of a remote edge, as a YAML stage (``node`` is a reserved key)."""

    def __init__(self, ctx: pktflow.StageContext, *, endpoint: str, me: int = 1, **options) -> None:
        super().__init__(ctx, endpoint=endpoint, node=me, **options)
