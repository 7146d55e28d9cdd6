"""Stages the pipeline tests load by "module:Class" (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import asyncio
import os

import numpy as np

import pktflow


class Tag(pktflow.Stage):
    """Writes ``mark`` into every packet's port field."""

    keeps_lengths = True

    def __init__(self, ctx: pktflow.StageContext, *, mark: int = 7) -> None:
        super().__init__(ctx)
        self.mark = mark
        self.started = self.stopped = 0

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    def process(self, burst: pktflow.Burst) -> None:
        burst.pool.headers["port"][burst.handles] = self.mark
        self.emit(burst)


class AsyncTag(Tag):
    """Tag with an ``async def process`` that yields to the loop first."""

    async def process(self, burst: pktflow.Burst) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().process(burst)


class Split(pktflow.Stage):
    """Even handles to ``out``, odd ones to ``odd`` (a mask split with take)."""

    outputs = ("out", "odd")

    def process(self, burst: pktflow.Burst) -> None:
        odd = (burst.handles & 1).astype(bool)
        self.emit(burst.take(~odd))
        self.emit(burst.take(odd), "odd")


class Boom(pktflow.Stage):
    """Raises on its ``after``-th burst, having emitted half of it (``half``) or none."""

    def __init__(self, ctx: pktflow.StageContext, *, after: int = 3, half: bool = False) -> None:
        super().__init__(ctx)
        self.after = after
        self.half = half
        self.seen = 0

    def process(self, burst: pktflow.Burst) -> None:
        self.seen += 1
        if self.seen == self.after:
            if self.half:
                self.emit(burst.take(slice(0, burst.n // 2)))
            raise RuntimeError("boom")
        self.emit(burst)


class Idle(pktflow.Source):
    """A source with nothing to say: every poll returns 0."""

    def __init__(self, ctx: pktflow.StageContext) -> None:
        super().__init__(ctx)
        self.polls = 0

    def poll(self, burst: pktflow.Burst) -> int:
        self.polls += 1
        return 0


class Runts(pktflow.Source):
    """``count`` frames of ``size`` bytes, too short to be Ethernet when size < 14."""

    def __init__(self, ctx: pktflow.StageContext, *, count: int = 100, size: int = 10) -> None:
        super().__init__(ctx)
        self.left = count
        self.size = size

    async def poll(self, burst: pktflow.Burst) -> int | None:
        if self.left == 0:
            return None
        k = self.ctx.pool.alloc_bulk(burst.array, min(self.left, burst.capacity))
        for h in burst.array[:k].tolist():
            self.ctx.pool.mbuf(h).append(self.size)
        self.left -= k
        return k


class Forger(pktflow.Source):
    """A broken source: fills its burst with ``handles`` (none allocated) and returns ``k``."""

    def __init__(self, ctx: pktflow.StageContext, *, handles: int = 1 << 30, k: object = 4) -> None:
        super().__init__(ctx)
        self.handles = handles
        self.k = k

    def poll(self, burst: pktflow.Burst) -> object:
        burst.array[:] = self.handles
        return self.k


class Keep(pktflow.Stage):
    """Keeps a copy of the handles and ports it gets, and frees the packets."""

    outputs = ()

    def __init__(self, ctx: pktflow.StageContext) -> None:
        super().__init__(ctx)
        self.handles: list[np.ndarray] = []
        self.ports: list[np.ndarray] = []

    def process(self, burst: pktflow.Burst) -> None:
        self.handles.append(burst.handles.copy())
        self.ports.append(burst.pool.headers["port"][burst.handles].copy())
        self.free(burst)


class SlowStop(pktflow.Stage):
    """A sink whose ``stop()`` takes a minute (a stage stuck while stopping)."""

    outputs = ()

    def process(self, burst: pktflow.Burst) -> None:
        self.free(burst)

    async def stop(self) -> None:
        await asyncio.sleep(60)


class PipeSource(pktflow.Source):
    """One packet per byte written to its pipe; ``wait_fd`` lets an idle walk sleep on it."""

    def __init__(self, ctx: pktflow.StageContext) -> None:
        super().__init__(ctx)
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.polls = 0

    def wait_fd(self) -> int:
        return self.read_fd

    def poll(self, burst: pktflow.Burst) -> int | None:
        self.polls += 1
        try:
            got = os.read(self.read_fd, burst.capacity)
        except BlockingIOError:
            return 0
        if got == b"":
            return None  # the writer closed: the end
        return self.ctx.pool.alloc_bulk(burst.array, len(got))

    async def stop(self) -> None:
        os.close(self.read_fd)


class Datagrams(pktflow.Source):
    """One burst of packets of ``sizes`` bytes (packet i: its index, then bytes of i), once ``go``.

    ``go`` (an asyncio.Event) lets a test change the downstream stages
    between ``start()`` and the first packet.
    """

    def __init__(self, ctx: pktflow.StageContext, *, sizes: list[int]) -> None:
        super().__init__(ctx)
        self.sizes = sizes
        self.go = asyncio.Event()

    @staticmethod
    def payload(i: int, size: int) -> bytes:
        return (i.to_bytes(2, "big") + bytes([i % 256]) * size)[:size]

    async def poll(self, burst: pktflow.Burst) -> int | None:
        await self.go.wait()
        if not self.sizes:
            return None
        k = self.ctx.pool.alloc_bulk(burst.array, min(len(self.sizes), burst.capacity))
        sizes, self.sizes = self.sizes[:k], self.sizes[k:]
        for i, (h, size) in enumerate(zip(burst.array[:k].tolist(), sizes, strict=True)):
            self.ctx.pool.mbuf(h).append(size)[:] = self.payload(i, size)
        return k


class Record(pktflow.Stage):
    """A sink keeping each packet's bytes, in order of arrival."""

    outputs = ()

    def __init__(self, ctx: pktflow.StageContext) -> None:
        super().__init__(ctx)
        self.packets: list[bytes] = []

    def process(self, burst: pktflow.Burst) -> None:
        pool = burst.pool
        self.packets += [bytes(pool.mbuf(h).data) for h in burst.handles.tolist()]
        self.free(burst)
