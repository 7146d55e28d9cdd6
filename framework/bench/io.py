"""``pktflow bench io``: real packet I/O in packets/s, next to what a Python user would write.

Three pairs of rows, each pair measured in the same run, interleaved:

- ``pcap replay -> parse -> filter -> counter`` on one lcore (a 4096-packet
  pcap of 64-byte UDP frames over 64 flows, replayed ``loop`` times; the
  filter keeps half the flows), beside scapy's ``rdpcap`` of the same kind
  of file and the same filter written in Python over scapy's layers;
- ``AF_PACKET receive``: ``afpacket_source -> counter`` on one end of a
  veth pair in a throwaway network namespace while another process floods
  the other end (a pktflow generator -> afpacket_sink), beside scapy's
  ``sniff`` on the same end and the same traffic (skipped, with the
  reason, where namespaces are not permitted);
- ``UDP echo`` over loopback: ``udp_source -> udp_sink (reply)`` beside a
  plain asyncio ``DatagramProtocol`` echo on uvloop. The client that sends
  and counts the replies runs in another (spawned) process, keeping a
  window of datagrams in flight on a connected socket: one ``recvmmsg``
  takes the replies waiting, one ``sendmmsg`` sends as many again as
  messages the kernel cuts into datagrams (UDP GSO; the server still gets
  each datagram on its own), so neither the GIL nor the client's own cost
  per datagram bounds the server it measures.

Rates: the pcap row counts the packets the source replayed over the walk's
time (``stats.elapsed_s``); scapy's, the packets read and filtered over the
time of ``rdpcap`` plus the filter; the receive rows, the frames counted in
a window of ``run_s`` seconds under load; the echo rows, the replies the
client counted per second.
"""

from __future__ import annotations

import asyncio
import ipaddress
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import uvloop
from rich.console import Console

import pktflow
from pktflow._affinity import cpu_for, pinned
from pktflow._worker import Worker

from ._command import Progress, run_bench
from ._io_netns import Netns, NetnsUnavailable, veth_netns
from ._io_workers import FRAME_SIZE, afpacket_sender, scapy_sniffer, udp_client
from ._measure import MIN_RUNS, Case, Row, Span, measure, row_key
from ._report import Comparison, Target

__all__ = [
    "FILTER",
    "FULL",
    "QUICK",
    "Settings",
    "comparisons",
    "pcap_spec",
    "run_io_bench",
    "targets",
    "write_pcap",
]

BACKENDS = ["numba"]  # the mempools' backend
FLOWS = 64
PCAP_PACKETS = 4096  # the replayed file; loop: N replays it N times
POOL = {"n": 8191, "cache_size": 256, "data_room": 2048}
# The same test as the filter-balance example: half of the 64 flows pass.
FILTER = "ipv4.dst in 10.0.0.0/8 and udp.dport == 5001 and udp.sport < 1056 and not vlan"
_NET = ipaddress.IPv4Network("10.0.0.0/8")
NAME = "pktflow-bench-io"  # zones of a crashed run are recognisable

# Targets (issue 9).
PCAP_TARGET = 3e6
PCAP_RATIO = 20.0
AFPACKET_RATIO = 10.0
ECHO_RATIO = 2.0

ONE_LCORE = "1 lcore"
PCAP = "pcap replay -> parse -> filter -> counter"
AFPACKET = "AF_PACKET receive -> counter"
ECHO = "UDP echo, udp_source -> udp_sink"
SCAPY = "scapy"
RDPCAP = "rdpcap + the filter in Python"
SNIFF = "sniff on the same veth"
UVLOOP = "asyncio (uvloop)"
DATAGRAM_PROTOCOL = "DatagramProtocol echo"


class Settings(NamedTuple):
    """How much a run measures."""

    burst: int  # runtime.burst of the pktflow rows
    run_s: float  # about how long each timed run lasts
    repeats: int  # timed runs per row, after one warm-up run


QUICK = Settings(burst=32, run_s=0.2, repeats=MIN_RUNS)
FULL = Settings(burst=32, run_s=0.5, repeats=7)


