"""``generator``: Ethernet/IPv4/UDP frames from a template, jitted (a source).

Flow f of ``flows`` is the 5-tuple 10.0.0.(1 + f // 64511):(1024 + f % 64511)
-> 10.0.0.2:5001 over UDP; frames cycle through the flows. Replicas (shards)
split ``count`` between them and take distinct flows.

Usage (YAML)::

    gen: {type: generator, count: 1000000, size: 64, flows: 16, rate: 100000}
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import numpy as np

import pktflow
from pktflow._arrays import descriptor
from pktflow._lcore import thread_state
from pktflow.backends._numba._ring import _compiled

from ._gen_kernels import TEMPLATE_WORDS, alloc_frames, fill_frames
from ._pool_data import PoolArraysCache

__all__ = ["Generator"]

# Arguments typed by construction (pool views, runtime bursts): no dispatch.
_fill_frames = _compiled(fill_frames)
_alloc_frames = _compiled(alloc_frames)
HEADERS_LEN = 14 + 20 + 8  # Ethernet, IPv4 without options, UDP
_TEMPLATE_LEN = 8 * TEMPLATE_WORDS  # the headers padded to whole uint64 words
_PORTS = 65535 - 1024
_SRC_MAC = bytes.fromhex("020000000001")
_DST_MAC = bytes.fromhex("020000000002")
_DST_IP = bytes([10, 0, 0, 2])
_DST_PORT = 5001


def _ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def flow_headers(flow: int, size: int) -> bytes:
    """The 42 header bytes of ``flow``'s frames of ``size`` bytes."""
    host, port = 1 + flow // _PORTS, 1024 + flow % _PORTS
    src_ip = bytes([10, 0, (host >> 8) & 0xFF, host & 0xFF])
    ip = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - 14, 0, 0x4000, 64, 17, 0, src_ip, _DST_IP)
    )
    ip[10:12] = struct.pack("!H", _ipv4_checksum(bytes(ip)))
    udp = struct.pack("!HHHH", port, _DST_PORT, size - 34, 0)  # checksum 0: none (IPv4)
    return _DST_MAC + _SRC_MAC + b"\x08\x00" + bytes(ip) + udp


class Generator(pktflow.Source):
    """UDP frames of ``size`` bytes over ``flows`` 5-tuples; ``count`` in all, at ``rate``/s.

    Options:
        count: Packets in all (shards split them); null: unlimited.
        size: Frame bytes without the FCS (= ``pkt_len``), 42 up to what the pool's data
            room holds.
        flows: Distinct 5-tuples, 1..1048576; frames cycle through them.
        rate: Packets per second; null: as fast as the pipeline takes them.
    """

    def __init__(
        self,
        ctx: pktflow.StageContext,
        *,
        count: int | None = None,
        size: int = 64,
        flows: int = 1,
        rate: float | None = None,
    ) -> None:
        super().__init__(ctx)
        room = ctx.pool.data_room_size - min(pktflow.PKTMBUF_HEADROOM, ctx.pool.data_room_size)
        if not HEADERS_LEN <= size <= room - (_TEMPLATE_LEN - HEADERS_LEN):
            raise pktflow.PktflowValueError(
                f"size {size} is outside {HEADERS_LEN}..{room - _TEMPLATE_LEN + HEADERS_LEN} "
                "(the pool's data room)"
            )
        if not 1 <= flows <= 1 << 20:
            raise pktflow.PktflowValueError(f"flows {flows} is outside 1..{1 << 20}")
        if count is not None and count < 0:
            raise pktflow.PktflowValueError(f"count {count} is negative")
        if rate is not None and not rate > 0:
            raise pktflow.PktflowValueError(f"rate {rate} must be > 0 packets/s")
        share, extra = divmod(count, ctx.replicas) if count is not None else (0, 0)
        self.left = None if count is None else share + (ctx.replica < extra)
        self.size = size
        self.rate = rate
        # Replica r takes flows r, r + replicas, ...: shards see distinct flows.
        mine = range(ctx.replica, max(flows, ctx.replicas), ctx.replicas)
        pad = bytes(_TEMPLATE_LEN - HEADERS_LEN)
        self.templates = (
            np.frombuffer(b"".join(flow_headers(f % flows, size) + pad for f in mine), np.uint64)
            .reshape(len(mine), TEMPLATE_WORDS)
            .copy()
        )
        self.sent = 0
        self._started = 0.0
        self._words, self._data, self._stride = PoolArraysCache().of(ctx.pool)
        # make(address, n, first) -> n or 0: allocate, fill and stamp, bound to one
        # array through the descriptor at ``address`` (called as it is: no partial).
        self._make: Callable[[int, int, int], int] | None = None
        self._address = 0
        self._bound_array: np.ndarray | None = None
        self._described: tuple[np.ndarray, ...] = ()  # what _make reads its arrays from

    async def start(self) -> None:
        self._started = time.perf_counter()

    def _maker(self, array: np.ndarray) -> tuple[Callable[[int, int, int], int], int]:
        """Allocate-and-fill bound to ``array``: one compiled call where the pool allows."""
        pool = self.ctx.pool
        state = pool.ring.state
        if state is not None and not pool.debug:
            row = pool.cache_rows[thread_state.cache_index]
            described = descriptor(
                state, self._words, row, array, self._data, self._stride, self.templates, self.size,
            )  # fmt: skip
            # What it points into lives while the call may run (words, data: self).
            self._described = (described, state, row, array)
            return _alloc_frames, described.ctypes.data
        alloc = pool.bind(array).alloc_bulk

        def make(address: int, n: int, first: int) -> int:
            got = alloc(n)
            if got > 0 or got <= pktflow.abc.ERR_STALLED:  # (stalled: see alloc_frames)
                _fill_frames(self._words, self._data, self._stride, array, n,
                             self.templates, self.size, first, time.time_ns())  # fmt: skip
            return got

        return make, 0

    def poll(self, burst: pktflow.Burst) -> int | None:
        # Runs for every burst: each attribute is read once, into a local.
        left = self.left
        k = burst.capacity
        if left is not None and left < k:
            k = left
        if self.rate is not None:
            k = min(k, int(self.rate * (time.perf_counter() - self._started)) - self.sent)
        if k <= 0:
            return None if left == 0 else 0
        array = burst.array
        if array is not self._bound_array:
            self._bound_array = array
            self._make, self._address = self._maker(array)
        sent = self.sent
        got = self._make(self._address, k, sent)  # type: ignore[misc]
        if got != k:
            if got >= 0:
                return 0  # the pool is empty until downstream frees: try again
            self.ctx.pool._settle(got, k, array)  # a pending publish: finish it, or raise
        self.sent = sent + k
        if left is not None:
            self.left = left - k
        burst.nbytes = k * self.size
        return k
