"""The ``parse`` stage's kernel against frames built by scapy and read back by dpkt.

Each frame goes into a real mbuf; ``parse_burst`` classifies a whole burst
in one call. Expected packet types and header lengths come from scapy's
own dissection (the header length of a layer is its length less its
payload's) and, for the lengths, from dpkt too.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterator

import dpkt
import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    _ICMPv6,
    fragment6,
)
from scapy.layers.l2 import ARP, GRE, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import NoPayload, Packet, Raw

import pktflow
from pktflow._mbuf_layout import H_PACKET_TYPE, H_TX_OFFLOAD
from pktflow.abc import ERR_COUNT, ERR_FOREIGN
from pktflow.pipelines._parse_kernels import (
    IPV6_MAX_EXT_HEADERS,
    RTE_PTYPE_L2_ETHER,
    RTE_PTYPE_L2_ETHER_QINQ,
    RTE_PTYPE_L2_ETHER_VLAN,
    RTE_PTYPE_L2_MASK,
    RTE_PTYPE_L3_IPV4,
    RTE_PTYPE_L3_IPV4_EXT,
    RTE_PTYPE_L3_IPV6,
    RTE_PTYPE_L3_IPV6_EXT,
    RTE_PTYPE_L3_MASK,
    RTE_PTYPE_L4_FRAG,
    RTE_PTYPE_L4_ICMP,
    RTE_PTYPE_L4_MASK,
    RTE_PTYPE_L4_NONFRAG,
    RTE_PTYPE_L4_SCTP,
    RTE_PTYPE_L4_TCP,
    RTE_PTYPE_L4_UDP,
    RTE_PTYPE_UNKNOWN,
    parse_burst,
)

Result = tuple[int, int, int, int]  # packet_type, l2_len, l3_len, l4_len
PAYLOAD = bytes(range(48))
TCP_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("WScale", 7)]


# Frames of every kind the parser claims, all well-formed.
def _frames() -> dict[str, bytes]:
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=7) / UDP(sport=1, dport=2) / (PAYLOAD * 8)
    big6 = IPv6() / IPv6ExtHdrFragment(id=9) / UDP(sport=1, dport=2) / (PAYLOAD * 8)
    v4_frags = fragment(big, fragsize=128)
    v6_frags = fragment6(big6, 200)
    return {
        "ipv4-udp": bytes(Ether() / IP() / UDP(sport=53, dport=5353) / PAYLOAD),
        "ipv4-tcp": bytes(Ether() / IP() / TCP(flags="S") / PAYLOAD),
        "ipv4-options-tcp-options": bytes(
            Ether()
            / IP(options=[IPOption_RR(routers=["1.2.3.4", "5.6.7.8"]), IPOption_NOP()])
            / TCP(options=TCP_OPTIONS)
            / PAYLOAD
        ),
        "ipv4-icmp": bytes(Ether() / IP() / ICMP() / PAYLOAD),
        "ipv4-sctp": bytes(Ether() / IP() / SCTP(sport=1, dport=2) / PAYLOAD),
        "ipv4-gre": bytes(Ether() / IP() / GRE() / PAYLOAD),
        "ipv4-frag-first": bytes(Ether() / v4_frags[0]),
        "ipv4-frag-middle": bytes(Ether() / v4_frags[1]),
        "ipv4-frag-last": bytes(Ether() / v4_frags[-1]),
        "vlan-ipv4-udp": bytes(Ether() / Dot1Q(vlan=5) / IP() / UDP() / PAYLOAD),
        "qinq-ipv4-udp": bytes(Ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP() / UDP() / PAYLOAD),
        "double-8021q-ipv6-tcp": bytes(
            Ether() / Dot1Q(vlan=1) / Dot1Q(vlan=2) / IPv6() / TCP(options=TCP_OPTIONS)
        ),
        "ipv6-udp": bytes(Ether() / IPv6() / UDP() / PAYLOAD),
        "ipv6-tcp": bytes(Ether() / IPv6() / TCP() / PAYLOAD),
        "ipv6-icmpv6": bytes(Ether() / IPv6() / ICMPv6EchoRequest(data=PAYLOAD)),
        "ipv6-sctp": bytes(Ether() / IPv6() / SCTP() / PAYLOAD),
        "ipv6-ext-udp": bytes(
            Ether()
            / IPv6()
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrRouting(addresses=["2001:db8::1", "2001:db8::2"])
            / IPv6ExtHdrDestOpt()
            / UDP()
            / PAYLOAD
        ),
        "ipv6-ext-tcp": bytes(Ether() / IPv6() / IPv6ExtHdrHopByHop() / TCP() / PAYLOAD),
        "ipv6-frag-udp": bytes(Ether() / IPv6() / IPv6ExtHdrFragment() / UDP() / PAYLOAD),
        "ipv6-hop-frag-first": bytes(
            Ether() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(m=1) / UDP() / PAYLOAD
        ),
        "ipv6-frag-middle": bytes(Ether() / v6_frags[1]),
        "ipv6-no-next-header": bytes(Ether() / IPv6(nh=59)),
        "arp": bytes(Ether() / ARP()),
        "vlan-arp": bytes(Ether() / Dot1Q() / ARP()),
        "ipv4-udp-padded": bytes(Ether() / IP() / UDP() / b"x") + bytes(17),  # 60-byte minimum
        "raw-ethertype": bytes(Ether(type=0x88B5) / PAYLOAD),
    }


FRAMES = _frames()
IPV6_EXTS = (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting, IPv6ExtHdrFragment)


def _hlen(layer: Packet) -> int:
    return len(layer) - len(layer.payload)


def scapy_expect(frame: bytes) -> Result:
    """(packet_type, l2_len, l3_len, l4_len) from scapy's dissection of a well-formed frame."""
    layer = Ether(frame)
    l2, tags = _hlen(layer), 0
    layer = layer.payload
    while isinstance(layer, Dot1Q | Dot1AD):
        l2, tags = l2 + _hlen(layer), tags + 1
        layer = layer.payload
    ptype = (RTE_PTYPE_L2_ETHER, RTE_PTYPE_L2_ETHER_VLAN, RTE_PTYPE_L2_ETHER_QINQ)[tags]
    if isinstance(layer, IP):
        ptype |= RTE_PTYPE_L3_IPV4 if layer.ihl == 5 else RTE_PTYPE_L3_IPV4_EXT
        l3 = _hlen(layer)
        fragmented = layer.flags.MF or layer.frag != 0
        icmp: type[Packet] = ICMP
    elif isinstance(layer, IPv6):
        ptype |= RTE_PTYPE_L3_IPV6
        l3 = _hlen(layer)
        fragmented = False
        while isinstance(layer.payload, IPV6_EXTS) and not fragmented:
            layer = layer.payload
            ptype |= RTE_PTYPE_L3_IPV6_EXT
            l3 += _hlen(layer)
            fragmented = isinstance(layer, IPv6ExtHdrFragment)
        icmp = _ICMPv6
    else:
        return ptype, l2, 0, 0
    if fragmented:
        return ptype | RTE_PTYPE_L4_FRAG, l2, l3, 0
    l4 = layer.payload
    if isinstance(l4, TCP):
        return ptype | RTE_PTYPE_L4_TCP, l2, l3, l4.dataofs * 4
    if isinstance(l4, UDP):
        return ptype | RTE_PTYPE_L4_UDP, l2, l3, _hlen(l4)
    if isinstance(l4, SCTP):
        return ptype | RTE_PTYPE_L4_SCTP, l2, l3, _hlen(l4)
    if isinstance(l4, icmp):
        return ptype | RTE_PTYPE_L4_ICMP, l2, l3, 0
    assert isinstance(l4, Raw | GRE | NoPayload), l4
    return ptype | RTE_PTYPE_L4_NONFRAG, l2, l3, 0


