"""udp_source -> udp_sink(reply) over loopback: every datagram comes back, byte for byte."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

import pktflow


def echo_pipeline(**sink) -> pktflow.Pipeline:
    return pktflow.Pipeline.from_dict(
        {
            "name": "udp",
            "runtime": {"poll": "adaptive"},
            "mempools": {"pkts": {"n": 2047, "cache_size": 64, "priv_size": 8}},
            "stages": {
                "rx": {"type": "udp_source", "bind": "127.0.0.1:0"},
                "tx": {"type": "udp_sink", "inputs": ["rx"], **(sink or {"reply": True})},
            },
        }
    )


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
