"""``afpacket_source`` and ``afpacket_sink``: Linux AF_PACKET sockets with PACKET_MMAP rings.

The source maps the kernel's own TPACKET_V3 receive ring: the kernel
writes frames into blocks of the mapping and hands a block over by its
status word, so receiving costs no system call while traffic flows. One
jitted call per burst (``_afpacket_kernels.rx_burst``) walks the blocks
and copies each frame into a fresh mbuf, then gives the emptied blocks
back. An idle source returns at once and offers its socket as
``wait_fd()``: the kernel makes the socket readable when it hands a block
over (full, or part-filled once ``block_timeout_ms`` passed with a frame
in it), so an idle walk sleeps on it with its rings and the lcore's other
sources, and the source never stalls them.

Copy rather than in place: an mbuf is a handle into a pktflow mempool,
and a ring frame is not one. Handing frames out in place would need
external-buffer mbufs, and, worse, the kernel takes a block back only
whole: one packet held downstream (a pcap_sink writing, a ring to another
lcore, a fan-out) would pin its whole block, and a slow consumer would
stall the ring and make the kernel drop. The ring mapping is also private
to this process, where mbufs must be reachable from every lcore's process.
Copying a frame (64..1514 bytes) costs tens of ns, and frees the block at
once; it also lets the kernel put back a VLAN tag the driver stripped.

The sink copies packets into a TPACKET_V2 transmit ring (the mbufs go back
to the pool at once) and kicks the socket with one ``send()`` per burst.
When the ring is full it waits for the kernel to send (at most 100 ms),
then counts what still does not fit as drops.

Both need CAP_NET_RAW (root). Usage (YAML)::

    mempools: {pkts: {n: 8191, cache_size: 256, data_room: 2048}}
    stages:
      rx:   {type: afpacket_source, interface: eth0, promiscuous: true}
      save: {type: pcap_sink, inputs: [rx], path: capture.pcap}
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import socket
import struct
import time
import zlib
from typing import Any, Literal

import numpy as np

import pktflow
from pktflow.backends._numba._ring import _compiled

from . import _afpacket_kernels as kernels
from ._pool_data import PoolArraysCache

__all__ = ["AfpacketError", "AfpacketSink", "AfpacketSource"]

# Arguments typed by construction (pool views, the ring views): no dispatch.
_rx_burst = _compiled(kernels.rx_burst)
_rx_ready = _compiled(kernels.rx_ready)
_tx_burst = _compiled(kernels.tx_burst)
_tx_pending = _compiled(kernels.tx_pending)

# linux/if_packet.h and linux/if_ether.h (Python's socket module lacks them).
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_FANOUT = 18
PACKET_QDISC_BYPASS = 20
PACKET_MR_PROMISC = 1
SIOCGIFMTU = 0x8921
TPACKET_V2 = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2, "rollover": 3, "random": 4, "qm": 5}
PACKET_FANOUT_FLAG_DEFRAG = 0x8000  # hash fragments of a datagram to one socket

TX_WAIT_S = 0.1  # the longest a sink waits for the kernel to free ring frames
_RX_FRAME = 2048  # tp_frame_size: V3 only checks it; frames are packed in blocks
_TX_HEADER = kernels.T2_DATA


class AfpacketError(pktflow.PktflowError, OSError):
    """An AF_PACKET socket or ring that cannot be set up (no permission, no interface, ...).

    Usage: ``except pktflow.pipelines.afpacket.AfpacketError as exc: print(exc)``
    """


def _interface_index(interface: str, stage: str) -> int:
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise pktflow.PktflowValueError(
            f"{stage}: no interface named {interface!r} in this network namespace "
            "(`ip link` lists them)"
        ) from None


def _packet_socket(stage: str) -> socket.socket:
    """An AF_PACKET socket that receives nothing until bound with a protocol."""
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise AfpacketError(
            f"{stage} needs CAP_NET_RAW for an AF_PACKET socket: run as root, or grant it "
            "(setcap cap_net_raw+ep on the Python interpreter)"
        ) from None
    except OSError as exc:
        raise AfpacketError(f"{stage}: cannot open an AF_PACKET socket: {exc.strerror}") from None


def _setsockopt(sock: socket.socket, option: int, value: int | bytes, what: str) -> None:
    try:
        sock.setsockopt(SOL_PACKET, option, value)
    except OSError as exc:
        sock.close()
        raise AfpacketError(f"{what}: {exc.strerror}") from None


def _check_ring(block_size: int, blocks: int, stage: str) -> None:
    page = mmap.PAGESIZE
    if block_size < page or block_size & (block_size - 1) or block_size > 1 << 26:
        raise pktflow.PktflowValueError(
            f"{stage}: block_size {block_size} must be a power of two in {page}..{1 << 26}"
        )
    if not 1 <= blocks <= 1 << 16:
        raise pktflow.PktflowValueError(f"{stage}: blocks {blocks} is outside 1..65536")


class AfpacketSource(pktflow.Source):
    """Receives every frame on ``interface`` through the kernel's TPACKET_V3 mmap ring.

    Frames are copied into mbufs (with the kernel's receive timestamp, ns);
    a VLAN tag the driver stripped is put back. Shards (replicas) join one
    PACKET_FANOUT group, so each frame reaches one of them. ``count`` ends
    the source after that many frames (like ``tcpdump -c``). A frame longer
    than the pool's data room is skipped and counted in ``too_long``; frames
    the kernel dropped for want of ring room are in ``kernel_drops``.

    Options:
        interface: The network interface to receive on (``ip link``).
        fanout: PACKET_FANOUT group id (0..65535) shared by shards; default:
            one derived from the interface and stage name when sharded.
        fanout_mode: How the group spreads frames: ``hash`` (by flow), ``lb``
            (round robin), ``cpu``, ``rollover``, ``random``, ``qm``.
        block_size: Bytes per ring block, a power of two (at least a page).
        blocks: Blocks in the ring (ring bytes = block_size * blocks).
        block_timeout_ms: How long the kernel fills a block before handing it
            over part-full (latency when traffic is light).
        promiscuous: Receive frames for other MAC addresses too.
        count: Frames to receive before the source ends; null: until stopped.
    """

    def __init__(
        self,
        ctx: pktflow.StageContext,
        *,
        interface: str,
        fanout: int | None = None,
        fanout_mode: Literal["hash", "lb", "cpu", "rollover", "random", "qm"] = "hash",
        block_size: int = 1 << 18,
        blocks: int = 64,
        block_timeout_ms: int = 1,
        promiscuous: bool = False,
        count: int | None = None,
    ) -> None:
        super().__init__(ctx)
        self.interface = interface
        self.ifindex = _interface_index(interface, "afpacket_source")
        _check_ring(block_size, blocks, "afpacket_source")
        if fanout is not None and not 0 <= fanout <= 0xFFFF:
            raise pktflow.PktflowValueError(f"fanout {fanout} is outside 0..65535")
        if fanout is None and ctx.replicas > 1:  # shards must share one group
            fanout = zlib.crc32(f"{interface}:{ctx.name}".encode()) & 0xFFFF
        if not 1 <= block_timeout_ms <= 60_000:
            raise pktflow.PktflowValueError(
                f"block_timeout_ms {block_timeout_ms} is outside 1..60000"
            )
        if count is not None and count < 0:
            raise pktflow.PktflowValueError(f"count {count} is negative")
        self.fanout = fanout
        self.fanout_mode = fanout_mode
        self.block_size = block_size
        self.blocks = blocks
        self.block_timeout_ms = block_timeout_ms
        self.promiscuous = promiscuous
        self.left = count
        pool = ctx.pool
        self._room = pool.data_room_size - min(pktflow.PKTMBUF_HEADROOM, pool.data_room_size)
        self._words, self._data, self._stride = PoolArraysCache().of(pool)
        self._cursor = np.zeros(3, np.int64)  # kernels.CUR_*
        self._counts = np.zeros(kernels.COUNTERS, np.int64)
        self._ring = np.zeros(0, np.uint8)
        self._status = np.zeros(0, np.uint32)
        self._map: mmap.mmap | None = None
        self._sock: socket.socket | None = None
        self._alloc: Any = None
        self._bound_array: np.ndarray | None = None
        self._kernel_packets = 0
        self._kernel_drops = 0
        self._fd = -1

    async def start(self) -> None:
        # Made here, not in __init__: a pipeline that fails to build holds no socket.
        sock = _packet_socket("afpacket_source")
        what = f"afpacket_source on {self.interface}"
        _setsockopt(sock, PACKET_VERSION, TPACKET_V3, f"{what}: TPACKET_V3")
        frames = self.block_size // _RX_FRAME * self.blocks
        # struct tpacket_req3: block size, blocks, frame size, frames, retire timeout,
        # private bytes per block, features.
        req = struct.pack(
            "7I", self.block_size, self.blocks, _RX_FRAME, frames, self.block_timeout_ms, 0, 0
        )
        _setsockopt(sock, PACKET_RX_RING, req, f"{what}: the RX ring")
        try:
            self._map = mmap.mmap(
                sock.fileno(), self.block_size * self.blocks, mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
            )  # fmt: skip
        except OSError as exc:
            sock.close()
            raise AfpacketError(f"{what}: cannot map the ring: {exc.strerror}") from None
        self._ring = np.frombuffer(self._map, np.uint8)
        self._status = np.frombuffer(self._map, np.uint32)
        self._sock = sock
        try:
            if self.promiscuous:
                mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            # Bound after the ring exists, so no frame of another interface lands in it.
            sock.bind((self.interface, ETH_P_ALL))
            if self.fanout is not None:
                mode = FANOUT_MODES[self.fanout_mode] | PACKET_FANOUT_FLAG_DEFRAG
                arg = struct.pack("I", self.fanout | (mode << 16))  # above INT_MAX: as bytes
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT, arg)
        except OSError as exc:
            await self.stop()
            raise AfpacketError(f"{what}: {exc.strerror}") from None
        sock.setblocking(False)
        self._fd = sock.fileno()

    @property
    def received(self) -> int:
        """Frames copied into mbufs so far."""
        return int(self._counts[kernels.C_FRAMES])

    @property
    def too_long(self) -> int:
        """Frames skipped: longer than the pool's data room."""
        return int(self._counts[kernels.C_TOO_LONG])

    @property
    def kernel_drops(self) -> int:
        """Frames the kernel dropped for want of ring room (PACKET_STATISTICS)."""
        self._read_kernel_stats()
        return self._kernel_drops

    def _read_kernel_stats(self) -> None:
        if self._sock is not None:
            # struct tpacket_stats_v3: packets, drops, freeze count; reading resets them.
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
            packets, drops, _ = struct.unpack("3I", raw)
            self._kernel_packets += packets
            self._kernel_drops += drops

    def wait_fd(self) -> int | None:
        # Readable once the block before the kernel's current one is ours
        # (packet_poll): a retired block we have not walked yet.
        return self._fd if self._fd >= 0 and self.left != 0 else None

    def poll(self, burst: pktflow.Burst) -> int | None:
        if self.left == 0:
            return None
        if not _rx_ready(self._status, self.block_size, self._cursor):
            return 0  # nothing handed over: the walk sleeps on wait_fd() when all is idle
        n = burst.capacity if self.left is None else min(self.left, burst.capacity)
        if burst.array is not self._bound_array:
            self._bound_array = burst.array
            self._alloc = self.ctx.pool.bind(burst.array).alloc_bulk
        if self._alloc(n) != n:
            return 0  # the pool is empty until downstream frees: try again
        before = int(self._counts[kernels.C_BYTES])
        k = int(
            _rx_burst(
                self._ring, self._status, self.block_size, self.blocks, self._cursor,
                self._words, self._data, self._stride, self._room, burst.array, n, self._counts,
            )
        )  # fmt: skip
        if k < n:
            self.ctx.pool.free_bulk(burst.array[k:n])
        if self.left is not None:
            self.left -= k
        burst.nbytes = int(self._counts[kernels.C_BYTES]) - before
        return k

    async def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._read_kernel_stats()
        # The views go first: a mapping with exported buffers cannot close.
        self._ring = np.zeros(0, np.uint8)
        self._status = np.zeros(0, np.uint32)
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        if self._sock is not None:
            self._fd = -1
            self._sock.close()
            self._sock = None


class AfpacketSink(pktflow.Stage):
    """Sends every packet it gets out of ``interface`` through a TPACKET_V2 mmap TX ring.

    Packets are copied into ring frames and their mbufs freed at once; one
    ``send()`` per burst tells the kernel to transmit the queued frames.
    When the ring is full the sink waits for the kernel (at most 100 ms),
    then drops and counts what still does not fit. Packets longer than a
    frame (``frame_size`` - 32 bytes) or than the interface's MTU allows
    (the kernel would drop them without a word) are dropped and counted in
    ``too_long``.

    Options:
        interface: The network interface to send on (``ip link``).
        frame_size: Bytes per TX ring frame, a power of two (the packet plus 32).
        frames: Frames in the TX ring.
        qdisc_bypass: Hand frames to the driver directly, skipping the queueing
            discipline (faster; no traffic shaping).
    """

    outputs = ()
    keeps_lengths = True

    def __init__(
        self,
        ctx: pktflow.StageContext,
        *,
        interface: str,
        frame_size: int = 2048,
        frames: int = 1024,
        qdisc_bypass: bool = False,
    ) -> None:
        super().__init__(ctx)
        self.interface = interface
        self.ifindex = _interface_index(interface, "afpacket_sink")
        if frame_size < 128 or frame_size & (frame_size - 1) or frame_size > 1 << 17:
            raise pktflow.PktflowValueError(
                f"afpacket_sink: frame_size {frame_size} must be a power of two in 128..131072"
            )
        if not 1 <= frames <= 1 << 20:
            raise pktflow.PktflowValueError(f"afpacket_sink: frames {frames} is outside 1..1048576")
        per_block = max(1, mmap.PAGESIZE // frame_size)
        self.frame_size = frame_size
        self.frames = -(-frames // per_block) * per_block  # whole blocks
        self.block_size = frame_size * per_block
        self.qdisc_bypass = qdisc_bypass
        self._arrays = PoolArraysCache()
        self._cursor = np.zeros(3, np.int64)  # kernels.CUR_BLOCK: the next frame
        self._counts = np.zeros(kernels.COUNTERS, np.int64)
        self._ring = np.zeros(0, np.uint8)
        self._status = np.zeros(0, np.uint32)
        self._map: mmap.mmap | None = None
        self._sock: socket.socket | None = None
        self.full_drops = 0
        self.mtu = 0
        self._longest = 0

    async def start(self) -> None:
        sock = _packet_socket("afpacket_sink")
        what = f"afpacket_sink on {self.interface}"
        _setsockopt(sock, PACKET_VERSION, TPACKET_V2, f"{what}: TPACKET_V2")
        if self.qdisc_bypass:
            _setsockopt(sock, PACKET_QDISC_BYPASS, 1, f"{what}: qdisc bypass")
        # A frame the kernel refuses (longer than the MTU) is marked and skipped, not an
        # error that stops the kick: the others still leave; the sink counts it.
        _setsockopt(sock, PACKET_LOSS, 1, f"{what}: PACKET_LOSS")
        # struct tpacket_req: block size, blocks, frame size, frames.
        req = struct.pack(
            "4I", self.block_size, self.frames * self.frame_size // self.block_size,
            self.frame_size, self.frames,
        )  # fmt: skip
        _setsockopt(sock, PACKET_TX_RING, req, f"{what}: the TX ring")
        # A blocking kick (ring full) waits for sent frames at most this long.
        seconds = int(TX_WAIT_S)
        micros = int((TX_WAIT_S - seconds) * 1e6)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, micros))
        try:
            self._map = mmap.mmap(
                sock.fileno(), self.frames * self.frame_size, mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
            )  # fmt: skip
            # Protocol 0: the socket sends on the interface and receives nothing.
            sock.bind((self.interface, 0))
        except OSError as exc:
            sock.close()
            raise AfpacketError(f"{what}: {exc.strerror}") from None
        self._ring = np.frombuffer(self._map, np.uint8)
        self._status = np.frombuffer(self._map, np.uint32)
        self._sock = sock
        # The kernel drops a frame over the MTU (plus the Ethernet header) without a
        # word (PACKET_LOSS): the sink checks the length first, and counts what it drops.
        ifreq = fcntl.ioctl(
            sock.fileno(), SIOCGIFMTU, struct.pack("16si12x", self.interface.encode(), 0)
        )
        self.mtu = struct.unpack_from("i", ifreq, 16)[0]
        self._longest = self.mtu + 14

    @property
    def sent(self) -> int:
        """Packets queued to the kernel for sending."""
        return int(self._counts[kernels.C_FRAMES])

    @property
    def sent_bytes(self) -> int:
        """Bytes of the packets queued to the kernel."""
        return int(self._counts[kernels.C_BYTES])

    @property
    def too_long(self) -> int:
        """Packets dropped: longer than a ring frame holds, or than the interface's MTU."""
        return int(self._counts[kernels.C_TOO_LONG])

    @property
    def tx_errors(self) -> int:
        """Frames the kernel refused (``TP_STATUS_WRONG_FORMAT``: e.g. longer than the MTU)."""
        return int(self._counts[kernels.C_TX_ERRORS])

    def process(self, burst: pktflow.Burst) -> None:
        words, data, stride = self._arrays.of(burst.pool)
        n = burst.n
        done = 0
        waited = False
        while done < n:
            done += int(
                _tx_burst(
                    self._ring, self._status, self.frame_size, self.frames, self._cursor,
                    words, data, stride, burst.array[done:n], n - done, self._longest,
                    self._counts,
                )
            )  # fmt: skip
            if done == n:
                self._kick(wait=False)
            elif not waited:
                self._kick(wait=True)  # full: send, and wait until frames come free
                waited = True
            else:
                break
        if done < n:  # still full after waiting: drop the rest, counted
            self.full_drops += n - done
            self.drop(burst.take(slice(done, n)))
            if done:
                self.free(burst.take(slice(0, done)))
        else:
            self.free(burst)

    def _kick(self, *, wait: bool) -> None:
        """Tell the kernel to send the queued frames: one system call.

        Without ``wait`` it returns once they are handed to the driver; with
        it, it also waits (at most ``TX_WAIT_S``) until they were sent.
        """
        assert self._sock is not None
        try:
            self._sock.send(b"", 0 if wait else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass  # busy: the kernel sends what is queued with the next kick
        except OSError as exc:
            raise AfpacketError(
                f"afpacket_sink on {self.interface}: send failed: {exc.strerror}"
            ) from None

    async def stop(self) -> None:
        if self._sock is not None:
            # Flush: what is queued leaves before the socket (and ring) go.
            deadline = time.monotonic() + 1.0
            while _tx_pending(self._status, self.frame_size, self.frames):
                with contextlib.suppress(OSError):
                    self._sock.send(b"", socket.MSG_DONTWAIT)
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.001)
        self._ring = np.zeros(0, np.uint8)
        self._status = np.zeros(0, np.uint32)
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