def dpkt_lengths(frame: bytes) -> tuple[int, int, int]:
    """(l2_len, l3_len, l4_len) of an unfragmented TCP/UDP frame as dpkt reads them."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    l4 = ip.data
    assert isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP), type(l4)
    return len(eth) - len(ip), len(ip) - len(l4), len(l4) - len(l4.data)


# Pools and bursts.
class Burst:
    """Frames in mbufs of one pool, parsed in one call."""

    def __init__(self, pool: pktflow.PktmbufPool, frames: list[bytes]) -> None:
        self.pool = pool
        self.handles = np.empty(len(frames), dtype=np.uint32)
        for i, frame in enumerate(frames):
            m = pool.alloc()
            assert m is not None
            if frame:
                m.append(len(frame))[:] = frame
            self.handles[i] = m.handle
        self.original = self.handles.copy()

    def parse(self, n: int | None = None) -> int:
        n = len(self.handles) if n is None else n
        data = np.frombuffer(self.pool._object_bytes, np.uint8)
        return int(parse_burst(self.pool.header_words, data, self.pool._stride, self.handles, n))

    def result(self, handle: int) -> Result:
        row = self.pool.headers[handle]
        return (
            int(row["packet_type"]),
            int(row["l2_len"]),
            int(row["l3_len"]),
            int(row["l4_len"]),
        )

    def results(self) -> list[Result]:
        """Each frame's result, in the order the frames were given."""
        return [self.result(int(h)) for h in self.original]


