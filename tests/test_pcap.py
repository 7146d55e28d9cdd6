"""pcap_source and pcap_sink on real files, checked with independent readers (scapy, dpkt)."""

from __future__ import annotations

import asyncio
import struct
import time
from decimal import Decimal
from pathlib import Path

import dpkt
import pytest
from scapy.all import IP, TCP, UDP, Ether, PcapNgWriter, rdpcap, wrpcap

import pktflow

BASE = 1_700_000_000


def frames(count: int = 300) -> list:
    packets = []
    for i in range(count):
        l4 = UDP(sport=1000 + i, dport=53) if i % 3 else TCP(sport=2000 + i, dport=80)
        p = Ether() / IP(src="10.0.0.1", dst=f"10.0.{i % 7}.2") / l4 / bytes(i % 300)
        p.time = Decimal(BASE) + Decimal(i) / 1000 + Decimal(i % 1000) / 10**6
        packets.append(p)
    return packets


def run(stages: dict, **runtime) -> dict:
    spec = {"name": "pcap", "stages": stages}
    if runtime:
        spec["runtime"] = runtime
    pipeline = pktflow.Pipeline.from_dict(spec)
    stats = asyncio.run(pipeline.run()).as_dict()
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values())
    return stats


def replay(source: Path, sink: Path, fmt: str = "pcap", **source_options) -> dict:
    return run(
        {
            "src": {"type": "pcap_source", "path": str(source), **source_options},
            "out": {"type": "pcap_sink", "inputs": ["src"], "path": str(sink), "format": fmt},
        }
    )


def ns(value) -> int:
    return int(Decimal(value) * 10**9)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_round_trip_keeps_every_packet_and_timestamp(tmp_path: Path, fmt: str):
    original = frames()
    wrpcap(str(tmp_path / "in.pcap"), original)  # microsecond pcap
    stats = replay(tmp_path / "in.pcap", tmp_path / f"out.{fmt}", fmt)
    assert stats["stages"]["out"]["packets_in"] == len(original)
    back = rdpcap(str(tmp_path / f"out.{fmt}"))
    assert [bytes(p) for p in back] == [bytes(p) for p in original]
    assert [ns(p.time) for p in back] == [ns(p.time) for p in original]


def test_nanosecond_pcap_from_dpkt_to_pcapng_read_by_dpkt(tmp_path: Path):
    packets = [bytes(p) for p in frames(50)]
    stamps = [BASE * 10**9 + 123_456_789 * i + 7 for i in range(50)]
    with (tmp_path / "ns.pcap").open("wb") as f:
        writer = dpkt.pcap.Writer(f, nano=True)
        for data, stamp in zip(packets, stamps, strict=True):
            writer.writepkt(data, ts=Decimal(stamp) / 10**9)
    replay(tmp_path / "ns.pcap", tmp_path / "out.pcapng", "pcapng")
    with (tmp_path / "out.pcapng").open("rb") as f:
        read = list(dpkt.pcapng.Reader(f))
    assert [data for _, data in read] == packets
    assert [ns(p.time) for p in rdpcap(str(tmp_path / "out.pcapng"))] == stamps


def test_pcapng_written_by_scapy(tmp_path: Path):
    original = frames(120)
    with PcapNgWriter(str(tmp_path / "in.pcapng")) as writer:
        for p in original:
            writer.write(p)
    replay(tmp_path / "in.pcapng", tmp_path / "out.pcap")
    back = rdpcap(str(tmp_path / "out.pcap"))
    assert [bytes(p) for p in back] == [bytes(p) for p in original]
    assert [ns(p.time) for p in back] == [ns(p.time) for p in original]


def test_big_endian_pcap(tmp_path: Path):
    packets = [bytes(p) for p in frames(20)]
    header = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = b"".join(
        struct.pack(">IIII", BASE + i, 500 + i, len(p), len(p)) + p for i, p in enumerate(packets)
    )
    (tmp_path / "be.pcap").write_bytes(header + records)
    replay(tmp_path / "be.pcap", tmp_path / "out.pcap")
    back = rdpcap(str(tmp_path / "out.pcap"))
    assert [bytes(p) for p in back] == packets
    assert [ns(p.time) for p in back] == [(BASE + i) * 10**9 + (500 + i) * 1000 for i in range(20)]


def test_loop_replays_with_shifted_timestamps(tmp_path: Path):
    original = frames(40)
    wrpcap(str(tmp_path / "in.pcap"), original)
    stats = replay(tmp_path / "in.pcap", tmp_path / "out.pcap", loop=3)
    assert stats["stages"]["src"]["packets_out"] == 120
    stamps = [ns(p.time) for p in rdpcap(str(tmp_path / "out.pcap"))]
    assert stamps == sorted(stamps) and len(set(stamps)) == 120