def _keys(burst: int) -> dict[str, str]:
    return {
        "pcap": row_key(BACKENDS[0], ONE_LCORE, PCAP, burst),
        "rdpcap": row_key(SCAPY, None, RDPCAP, 1),
        "afpacket": row_key(BACKENDS[0], ONE_LCORE, AFPACKET, burst),
        "sniff": row_key(SCAPY, None, SNIFF, 1),
        "echo": row_key(BACKENDS[0], ONE_LCORE, ECHO, burst),
        "uvloop": row_key(UVLOOP, None, DATAGRAM_PROTOCOL, 1),
    }


def comparisons(burst: int) -> list[Comparison]:
    """Each pktflow row against its peer, with the issue's ratio targets.

    Usage: ``comparisons(32)``
    """
    k = _keys(burst)
    return [
        Comparison(f"pcap replay vs scapy rdpcap + Python filter, burst {burst}",
                   k["pcap"], k["rdpcap"], PCAP_RATIO),
        Comparison(f"AF_PACKET receive vs scapy sniff, burst {burst}",
                   k["afpacket"], k["sniff"], AFPACKET_RATIO),
        Comparison(f"UDP echo vs asyncio DatagramProtocol on uvloop, burst {burst}",
                   k["echo"], k["uvloop"], ECHO_RATIO),
    ]  # fmt: skip


def targets(burst: int) -> list[Target]:
    """The pcap row must reach 3 M packets/s on one lcore.

    Usage: ``targets(32)``
    """
    return [Target(f"pcap replay on one lcore, burst {burst}", _keys(burst)["pcap"], PCAP_TARGET)]


# -- the pcap rows ---------------------------------------------------------------


def write_pcap(path: Path, packets: int) -> None:
    """A pcap (microsecond timestamps) of ``packets`` 64-byte UDP frames over 64 flows.

    Written with ``struct`` from the generator's headers, one frame per flow in turn.

    Usage: ``write_pcap(Path("sample.pcap"), 4096)``
    """
    from pktflow.pipelines.generator import flow_headers

    frames = [flow_headers(f, FRAME_SIZE).ljust(FRAME_SIZE, b"\0") for f in range(FLOWS)]
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(packets):
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 1_000_000, i % 1_000_000,
                               FRAME_SIZE, FRAME_SIZE))  # fmt: skip
        out.append(frames[i % FLOWS])
    path.write_bytes(b"".join(out))


def pcap_spec(path: Path, loops: int, burst: int) -> dict[str, Any]:
    """pcap_source (``loops`` replays) -> parse -> filter -> counter, drops for the rest.

    Usage: ``pktflow.Pipeline.from_dict(pcap_spec(Path("in.pcap"), 10, 32))``
    """
    return {
        "name": NAME,
        "runtime": {"burst": burst, "poll": "adaptive"},
        "mempools": {"pkts": dict(POOL)},
        "stages": {
            "replay": {"type": "pcap_source", "path": str(path), "loop": loops},
            "parse": {"type": "parse", "inputs": ["replay"]},
            "filter": {"type": "filter", "inputs": ["parse"], "expr": FILTER},
            "count": {"type": "counter", "inputs": ["filter"]},
            "rest": {"type": "drop", "inputs": ["filter.rejected"]},
            "bad": {"type": "drop", "inputs": ["parse.invalid"]},
        },
    }


async def _run_to_end(spec: dict[str, Any]) -> pktflow.Stats:
    pipeline = pktflow.Pipeline.from_dict(spec)
    await pipeline.start()
    await pipeline.wait()
    return await pipeline.stop()


def _pcap_trial(runner: asyncio.Runner, path: Path, burst: int, loops: int) -> Span:
    stats = runner.run(_run_to_end(pcap_spec(path, loops, burst)))
    packets = stats.stages["replay"]["packets_out"]
    kept = stats.stages["count"]["packets_in"]
    if packets != loops * PCAP_PACKETS or kept != packets // 2:
        raise pktflow.PipelineError(f"pcap row: replayed {packets}, kept {kept}")
    return Span(0.0, max(stats.elapsed_s, 1e-6), packets)


