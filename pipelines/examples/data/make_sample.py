"""Write ``sample.pcap`` beside this script: the input of ``pcap-filter.yaml``.

A small, deterministic capture (1000 Ethernet frames, microsecond pcap,
1 ms apart) made with the standard library only, so it can be re-made
anywhere: ``python pipelines/examples/data/make_sample.py``. The frames
cycle through seven kinds, so that the example's filter (``ipv4.dst in
10.0.0.0/8 and udp.dport == 53 and not vlan``) keeps one in seven:

0. IPv4/UDP 10.0.0.1 -> 10.1.0.x port 53 (kept)
1. IPv4/UDP 10.0.0.1 -> 192.168.0.x port 53 (outside 10/8)
2. IPv4/UDP 10.0.0.1 -> 10.1.0.x port 5001 (another port)
3. IPv4/TCP 10.0.0.1 -> 10.1.0.x port 80
4. 802.1Q VLAN 100, IPv4/UDP -> 10.1.0.x port 53 (tagged)
5. IPv6/UDP 2001:db8::1 -> 2001:db8::x port 53
6. ARP request
"""

from __future__ import annotations

import struct
from pathlib import Path

PACKETS = 1000
SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                         src, dst)  # fmt: skip
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def _udp(sport: int, dport: int, body: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body  # checksum 0: none


def _udp6(src: bytes, dst: bytes, sport: int, dport: int, body: bytes) -> bytes:
    length = 8 + len(body)
    pseudo = src + dst + struct.pack("!IxxxB", length, 17)
    draft = struct.pack("!HHHH", sport, dport, length, 0) + body
    return struct.pack("!HHHH", sport, dport, length, _checksum(pseudo + draft) or 0xFFFF) + body


def frame(i: int) -> bytes:
    """The i-th frame of the sample."""
    kind, host = i % 7, 1 + i % 250
    body = bytes((i + k) & 0xFF for k in range(18 + i % 200))
    src = bytes([10, 0, 0, 1])
    inside = bytes([10, 1, 0, host])
    eth = DST_MAC + SRC_MAC
    if kind == 0:
        return eth + b"\x08\x00" + _ipv4(src, inside, 17, _udp(40000 + i, 53, body))
    if kind == 1:
        outside = bytes([192, 168, 0, host])
        return eth + b"\x08\x00" + _ipv4(src, outside, 17, _udp(40000 + i, 53, body))
    if kind == 2:
        return eth + b"\x08\x00" + _ipv4(src, inside, 17, _udp(40000 + i, 5001, body))
    if kind == 3:
        tcp = struct.pack("!HHIIBBHHH", 40000 + i, 80, i, 0, 5 << 4, 0x02, 65535, 0, 0)
        return eth + b"\x08\x00" + _ipv4(src, inside, 6, tcp + body)
    if kind == 4:
        tag = struct.pack("!HH", 0x8100, 100)
        return eth + tag + b"\x08\x00" + _ipv4(src, inside, 17, _udp(40000 + i, 53, body))
    if kind == 5:
        src6 = bytes.fromhex("20010db8000000000000000000000001")
        dst6 = bytes.fromhex("20010db80000000000000000000000") + bytes([0, host])
        udp = _udp6(src6, dst6, 40000 + i, 53, body)
        ip6 = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64) + src6 + dst6
        return eth + b"\x86\xdd" + ip6 + udp
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, SRC_MAC, src, bytes(6), inside)
    return b"\xff" * 6 + SRC_MAC + b"\x08\x06" + arp + bytes(18)  # padded to 60 bytes


def main() -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # microseconds, Ethernet
    for i in range(PACKETS):
        data = frame(i)
        seconds, micros = divmod(1_700_000_000_000_000 + i * 1000, 1_000_000)
        out.append(struct.pack("<IIII", seconds, micros, len(data), len(data)) + data)
    path = Path(__file__).with_name("sample.pcap")
    path.write_bytes(b"".join(out))
    print(f"wrote {path} ({PACKETS} packets)")


if __name__ == "__main__":
    main()
