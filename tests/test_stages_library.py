"""The stage library: ``filter``, ``balance``, ``l2fwd`` and ``tap`` on frames built by scapy.

Frames go into mbufs of a real pool, either directly (kernel tests, after
``parse_burst``) or through ``Frames``, a test source loaded by
"module:Class", in a real pipeline that must return every mbuf.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

import pktflow
from pktflow.pipelines._balance_kernels import TABLE, balance_burst, toeplitz
from pktflow.pipelines._filter_kernels import filter_burst
from pktflow.pipelines._gen_kernels import fill_frames
from pktflow.pipelines._l2fwd_kernels import MODE_SET_DST, MODE_SET_SRC, MODE_SWAP, l2fwd_burst
from pktflow.pipelines._parse_kernels import parse_burst
from pktflow.pipelines._pool_data import PoolArraysCache
from pktflow.pipelines.filter import FilterExprError, compile_filter
from pktflow.pipelines.generator import Generator

HERE = "test_stages_library"  # this module, as "module:Class" paths name it (tests/ on sys.path)
MAC_A, MAC_B = "02:00:00:00:00:aa", "02:00:00:00:00:bb"


def eth(src: str = MAC_A, dst: str = MAC_B) -> Ether:
    return Ether(src=src, dst=dst)


def _filter_frames() -> dict[str, bytes]:
    big = IP(src="10.5.5.5", dst="10.0.0.2") / UDP(sport=7, dport=53) / bytes(300)
    return {
        "dns": bytes(eth() / IP(src="192.168.1.5", dst="10.1.2.3") / UDP(sport=4000, dport=53)),
        "dns-vlan": bytes(
            eth() / Dot1Q(vlan=7) / IP(src="10.3.3.3", dst="10.1.2.3") / UDP(dport=53)
        ),
        "dns-outside": bytes(eth() / IP(src="10.3.3.3", dst="11.0.0.1") / UDP(dport=53)),
        "mdns": bytes(eth() / IP(src="10.3.3.3", dst="10.0.0.9") / UDP(dport=5353)),
        "http": bytes(
            eth(src="02:00:00:00:00:cc")
            / IP(src="10.9.9.9", dst="172.16.0.1")
            / TCP(sport=40000, dport=80, flags="S")
        ),
        "https6": bytes(eth() / IPv6(src="2001:db8::1", dst="2001:db8:1::2") / TCP(dport=443)),
        "dns6": bytes(eth() / IPv6(src="fe80::1", dst="2001:db8::53") / UDP(dport=53)),
        "arp": bytes(eth() / ARP(psrc="10.0.0.1", pdst="10.0.0.2")),
        "icmp": bytes(eth() / IP(src="10.3.3.3", dst="10.0.0.1", ttl=3) / ICMP()),
        "frag": bytes(eth() / fragment(big, fragsize=128)[0]),
        "big": bytes(eth() / IP(src="10.3.3.3", dst="10.0.0.7") / UDP(dport=9) / bytes(1200)),
    }


FRAMES = _filter_frames()
ALL = set(FRAMES)
IPV4 = {"dns", "dns-vlan", "dns-outside", "mdns", "http", "icmp", "frag", "big"}

# expression -> the frames it accepts, exactly.
CASES: list[tuple[str, set[str]]] = [
    ("ipv4.dst in 10.0.0.0/8 and udp.dport == 53 and not vlan", {"dns"}),
    ("udp.dport == 53", {"dns", "dns-vlan", "dns-outside", "dns6"}),
    ("vlan", {"dns-vlan"}),
    ("vlan.id == 7", {"dns-vlan"}),
    ("vlan.id == 8", set()),
    ("not vlan", ALL - {"dns-vlan"}),
    # A comparison on an absent field is false whatever the operator.
    ("udp.dport != 53", {"mdns", "big"}),
    ("not udp.dport == 53", ALL - {"dns", "dns-vlan", "dns-outside", "dns6"}),
    # Precedence: not > and > or; parentheses override.
    ("tcp or udp and ipv6", {"http", "https6", "dns6"}),
    ("(tcp or udp) and ipv6", {"https6", "dns6"}),
    ("not tcp and ipv4", IPV4 - {"http"}),
    ("not (tcp and ipv4)", ALL - {"http"}),
    ("!(tcp && ipv4) || tcp", ALL),
    ("ipv4 and not (udp or tcp)", {"icmp", "frag"}),
    # CIDR, addresses, sets.
    ("ipv4.dst in 10.0.0.0/8", {"dns", "dns-vlan", "mdns", "icmp", "frag", "big"}),
    ("ipv4.dst in 10.1.2.0/24", {"dns", "dns-vlan"}),
    ("ipv4.dst in 0.0.0.0/0", IPV4),
    ("ipv4.src in 192.168.0.0/16 or ipv4.src == 10.9.9.9", {"dns", "http"}),
    ("ipv4.dst in {10.1.2.3/32, 172.16.0.0/12}", {"dns", "dns-vlan", "http"}),
    ("ipv6.dst in 2001:db8::/32", {"https6", "dns6"}),
    ("ipv6.dst in 2001:db8:1::/48", {"https6"}),
    ("ipv6.src == fe80::1", {"dns6"}),
    ("ipv6.src != fe80::1", {"https6"}),
    ("ipv6", {"https6", "dns6"}),
    ("ip", ALL - {"arp"}),
    ("tcp.dport in {80, 443}", {"http", "https6"}),
    ("tcp.sport == 40000 and tcp.flags == 0x02", {"http"}),
    ("udp.sport == 4000", {"dns"}),
    # Protocols, L2, lengths.
    ("ip.proto == 6", {"http", "https6"}),
    ("ip.proto == 17", {"dns", "dns-vlan", "dns-outside", "mdns", "dns6", "frag", "big"}),
    ("eth.type == 0x0806", {"arp"}),
    ("eth.type == 0x86dd", {"https6", "dns6"}),
    ("eth.type == 0x800", IPV4),
    ("eth.src == 02:00:00:00:00:cc", {"http"}),
    ("eth.dst != 02:00:00:00:00:bb", set()),
    ("frag", {"frag"}),
    ("icmp and ip.ttl < 5", {"icmp"}),
    ("pkt_len > 1000", {"big"}),
    ("pkt_len >= 60 and pkt_len <= 64", {n for n, f in FRAMES.items() if 60 <= len(f) <= 64}),
]

# expression -> the 1-based column its error names.
BAD: list[tuple[str, int, str]] = [
    ("udp.dprt == 53", 1, "unknown field 'udp.dprt' (did you mean \"udp.dport\"?)"),
    ("ipv4.dst in 10.0.0.1/8", 13, "host bits set"),
    ("udp.dport == 70000", 14, "outside udp.dport's range"),
    ("(tcp or udp", 12, "expected ')'"),
    ("tcp and", 8, "expected a field"),
    ("tcp udp", 5, "expected 'and', 'or' or the end"),
    ("vlan == 7", 6, "vlan is a layer"),
    ("udp.dport", 10, "udp.dport is a value"),
    ("udp.dport ~ 53", 11, "unexpected character '~'"),
    ("ipv4.src == 2001:db8::1", 13, "takes an IPv4 value"),
    ("ipv6.src < ::1", 10, "compares with ==, != or in only"),
    ("udp.dport in {53, 54", 21, "expected ',' or '}'"),
    ("udp.dport == and", 14, "expected a value"),
    ("()", 2, "an empty pair of parentheses"),
    ("", 1, "an empty expression"),
    ("eth.src == 02:00:00", 12, "MAC address"),
]


# -- a test source and tap functions ------------------------------------------------


class Frames(pktflow.Source):
    """Emits ``frames`` (hex strings) ``repeat`` times, as fresh mbufs."""

    keeps_lengths = False

    def __init__(self, ctx: pktflow.StageContext, *, frames: list[str], repeat: int = 1) -> None:
        super().__init__(ctx)
        self.frames = [bytes.fromhex(f) for f in frames] * repeat
        self.at = 0

    def poll(self, burst: pktflow.Burst) -> int | None:
        left = len(self.frames) - self.at
        if left == 0:
            return None
        k = min(left, burst.capacity)
        if self.ctx.pool.alloc_bulk(burst.array, k) != k:
            return 0
        for i in range(k):
            frame = self.frames[self.at + i]
            view = self.ctx.pool.mbuf(int(burst.array[i])).append(len(frame))
            assert view is not None
            view[:] = frame
        self.at += k
        return k


class Recorder:
    """A tap function: keeps a copy of each packet's frame and header row."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.hashes: list[int] = []
        self.calls: list[tuple[Any, ...]] = []

    def __call__(
        self,
        handles: npt.NDArray[np.uint32],
        headers: npt.NDArray[np.void],
        data: npt.NDArray[np.uint8],
    ) -> None:
        self.calls.append((handles.dtype, handles.flags.writeable, headers.shape, data.shape))
        for h in handles.tolist():
            row = headers[h]
            start, length = int(row["data_off"]), int(row["data_len"])
            self.frames.append(bytes(data[h, start : start + length]))
            self.hashes.append(int(row["hash"]))


