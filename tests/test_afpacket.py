"""afpacket_source and afpacket_sink on a real veth pair inside a throwaway network namespace.

The sink sends on one end, the source receives on the other, in one
pipeline whose thread is moved into the namespace (setns); every frame is
accounted for, byte for byte, checked with an independent pcap reader
(dpkt). Skipped, with the reason, where namespaces are not permitted.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

import pktflow
from pktflow.bench._io_netns import Netns, NetnsUnavailable, veth_netns
from pktflow.pipelines.afpacket import AfpacketSink, AfpacketSource

ETHERTYPE = 0x88B5  # IEEE local experimental: no stack in the namespace answers it


@pytest.fixture
def netns() -> Iterator[Netns]:
    try:
        with veth_netns() as ns:
            yield ns
    except NetnsUnavailable as exc:
        pytest.skip(f"AF_PACKET tests need a network namespace: {exc}")


def frames(n: int, seed: int = 9) -> list[bytes]:
    """Frames of random sizes and payloads; some 802.1Q and 802.1ad tagged."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        dst, src = bytes([2, 0, 0, 0, 0, 2]), bytes([2, 0, 0, 0, 0, 1])
        if i % 7 == 3:
            tag = struct.pack("!HH", 0x8100, (i % 4095) + 1)  # the receiver's kernel strips it
        elif i % 11 == 5:
            tag = struct.pack("!HH", 0x88A8, 100)
        else:
            tag = b""
        head = dst + src + tag + struct.pack("!HI", ETHERTYPE, i)
        size = rng.randint(60, 1514)
        out.append(head + rng.randbytes(size - len(head)))
    return out


def write_pcap(path: Path, packets: list[bytes]) -> None:
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, nano=True)
        for i, packet in enumerate(packets):
            writer.writepkt(packet, ts=1_700_000_000 + i * 1e-6)


def read_pcap(path: Path) -> list[bytes]:
    with path.open("rb") as f:
        return [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]


def run_in(ns: Netns, spec: dict, duration: float = 30) -> tuple[pktflow.Pipeline, dict]:
    """Run the pipeline with this thread in the namespace (its sockets open there)."""
    pipeline = pktflow.Pipeline.from_dict(spec)
    with ns.entered():
        stats = asyncio.run(pipeline.run(duration=duration)).as_dict()
    return pipeline, stats


def test_sink_to_source_over_veth_every_frame_byte_for_byte(netns: Netns, tmp_path: Path):
    sent = frames(3000)
    write_pcap(tmp_path / "in.pcap", sent)
    spec = {
        "name": "veth",
        "runtime": {"burst": 32},
        "mempools": {"pkts": {"n": 8191, "cache_size": 256, "data_room": 2048}},
        "stages": {
            "replay": {"type": "pcap_source", "path": str(tmp_path / "in.pcap")},
            "tx": {"type": "afpacket_sink", "inputs": ["replay"], "interface": netns.a},
            "rx": {"type": "afpacket_source", "interface": netns.b, "count": len(sent)},
            "save": {"type": "pcap_sink", "inputs": ["rx"], "path": str(tmp_path / "out.pcap")},
        },
    }
    pipeline, stats = run_in(netns, spec)
    got = read_pcap(tmp_path / "out.pcap")
    assert len(got) == len(sent)
    assert sum(map(len, got)) == sum(map(len, sent))
    assert got == sent  # in order, tags put back where the kernel stripped them
    rx, tx = pipeline.stage("rx"), pipeline.stage("tx")
    assert isinstance(rx, AfpacketSource) and isinstance(tx, AfpacketSink)
    assert (rx.received, rx.too_long, rx.kernel_drops) == (len(sent), 0, 0)
    assert (tx.sent, tx.sent_bytes, tx.full_drops, tx.tx_errors) == (
        len(sent), sum(map(len, sent)), 0, 0,
    )  # fmt: skip
    assert stats["stages"]["rx"]["packets_out"] == len(sent)
    assert stats["stages"]["save"]["bytes_in"] == sum(map(len, sent))
    assert stats["mempools"]["pkts"]["in_use"] == 0


def test_a_frame_longer_than_the_mtu_is_counted_and_the_others_still_leave(
    netns: Netns, tmp_path: Path
):
    sent = frames(20)
    sent[7] = sent[7][:14] + bytes(1600 - 14)  # over the veth's 1500-byte MTU
    write_pcap(tmp_path / "in.pcap", sent)
    spec = {
        "name": "mtu",
        "stages": {
            "replay": {"type": "pcap_source", "path": str(tmp_path / "in.pcap")},
            "tx": {"type": "afpacket_sink", "inputs": ["replay"], "interface": netns.a},
            "rx": {"type": "afpacket_source", "interface": netns.b, "count": 19},
            "save": {"type": "pcap_sink", "inputs": ["rx"], "path": str(tmp_path / "out.pcap")},
        },
    }
    pipeline, stats = run_in(netns, spec, duration=10)
    assert read_pcap(tmp_path / "out.pcap") == sent[:7] + sent[8:]
    tx = pipeline.stage("tx")
    assert (tx.too_long, tx.tx_errors, tx.sent) == (1, 0, 19)
    assert stats["mempools"]["pkts"]["in_use"] == 0


