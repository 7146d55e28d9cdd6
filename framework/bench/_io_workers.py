"""The other ends of ``pktflow bench io``, each in its own spawned process (``pktflow._worker``).

A server or receiver measured in the bench's process must not share the
GIL with the traffic it is measured on: the UDP client, the AF_PACKET
sender and scapy's sniffer run here, each serving jobs from the parent
until it sends None.

- ``udp_client``: ("echo", port, seconds) -> ``Span`` of the replies: keeps
  a window of datagrams in flight to 127.0.0.1:port and sends one more per
  reply, a batch per system call (sent as UDP GSO messages where the
  kernel has it: the server receives each datagram on its own). The socket is connected, so a reply
  from another address than the server's is dropped (as a resolver does).
- ``afpacket_sender``: ("send", seconds) -> frames sent: floods the veth
  end ``a`` of the namespace with a pktflow pipeline (generator ->
  afpacket_sink) for that long.
- ``scapy_sniffer``: ("sniff", seconds) -> ``Span``: scapy's ``sniff`` on
  the veth end ``b``, counting frames; scapy is imported inside the
  namespace, so its interface list is the namespace's.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

from pktflow._worker import Parent

from ._io_netns import Netns
from ._measure import Span

__all__ = ["FRAME_SIZE", "afpacket_sender", "scapy_sniffer", "udp_client"]

FRAME_SIZE = 64  # bytes per frame the sender floods
DATAGRAM = 64  # bytes of payload per echo datagram
WINDOW = 128  # datagrams in flight per echo client
QUIET_S = 0.02  # no reply for this long: datagrams were lost, refill the window
MSG_WAITFORONE = 0x10000  # recvmmsg: block for the first datagram only


def udp_client(parent: Parent) -> None:
    """Echo client: serves ("echo", port, seconds) jobs until None.

    Batched, so the client is not what bounds the server it measures: one
    ``recvmmsg`` takes every reply waiting (blocking for the first, at most
    ``QUIET_S``), one system call sends as many datagrams again: messages
    of up to ``GSO_SEGMENTS`` datagrams the kernel cuts (UDP GSO) where it
    can, so the server still receives each datagram on its own but the
    client pays the stack once a message, else one message per datagram.
    """
    import numpy as np

    from pktflow.pipelines import _udp_kernels as k

    rx, rx_iovs, _ = k.messages(WINDOW)
    buffers = np.zeros((WINDOW, 2048), np.uint8)
    slots = np.arange(WINDOW, dtype=np.uint64)
    rx_iovs[:: k.MAX_SEGS, 0] = buffers.ctypes.data + slots * 2048
    rx_iovs[:: k.MAX_SEGS, 1] = 2048
    rx[:, k.M_NAME] = rx[:, k.M_NAMELEN] = 0  # connected: no addresses
    send = _datagram_sender(k, np)
    k.recv_many(-1, rx, 1, 0), send(-1, 1)  # compiled (or loaded) before jobs
    quiet = struct.pack("ll", 0, int(QUIET_S * 1e6))
    parent.ready()
    while (job := parent.receive()) is not None:
        _, port, seconds = job
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            # Connected, as a DNS resolver is: replies must come from the address it sent to.
            sock.connect(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, quiet)
            fd = sock.fileno()
            replies = 0
            start = time.perf_counter()
            deadline = start + seconds
            send(fd, WINDOW)
            now = start
            while now < deadline:
                got = k.recv_many(fd, rx, WINDOW, MSG_WAITFORONE)
                if got > 0:
                    replies += got
                    send(fd, got)  # one more per reply
                else:  # quiet (lost on the way), or refused: put the window back
                    send(fd, WINDOW)
                now = time.perf_counter()
            end = time.perf_counter()
        parent.send(Span(start, end, replies))


def _datagram_sender(k: Any, np: Any) -> Any:
    """``send(fd, count)``: ``count`` datagrams of ``DATAGRAM`` bytes on a connected socket.

    The messages point into arrays made here: ``send`` keeps them alive.
    """
    payload = np.tile(np.arange(DATAGRAM, dtype=np.uint8), WINDOW)
    tx, tx_iovs, _ = k.messages(WINDOW)
    tx[:, k.M_NAME] = tx[:, k.M_NAMELEN] = 0
    first = tx_iovs[:: k.MAX_SEGS]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.getsockopt(k.SOL_UDP, k.UDP_SEGMENT)
        except OSError:  # no UDP GSO here: a message per datagram
            first[:, 0], first[:, 1] = payload.ctypes.data, DATAGRAM

            def send_each(fd: int, count: int, keep: Any = payload) -> int:
                return int(k.send_many(fd, tx, count, 0))

            return send_each
    controls, _ = k.send_batches(WINDOW)
    controls[:, 2] = DATAGRAM
    segments = k.GSO_SEGMENTS
    messages = np.arange(WINDOW, dtype=np.uint64)
    first[:, 0] = payload.ctypes.data + messages * (segments * DATAGRAM)
    tx[:, k.M_CONTROL] = controls.ctypes.data + messages * (k.CONTROL_WORDS * 8)
    tx[:, k.M_CONTROLLEN] = k.CONTROL_WORDS * 8

    def send(fd: int, count: int, keep: Any = (payload, controls)) -> int:
        full, rest = divmod(count, segments)
        first[:full, 1] = segments * DATAGRAM
        if rest:
            first[full, 1] = rest * DATAGRAM
        return int(k.send_many(fd, tx, full + (rest > 0), 0))

    return send


SENDER_BURST = 256  # the flood's bursts: fewer kicks, a faster sender than at 32


def afpacket_sender(parent: Parent, netns: Netns) -> None:
    """Floods ``netns.a``: serves ("send", seconds) jobs until None, answering frames sent."""
    import pktflow

    spec: dict[str, Any] = {
        "name": "pktflow-bench-io-sender",
        "runtime": {"burst": SENDER_BURST, "poll": "busy"},
        "mempools": {"pkts": {"n": 8191, "cache_size": 256}},
        "stages": {
            "gen": {"type": "generator", "size": FRAME_SIZE, "flows": 64},
            "tx": {"type": "afpacket_sink", "inputs": ["gen"], "interface": netns.a},
        },
    }
    with netns.entered():
        pktflow.Pipeline.from_dict(spec)  # loads the kernels before the first job
        parent.ready()
        while (job := parent.receive()) is not None:
            _, seconds = job
            pipeline = pktflow.Pipeline.from_dict(spec)
            stats = asyncio.run(pipeline.run(duration=seconds))
            parent.send(stats.stages["tx"]["packets_in"])


def scapy_sniffer(parent: Parent, netns: Netns) -> None:
    """scapy ``sniff`` on ``netns.b``: serves ("sniff", seconds) jobs until None."""
    with netns.entered():
        # Imported here, inside the namespace, so scapy lists its links; scapy.all as a
        # user imports it, so sniff dissects Ethernet and IP as it would for them.
        from scapy.all import sniff

        parent.ready()
        while (job := parent.receive()) is not None:
            _, seconds = job
            seen = _Count()
            start = time.perf_counter()
            sniff(iface=netns.b, prn=seen, store=False, timeout=seconds)
            parent.send(Span(start, time.perf_counter(), seen.n))


class _Count:
    """sniff's ``prn``: counts the frames it is called with."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, _: object) -> None:
        self.n += 1