TAPS = [Recorder() for _ in range(4)]  # tap functions "test_stages_library:TAP0" ... TAP3
TAP0, TAP1, TAP2, TAP3 = TAPS


@pytest.fixture(autouse=True)
def _fresh_taps() -> None:
    TAPS[:] = [Recorder() for _ in range(4)]
    for i, tap in enumerate(TAPS):
        globals()[f"TAP{i}"] = tap


def run_pipeline(stages: dict[str, Any], frames: list[bytes], repeat: int = 1) -> dict[str, Any]:
    source = {"type": f"{HERE}:Frames", "frames": [f.hex() for f in frames], "repeat": repeat}
    p = pktflow.Pipeline.from_dict(
        {
            "name": "lib",
            "mempools": {"pkts": {"n": 1023, "cache_size": 32}},
            "stages": {"src": source, **stages},
        }
    )
    stats = asyncio.run(p.run()).as_dict()
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values()), stats["mempools"]
    return stats


# -- pools of frames for the kernels -------------------------------------------------------


@pytest.fixture
def pool(request: pytest.FixtureRequest) -> Iterator[pktflow.PktmbufPool]:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:150]
    pool = pktflow.pktmbuf_pool_create(
        f"lib-{os.getpid()}-{base}", 8191, 0, 0, pktflow.MBUF_DEFAULT_BUF_SIZE
    )
    yield pool
    pool.close()