def test_a_fanout_group_splits_the_frames_between_its_sockets(netns: Netns):
    n = 20_000
    spec = {
        "name": "fanout",
        "mempools": {"pkts": {"n": 8191, "cache_size": 256}},
        "stages": {
            "gen": {"type": "generator", "count": n, "flows": 256},
            "tx": {"type": "afpacket_sink", "inputs": ["gen"], "interface": netns.a},
            "rx0": {"type": "afpacket_source", "interface": netns.b, "fanout": 7},
            "rx1": {"type": "afpacket_source", "interface": netns.b, "fanout": 7},
            "c0": {"type": "counter", "inputs": ["rx0"]},
            "c1": {"type": "counter", "inputs": ["rx1"]},
        },
    }
    pipeline = pktflow.Pipeline.from_dict(spec)

    async def main() -> dict:
        await pipeline.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = pipeline.stats().as_dict()["stages"]
            if rows["c0"]["packets_in"] + rows["c1"]["packets_in"] >= n:
                break
            await asyncio.sleep(0.01)
        return (await pipeline.stop()).as_dict()

    with netns.entered():
        stats = asyncio.run(main())
    got = [stats["stages"][c]["packets_in"] for c in ("c0", "c1")]
    assert sum(got) == n  # each frame reached exactly one socket of the group
    assert min(got) > n // 10  # 256 flows hashed over two sockets
    assert stats["mempools"]["pkts"]["in_use"] == 0


def test_an_idle_source_sleeps_on_its_socket_and_wakes_for_a_frame(netns: Netns):
    assert not inspect.iscoroutinefunction(AfpacketSource.poll)  # it never waits itself
    spec = {
        "name": "idle",
        "runtime": {"poll": "adaptive"},
        "stages": {
            "rx": {"type": "afpacket_source", "interface": netns.b, "block_timeout_ms": 4},
            "c": {"type": "counter", "inputs": ["rx"]},
        },
    }
    pipeline = pktflow.Pipeline.from_dict(spec)
    frame = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]) + struct.pack("!H", ETHERTYPE) + bytes(46)

    async def main() -> tuple[float, int, list[float], dict]:
        await pipeline.start()
        started = time.process_time()
        await asyncio.sleep(0.1)  # spun, then asleep
        slept = pipeline._wakeups()[1]
        await asyncio.sleep(1.0)
        slept = pipeline._wakeups()[1] - slept
        idle_cpu = time.process_time() - started
        waits = []
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as tx:
            tx.bind((netns.a, 0))
            for i in range(3):  # the kernel hands the part-filled block over after 4 ms
                await asyncio.sleep(0.2)
                sent = time.monotonic()
                tx.send(frame)
                while pipeline.stats().as_dict()["stages"]["c"]["packets_in"] <= i:
                    assert time.monotonic() - sent < 5, "the frame never woke the walk"
                    await asyncio.sleep(0.002)
                waits.append(time.monotonic() - sent)
        return idle_cpu, slept, waits, (await pipeline.stop()).as_dict()

    with netns.entered():
        idle_cpu, slept, waits, stats = asyncio.run(main())
    assert idle_cpu < 0.5  # mostly asleep in epoll, on the socket
    assert 1 <= slept <= 3  # in the walk's sleep on the socket (up to 1 s), not polling with pauses
    # The socket is readable once the block is handed over: a walk never woken by it
    # would poll again only when its 1 s sleep ends.
    assert max(waits) < 0.3
    assert stats["stages"]["rx"]["packets_out"] == 3
    assert stats["mempools"]["pkts"]["in_use"] == 0


MISSING = {
    "source": {
        "x": {"type": "afpacket_source", "interface": "nope0"},
        "c": {"type": "counter", "inputs": ["x"]},
    },
    "sink": {
        "gen": {"type": "generator", "count": 1},
        "x": {"type": "afpacket_sink", "inputs": ["gen"], "interface": "nope0"},
    },
}


@pytest.mark.parametrize("which", MISSING)
def test_a_missing_interface_is_a_config_error_naming_it(which: str):
    pipeline = pktflow.Pipeline.from_dict({"name": "missing", "stages": MISSING[which]})
    with pytest.raises(pktflow.ConfigError, match=r"stages\.x: .*no interface named 'nope0'"):
        asyncio.run(pipeline.run())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"block_size": 3000}, "block_size 3000 must be a power of two"),
        ({"blocks": 0}, "blocks 0 is outside"),
        ({"fanout": 70000}, "fanout 70000 is outside"),
        ({"count": -1}, "count -1 is negative"),
    ],
)
def test_bad_ring_options_are_config_errors(options: dict, message: str):
    spec = {
        "name": "bad",
        "stages": {
            "x": {"type": "afpacket_source", "interface": "lo", **options},
            "c": {"type": "counter", "inputs": ["x"]},
        },
    }
    with pytest.raises(pktflow.ConfigError, match=message):
        asyncio.run(pktflow.Pipeline.from_dict(spec).run())


CHILD = """
import asyncio, pktflow
spec = {"name": "noroot", "stages": {
    "x": {"type": "afpacket_source", "interface": "lo"}, "c": {"type": "counter", "inputs": ["x"]}}}
try:
    asyncio.run(pktflow.Pipeline.from_dict(spec).run(duration=1))
except pktflow.PipelineError as exc:
    print(exc)
    raise SystemExit(3)
"""


def test_without_cap_net_raw_the_error_says_what_is_needed():
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot drop CAP_NET_RAW")
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
         sys.executable, "-c", CHILD],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if "setpriv:" in done.stderr:
        pytest.skip(f"cannot drop CAP_NET_RAW here: {done.stderr.strip()}")
    assert done.returncode == 3, done.stderr
    assert "needs CAP_NET_RAW" in done.stdout
    assert "Traceback" not in done.stdout
