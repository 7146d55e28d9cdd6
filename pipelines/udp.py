"""``udp_source`` and ``udp_sink``: datagrams straight into and out of mbuf data.

The source receives with ``recvfrom_into`` into the buffers of mbufs it
allocated (a memoryview of the buffer, never a ``bytes`` per datagram) on
a non-blocking socket; when nothing is waiting it sleeps on the socket
through the event loop (at most 50 ms, so the lcore's other sources and a
stop go on). The sender's IPv4 address and port go into the mbuf's private
area (the mempool needs ``priv_size >= 8``), where ``udp_sink`` with
``reply: true`` finds them.

Usage (YAML)::

    mempools: {pkts: {n: 4095, cache_size: 128, priv_size: 8}}
    stages:
      rx:   {type: udp_source, bind: "127.0.0.1:9000"}
      echo: {type: udp_sink, inputs: [rx], reply: true}
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pktflow

__all__ = ["UdpSink", "UdpSource"]

SENDER = struct.Struct("<4sH2x")  # IPv4 address (network order), port: 8 bytes of priv
WAIT_S = 0.05  # the longest an idle source waits on its socket before the walk goes on


def _address(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise pktflow.PktflowValueError(f'{option} must be "host:port", not {text!r}')
    return host, int(port)


def _needs_priv(pool: pktflow.PktmbufPool, stage: str) -> None:
    if pool.priv_size < SENDER.size:
        raise pktflow.PktflowValueError(
            f"{stage} keeps the sender in each mbuf's private area: give the mempool "
            f"priv_size: {SENDER.size} (it has {pool.priv_size})"
        )


class UdpSource(pktflow.Source):
    """Receives datagrams on ``bind`` ("host:port") into mbufs, one burst per poll.

    Options:
        bind: The IPv4 address and port to receive on, "host:port".
        reuseport: Set SO_REUSEPORT, so shards (replicas) share the port.
    """

    def __init__(self, ctx: pktflow.StageContext, *, bind: str, reuseport: bool = False) -> None:
        super().__init__(ctx)
        _needs_priv(ctx.pool, "udp_source")
        self.address = _address(bind, "bind")
        self.reuseport = reuseport
        pool = ctx.pool
        self._data = pool._object_bytes  # the flat data area (a memoryview)
        self._stride = pool._stride
        self._headroom = min(pktflow.PKTMBUF_HEADROOM, pool.data_room_size)
        self._room = pool.data_room_size - self._headroom
        self._words = pool.header_words
        self._priv = pool.private
        self.received = 0

    async def start(self) -> None:
        # Made here, not in __init__: a pipeline that fails to build holds no socket.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.reuseport:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.sock.bind(self.address)
        except OSError as exc:
            self.sock.close()
            raise pktflow.PktflowValueError(
                f"cannot bind {self.address[0]}:{self.address[1]}: {exc.strerror}"
            ) from None
        self.sock.setblocking(False)

    @property
    def port(self) -> int:
        """The port bound (useful with port 0)."""
        return int(self.sock.getsockname()[1])

    async def poll(self, burst: pktflow.Burst) -> int:
        k = self._receive(burst)
        if k == 0:  # nothing waiting: sleep on the socket (the event loop's reader)
            await self._readable()
            k = self._receive(burst)
        return k

    async def _readable(self) -> None:
        """Until the socket has a datagram, at most ``WAIT_S`` (so a stop is seen)."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self.sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await asyncio.wait_for(ready, WAIT_S)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(fd)

    def _receive(self, burst: pktflow.Burst) -> int:
        """Receive what is waiting, up to a burst, into freshly allocated mbufs."""
        pool = self.ctx.pool
        array = burst.array
        if pool.alloc_bulk(array, burst.capacity) == 0:
            return 0
        k = 0
        try:
            for k in range(burst.capacity):
                h = int(array[k])
                start = h * self._stride + self._headroom
                size, (host, port) = self.sock.recvfrom_into(
                    self._data[start : start + self._room], self._room
                )
                m = pool.mbuf(h)
                m.append(size)  # data_len and pkt_len
                SENDER.pack_into(self._priv[h], 0, socket.inet_aton(host), port)
            else:
                k = burst.capacity
        except (BlockingIOError, InterruptedError):
            pass
        if k < burst.capacity:
            pool.free_bulk(array[k:])
        self.received += k
        return k

    async def stop(self) -> None:
        self.sock.close()


class UdpSink(pktflow.Stage):
    """Sends each packet's data to ``to`` ("host:port"), or back to its sender (``reply``).

    Options:
        to: Where to send every datagram, "host:port".
        reply: Send each one back to where it came from (``udp_source`` kept it).
    """

    outputs = ()
    keeps_lengths = True

    def __init__(
        self, ctx: pktflow.StageContext, *, to: str | None = None, reply: bool = False
    ) -> None:
        super().__init__(ctx)
        if (to is None) == (not reply):
            raise pktflow.PktflowValueError("udp_sink needs exactly one of to: or reply: true")
        self.to = None if to is None else _address(to, "to")
        if reply:
            _needs_priv(ctx.pool, "udp_sink with reply")
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def process(self, burst: pktflow.Burst) -> None:
        pool = burst.pool
        priv = pool.private
        for h in burst.handles.tolist():
            m = pool.mbuf(h)
            where = self.to
            if where is None:
                raw, port = SENDER.unpack_from(priv[h], 0)
                where = (socket.inet_ntoa(raw), port)
            try:
                self.sock.sendto(m.read(0, m.pkt_len) or b"", where)
                self.sent += 1
            except OSError:
                self.failed += 1  # e.g. a full socket buffer: counted, never blocks
        self.free(burst)

    async def stop(self) -> None:
        self.sock.close()