class Loaded:
    """Frames in mbufs of ``pool``, parsed; ``handles`` in the frames' order."""

    def __init__(self, pool: pktflow.PktmbufPool, frames: list[bytes]) -> None:
        self.pool = pool
        self.handles = np.empty(len(frames), dtype=np.uint32)
        for i, frame in enumerate(frames):
            m = pool.alloc()
            assert m is not None
            view = m.append(len(frame))
            assert view is not None
            view[:] = frame
            self.handles[i] = m.handle
        self.data = np.frombuffer(pool._object_bytes, np.uint8)
        work = self.handles.copy()
        assert parse_burst(pool.header_words, self.data, pool._stride, work, len(work)) == len(work)

    def frame(self, h: int) -> bytes:
        return bytes(self.pool.mbuf(h).data)

    def free(self) -> None:
        self.pool.free_bulk(self.handles)


def run_filter(pool: pktflow.PktmbufPool, expr: str, frames: dict[str, bytes]) -> set[str]:
    loaded = Loaded(pool, list(frames.values()))
    names = dict(zip(loaded.handles.tolist(), frames, strict=True))
    program = compile_filter(expr)
    work = loaded.handles.copy()
    scratch = np.empty(len(work), np.uint32)
    nbytes = np.zeros(2, np.int64)
    kept = filter_burst(pool.header_words, loaded.data, pool._stride, work, len(work),
                        program.rows, program.consts, scratch, nbytes)  # fmt: skip
    assert kept >= 0
    lengths = dict(zip(loaded.handles.tolist(), map(len, frames.values()), strict=True))
    assert nbytes.tolist() == [sum(lengths[h] for h in work[:kept].tolist()),
                               sum(lengths[h] for h in work[kept:].tolist())]  # fmt: skip
    # Stable: accepted then rejected, each in arrival order.
    order = loaded.handles.tolist()
    assert work[:kept].tolist() == [h for h in order if h in set(work[:kept].tolist())]
    assert sorted(work.tolist()) == sorted(order)
    loaded.free()
    return {names[h] for h in work[:kept].tolist()}