def _kept(packets: int) -> int:
    """How many of a ``write_pcap`` file's first ``packets`` the filter keeps (flows 0..31)."""
    whole, part = divmod(packets, FLOWS)
    return whole * (FLOWS // 2) + min(part, FLOWS // 2)


def _python_filter(packet: Any, layers: tuple[Any, Any, Any]) -> bool:
    """``FILTER`` over scapy's layers, as a Python user writes it."""
    dot1q, ip_layer, udp_layer = layers
    if dot1q in packet or ip_layer not in packet or udp_layer not in packet:
        return False
    ip, udp = packet[ip_layer], packet[udp_layer]
    return bool(ipaddress.IPv4Address(ip.dst) in _NET and udp.dport == 5001 and udp.sport < 1056)


def _scapy_trial(folder: Path, packets: int) -> Span:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q
    from scapy.utils import rdpcap

    path = folder / f"scapy-{packets}.pcap"
    if not path.exists():
        write_pcap(path, packets)
    layers = (Dot1Q, IP, UDP)
    start = time.perf_counter()
    kept = sum(_python_filter(p, layers) for p in rdpcap(str(path)))
    end = time.perf_counter()
    if kept != _kept(packets):
        raise RuntimeError(f"scapy row: kept {kept} of {packets}")
    return Span(start, end, packets)


def _sized(trial: Callable[[int], Span], first: int, run_s: float, most: int) -> int:
    """The size (loops, packets) that makes one run of ``trial`` last about ``run_s``."""
    size = first
    while True:
        span = trial(size)
        elapsed = span.end - span.start
        if elapsed >= run_s / 10 or size >= most:
            return max(1, min(most, round(size * run_s / elapsed)))
        size = min(most, size * max(2, round(run_s / 5 / elapsed)))


# -- the AF_PACKET rows ----------------------------------------------------------


class _Veth(NamedTuple):
    netns: Netns
    sender: Worker
    sniffer: Worker | None
    sent_rates: list[float]  # frames/s the sender reached in each run


def _afpacket_spec(netns: Netns, burst: int) -> dict[str, Any]:
    return {
        "name": NAME,
        "runtime": {"burst": burst, "poll": "adaptive"},
        "mempools": {"pkts": dict(POOL)},
        "stages": {
            "rx": {"type": "afpacket_source", "interface": netns.b},
            "count": {"type": "counter", "inputs": ["rx"]},
        },
    }


async def _receive_window(spec: dict[str, Any], seconds: float) -> Span:
    """Run the receiver; count what it received in ``seconds`` once traffic flows."""
    pipeline = pktflow.Pipeline.from_dict(spec)
    await pipeline.start()
    try:
        await asyncio.sleep(0.1)  # the sender's pipeline starts
        start, before = time.perf_counter(), pipeline.stats().stages["count"]["packets_in"]
        await asyncio.sleep(seconds)
        end, after = time.perf_counter(), pipeline.stats().stages["count"]["packets_in"]
    finally:
        await pipeline.stop()
    return Span(start, end, after - before)


def _afpacket_trial(runner: asyncio.Runner, veth: _Veth, burst: int, seconds: float) -> Span:
    veth.sender.send(("send", seconds + 0.4))
    with veth.netns.entered():  # the receiver's socket opens in the namespace
        span = runner.run(_receive_window(_afpacket_spec(veth.netns, burst), seconds))
    veth.sent_rates.append(veth.sender.receive(timeout=60) / (seconds + 0.4))
    return span


def _sniff_trial(veth: _Veth, seconds: float) -> Span:
    assert veth.sniffer is not None
    veth.sender.send(("send", seconds + 0.4))
    time.sleep(0.1)  # as the pktflow row: under load from the start
    veth.sniffer.send(("sniff", seconds))
    span: Span = veth.sniffer.receive(timeout=60 + seconds)
    veth.sent_rates.append(veth.sender.receive(timeout=60) / (seconds + 0.4))
    return span


@contextmanager
def _veth(scapy: bool) -> Iterator[_Veth]:
    """The namespace, the flooding sender and (with ``scapy``) the sniffer, for the run."""
    with ExitStack() as stack:
        netns = stack.enter_context(veth_netns())
        sender = stack.enter_context(
            Worker(afpacket_sender, (netns,), name="io-sender", cpu=cpu_for(1))
        )
        sender.wait_ready(timeout=120)
        sniffer = None
        if scapy:
            sniffer = stack.enter_context(
                Worker(scapy_sniffer, (netns,), name="io-sniffer", cpu=cpu_for(0))
            )
            sniffer.wait_ready(timeout=120)
        yield _Veth(netns, sender, sniffer, [])


# -- the UDP echo rows -----------------------------------------------------------


def _echo_spec(burst: int) -> dict[str, Any]:
    return {
        "name": NAME,
        "runtime": {"burst": burst, "poll": "adaptive"},
        "mempools": {"pkts": {**POOL, "priv_size": 8}},
        "stages": {
            "rx": {"type": "udp_source", "bind": "127.0.0.1:0"},
            "echo": {"type": "udp_sink", "inputs": ["rx"], "reply": True},
        },
    }


async def _echo_pktflow(client: Worker, burst: int, seconds: float) -> Span:
    pipeline = pktflow.Pipeline.from_dict(_echo_spec(burst))
    await pipeline.start()
    try:
        client.send(("echo", pipeline.stage("rx").port, seconds))  # type: ignore[attr-defined]
        span: Span = await asyncio.to_thread(client.receive, 60 + seconds)
    finally:
        await pipeline.stop()
    return span


class _Echo(asyncio.DatagramProtocol):
    """The peer: every datagram straight back to its sender."""

    def connection_made(self, transport: Any) -> None:
        self.transport: asyncio.DatagramTransport = transport  # uvloop's: not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(data, addr)


async def _echo_uvloop(client: Worker, seconds: float) -> Span:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    try:
        client.send(("echo", transport.get_extra_info("sockname")[1], seconds))
        span: Span = await asyncio.to_thread(client.receive, 60 + seconds)
    finally:
        transport.close()
    return span


# -- the run ----------------------------------------------------------------------


def _scapy_reason() -> str | None:
    try:
        import scapy  # noqa: F401
    except ImportError:
        return "scapy is not installed (pip install scapy)"
    return None


def _measure_all(
    settings: Settings, notes: list[str], backends: list[str], progress: Progress
) -> list[Row]:
    burst, run_s = settings.burst, settings.run_s
    scapy_missing = _scapy_reason()
    was_lcore = pktflow.lcore_id() != pktflow.LCORE_ID_ANY
    pktflow.register_lcore()
    try:
        with ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pktflow-io-")))
            stack.enter_context(pinned(cpu_for(0)))
            runner = stack.enter_context(asyncio.Runner(loop_factory=uvloop.new_event_loop))
            cases: list[Case] = []
            sent: list[float] = []
            mempool = backends[0] if backends else None

            def add(name: str, peer: bool, size: int, note: str, once: Callable[[], Span]) -> None:
                if peer:
                    backend, mode, row_burst = (
                        {RDPCAP: SCAPY, SNIFF: SCAPY}.get(name, UVLOOP),
                        None,
                        1,
                    )
                    cases.append(Case(name, "peer", backend, mode, row_burst, size, note, once))
                elif mempool is not None:
                    cases.append(Case(name, "pktflow", mempool, ONE_LCORE, burst, size, note, once))

            if mempool is not None:
                write_pcap(folder / "replay.pcap", PCAP_PACKETS)
                trial = partial(_pcap_trial, runner, folder / "replay.pcap", burst)
                progress(f"sizing: {PCAP}")
                loops = _sized(trial, 1, run_s, 100_000)
                note = f"{loops} replays of {PCAP_PACKETS} packets"
                add(PCAP, False, loops * PCAP_PACKETS, note, partial(trial, loops))
            if scapy_missing is None:
                progress(f"sizing: {RDPCAP}")
                scapy = partial(_scapy_trial, folder)
                packets = _sized(scapy, 256, run_s, 200_000)
                add(RDPCAP, True, packets, f"{packets} packets", partial(scapy, packets))
            else:
                notes.append(f"scapy rows skipped: {scapy_missing}")
            try:
                veth = stack.enter_context(_veth(scapy_missing is None))
            except NetnsUnavailable as exc:
                notes.append(f"AF_PACKET rows skipped: {exc}")
            else:
                window = f"{run_s:g} s windows under a flood"
                add(
                    AFPACKET, False, 0, window, partial(_afpacket_trial, runner, veth, burst, run_s)
                )
                if veth.sniffer is not None:
                    add(SNIFF, True, 0, window, partial(_sniff_trial, veth, run_s))
                sent = veth.sent_rates
            client = stack.enter_context(Worker(udp_client, (), name="io-client", cpu=cpu_for(1)))
            client.wait_ready(timeout=120)
            echoes = f"{run_s:g} s of echoes"
            add(ECHO, False, 0, echoes, lambda: runner.run(_echo_pktflow(client, burst, run_s)))
            add(DATAGRAM_PROTOCOL, True, 0, echoes, lambda: runner.run(_echo_uvloop(client, run_s)))
            rows = measure(cases, settings.repeats, progress)
            if sent:
                notes.append(
                    f"the AF_PACKET sender flooded at {statistics.median(sent) / 1e6:.2f} M "
                    "frames/s (median over the runs, start-up included): the receive rows "
                    "cannot exceed it"
                )
            return rows
    finally:
        if not was_lcore:
            pktflow.unregister_lcore()


def run_io_bench(
    *,
    quick: bool = False,
    as_json: bool = False,
    backends: list[str] | None = None,
    bursts: list[int] | None = None,
    repeats: int | None = None,
    run_s: float | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure pcap replay, AF_PACKET receive and UDP echo next to scapy and asyncio.

    Runs on the calling thread, which must not be running an event loop.
    The AF_PACKET rows need root (a network namespace); without it they are
    skipped with the reason in the notes, as are scapy's rows without scapy.

    Args:
        quick: shorter runs (about 0.2 s each, 5 per row).
        as_json: print the result as JSON on stdout instead of tables.
        backends: the mempool backend (default: numba).
        bursts: ``runtime.burst`` of the pktflow rows (the first one; default 32).
        repeats: timed runs per row, after one warm-up run (default 7; quick: 5).
        run_s: about how long each timed run lasts (default 0.5 s; quick: 0.2 s).
        console: where tables and progress go (default: stdout).

    Returns:
        The result: ``rows`` (in packets/s), ``ratios``, ``targets``, ``notes``,
        ``settings`` and ``machine``, as every ``pktflow bench`` command.

    Raises:
        PktflowValueError: a burst outside 1..512, repeats below 1, run_s not positive.

    Usage: ``result = run_io_bench(quick=True)``
    """
    defaults = QUICK if quick else FULL
    settings = Settings(
        burst=(bursts or [defaults.burst])[0],
        run_s=defaults.run_s if run_s is None else run_s,
        repeats=defaults.repeats if repeats is None else repeats,
    )
    if not isinstance(settings.burst, int) or not 1 <= settings.burst <= 512:
        raise pktflow.PktflowValueError(f"the burst must be in 1..512, not {settings.burst}")
    if not isinstance(settings.repeats, int) or settings.repeats < 1:
        raise pktflow.PktflowValueError(f"repeats must be at least 1, not {settings.repeats}")
    if not settings.run_s > 0:
        raise pktflow.PktflowValueError(f"run_s must be positive, not {settings.run_s}")
    notes = [
        f"pcap: a {PCAP_PACKETS}-packet pcap of {FRAME_SIZE}-byte UDP frames over {FLOWS} "
        f"flows replayed through parse and filter ({FILTER!r}, half the flows pass) to a "
        "counter, on one lcore; rate = packets replayed / stats.elapsed_s. scapy: rdpcap of "
        "the same kind of file, then the same test in Python over scapy's layers; rate = "
        "packets / (read + filter time)",
        "AF_PACKET: afpacket_source (TPACKET_V3 ring) -> counter on veth1 of a throwaway "
        "network namespace while a spawned process floods veth0 (generator -> afpacket_sink); "
        "frames counted over a window under load. scapy: sniff(prn=count, store=False) on "
        "the same end under the same flood. Both are bounded by the sender's rate",
        "UDP echo: udp_source -> udp_sink (reply: true) over 127.0.0.1, beside a plain "
        "asyncio DatagramProtocol that sends each datagram back, on uvloop; the client is a "
        "spawned process on a connected socket keeping 128 datagrams of 64 bytes in flight "
        "(one more per reply; a recvmmsg a batch, a sendmmsg of GSO messages a batch, "
        "each datagram still delivered on its own); rate = replies / s",
        "each row: one warm-up run, then the timed runs, interleaved with the other rows' runs",
    ]
    backends = list(backends or BACKENDS)
    return run_bench(
        "io",
        backends,
        partial(_measure_all, settings, notes),
        repeats=settings.repeats,
        comparisons=comparisons(settings.burst),
        targets=targets(settings.burst),
        settings={**settings._asdict(), "quick": quick, "frame_size": FRAME_SIZE},
        notes=notes,
        as_json=as_json,
        console=console,
        unit="packets/s",
    )
