"""udp_source -> udp_sink(reply) over loopback: every datagram comes back, byte for byte."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time

import pytest
from _pipeline_stages import Datagrams

import pktflow
from pktflow.pipelines.udp import UdpSink, UdpSource


def echo_pipeline(extra: dict | None = None, pool: dict | None = None, **sink) -> pktflow.Pipeline:
    return pktflow.Pipeline.from_dict(
        {
            "name": "udp",
            "runtime": {"poll": "adaptive"},
            "mempools": {"pkts": {"n": 2047, "cache_size": 64, "priv_size": 8, **(pool or {})}},
            "stages": {
                "rx": {"type": "udp_source", "bind": "127.0.0.1:0"},
                "tx": {"type": "udp_sink", "inputs": ["rx"], **(sink or {"reply": True})},
                **(extra or {}),
            },
        }
    )


def connected_client(port: int) -> socket.socket:
    """A client connected to the source, as a DNS resolver is: it takes replies from there only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def test_echo_returns_every_datagram_byte_for_byte():
    pipeline = echo_pipeline()
    payloads = [bytes([i % 251]) * (1 + i % 1400) + i.to_bytes(4, "big") for i in range(2000)]
    echoed: list[bytes] = []

    def client(port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for start in range(0, len(payloads), 50):  # windows of 50: no loss in the buffers
                window = payloads[start : start + 50]
                for payload in window:
                    sock.sendto(payload, ("127.0.0.1", port))
                for _ in window:
                    echoed.append(sock.recv(2048))

    async def main() -> pktflow.Stats:
        await pipeline.start()
        thread = threading.Thread(target=client, args=(pipeline.stage("rx").port,))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        thread.join()
        return await pipeline.stop()

    stats = asyncio.run(main()).as_dict()
    assert sorted(echoed) == sorted(payloads)
    assert stats["stages"]["rx"]["packets_out"] == len(payloads)
    assert stats["mempools"]["pkts"]["in_use"] == 0


def test_sink_to_a_fixed_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as catcher:
        catcher.bind(("127.0.0.1", 0))
        catcher.settimeout(5)
        pipeline = echo_pipeline(to=f"127.0.0.1:{catcher.getsockname()[1]}")

        async def main() -> None:
            await pipeline.start()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.sendto(b"hello", ("127.0.0.1", pipeline.stage("rx").port))
            await asyncio.sleep(0.3)
            await pipeline.stop()

        asyncio.run(main())
        assert catcher.recv(100) == b"hello"


@pytest.mark.parametrize(
    ("rx", "tx", "message"),
    [
        ({"bind": "nope"}, {"reply": True}, 'bind must be "host:port"'),
        ({"bind": "127.0.0.1:0"}, {}, "exactly one of to: or reply: true"),
        ({"bind": "127.0.0.1:0"}, {"to": "x:1", "reply": True}, "exactly one of"),
    ],
)
def test_bad_options(rx, tx, message):
    spec = {
        "name": "udp",
        "mempools": {"pkts": {"n": 1023, "cache_size": 32, "priv_size": 8}},
        "stages": {
            "rx": {"type": "udp_source", **rx},
            "tx": {"type": "udp_sink", "inputs": ["rx"], **tx},
        },
    }
    with pytest.raises(pktflow.ConfigError, match=message):
        asyncio.run(pktflow.Pipeline.from_dict(spec).run(duration=0.1))


def test_the_sender_needs_a_private_area():
    pipeline = pktflow.Pipeline.from_dict(
        {
            "name": "udp",
            "stages": {
                "rx": {"type": "udp_source", "bind": "127.0.0.1:0"},
                "tx": {"type": "udp_sink", "inputs": ["rx"], "reply": True},
            },
        }
    )
    with pytest.raises(pktflow.ConfigError, match="priv_size: 8"):
        asyncio.run(pipeline.run(duration=0.1))


def test_the_reply_comes_from_the_bound_socket_to_a_connected_client():
    pipeline = echo_pipeline()
    payloads = [i.to_bytes(2, "big") * (1 + i) for i in range(300)]

    async def main() -> tuple[list[tuple[bytes, tuple[str, int]]], int]:
        await pipeline.start()
        port = pipeline.stage("rx").port
        got = []
        with connected_client(port) as client:
            for payload in payloads:  # one at a time: a reply from elsewhere would be lost
                client.send(payload)
                got.append(await asyncio.to_thread(client.recvfrom, 2048))
        await pipeline.stop()
        return got, port

    got, port = asyncio.run(main())
    assert [data for data, _ in got] == payloads
    assert {address for _, address in got} == {("127.0.0.1", port)}
    sink = pipeline.stage("tx")
    assert isinstance(sink, UdpSink)
    assert (sink.sent, sink.failed, sink.unmatched) == (len(payloads), 0, 0)


def test_a_burst_goes_out_in_one_system_call():
    pipeline = echo_pipeline()

    async def main() -> None:
        await pipeline.start()
        with connected_client(pipeline.stage("rx").port) as client:
            source = pipeline.stage("rx")
            for i in range(32):  # all waiting before the source polls again
                client.send(bytes([i]) * 64)
            got = [await asyncio.to_thread(client.recv, 2048) for _ in range(32)]
        assert sorted(got) == sorted(bytes([i]) * 64 for i in range(32))
        assert isinstance(source, UdpSource)
        await pipeline.stop()

    asyncio.run(main())
    sink = pipeline.stage("tx")
    assert sink.sent == 32
    assert sink.calls < 32  # batched: sendmmsg per burst, not sendto per datagram


def test_an_idle_source_does_not_stall_a_busy_generator_and_wakes_for_a_datagram(monkeypatch):
    assert not inspect.iscoroutinefunction(UdpSource.poll)  # nothing in it can wait
    polls = 0
    poll = UdpSource.poll

    def counted(self: UdpSource, burst: pktflow.Burst) -> int:
        nonlocal polls
        polls += 1
        return poll(self, burst)

    monkeypatch.setattr(UdpSource, "poll", counted)
    bursts = 1000
    pipeline = echo_pipeline(
        {
            "gen": {"type": "generator", "count": 32 * bursts, "size": 64},
            "count": {"type": "counter", "inputs": ["gen"]},
        },
        pool={"n": 4095, "cache_size": 128},
    )

    async def main() -> tuple[int, int, list[float], float, int]:
        await pipeline.start()
        deadline = time.monotonic() + 20
        # Sleeping in its poll (up to 50 ms a round, as udp_source did) would hold the
        # generator to one burst per sleep: 1000 bursts, 50 s.
        while pipeline.stats().as_dict()["stages"]["count"]["packets_in"] < 32 * bursts:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        generated, polled = pipeline.stats().as_dict()["stages"]["gen"]["bursts"], polls
        # Now the only source left is idle: the walk sleeps on its socket ...
        started = time.process_time()
        await asyncio.sleep(0.1)  # spun, then asleep
        slept = pipeline._wakeups()[1]
        await asyncio.sleep(1.0)
        slept = pipeline._wakeups()[1] - slept
        idle_cpu = time.process_time() - started
        # ... and a datagram wakes it.
        waits = []
        with connected_client(pipeline.stage("rx").port) as client:
            for i in range(3):
                await asyncio.sleep(0.2)
                sent = time.monotonic()
                client.send(b"late %d" % i)
                assert await asyncio.to_thread(client.recv, 100) == b"late %d" % i
                waits.append(time.monotonic() - sent)
        await pipeline.stop()
        return generated, polled, waits, idle_cpu, slept

    generated, polled, waits, idle_cpu, slept = asyncio.run(main())
    assert 1 <= slept <= 3  # in the walk's sleep on the socket (up to 1 s), not polling with pauses
    assert generated == bursts
    assert polled >= bursts  # polled in every round beside the generator, returned at once
    assert max(waits) < 0.3  # the walk sleeps at most 1 s when nothing wakes it
    assert idle_cpu < 0.5


def test_a_datagram_longer_than_the_data_room_is_dropped_and_counted():
    pipeline = echo_pipeline(pool={"data_room": 256})

    async def main() -> None:
        await pipeline.start()
        with connected_client(pipeline.stage("rx").port) as client:
            client.send(bytes(1000))
            client.send(b"small")
            assert await asyncio.to_thread(client.recv, 2048) == b"small"
        await pipeline.stop()

    asyncio.run(main())
    source = pipeline.stage("rx")
    assert (source.truncated, source.received) == (1, 1)


# Runs the kernel can segment (one address, one length, the last shorter), broken by a
# longer one, a zero-length datagram and a run longer than a burst.
SIZES = [64] * 5 + [30] + [64] * 3 + [100] + [0] + [7, 7] + [1400] * 40 + [1]


def send_sizes(
    extra_options: dict, before_go=None, sizes: list[int] = SIZES
) -> tuple[list[bytes], UdpSink]:
    """The Datagrams test source -> udp_sink to a catcher: what the catcher got, and the sink."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as catcher:
        catcher.bind(("127.0.0.1", 0))
        catcher.settimeout(5)
        pipeline = pktflow.Pipeline.from_dict(
            {
                "name": "udp",
                "mempools": {"pkts": {"n": 1023, "cache_size": 32}},
                "stages": {
                    "src": {"type": "_pipeline_stages:Datagrams", "sizes": sizes},
                    "tx": {
                        "type": "udp_sink",
                        "inputs": ["src"],
                        "to": f"127.0.0.1:{catcher.getsockname()[1]}",
                        **extra_options,
                    },
                },
            }
        )

        async def main() -> None:
            await pipeline.start()
            sink = pipeline.stage("tx")
            if before_go is not None:
                before_go(sink)
            pipeline.stage("src").go.set()
            await pipeline.wait()
            await pipeline.stop()

        asyncio.run(main())
        got = [catcher.recv(2048) for _ in sizes]
    sink = pipeline.stage("tx")
    assert isinstance(sink, UdpSink)
    return got, sink


def expected_datagrams(sizes: list[int] = SIZES, burst: int = 32) -> list[bytes]:
    return [Datagrams.payload(i % burst, size) for i, size in enumerate(sizes)]


def test_runs_to_one_address_go_as_one_segmented_message_and_arrive_whole():
    got, sink = send_sizes({})
    assert got == expected_datagrams()  # each datagram whole, in order, none merged or split
    assert (sink.sent, sink.failed) == (len(SIZES), 0)
    if sink.gso:  # Linux 4.18+
        # 5 + 1 | 3 | 2 | 19 (the rest of the first burst) | 21 + 1 (the second)
        assert sink.segmented == 6 + 3 + 2 + 19 + 22
        assert sink.calls == 2  # one sendmmsg per burst


def test_datagrams_longer_than_an_ethernet_mtu_allows_go_on_their_own():
    sizes = [1473] * 4 + [1472] * 3  # segments must fit any Ethernet route's MTU
    got, sink = send_sizes({}, sizes=sizes)
    assert got == expected_datagrams(sizes)
    assert sink.segmented == (3 if sink.gso else 0)


def test_without_gso_every_datagram_is_a_message_of_its_own():
    got, sink = send_sizes({"gso": False})
    assert got == expected_datagrams()
    assert (sink.sent, sink.segmented, sink.gso) == (len(SIZES), 0, False)


def test_a_route_that_cannot_segment_falls_back_to_one_by_one_losing_nothing():
    so_no_check = 11  # the kernel refuses to segment without UDP checksums (EINVAL)

    def no_checksums(sink: UdpSink) -> None:
        if not sink.gso:
            pytest.skip("this kernel has no UDP GSO")
        assert sink.sock is not None
        sink.sock.setsockopt(socket.SOL_SOCKET, so_no_check, 1)

    got, sink = send_sizes({}, before_go=no_checksums)
    assert got == expected_datagrams()
    assert (sink.sent, sink.failed, sink.segmented, sink.gso) == (len(SIZES), 0, 0, False)