# -- filter ---------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "expected"), CASES, ids=[c[0] for c in CASES])
def test_filter_accepts_exactly(pool: pktflow.PktmbufPool, expr: str, expected: set[str]) -> None:
    assert run_filter(pool, expr, FRAMES) == expected


@pytest.mark.parametrize(("expr", "column", "message"), BAD, ids=[b[0] or "empty" for b in BAD])
def test_a_bad_expression_names_its_column(expr: str, column: int, message: str) -> None:
    with pytest.raises(FilterExprError) as info:
        compile_filter(expr)
    assert info.value.column == column
    assert str(info.value).startswith(f"expr: column {column}: ")
    assert info.value.key == "expr"
    assert message in str(info.value)
    assert isinstance(info.value, pktflow.ConfigError)


def test_a_bad_expression_in_a_pipeline_is_a_config_error_with_line_and_column() -> None:
    text = (
        "name: bad\nstages:\n  gen: {type: generator, count: 10}\n"
        "  f: {type: filter, inputs: [gen], expr: 'udp.dport == 53 and vlan.idd == 3'}\n"
    )
    with pytest.raises(pktflow.ConfigError) as info:
        pktflow.Pipeline.from_yaml(text)  # when loaded, before anything runs
    # The key names the option: "stages.f: expr: ..." (or "stages.f.expr: ..." where the
    # loader folds a ConfigError's own key into its path).
    assert re.match(
        r"line 4: stages\.f(\.|: )expr: column 21: unknown field 'vlan\.idd' "
        r"\(did you mean \"vlan\.id\"\?\)",
        str(info.value),
    ), str(info.value)


def test_filter_in_a_pipeline_splits_out_and_rejected() -> None:
    frames = list(FRAMES.values())
    stats = run_pipeline(
        {
            "parse": {"type": "parse", "inputs": ["src"]},
            "f": {"type": "filter", "inputs": ["parse"], "expr": "udp.dport == 53"},
            "yes": {"type": "tap", "inputs": ["f"], "function": f"{HERE}:TAP0"},
            "no": {"type": "counter", "inputs": ["f.rejected"]},
            "count": {"type": "counter", "inputs": ["yes"]},
        },
        frames,
        repeat=10,
    )
    dns = {FRAMES[n] for n in ("dns", "dns-vlan", "dns-outside", "dns6")}
    assert stats["stages"]["count"]["packets_in"] == 40
    assert stats["stages"]["no"]["packets_in"] == 10 * (len(frames) - 4)
    assert set(TAPS[0].frames) == dns


# -- balance ------------------------------------------------------------------------


def flows(count: int, seed: int = 1) -> list[tuple[Any, Any]]:
    """``count`` random TCP/UDP flows over IPv4 and IPv6: (forward, reverse) frames."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        l4 = TCP if i % 2 else UDP
        sport, dport = rng.randrange(1, 65536), rng.randrange(1, 65536)
        if i % 3:
            a = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            b = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            ip: Any = IP
        else:
            a = f"2001:db8::{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}"
            b = f"fd00::{rng.randrange(1 << 16):x}"
            ip = IPv6
        fwd = eth() / ip(src=a, dst=b) / l4(sport=sport, dport=dport)
        rev = eth(MAC_B, MAC_A) / ip(src=b, dst=a) / l4(sport=dport, dport=sport)
        out.append((fwd, rev))
    return out


def expected_hash(frame: Any) -> int:
    """The reference (bit by bit) symmetric Toeplitz hash of a frame's 5-tuple."""
    ip = frame.payload
    src = ipaddress.ip_address(ip.src).packed
    dst = ipaddress.ip_address(ip.dst).packed
    assert len(src) == (4 if isinstance(ip, IP) else 16)
    l4 = ip.payload
    return toeplitz(src + dst + l4.sport.to_bytes(2, "big") + l4.dport.to_bytes(2, "big"))


