"""The quickstart graph as a Python user would write it without pktflow: the bench's peer.

Three asyncio tasks joined by bounded ``asyncio.Queue``s pass Python lists
of frames (``bytes``): a generator makes lists of ``burst`` frames of the
quickstart's flows, a parser unpacks each frame's Ethernet, IPv4 and UDP
headers with ``struct`` (ethertype, version and IHL, protocol, ports) and
passes the valid ones on, and a counter counts packets and bytes. Written
as a careful user would: ``struct.Struct`` objects compiled once, bound
methods in locals, whole lists per ``put``.

The frames are built once (one per flow) and reused, so the peer's
generator allocates no frame per packet, only the list each burst travels
in: generous to the peer, so ratios against it are, if anything, low.
"""

from __future__ import annotations

import asyncio
import struct
from time import perf_counter
from typing import Any, NamedTuple

from pktflow.pipelines.generator import flow_headers

__all__ = ["PeerCounts", "frames", "run_peer", "valid_frames"]

ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17
UDP_HEADER = 8

_ETHERTYPE = struct.Struct("!H")  # at 12
_VERSION_IHL_PROTO = struct.Struct("!B8xB")  # at 14: version+IHL, then protocol at 23
_PORTS = struct.Struct("!HH")  # at the start of the UDP header
_DONE = None  # what the generator sends, and the parser passes on, after the last list


class PeerCounts(NamedTuple):
    """What one run of the peer counted, and how long it took."""

    packets: int  # frames that reached the counter
    bytes: int  # their bytes
    invalid: int  # frames the parser dropped
    elapsed_s: float  # from the tasks' start to the counter's last list


def frames(flows: int, size: int) -> list[bytes]:
    """One frame of ``size`` bytes per flow: the generator stage's headers, then zeros.

    Usage: ``frames(16, 64)``
    """
    return [flow_headers(f, size).ljust(size, b"\0") for f in range(flows)]


async def _generate(
    out: asyncio.Queue[list[bytes] | None], templates: list[bytes], count: int, burst: int
) -> None:
    """Put lists of ``burst`` frames (the last one shorter), ``count`` frames in all, cycling
    through the flows; then ``_DONE``."""
    flows = len(templates)
    # Slicing this long enough cycle gives each list the next frames in flow order.
    cycle = templates * (burst // flows + 2)
    put = out.put
    sent = 0
    while sent < count:
        k = min(burst, count - sent)
        first = sent % flows
        await put(cycle[first : first + k])
        sent += k
    await put(_DONE)


async def _parse(
    inp: asyncio.Queue[list[bytes] | None], out: asyncio.Queue[list[bytes] | None]
) -> int:
    """Pass on the IPv4/UDP frames of each list, their headers unpacked; returns those dropped."""
    get, put = inp.get, out.put
    invalid = 0
    while (batch := await get()) is not _DONE:
        valid = valid_frames(batch)
        invalid += len(batch) - len(valid)
        if valid:
            await put(valid)
    await put(_DONE)
    return invalid


def valid_frames(
    batch: list[bytes],
    ethertype_of: Any = _ETHERTYPE.unpack_from,
    ip_of: Any = _VERSION_IHL_PROTO.unpack_from,
    ports_of: Any = _PORTS.unpack_from,
) -> list[bytes]:
    """The IPv4/UDP frames of ``batch``, their headers unpacked (the peers' parse stage).

    The unpackers are bound as defaults: locals, as a careful user would write it.

    Usage: ``valid = valid_frames(batch)``
    """
    valid: list[bytes] = []
    append = valid.append
    for frame in batch:
        if len(frame) >= 34 and ethertype_of(frame, 12)[0] == ETHERTYPE_IPV4:
            version_ihl, proto = ip_of(frame, 14)
            l4 = 14 + (version_ihl & 0x0F) * 4
            if version_ihl >> 4 == 4 and proto == IPPROTO_UDP and len(frame) >= l4 + UDP_HEADER:
                _sport, _dport = ports_of(frame, l4)
                append(frame)
    return valid


async def _count(inp: asyncio.Queue[list[bytes] | None]) -> tuple[int, int]:
    """Count the frames of each list and their bytes; returns (packets, bytes)."""
    get = inp.get
    packets = nbytes = 0
    while (batch := await get()) is not _DONE:
        packets += len(batch)
        nbytes += sum(map(len, batch))
    return packets, nbytes


async def run_peer(templates: list[bytes], count: int, burst: int, maxsize: int) -> PeerCounts:
    """Run generator -> parse -> counter as three tasks on the running loop, once.

    ``templates`` are the frames to cycle through (``frames(flows, size)``),
    ``count`` the frames to send, ``burst`` the frames per list, ``maxsize``
    the bound of each queue (in lists).

    Usage: ``runner.run(run_peer(frames(16, 64), 1 << 20, 32, 64))`` (an asyncio.Runner on uvloop)
    """
    if not templates:
        raise ValueError("templates must hold at least one frame")
    to_parse: asyncio.Queue[list[bytes] | None] = asyncio.Queue(maxsize)
    to_count: asyncio.Queue[list[bytes] | None] = asyncio.Queue(maxsize)
    start = perf_counter()
    _, invalid, (packets, nbytes) = await asyncio.gather(
        _generate(to_parse, templates, count, burst),
        _parse(to_parse, to_count),
        _count(to_count),
    )
    return PeerCounts(packets, nbytes, invalid, perf_counter() - start)