def test_recorded_timing_paces_the_replay(tmp_path: Path):
    packets = frames(30)
    for i, p in enumerate(packets):
        p.time = Decimal(BASE) + Decimal(i) / 50  # 30 packets over 0.58 s
    wrpcap(str(tmp_path / "in.pcap"), packets)
    started = time.monotonic()
    stats = replay(tmp_path / "in.pcap", tmp_path / "out.pcap", timing="recorded")
    assert time.monotonic() - started >= 0.55
    assert stats["stages"]["out"]["packets_in"] == 30


@pytest.mark.parametrize("cut", [10, 24 + 8, 24 + 16 + 20])
def test_truncated_file_delivers_what_came_before_then_names_the_offset(tmp_path: Path, cut):
    wrpcap(str(tmp_path / "in.pcap"), frames(10))
    whole = (tmp_path / "in.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(whole[: len(whole) - cut])
    pipeline = pktflow.Pipeline.from_dict(
        {
            "name": "cut",
            "stages": {
                "src": {"type": "pcap_source", "path": str(tmp_path / "cut.pcap")},
                "count": {"type": "counter", "inputs": ["src"]},
            },
        }
    )
    with pytest.raises(pktflow.PipelineError, match=r"truncated record at byte \d+ \(after 9"):
        asyncio.run(pipeline.run())
    stats = pipeline.stats().as_dict()
    assert stats["stages"]["count"]["packets_in"] == 9
    assert stats["mempools"]["pkts"]["in_use"] == 0


def test_malformed_record_length(tmp_path: Path):
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    (tmp_path / "bad.pcap").write_bytes(header + struct.pack("<IIII", 1, 2, 1 << 30, 60))
    with pytest.raises(pktflow.PipelineError, match="malformed record at byte 24"):
        run(
            {
                "src": {"type": "pcap_source", "path": str(tmp_path / "bad.pcap")},
                "c": {"type": "counter", "inputs": ["src"]},
            }
        )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello world, no capture here", "not a pcap or pcapng file"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "file header is truncated"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 105), "link type 105"),
    ],
)
def test_not_a_capture_is_a_config_error_naming_the_stage(tmp_path: Path, content, message):
    (tmp_path / "x.pcap").write_bytes(content)
    pipeline = pktflow.Pipeline.from_dict(
        {
            "name": "bad",
            "stages": {
                "src": {"type": "pcap_source", "path": str(tmp_path / "x.pcap")},
                "c": {"type": "counter", "inputs": ["src"]},
            },
        }
    )
    with pytest.raises(pktflow.ConfigError, match=f"stages.src: .*{message}"):
        asyncio.run(pipeline.run())


def test_packets_longer_than_the_data_room_are_refused(tmp_path: Path):
    wrpcap(str(tmp_path / "big.pcap"), [Ether() / IP() / UDP() / bytes(3000)])
    pipeline = pktflow.Pipeline.from_dict(
        {
            "name": "big",
            "stages": {
                "src": {"type": "pcap_source", "path": str(tmp_path / "big.pcap")},
                "c": {"type": "counter", "inputs": ["src"]},
            },
        }
    )
    with pytest.raises(pktflow.ConfigError, match=r"3042-byte packet.*data room is 2048"):
        asyncio.run(pipeline.run())


def test_sink_snaplen_cuts_the_capture_but_keeps_the_length(tmp_path: Path):
    original = frames(30)
    wrpcap(str(tmp_path / "in.pcap"), original)
    run(
        {
            "src": {"type": "pcap_source", "path": str(tmp_path / "in.pcap")},
            "out": {
                "type": "pcap_sink", "inputs": ["src"], "path": str(tmp_path / "out.pcap"),
                "snaplen": 60,
            },
        }
    )  # fmt: skip
    with (tmp_path / "out.pcap").open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.snaplen == 60
        read = [data for _, data in reader]
    assert read == [bytes(p)[:60] for p in original]


def test_shards_split_the_records(tmp_path: Path):
    from pktflow._stage import StageContext
    from pktflow.pipelines.pcap import PcapSource

    wrpcap(str(tmp_path / "in.pcap"), frames(25))
    pool = pktflow.pktmbuf_pool_create("pcap-shards", 255, 0, 0, pktflow.MBUF_DEFAULT_BUF_SIZE)
    try:
        counts = []
        for replica in range(2):
            ctx = StageContext(
                "src", lcore=0, pool=pool, pools={}, burst_size=32, options={},
                replica=replica, replicas=2,
            )  # fmt: skip
            counts.append(len(PcapSource(ctx, path=str(tmp_path / "in.pcap")).records))
        assert counts == [13, 12]
    finally:
        pool.close()