@pytest.fixture
def make_pool(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., pktflow.PktmbufPool]]:
    # Shared (hugepage) pools are named machine-wide: the pid keeps parallel runs apart.
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:150]
    pools: list[pktflow.PktmbufPool] = []

    def make(backend: str | None = None) -> pktflow.PktmbufPool:
        pool = pktflow.pktmbuf_pool_create(
            f"parse-{os.getpid()}-{base}-{len(pools)}",
            1023,
            0,
            0,
            pktflow.MBUF_DEFAULT_BUF_SIZE,
            backend=backend,
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def pool(make_pool: Callable[..., pktflow.PktmbufPool]) -> pktflow.PktmbufPool:
    return make_pool()


def parse_one(pool: pktflow.PktmbufPool, frame: bytes) -> tuple[bool, Result]:
    burst = Burst(pool, [frame])
    valid = burst.parse()
    return valid == 1, burst.results()[0]


# Constants and well-formed frames.
def test_packet_type_values_are_dpdks() -> None:
    # lib/mbuf/rte_mbuf_ptype.h
    assert (RTE_PTYPE_UNKNOWN, RTE_PTYPE_L2_ETHER) == (0, 0x1)
    assert (RTE_PTYPE_L2_ETHER_VLAN, RTE_PTYPE_L2_ETHER_QINQ, RTE_PTYPE_L2_MASK) == (6, 7, 0xF)
    assert (RTE_PTYPE_L3_IPV4, RTE_PTYPE_L3_IPV4_EXT) == (0x10, 0x30)
    assert (RTE_PTYPE_L3_IPV6, RTE_PTYPE_L3_IPV6_EXT, RTE_PTYPE_L3_MASK) == (0x40, 0xC0, 0xF0)
    assert (RTE_PTYPE_L4_TCP, RTE_PTYPE_L4_UDP, RTE_PTYPE_L4_FRAG) == (0x100, 0x200, 0x300)
    assert (RTE_PTYPE_L4_SCTP, RTE_PTYPE_L4_ICMP, RTE_PTYPE_L4_NONFRAG) == (0x400, 0x500, 0x600)
    assert RTE_PTYPE_L4_MASK == 0xF00


def test_every_protocol_as_scapy_dissects_it(pool: pktflow.PktmbufPool) -> None:
    names = list(FRAMES)
    burst = Burst(pool, [FRAMES[name] for name in names])
    assert burst.parse() == len(names)
    assert burst.handles.tolist() == burst.original.tolist()
    got = dict(zip(names, burst.results(), strict=True))
    want = {name: scapy_expect(FRAMES[name]) for name in names}
    assert got == want


def test_scapy_oracle_covers_each_kind() -> None:
    # The oracle itself must see what the names say, or the test above proves little.
    l4 = {name: scapy_expect(frame)[0] & RTE_PTYPE_L4_MASK for name, frame in FRAMES.items()}
    assert l4["ipv4-udp"] == l4["ipv6-ext-udp"] == RTE_PTYPE_L4_UDP
    assert l4["ipv4-tcp"] == l4["ipv6-ext-tcp"] == l4["double-8021q-ipv6-tcp"] == RTE_PTYPE_L4_TCP
    assert l4["ipv4-icmp"] == l4["ipv6-icmpv6"] == RTE_PTYPE_L4_ICMP
    assert l4["ipv4-sctp"] == l4["ipv6-sctp"] == RTE_PTYPE_L4_SCTP
    assert l4["ipv4-gre"] == l4["ipv6-no-next-header"] == RTE_PTYPE_L4_NONFRAG
    frags = [name for name in FRAMES if "frag" in name]
    assert len(frags) == 6 and all(l4[name] == RTE_PTYPE_L4_FRAG for name in frags)
    assert l4["arp"] == l4["vlan-arp"] == l4["raw-ethertype"] == 0
    assert scapy_expect(FRAMES["qinq-ipv4-udp"])[:2] == (RTE_PTYPE_L2_ETHER_QINQ | 0x210, 22)
    assert scapy_expect(FRAMES["ipv4-options-tcp-options"])[1:] == (14, 32, 40)
    assert scapy_expect(FRAMES["ipv6-ext-udp"])[2] == 40 + 8 + 8 + 40 + 8


@pytest.mark.parametrize(
    "name",
    [
        "ipv4-udp",
        "ipv4-tcp",
        "ipv4-options-tcp-options",
        "vlan-ipv4-udp",
        "qinq-ipv4-udp",
        "double-8021q-ipv6-tcp",
        "ipv6-udp",
        "ipv6-ext-udp",
        "ipv6-ext-tcp",
    ],
)
def test_lengths_as_dpkt_reads_them(pool: pktflow.PktmbufPool, name: str) -> None:
    valid, (_, l2, l3, l4) = parse_one(pool, FRAMES[name])
    assert valid
    assert (l2, l3, l4) == dpkt_lengths(FRAMES[name])


def test_tx_offload_word_layout(pool: pktflow.PktmbufPool) -> None:
    burst = Burst(pool, [FRAMES["ipv4-options-tcp-options"]])
    burst.parse()
    h = int(burst.handles[0])
    # l2_len: bits 0-7, l4_len: bits 8-15, l3_len: bits 16-31.
    assert int(pool.header_words[h, H_TX_OFFLOAD]) == 14 | 40 << 8 | 32 << 16
    assert int(pool.header_words[h, H_PACKET_TYPE]) == 0x131


def test_writes_only_packet_type_and_lengths(pool: pktflow.PktmbufPool) -> None:
    burst = Burst(pool, [*FRAMES.values(), b"", b"\x00" * 20])
    before = pool.header_words.copy()
    burst.parse()
    changed = np.argwhere(pool.header_words != before)
    assert set(changed[:, 1].tolist()) <= {H_PACKET_TYPE, H_TX_OFFLOAD}


# Truncated and malformed frames.
CUT = [
    "ipv4-udp",
    "ipv4-options-tcp-options",
    "ipv4-icmp",
    "ipv4-sctp",
    "ipv4-frag-middle",
    "qinq-ipv4-udp",
    "double-8021q-ipv6-tcp",
    "ipv6-icmpv6",
    "ipv6-ext-udp",
    "ipv6-hop-frag-first",
    "ipv6-no-next-header",
]


@pytest.mark.parametrize("name", CUT)
def test_cut_at_every_byte_is_invalid(pool: pktflow.PktmbufPool, name: str) -> None:
    frame = FRAMES[name]
    full, l2, l3, l4 = scapy_expect(frame)
    # ICMP reports no l4_len (as DPDK) but needs its 4-byte header.
    l4_bytes = 4 if full & RTE_PTYPE_L4_MASK == RTE_PTYPE_L4_ICMP else l4
    burst = Burst(pool, [frame[:cut] for cut in range(len(frame))])
    assert burst.parse() == 0
    for cut, (ptype, got_l2, got_l3, got_l4) in enumerate(burst.results()):
        # What was read in full is reported as for the whole frame; nothing past it.
        reached = [cut >= 14 and cut >= l2, cut >= l2 + l3, cut >= l2 + l3 + l4_bytes]
        if cut < 14:
            assert (ptype, got_l2, got_l3, got_l4) == (0, 0, 0, 0), cut
        if reached[0]:
            assert (ptype & RTE_PTYPE_L2_MASK, got_l2) == (full & RTE_PTYPE_L2_MASK, l2), cut
        if reached[1]:
            assert (ptype & RTE_PTYPE_L3_MASK, got_l3) == (full & RTE_PTYPE_L3_MASK, l3), cut
        else:
            assert got_l4 == 0 and ptype & RTE_PTYPE_L4_MASK in (0, RTE_PTYPE_L4_FRAG), cut
        if reached[2]:
            assert (ptype, got_l4) == (full, l4), cut


def test_non_ip_needs_only_an_ethernet_header(pool: pktflow.PktmbufPool) -> None:
    frame = FRAMES["arp"]
    burst = Burst(pool, [frame[:cut] for cut in range(len(frame) + 1)])
    assert burst.parse() == len(frame) + 1 - 14
    results = burst.results()
    assert all(r == (0, 0, 0, 0) for r in results[:14])
    assert all(r == (RTE_PTYPE_L2_ETHER, 14, 0, 0) for r in results[14:])


def test_truncated_vlan_tags(pool: pktflow.PktmbufPool) -> None:
    one_tag = bytes(Ether() / Dot1Q() / ARP())
    burst = Burst(pool, [one_tag[:cut] for cut in (15, 17, 18)])
    assert burst.parse() == 1
    assert burst.results() == [
        (RTE_PTYPE_L2_ETHER, 14, 0, 0),
        (RTE_PTYPE_L2_ETHER, 14, 0, 0),
        (RTE_PTYPE_L2_ETHER_VLAN, 18, 0, 0),
    ]


MALFORMED: dict[str, tuple[Packet, Result]] = {
    "ipv4-version-6": (Ether() / IP(version=6) / UDP(), (RTE_PTYPE_L2_ETHER, 14, 0, 0)),
    "ipv4-ihl-4": (Ether() / IP(ihl=4) / UDP(), (RTE_PTYPE_L2_ETHER, 14, 0, 0)),
    "ipv4-ihl-0": (Ether() / IP(ihl=0) / UDP(), (RTE_PTYPE_L2_ETHER, 14, 0, 0)),
    "ipv4-ihl-past-data": (Ether() / IP(ihl=15) / UDP(), (RTE_PTYPE_L2_ETHER, 14, 0, 0)),
    "ipv4-len-too-big": (Ether() / IP(len=200) / UDP() / PAYLOAD, (0x211, 14, 20, 8)),
    "ipv4-len-below-ihl": (Ether() / IP(len=19) / UDP() / PAYLOAD, (0x11, 14, 20, 0)),
    "ipv4-frag-len-too-big": (Ether() / IP(len=999, frag=8) / PAYLOAD, (0x311, 14, 20, 0)),
    "udp-len-7": (Ether() / IP() / UDP(len=7) / PAYLOAD, (0x211, 14, 20, 8)),
    "udp-len-0": (Ether() / IP() / UDP(len=0) / PAYLOAD, (0x211, 14, 20, 8)),
    "udp-len-too-big": (Ether() / IP() / UDP(len=57) / PAYLOAD, (0x211, 14, 20, 8)),
    "udp6-len-too-big": (Ether() / IPv6() / UDP(len=100) / PAYLOAD, (0x241, 14, 40, 8)),
    "tcp-doff-4": (Ether() / IP() / TCP(dataofs=4) / PAYLOAD, (0x11, 14, 20, 0)),
    "tcp-doff-0": (Ether() / IP() / TCP(dataofs=0) / PAYLOAD, (0x11, 14, 20, 0)),
    "tcp-doff-past-ip": (Ether() / IP() / TCP(dataofs=15) / b"abcd", (0x11, 14, 20, 0)),
    "icmp-3-bytes": (Ether() / IP(proto=1) / b"\x08\x00\x00", (0x11, 14, 20, 0)),
    "icmpv6-2-bytes": (Ether() / IPv6(nh=58) / b"\x80\x00", (0x41, 14, 40, 0)),
    "ipv6-version-4": (Ether() / IPv6(version=4) / UDP(), (RTE_PTYPE_L2_ETHER, 14, 0, 0)),
    "ipv6-plen-too-big": (Ether() / IPv6(plen=500) / UDP() / PAYLOAD, (0x241, 14, 40, 8)),
    "ipv6-plen-below-udp": (Ether() / IPv6(plen=4) / UDP() / PAYLOAD, (0x41, 14, 40, 0)),
    "ipv6-hop-len-past-data": (
        Ether() / IPv6(nh=0) / bytes([17, 9]) / bytes(14),
        (0x41, 14, 40, 0),
    ),
    "ipv6-frag-header-truncated": (
        Ether() / IPv6(nh=44) / bytes([17, 0, 0, 0]),
        (0x41, 14, 40, 0),
    ),
    "ipv6-too-many-ext-headers": (
        Ether()
        / IPv6()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrDestOpt()
        / UDP(),
        (0xC1, 14, 40 + 8 * IPV6_MAX_EXT_HEADERS, 0),
    ),
    "short-frame": (Ether() / IP() / UDP(), (0, 0, 0, 0)),  # cut to 13 bytes below
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_is_invalid(pool: pktflow.PktmbufPool, name: str) -> None:
    packet, want = MALFORMED[name]
    frame = bytes(packet)[:13] if name == "short-frame" else bytes(packet)
    assert parse_one(pool, frame) == (False, want)


def test_ipv6_ext_header_limit_is_inclusive(pool: pktflow.PktmbufPool) -> None:
    chain: Packet = Ether() / IPv6()
    for _ in range(IPV6_MAX_EXT_HEADERS):
        chain = chain / IPv6ExtHdrDestOpt()
    frame = bytes(chain / UDP() / PAYLOAD)
    assert parse_one(pool, frame) == (True, scapy_expect(frame))


def test_ipv6_extensions_not_walked_still_mark_ext(pool: pktflow.PktmbufPool) -> None:
    # AH (51) and ESP (50) are extension headers to DPDK; the walk stops at them.
    for nh in (50, 51):
        frame = bytes(Ether() / IPv6(nh=nh) / PAYLOAD)
        assert parse_one(pool, frame) == (True, (0x6C1, 14, 40, 0))


def test_icmp_of_the_other_ip_version_is_nonfrag(pool: pktflow.PktmbufPool) -> None:
    assert parse_one(pool, bytes(Ether() / IP(proto=58) / PAYLOAD)) == (True, (0x611, 14, 20, 0))
    assert parse_one(pool, bytes(Ether() / IPv6(nh=1) / PAYLOAD)) == (True, (0x641, 14, 40, 0))


def test_third_vlan_tag_is_an_unknown_ethertype(pool: pktflow.PktmbufPool) -> None:
    frame = bytes(Ether() / Dot1AD() / Dot1Q() / Dot1Q() / IP() / UDP())
    assert parse_one(pool, frame) == (True, (RTE_PTYPE_L2_ETHER_QINQ, 22, 0, 0))


# Partition, counts, clones, chains.
def test_stable_partition(pool: pktflow.PktmbufPool) -> None:
    good, bad = FRAMES["ipv4-udp"], FRAMES["ipv4-udp"][:40]
    pattern = "gbbgbggbbbgg"
    burst = Burst(pool, [good if c == "g" else bad for c in pattern])
    assert burst.parse() == pattern.count("g")
    original = burst.original.tolist()
    want = [h for h, c in zip(original, pattern, strict=True) if c == "g"]
    want += [h for h, c in zip(original, pattern, strict=True) if c == "b"]
    assert burst.handles.tolist() == want


def test_stable_partition_random_patterns(pool: pktflow.PktmbufPool) -> None:
    rng = random.Random(6)
    good, bad = FRAMES["ipv6-udp"], FRAMES["ipv6-udp"][:60]
    for _ in range(20):
        n = rng.randrange(1, 65)
        pattern = [rng.random() < 0.7 for _ in range(n)]
        burst = Burst(pool, [good if ok else bad for ok in pattern])
        extra = np.full(3, 0xDEAD, dtype=np.uint32)  # past n: must stay untouched
        burst.handles = np.concatenate([burst.handles, extra])
        assert burst.parse(n) == sum(pattern)
        original = burst.original.tolist()
        want = [h for h, ok in zip(original, pattern, strict=True) if ok]
        want += [h for h, ok in zip(original, pattern, strict=True) if not ok]
        assert burst.handles.tolist() == want + [0xDEAD] * 3
        pool.free_bulk(burst.original)


def test_burst_mixing_every_kind(pool: pktflow.PktmbufPool) -> None:
    frames = list(FRAMES.values())
    kinds = frames + [bytes(p) for p, _ in MALFORMED.values()] + [frames[0][:20], b""]
    rng = random.Random(7)
    order = list(range(len(kinds)))
    rng.shuffle(order)
    alone = [parse_one(pool, kinds[k]) for k in order]
    burst = Burst(pool, [kinds[k] for k in order])
    valid = burst.parse()
    assert valid == sum(ok for ok, _ in alone)
    assert burst.results() == [result for _, result in alone]
    original = burst.original.tolist()
    flags = [ok for ok, _ in alone]
    want = [h for h, ok in zip(original, flags, strict=True) if ok]
    want += [h for h, ok in zip(original, flags, strict=True) if not ok]
    assert burst.handles.tolist() == want


def test_empty_burst(pool: pktflow.PktmbufPool) -> None:
    burst = Burst(pool, [FRAMES["ipv4-udp"][:20]])
    before = pool.header_words.copy()
    assert burst.parse(0) == 0
    assert np.array_equal(pool.header_words, before)
    empty = np.empty(0, dtype=np.uint32)
    data = np.frombuffer(pool._object_bytes, np.uint8)
    assert parse_burst(pool.header_words, data, pool._stride, empty, 0) == 0


def test_bad_count_and_foreign_handles_touch_nothing(pool: pktflow.PktmbufPool) -> None:
    burst = Burst(pool, [FRAMES["ipv4-udp"][:20], FRAMES["ipv4-udp"]])
    before = pool.header_words.copy()
    assert burst.parse(3) == ERR_COUNT
    assert burst.parse(-1) == ERR_COUNT
    burst.handles[1] = pool.n  # the parameter row's index: not an mbuf
    assert burst.parse() == ERR_FOREIGN
    assert np.array_equal(pool.header_words, before)
    assert burst.handles.tolist() == [burst.original[0], pool.n]


def test_clone_of_another_pool_is_unknown(make_pool: Callable[..., pktflow.PktmbufPool]) -> None:
    owner, clones = make_pool(), make_pool()
    source = Burst(owner, [FRAMES["ipv4-tcp"]])
    assert source.parse() == 1
    m = owner.mbuf(int(source.handles[0]))
    copy = m.clone(clones)  # indirect: its bytes sit in `owner`'s data area
    assert copy is not None and copy.is_indirect
    here = clones.alloc()
    assert here is not None
    here.append(len(FRAMES["ipv4-udp"]))[:] = FRAMES["ipv4-udp"]
    burst = Burst(clones, [])
    burst.handles = burst.original = np.array([copy.handle, here.handle], dtype=np.uint32)
    assert clones.headers[copy.handle]["packet_type"] != 0  # rte_pktmbuf_attach copied it
    assert burst.parse() == 2
    assert burst.results() == [(0, 0, 0, 0), scapy_expect(FRAMES["ipv4-udp"])]


def test_clone_in_the_same_pool_reads_the_shared_buffer(pool: pktflow.PktmbufPool) -> None:
    source = Burst(pool, [FRAMES["ipv6-ext-tcp"]])
    m = pool.mbuf(int(source.handles[0]))
    m.adj(0)
    copy = m.clone()
    assert copy is not None and copy.is_indirect
    burst = Burst(pool, [])
    burst.handles = burst.original = np.array([copy.handle], dtype=np.uint32)
    assert burst.parse() == 1
    assert burst.results() == [scapy_expect(FRAMES["ipv6-ext-tcp"])]


def test_headroom_moved_by_prepend(pool: pktflow.PktmbufPool) -> None:
    frame = FRAMES["vlan-ipv4-udp"]
    m = pool.alloc()
    assert m is not None
    m.append(len(frame) - 18)[:] = frame[18:]
    m.prepend(18)[:] = frame[:18]  # data_off is no longer the default headroom
    burst = Burst(pool, [])
    burst.handles = burst.original = np.array([m.handle], dtype=np.uint32)
    assert burst.parse() == 1
    assert burst.results() == [scapy_expect(frame)]


def test_chain_lengths_count_every_segment(pool: pktflow.PktmbufPool) -> None:
    frame = FRAMES["ipv4-udp"]
    split = 14 + 20 + 8 + 10  # headers and some payload in the first segment
    head, tail = pool.alloc(), pool.alloc()
    assert head is not None and tail is not None
    head.append(split)[:] = frame[:split]
    tail.append(len(frame) - split)[:] = frame[split:]
    assert head.chain(tail)
    burst = Burst(pool, [])
    burst.handles = burst.original = np.array([head.handle], dtype=np.uint32)
    assert burst.parse() == 1
    assert burst.results() == [scapy_expect(frame)]


@pytest.mark.parametrize("backend", ["pure", "hugepage"])
def test_pools_of_every_backend(
    make_pool: Callable[..., pktflow.PktmbufPool], backend: str
) -> None:
    # The kernel sees only header words and data bytes, whoever made the pool.
    pool = make_pool(backend)
    frames = [FRAMES["ipv6-ext-udp"], FRAMES["ipv4-udp"][:30], FRAMES["qinq-ipv4-udp"]]
    burst = Burst(pool, frames)
    assert burst.parse() == 2
    assert burst.handles.tolist() == [burst.original[0], burst.original[2], burst.original[1]]
    assert [burst.results()[k] for k in (0, 2)] == [scapy_expect(frames[k]) for k in (0, 2)]