def test_balance_hash_is_the_symmetric_toeplitz_and_both_directions_agree(
    pool: pktflow.PktmbufPool,
) -> None:
    pairs = flows(1000)
    frames = [bytes(f) for pair in pairs for f in pair]
    loaded = Loaded(pool, frames)
    ways = 4
    work = loaded.handles.copy()
    scratch = np.empty(2 * len(work), np.uint32)
    counts = np.zeros(2 * ways, np.int64)
    assert balance_burst(pool.header_words, loaded.data, pool._stride, work, len(work), ways,
                         TABLE, scratch, counts) == 0  # fmt: skip
    hashes = pool.headers["hash"][loaded.handles]
    for i, (fwd, _rev) in enumerate(pairs):
        assert hashes[2 * i] == hashes[2 * i + 1] == expected_hash(fwd)
    # Grouped by output, in arrival order, with the counts.
    way_of = {h: int(hashes[i]) % ways for i, h in enumerate(loaded.handles.tolist())}
    at = 0
    for w in range(ways):
        group = work[at : at + counts[w]].tolist()
        assert all(way_of[h] == w for h in group)
        assert group == [h for h in loaded.handles.tolist() if way_of[h] == w]
        assert counts[ways + w] == sum(len(frames[i]) for i, h in enumerate(loaded.handles.tolist())
                                      if way_of[h] == w)  # fmt: skip
        at += int(counts[w])
    assert at == len(work)
    # Roughly even: 2000 packets of 1000 flows over 4 outputs.
    assert counts[:ways].min() > 0.8 * len(work) / ways, counts
    assert (pool.headers["ol_flags"][loaded.handles] & 2).all()
    loaded.free()


def test_balance_non_ip_goes_to_out0_and_fragments_hash_on_addresses(
    pool: pktflow.PktmbufPool,
) -> None:
    loaded = Loaded(pool, [FRAMES["arp"], FRAMES["frag"]])
    work = loaded.handles.copy()
    counts = np.zeros(6, np.int64)
    assert balance_burst(pool.header_words, loaded.data, pool._stride, work, 2, 3, TABLE,
                         np.empty(4, np.uint32), counts) == 0  # fmt: skip
    arp, frag = pool.headers["hash"][loaded.handles].tolist()
    assert arp == 0
    assert frag == toeplitz(bytes([10, 5, 5, 5, 10, 0, 0, 2]))
    loaded.free()


def test_balance_in_a_pipeline_keeps_each_flow_on_one_output() -> None:
    pairs = flows(300, seed=7)
    frames = [bytes(f) for pair in pairs for f in pair]
    ways = 3
    stages: dict[str, Any] = {
        "parse": {"type": "parse", "inputs": ["src"]},
        "bal": {"type": "balance", "inputs": ["parse"], "ways": ways},
    }
    for w in range(ways):
        stages[f"tap{w}"] = {"type": "tap", "inputs": [f"bal.out{w}"], "function": f"{HERE}:TAP{w}"}
        stages[f"count{w}"] = {"type": "counter", "inputs": [f"tap{w}"]}
    stats = run_pipeline(stages, frames, repeat=3)
    total = sum(stats["stages"][f"count{w}"]["packets_in"] for w in range(ways))
    assert total == 3 * len(frames)
    for w in range(ways):
        assert TAPS[w].hashes and all(h % ways == w for h in TAPS[w].hashes)
        assert stats["stages"][f"count{w}"]["packets_in"] > 0.7 * total / ways
    output_of: dict[bytes, int] = {}
    for w in range(ways):
        for frame in TAPS[w].frames:
            assert output_of.setdefault(frame, w) == w  # a flow (either direction): one output
    for fwd, rev in pairs:
        assert output_of[bytes(fwd)] == output_of[bytes(rev)]


def test_balance_outputs_follow_ways_in_validation() -> None:
    spec = (
        "name: b\nstages:\n  gen: {type: generator, count: 10}\n"
        "  bal: {type: balance, inputs: [gen], ways: 4}\n"
        "  c: {type: counter, inputs: [bal.out3]}\n"
    )
    pktflow.Pipeline.from_yaml(spec)
    with pytest.raises(pktflow.ConfigError, match=r"stage 'bal' has no output 'out4'"):
        pktflow.Pipeline.from_yaml(spec.replace("bal.out3", "bal.out4"))
    with pytest.raises(pktflow.ConfigError, match=r"stages\.bal: ways is an integer in 1\.\.1024"):
        pktflow.Pipeline.from_yaml(spec.replace("ways: 4", "ways: 0"))


