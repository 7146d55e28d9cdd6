"""DPDK-style packet types for a burst of mbufs, in one jitted call (the ``parse`` stage).

``parse_burst`` reads each frame of a burst straight from its pool's data
area and classifies it as DPDK's software parser (``rte_net_get_ptype``)
does: Ethernet with up to two 802.1Q/802.1ad tags, IPv4 (options,
fragments), IPv6 (hop-by-hop, routing, fragment and destination-options
extension headers), then TCP, UDP, SCTP, ICMP or ICMPv6. It writes DPDK's
``RTE_PTYPE_*`` bits into ``packet_type`` and the header lengths into
``l2_len``/``l3_len``/``l4_len`` (DPDK's tx_offload fields, word
``H_TX_OFFLOAD``). The burst comes back stably partitioned: valid handles
first, then the invalid ones, each in their original order.

Unlike DPDK it checks every length it walks. A frame is invalid when it is
shorter than an Ethernet header or a VLAN tag it announces; when IPv4 has
a version other than 4, an IHL below 5, a header past the data, or a total
length below the header or beyond the packet; when IPv6 has a version other
than 6, a truncated header or extension header, more than
``IPV6_MAX_EXT_HEADERS`` of them, or a payload length beyond the packet;
when TCP is truncated or its data offset is below 5; when UDP is truncated
or its length is below 8 or beyond the IP payload; when ICMP is shorter
than 4 bytes or SCTP than 12. Other ethertypes are valid with L2 alone. An
invalid frame still gets the bits and lengths of every header read in full.

Other choices, DPDK's where it has one: one tag is ``L2_ETHER_VLAN`` and
two are ``L2_ETHER_QINQ`` whatever their TPIDs; any fragment (the first
one too) is ``L4_FRAG`` with l4_len 0; ICMP has l4_len 0; other protocols
over unfragmented IP are ``L4_NONFRAG``; ESP, AH and mobility headers mark
``L3_IPV6_EXT`` but are not walked.

Usage::

    from pktflow.pipelines._parse_kernels import RTE_PTYPE_L4_UDP, parse_burst
    data = np.frombuffer(pool._object_bytes, np.uint8)
    valid = parse_burst(pool.header_words, data, pool._stride, burst, n)
    # burst[:valid] are well-formed; burst[valid:n] are not
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._burst_checks import check_burst
from pktflow._mbuf_layout import (
    H_BUF,
    H_DATA,
    H_DIRECT,
    H_DIRECT_POOL,
    H_PACKET_TYPE,
    H_PKT_LEN,
    H_TX_OFFLOAD,
    H_WORDS,
    P_POOL_ID,
)
from pktflow.backends._numba._address_kernels import descriptor, u8_at, u32_at, u32_rows_at

__all__ = [
    "IPV6_MAX_EXT_HEADERS",
    "RTE_PTYPE_L2_ETHER",
    "RTE_PTYPE_L2_ETHER_QINQ",
    "RTE_PTYPE_L2_ETHER_VLAN",
    "RTE_PTYPE_L2_MASK",
    "RTE_PTYPE_L3_IPV4",
    "RTE_PTYPE_L3_IPV4_EXT",
    "RTE_PTYPE_L3_IPV6",
    "RTE_PTYPE_L3_IPV6_EXT",
    "RTE_PTYPE_L3_MASK",
    "RTE_PTYPE_L4_FRAG",
    "RTE_PTYPE_L4_ICMP",
    "RTE_PTYPE_L4_MASK",
    "RTE_PTYPE_L4_NONFRAG",
    "RTE_PTYPE_L4_SCTP",
    "RTE_PTYPE_L4_TCP",
    "RTE_PTYPE_L4_UDP",
    "RTE_PTYPE_UNKNOWN",
    "parse_burst",
]

# DPDK's values (lib/mbuf/rte_mbuf_ptype.h): one 4-bit field per layer.
RTE_PTYPE_UNKNOWN = 0x0
RTE_PTYPE_L2_ETHER = 0x1
RTE_PTYPE_L2_ETHER_VLAN = 0x6
RTE_PTYPE_L2_ETHER_QINQ = 0x7
RTE_PTYPE_L2_MASK = 0xF
RTE_PTYPE_L3_IPV4 = 0x10
RTE_PTYPE_L3_IPV4_EXT = 0x30  # IHL > 5: options
RTE_PTYPE_L3_IPV6 = 0x40
RTE_PTYPE_L3_IPV6_EXT = 0xC0  # extension headers
RTE_PTYPE_L3_MASK = 0xF0
RTE_PTYPE_L4_TCP = 0x100
RTE_PTYPE_L4_UDP = 0x200
RTE_PTYPE_L4_FRAG = 0x300  # any fragment, the first one included: no L4 is parsed
RTE_PTYPE_L4_SCTP = 0x400
RTE_PTYPE_L4_ICMP = 0x500  # ICMP over IPv4, ICMPv6 over IPv6
RTE_PTYPE_L4_NONFRAG = 0x600  # an unfragmented IP packet of any other protocol
RTE_PTYPE_L4_MASK = 0xF00

# IPv6 extension headers walked per packet at most; a longer chain is
# invalid (DPDK stops at 5 and leaves L4 unknown). RFC 8200 order allows at
# most hop-by-hop, destination options, routing, fragment, destination
# options: 8 leaves room and bounds the work an attacker can ask for.
IPV6_MAX_EXT_HEADERS = 8

_ETH_HLEN = 14
_VLAN_HLEN = 4
_ETHER_TYPE_IPV4 = 0x0800
_ETHER_TYPE_IPV6 = 0x86DD
_ETHER_TYPE_VLAN = 0x8100
_ETHER_TYPE_QINQ = 0x88A8
_IPV4_HLEN = 20
_IPV6_HLEN = 40
_IPV4_FRAG_BITS = 0x3FFF  # MF flag | fragment offset
_PROTO_HOPOPTS = 0
_PROTO_ICMP = 1
_PROTO_TCP = 6
_PROTO_UDP = 17
_PROTO_ROUTING = 43
_PROTO_FRAGMENT = 44
_PROTO_ESP = 50
_PROTO_AH = 51
_PROTO_ICMPV6 = 58
_PROTO_DSTOPTS = 60
_PROTO_SCTP = 132
_PROTO_MOBILITY = 135
_TCP_HLEN = 20
_UDP_HLEN = 8
_SCTP_HLEN = 12
_ICMP_HLEN = 4

_JIT = {"cache": True, "nogil": True}


@njit
def _u8(data, p):
    # An unsigned index: numba then skips its negative-index wraparound.
    return np.int64(data[np.uint64(p)])


@njit
def _be16(data, p):
    return (_u8(data, p) << 8) | _u8(data, p + 1)


@njit
def _is_walked_ext(proto):
    return proto in (_PROTO_HOPOPTS, _PROTO_ROUTING, _PROTO_DSTOPTS, _PROTO_FRAGMENT)


@njit("int64(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64)", **_JIT)
def parse_burst(words, data, stride, handles, n):
    """Classify ``handles[:n]`` and put the valid ones first; returns how many are valid.

    Writes ``packet_type`` and the tx_offload lengths of every mbuf.
    ``words`` is the pool's (pool_n + 1, H_WORDS) header array, ``data``
    its whole data area (mbuf h's buffer at ``h * stride``). A clone
    attached to another pool's buffer cannot be read: it gets packet type
    0 (unknown), lengths 0, and counts as valid. Returns ``ERR_COUNT`` for
    ``n`` outside ``0..len(handles)`` and ``ERR_FOREIGN`` for a handle not
    below pool_n, touching nothing.

    Headers must lie in the first segment; length fields are checked
    against the whole packet (``pkt_len``). A layer's bits and length are
    written once its header was read in full, so an invalid frame still
    says how far the parse got.

    The partition moves each valid handle past the invalid ones before it
    (no scratch memory): free when all are valid, at worst n * n / 4 moves.
    """
    checked = check_burst(words, handles, n)
    if checked:
        return checked
    pool_n = np.int64(words.shape[0]) - 1
    pool_id = words[pool_n, P_POOL_ID]
    data_size = np.int64(data.shape[0])
    valid = np.int64(0)
    # One function, no per-frame helper taking `data`: such a call costs two
    # atomic refcount updates per packet that numba does not prune.
    for i in range(n):
        h = handles[i]
        m = np.uint64(h)  # row index only: unsigned skips the wraparound
        direct = np.int64(words[m, H_DIRECT])
        data_word = np.int64(words[m, H_DATA])
        dlen = data_word & 0xFFFF
        b = direct * stride + (np.int64(words[m, H_BUF]) >> 16)  # the frame's first byte
        total = dlen  # bytes in the whole packet, for the length fields
        if data_word >> 16 > 1:
            total = max(dlen, np.int64(words[m, H_PKT_LEN]))
        ptype = RTE_PTYPE_UNKNOWN
        l2 = np.int64(0)
        l3 = np.int64(0)
        l4 = np.int64(0)
        ok = False
        if words[m, H_DIRECT_POOL] != pool_id:
            ok = True  # another pool's buffer: unreachable from `data`, left unknown
        elif direct >= pool_n or b + dlen > data_size:
            pass  # a corrupt header: never read outside the data area
        else:
            while True:  # one pass over the headers: `break` stops at the first problem
                if dlen < _ETH_HLEN:
                    break
                ptype = RTE_PTYPE_L2_ETHER
                l2 = np.int64(_ETH_HLEN)
                ether_type = _be16(data, b + 12)
                tags = 0
                while ether_type in (_ETHER_TYPE_VLAN, _ETHER_TYPE_QINQ) and tags < 2:
                    if l2 + _VLAN_HLEN > dlen:
                        break
                    ether_type = _be16(data, b + l2 + 2)
                    l2 += _VLAN_HLEN
                    tags += 1
                    ptype = RTE_PTYPE_L2_ETHER_VLAN if tags == 1 else RTE_PTYPE_L2_ETHER_QINQ
                if ether_type in (_ETHER_TYPE_VLAN, _ETHER_TYPE_QINQ) and tags < 2:
                    break  # a truncated tag

                # Length fields that overrun the packet make it invalid, but
                # the parse goes on through the bytes that are there.
                fits = True
                frag = False
                if ether_type == _ETHER_TYPE_IPV4:
                    if l2 + _IPV4_HLEN > dlen:
                        break
                    version_ihl = _u8(data, b + l2)
                    ihl = (version_ihl & 0xF) * 4
                    if version_ihl >> 4 != 4 or ihl < _IPV4_HLEN or l2 + ihl > dlen:
                        break
                    ptype |= RTE_PTYPE_L3_IPV4 if ihl == _IPV4_HLEN else RTE_PTYPE_L3_IPV4_EXT
                    l3 = ihl
                    total_length = _be16(data, b + l2 + 2)
                    if total_length < ihl:
                        break
                    # Past the IP datagram is Ethernet padding, not L4: bound L4 by it.
                    end = l2 + total_length
                    if end > total:
                        fits = False
                        end = total
                    frag = (_be16(data, b + l2 + 6) & _IPV4_FRAG_BITS) != 0
                    proto = _u8(data, b + l2 + 9)
                    icmp = _PROTO_ICMP
                elif ether_type == _ETHER_TYPE_IPV6:
                    if l2 + _IPV6_HLEN > dlen or _u8(data, b + l2) >> 4 != 6:
                        break
                    ptype |= RTE_PTYPE_L3_IPV6
                    l3 = np.int64(_IPV6_HLEN)
                    end = l2 + _IPV6_HLEN + _be16(data, b + l2 + 4)
                    if end > total:
                        fits = False
                        end = total
                    limit = min(end, dlen)
                    proto = _u8(data, b + l2 + 6)
                    truncated = False
                    for _ in range(IPV6_MAX_EXT_HEADERS):
                        if frag or not _is_walked_ext(proto):
                            break  # DPDK's rule: the fragment header is the last one walked
                        # Each is at least 8 bytes: the fragment header exactly
                        # 8, the others (len + 1) * 8.
                        at = l2 + l3
                        size = np.int64(8)
                        if at + size <= limit and proto != _PROTO_FRAGMENT:
                            size = (_u8(data, b + at + 1) + 1) * 8
                        if at + size > limit:
                            truncated = True
                            break
                        frag = proto == _PROTO_FRAGMENT
                        ptype |= RTE_PTYPE_L3_IPV6_EXT
                        proto = _u8(data, b + at)
                        l3 += size
                    if truncated or (not frag and _is_walked_ext(proto)):
                        break  # truncated, or longer than IPV6_MAX_EXT_HEADERS
                    if proto in (_PROTO_ESP, _PROTO_AH, _PROTO_MOBILITY):
                        # Extension headers too (rte_mbuf_ptype.h), which this parser does not walk.
                        ptype |= RTE_PTYPE_L3_IPV6_EXT
                    icmp = _PROTO_ICMPV6
                else:
                    ok = True  # not IP: L2 is all there is to check
                    break

                if frag:
                    ptype |= RTE_PTYPE_L4_FRAG  # DPDK parses no L4 in any fragment
                    ok = fits
                    break
                at = l2 + l3
                limit = min(end, dlen)
                if proto == _PROTO_UDP:
                    if at + _UDP_HLEN > limit:
                        break
                    ptype |= RTE_PTYPE_L4_UDP
                    l4 = np.int64(_UDP_HLEN)
                    udp_length = _be16(data, b + at + 4)
                    ok = fits and udp_length >= _UDP_HLEN and at + udp_length <= end
                elif proto == _PROTO_TCP:
                    if at + _TCP_HLEN > limit:
                        break
                    data_offset = (_u8(data, b + at + 12) >> 4) * 4
                    if data_offset < _TCP_HLEN or at + data_offset > limit:
                        break
                    ptype |= RTE_PTYPE_L4_TCP
                    l4 = data_offset
                    ok = fits
                elif proto == icmp:
                    if at + _ICMP_HLEN > limit:
                        break
                    ptype |= RTE_PTYPE_L4_ICMP  # DPDK gives an l4_len to TCP, UDP, SCTP only
                    ok = fits
                elif proto == _PROTO_SCTP:
                    if at + _SCTP_HLEN > limit:
                        break
                    ptype |= RTE_PTYPE_L4_SCTP
                    l4 = np.int64(_SCTP_HLEN)
                    ok = fits
                else:
                    ptype |= RTE_PTYPE_L4_NONFRAG
                    ok = fits
                break
        words[m, H_PACKET_TYPE] = np.uint32(ptype)
        words[m, H_TX_OFFLOAD] = np.uint32(l2 | (l4 << 8) | (l3 << 16))
        if ok:
            # Keep handles[:valid] valid and handles[valid:i] invalid, both in order
            # (nothing moves while every frame so far was valid).
            if valid != i:
                for j in range(i, valid, -1):
                    handles[j] = handles[j - 1]
                handles[valid] = h
            valid += 1
    return valid


@njit("int64(int64, int64, int64)", cache=True)
def parse_burst_at(pool, handles, n):
    """``parse_burst`` called with ints: ``pool`` is the address of
    ``PoolArrays.described`` (words, data, stride), ``handles`` of a burst's array.

    Holds the GIL (one call per burst: releasing it costs about 40 ns).
    """
    d = descriptor(pool, 5)
    words = u32_rows_at(d[0], d[1], H_WORDS)
    return parse_burst(words, u8_at(d[2], d[3]), np.int64(d[4]), u32_at(handles, max(n, 0)), n)
