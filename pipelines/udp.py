"""``udp_source`` and ``udp_sink``: datagrams straight into and out of mbuf data, a burst per call.

The source receives a whole burst with one ``recvmmsg`` into the buffers
of mbufs it allocated, the sink sends a whole burst with one ``sendmmsg``
from them: one jitted call each (``_udp_kernels``) over message arrays
made once and pointed at the mbufs' data by handle, never a ``bytes``
object or a Python call per datagram. Both sockets are non-blocking. An
idle source returns at once and offers its socket as ``wait_fd()``: the
walk sleeps on it (with its rings and the lcore's other sources) instead
of polling, and the source never stalls the lcore's other sources.

The sender's IPv4 address and port, and the local port the datagram
arrived on, go into the mbuf's private area (the mempool needs
``priv_size >= 8``), where ``udp_sink`` with ``reply: true`` finds them.
It answers from the socket of the ``udp_source`` that received the
datagram (found by that local port among the sources running in this
process), so the reply comes from the address the client sent to, as a
connected client (a DNS resolver) requires. A sink in another process
than the source (a process lcore) has no such socket: it answers from its
own, and counts the local ports it could not match in ``unmatched``.

Usage (YAML)::

    mempools: {pkts: {n: 4095, cache_size: 128, priv_size: 8}}
    stages:
      rx:   {type: udp_source, bind: "127.0.0.1:9000"}
      echo: {type: udp_sink, inputs: [rx], reply: true}
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Callable

import numpy as np

import pktflow
from pktflow.backends._numba._ring import _compiled

from . import _udp_kernels as kernels
from ._pool_data import PoolArraysCache

__all__ = ["UdpSink", "UdpSource"]

# Arguments typed by construction (pool views, message arrays): no dispatch.
_rx_burst = _compiled(kernels.rx_burst)
_tx_burst = _compiled(kernels.tx_burst)

log = logging.getLogger("pktflow")

# The private area: IPv4 address (network order), port, local port: 8 bytes of priv.
SENDER = struct.Struct("<4sHH")

# The sockets of the udp_sources running in this process, by the port they are bound
# to: udp_sink (reply) answers from the one a datagram arrived on.
_bound: dict[int, list[socket.socket]] = {}
_bound_lock = threading.Lock()


def _unbound(n: int) -> int:
    return 0  # before the first poll binds the pool's calls to the burst


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


def _kernel_segments(sock: socket.socket) -> bool:
    """Whether this kernel segments UDP (``UDP_SEGMENT``, Linux 4.18+)."""
    try:
        sock.getsockopt(kernels.SOL_UDP, kernels.UDP_SEGMENT)
    except OSError:
        return False
    return True


def _answering_socket(port: int) -> socket.socket | None:
    """The socket of this process's udp_source bound to ``port``; None: none, or ambiguous.

    Shards sharing a port (``reuseport``) are bound to one address: any of
    them answers. Sources bound to one port on different addresses are
    ambiguous (the private area keeps the port only).
    """
    with _bound_lock:
        sockets = list(_bound.get(port, ()))
    try:
        addresses = {s.getsockname() for s in sockets}
    except OSError:  # closed meanwhile
        return None
    return sockets[0] if len(addresses) == 1 else None


class UdpSource(pktflow.Source):
    """Receives datagrams on ``bind`` ("host:port") into mbufs, one burst per poll.

    A datagram longer than the pool's data room is dropped and counted in
    ``truncated``.

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
        self._words, self._data, self._stride = PoolArraysCache().of(pool)
        self._priv = pool.private
        self._counts = np.zeros(kernels.COUNTERS, np.int64)
        self._msgs = self._iovs = self._names = np.zeros((0, 0), np.uint64)
        self._bound_array: np.ndarray | None = None
        self._alloc: Callable[[int], int] = _unbound
        self._free: Callable[[int], int] = _unbound
        self._free_rest: Callable[[int], int] = _unbound
        self._rest = np.zeros(0, np.uint32)
        self._fd = -1
        self._port = 0
        self.sock: socket.socket | None = None

    async def start(self) -> None:
        # Made here, not in __init__: a pipeline that fails to build holds no socket.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(self.address)
        except OSError as exc:
            sock.close()
            raise pktflow.PktflowValueError(
                f"cannot bind {self.address[0]}:{self.address[1]}: {exc.strerror}"
            ) from None
        sock.setblocking(False)
        self.sock, self._fd = sock, sock.fileno()
        self._port = int(sock.getsockname()[1])
        with _bound_lock:
            _bound.setdefault(self._port, []).append(sock)

    @property
    def port(self) -> int:
        """The port bound (useful with port 0)."""
        return self._port

    @property
    def received(self) -> int:
        """Datagrams received into mbufs so far."""
        return int(self._counts[kernels.C_DATAGRAMS])

    @property
    def truncated(self) -> int:
        """Datagrams dropped: longer than an mbuf's data room."""
        return int(self._counts[kernels.C_TRUNCATED])

    @property
    def calls(self) -> int:
        """``recvmmsg`` system calls made (polls that found the pool's mbufs)."""
        return int(self._counts[kernels.C_CALLS])

    def wait_fd(self) -> int | None:
        return self._fd if self._fd >= 0 else None

    def poll(self, burst: pktflow.Burst) -> int:
        array, n = burst.array, burst.capacity
        if array is not self._bound_array:
            self._bind(burst)
        if self._alloc(n) != n:
            return 0  # the pool is empty until downstream frees: try again
        before = self._counts[kernels.C_BYTES]
        k = int(
            _rx_burst(
                self._fd, self._msgs, self._iovs, self._names, self._words, self._data,
                self._stride, self._priv, array, self._rest, n, self._port, self._counts,
            )
        )  # fmt: skip
        if k == 0:
            self._free(n)
            return 0
        if k < n:
            self._free_rest(n - k)
        burst.nbytes = int(self._counts[kernels.C_BYTES] - before)
        return k

    def _bind(self, burst: pktflow.Burst) -> None:
        pool = self.ctx.pool
        bound = pool.bind(burst.array)
        self._alloc, self._free = bound.alloc_bulk, bound.free_bulk
        if len(self._msgs) < burst.capacity:
            self._msgs, self._iovs, self._names = kernels.messages(burst.capacity)
        self._rest = np.zeros(burst.capacity, np.uint32)  # mbufs no datagram filled
        self._free_rest = pool.bind(self._rest).free_bulk
        self._bound_array = burst.array

    async def stop(self) -> None:
        sock, self.sock, self._fd = self.sock, None, -1
        if sock is None:
            return
        with _bound_lock:
            mine = _bound.get(self._port, [])
            if sock in mine:
                mine.remove(sock)
            if not mine:
                _bound.pop(self._port, None)
        sock.close()