# -- l2fwd ------------------------------------------------------------------------------


def test_l2fwd_kernel_swaps_and_sets(pool: pktflow.PktmbufPool) -> None:
    frames = [FRAMES["dns"], FRAMES["http"], FRAMES["dns6"]]
    loaded = Loaded(pool, frames)
    words, data, stride = pool.header_words, loaded.data, pool._stride
    macs = np.zeros(12, np.uint8)
    assert l2fwd_burst(words, data, stride, loaded.handles, 3, MODE_SWAP, macs) == 3
    for h, frame in zip(loaded.handles.tolist(), frames, strict=True):
        assert loaded.frame(h) == frame[6:12] + frame[0:6] + frame[12:]
    macs[:] = list(bytes.fromhex("0a0b0c0d0e0f010203040506"))
    assert l2fwd_burst(words, data, stride, loaded.handles, 2, MODE_SET_DST, macs) == 2
    assert l2fwd_burst(words, data, stride, loaded.handles, 1, MODE_SET_SRC, macs) == 1
    first, second, third = (loaded.frame(h) for h in loaded.handles.tolist())
    assert first[:12] == bytes.fromhex("0a0b0c0d0e0f010203040506")
    assert second[:6] == bytes.fromhex("0a0b0c0d0e0f") and second[6:12] == frames[1][0:6]
    assert third == frames[2][6:12] + frames[2][0:6] + frames[2][12:]
    loaded.free()


@pytest.mark.parametrize(
    ("options", "make"),
    [
        ({"swap": True}, lambda f: f[6:12] + f[0:6] + f[12:]),
        (
            {"src_mac": "02:11:22:33:44:55"},
            lambda f: f[0:6] + bytes.fromhex("021122334455") + f[12:],
        ),
        ({"dst_mac": "02:11:22:33:44:55"}, lambda f: bytes.fromhex("021122334455") + f[6:]),
        (
            {"swap": True, "dst_mac": "02:11:22:33:44:55"},
            lambda f: bytes.fromhex("021122334455") + f[0:6] + f[12:],
        ),
    ],
    ids=["swap", "src", "dst", "swap+dst"],
)
def test_l2fwd_in_a_pipeline(options: dict[str, Any], make: Callable[[bytes], bytes]) -> None:
    frames = list(FRAMES.values())
    stats = run_pipeline(
        {
            "fwd": {"type": "l2fwd", "inputs": ["src"], **options},
            "tap": {"type": "tap", "inputs": ["fwd"], "function": f"{HERE}:TAP0"},
            "count": {"type": "counter", "inputs": ["tap"]},
        },
        frames,
        repeat=5,
    )
    assert stats["stages"]["count"]["packets_in"] == 5 * len(frames)
    assert TAPS[0].frames == [make(f) for f in frames] * 5


@pytest.mark.parametrize(
    ("options", "message"),
    [({}, "needs swap: true, src_mac or dst_mac"), ({"src_mac": "02:00"}, "src_mac is six hex")],
)
def test_l2fwd_bad_options(options: dict[str, Any], message: str) -> None:
    p = pktflow.Pipeline.from_dict(
        {"name": "l", "stages": {"gen": {"type": "generator", "count": 1},
                                 "fwd": {"type": "l2fwd", "inputs": ["gen"], **options}}}
    )  # fmt: skip
    with pytest.raises(pktflow.ConfigError, match=message):
        asyncio.run(p.run())


# -- tap ---------------------------------------------------------------------------------


def test_tap_gets_the_views_and_everything_goes_on() -> None:
    frames = list(FRAMES.values())
    stats = run_pipeline(
        {
            "tap": {"type": "tap", "inputs": ["src"], "function": f"{HERE}:TAP0"},
            "count": {"type": "counter", "inputs": ["tap"]},
        },
        frames,
        repeat=7,
    )
    assert stats["stages"]["tap"]["packets_out"] == 7 * len(frames)
    assert stats["stages"]["count"]["packets_in"] == 7 * len(frames)
    assert TAPS[0].frames == frames * 7
    dtype, writeable, headers_shape, data_shape = TAPS[0].calls[0]
    assert dtype == np.uint32 and not writeable
    assert headers_shape == (1023,) and data_shape[0] == 1023


def test_tap_bad_function_is_a_config_error() -> None:
    for function, message in [
        ("nowhere_at_all:fn", "cannot import 'nowhere_at_all'"),
        (f"{HERE}:missing", "has no 'missing'"),
        (f"{HERE}:HERE", "is not callable"),
        ("no_colon", "function is 'package.module:name'"),
    ]:
        p = pktflow.Pipeline.from_dict(
            {"name": "t", "stages": {"gen": {"type": "generator", "count": 1},
                                     "tap": {"type": "tap", "inputs": ["gen"],
                                             "function": function}}}
        )  # fmt: skip
        with pytest.raises(pktflow.ConfigError, match=re.escape(message)):
            asyncio.run(p.run())


def boom(handles: Any, headers: Any, data: Any) -> None:
    raise RuntimeError("tap boom")


def test_a_tap_that_raises_stops_the_pipeline_and_nothing_leaks() -> None:
    p = pktflow.Pipeline.from_dict(
        {"name": "t", "stages": {"gen": {"type": "generator", "count": 1000},
                                 "tap": {"type": "tap", "inputs": ["gen"],
                                         "function": f"{HERE}:boom"}}}
    )  # fmt: skip
    with pytest.raises(pktflow.PipelineError, match="tap") as info:
        asyncio.run(p.run())
    assert isinstance(info.value.__cause__, RuntimeError)
    assert all(pool["in_use"] == 0 for pool in p.stats().as_dict()["mempools"].values())


# -- the example -----------------------------------------------------------------------------


def test_the_filter_balance_example_splits_everything_it_accepts() -> None:
    from pktflow.pipelines import EXAMPLES

    p = pktflow.Pipeline.from_file(EXAMPLES / "filter-balance.yaml")
    stats = asyncio.run(p.run()).as_dict()["stages"]
    accepted = stats["filter"]["packets_out"] - stats["rest"]["packets_in"]
    assert stats["a"]["packets_in"] + stats["b"]["packets_in"] == accepted > 0
    assert stats["a"]["packets_in"] > 0 and stats["b"]["packets_in"] > 0


@pytest.mark.parametrize("headroom", [128, 125], ids=["aligned", "unaligned"])
def test_generator_frames_as_scapy_reads_them(pool: pktflow.PktmbufPool, headroom: int) -> None:
    """Both of the kernel's copies: whole words (the usual headroom) and bytes."""
    ctx = pktflow.StageContext(
        "gen", lcore=0, pool=pool, pools={"pkts": pool}, burst_size=32, options={}
    )
    generator = Generator(ctx, size=80, flows=5)
    handles = np.zeros(12, np.uint32)
    assert pool.alloc_bulk(handles) == 12
    for h in handles:
        pool.mbuf(int(h)).prepend(128 - headroom)  # data_off = headroom
    words, data, stride = PoolArraysCache().of(pool)
    fill_frames(words, data, stride, handles, 12, generator.templates, 80, 3, 1_234_567)
    for i, h in enumerate(handles):
        m = pool.mbuf(int(h))
        assert (m.data_off, m.data_len, m.pkt_len, m.timestamp) == (headroom, 80, 80, 1_234_567)
        frame = Ether(bytes(m.data))
        flow = (3 + i) % 5
        assert (frame[IP].src, frame[IP].dst, frame[IP].len) == ("10.0.0.1", "10.0.0.2", 66)
        assert (frame[UDP].sport, frame[UDP].dport, frame[UDP].len) == (1024 + flow, 5001, 46)
        rebuilt = IP(bytes(frame[IP]))
        del rebuilt.chksum
        assert IP(bytes(rebuilt)).chksum == frame[IP].chksum
    pool.free_bulk(handles)