class UdpSink(pktflow.Stage):
    """Sends each packet's data to ``to`` ("host:port"), or back to its sender (``reply``).

    One ``sendmmsg`` per burst (per run of one answering socket). A
    datagram the socket refuses (its buffer full, too long) is counted in
    ``failed``, never waited for. Consecutive datagrams to one address, of
    one length up to 1,472 bytes (an Ethernet MTU's), go as one message the
    kernel cuts into datagrams (UDP generic segmentation offload, Linux
    4.18+): a fraction of the kernel's cost per datagram. Where a route
    cannot segment (the kernel refuses such a message), the sink sends one
    by one from then on.

    Options:
        to: Where to send every datagram, "host:port".
        reply: Send each one back to where it came from (``udp_source`` kept it),
            from the socket it arrived on.
        gso: Let the kernel segment runs of datagrams (where it can).
    """

    outputs = ()
    keeps_lengths = True

    def __init__(
        self,
        ctx: pktflow.StageContext,
        *,
        to: str | None = None,
        reply: bool = False,
        gso: bool = True,
    ) -> None:
        super().__init__(ctx)
        if (to is None) == (not reply):
            raise pktflow.PktflowValueError("udp_sink needs exactly one of to: or reply: true")
        self.to = None if to is None else _address(to, "to")
        self.reply = reply
        if reply:
            _needs_priv(ctx.pool, "udp_sink with reply")
        self.gso = gso  # after start(): whether the kernel segments for this sink
        self._segments = 1  # datagrams a message at most: GSO_SEGMENTS once start() finds GSO
        self._arrays = PoolArraysCache()
        self._counts = np.zeros(kernels.COUNTERS, np.int64)
        self._destination = b""
        self._grow(64)
        # reply: the answering socket by local port (-1: not looked up yet); else [own]
        self._fds = np.full(1 << 16 if reply else 1, -1, np.int32)
        self._dups: list[int] = []  # fds of sources' sockets, duplicated: ours to close
        self.unmatched = 0
        self.sock: socket.socket | None = None

    async def start(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.gso = self.gso and _kernel_segments(self.sock)
        self._segments = kernels.GSO_SEGMENTS if self.gso else 1
        if self.to is not None:
            host, port = self.to
            try:
                address = socket.inet_aton(socket.gethostbyname(host))
            except OSError as exc:
                self.sock.close()
                raise pktflow.PktflowValueError(
                    f"udp_sink: cannot resolve {host!r}: {exc}"
                ) from None
            self._destination = (
                struct.pack("<H", socket.AF_INET) + struct.pack("!H", port) + address
            )
            self._fill_destination(0)
            self._fds[0] = self.sock.fileno()

    def _fill_destination(self, start: int) -> None:
        names = self._names.reshape(-1, kernels.SOCKADDR)
        names[start:, : len(self._destination)] = np.frombuffer(self._destination, np.uint8)

    @property
    def sent(self) -> int:
        """Datagrams the kernel took."""
        return int(self._counts[kernels.C_DATAGRAMS])

    @property
    def failed(self) -> int:
        """Datagrams refused (socket buffer full, too long, ...) and dropped."""
        return int(self._counts[kernels.C_FAILED])

    @property
    def calls(self) -> int:
        """``sendmmsg`` system calls made."""
        return int(self._counts[kernels.C_CALLS])

    @property
    def segmented(self) -> int:
        """Datagrams of those sent that the kernel cut from a longer message (GSO)."""
        return int(self._counts[kernels.C_SEGMENTED])

    def process(self, burst: pktflow.Burst) -> None:
        words, data, stride = self._arrays.of(burst.pool)
        n = burst.n
        if n > len(self._msgs):
            self._grow(n)
        priv = burst.pool.private
        done = 0
        while True:
            dealt = int(
                _tx_burst(
                    self._fds, self._msgs, self._iovs, self._names, self._controls,
                    self._batches, words, data, stride, priv, burst.array[done:n], n - done,
                    self.reply, self._segments, self._counts,
                )
            )  # fmt: skip
            if dealt < 0:  # the route cannot segment: one by one from here on
                log.info("udp_sink: the kernel cannot segment on this route; sending one by one")
                self.gso, self._segments = False, 1
                done -= dealt + 1
                continue
            done += dealt
            if done >= n:
                break
            self._resolve(SENDER.unpack_from(priv[int(burst.array[done])])[2])
        self.free(burst)

    def _grow(self, n: int) -> None:
        self._msgs, self._iovs, self._names = kernels.messages(n)
        self._controls, self._batches = kernels.send_batches(n)
        if self._destination:
            self._fill_destination(0)

    def _resolve(self, port: int) -> None:
        """Which socket answers datagrams that arrived on local ``port``: the source's, or ours."""
        assert self.sock is not None
        sock = _answering_socket(port)
        if sock is None:
            self.unmatched += 1
            fd = self.sock.fileno()
        else:
            try:
                # Ours to close: the reply socket outlives a source stopped before us.
                fd = os.dup(sock.fileno())
            except OSError:
                fd = self.sock.fileno()
            else:
                self._dups.append(fd)
        self._fds[port] = fd

    async def stop(self) -> None:
        for fd in self._dups:
            os.close(fd)
        self._dups.clear()
        self._fds[:] = -1
        if self.sock is not None:
            self.sock.close()
            self.sock = None
