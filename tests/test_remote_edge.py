"""A remote edge without Ray: two pipelines in this process, a ZeroMQ edge between them.

What crosses is checked packet by packet; how bursts are gathered into
messages (a busy edge: several bursts a message; a quiet one: each burst
at the end of the walk's turn) is checked by the messages counted.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

import pktflow

pytest.importorskip("zmq", reason="remote edges need pyzmq: pip install 'pktflow[cluster]'")

from _pipeline_stages import Datagrams

from pktflow._cluster_stages import COALESCE, offer_receiver
from pktflow._cluster_transport import transport

_keys = itertools.count()
POOL = {"n": 4095, "cache_size": 64}


def edge_pair(source: dict[str, Any], sink: dict[str, Any] | None = None, **send: Any):
    """(sender, receiver) pipelines: ``source`` -> EdgeOut ~~ EdgeIn -> ``sink`` (a Keep)."""
    key = f"e{next(_keys)}"
    receiver = transport("zmq").listen("127.0.0.1", hwm=64)
    offer_receiver(key, receiver)
    rx = pktflow.Pipeline.from_dict(
        {
            "name": f"rx-{key}",
            "mempools": {"pkts": POOL},
            "stages": {
                "rx": {"type": "_cluster_stages:EdgeIn", "key": key, "senders": [[1, 0]]},
                "keep": sink or {"type": "_pipeline_stages:Keep", "inputs": ["rx"]},
            },
        }
    )
    tx = pktflow.Pipeline.from_dict(
        {
            "name": f"tx-{key}",
            "mempools": {"pkts": POOL},
            "stages": {
                "src": source,
                "tx": {
                    "type": "_cluster_stages:EdgeOut",
                    "inputs": ["src"],
                    "endpoint": receiver.endpoint,
                    **send,
                },
            },
        }
    )
    return tx, rx


async def run_both(tx: pktflow.Pipeline, rx: pktflow.Pipeline) -> tuple[dict, dict]:
    await rx.start()
    sent = await asyncio.wait_for(tx.run(), 30)
    await asyncio.wait_for(rx.wait(), 30)
    received = await rx.stop()
    return sent.as_dict(), received.as_dict()


def test_a_busy_edge_gathers_bursts_into_messages_and_loses_nothing():
    sizes = [60 + i % 1400 for i in range(1000)]  # 32 bursts of 32, the last of 8
    tx, rx = edge_pair(
        {"type": "_pipeline_stages:Datagrams", "sizes": sizes},
        {"type": "_pipeline_stages:Record", "inputs": ["rx"]},
    )

    async def main() -> tuple[dict, dict]:
        await rx.start()
        await tx.start()
        tx.stage("src").go.set()
        await asyncio.wait_for(tx.wait(), 30)
        sent = await tx.stop()
        await asyncio.wait_for(rx.wait(), 30)
        return sent.as_dict(), (await rx.stop()).as_dict()

    sent, received = asyncio.run(main())
    expected = [Datagrams.payload(i % 32, size) for i, size in enumerate(sizes)]
    assert rx.stage("keep").packets == expected  # each once, whole, in order
    assert sent["stages"]["tx"]["drops"] == 0
    assert sent["mempools"]["pkts"]["in_use"] == 0 and received["mempools"]["pkts"]["in_use"] == 0
    messages = tx.stage("tx").messages
    assert -(-len(sizes) // (32 * COALESCE)) <= messages < len(sizes) // 32  # fewer than bursts


def test_a_quiet_edge_sends_each_burst_without_waiting_for_more():
    # 200 packets/s for 1.5 s: waiting for 8 bursts of 32 (256 packets) would hold
    # every packet until the source ends.
    tx, rx = edge_pair({"type": "generator", "rate": 200, "count": 300})

    async def main() -> tuple[int, bool]:
        await rx.start()
        await tx.start()
        await asyncio.sleep(0.6)
        seen = rx.stats().as_dict()["stages"]["keep"]["packets_in"]
        ended = await tx.wait(0)
        await asyncio.wait_for(tx.wait(), 30)
        await tx.stop()
        await asyncio.wait_for(rx.wait(), 30)
        await rx.stop()
        return seen, ended

    seen, ended = asyncio.run(main())
    assert not ended and 0 < seen < 300  # delivered while the source still runs
    assert sum(len(h) for h in rx.stage("keep").handles) == 300
    assert tx.stage("tx").messages > 300 // 32  # more messages than full bursts


def test_the_end_mark_follows_bursts_still_waiting():
    tx, rx = edge_pair({"type": "generator", "count": 100})  # less than one message's worth
    sent, received = asyncio.run(run_both(tx, rx))
    assert received["stages"]["keep"]["packets_in"] == 100
    assert sent["mempools"]["pkts"]["in_use"] == 0 and received["mempools"]["pkts"]["in_use"] == 0
    assert tx.stage("tx").messages >= 1


def test_coalesce_one_sends_a_message_per_burst():
    tx, rx = edge_pair({"type": "generator", "count": 3200}, coalesce=1)
    sent, received = asyncio.run(run_both(tx, rx))
    assert received["stages"]["keep"]["packets_in"] == 3200
    assert sent["stages"]["tx"]["drops"] == 0
    assert tx.stage("tx").messages == 100


def test_a_send_failing_in_a_flush_on_the_event_loop_fails_the_pipeline_by_name():
    tx, rx = edge_pair({"type": "generator", "rate": 2000, "count": 400})

    def broken(message: Any, timeout: float) -> bool:
        raise RuntimeError("the transport broke")

    async def main() -> None:
        await rx.start()
        await tx.start()
        tx.stage("tx").sender.send = broken
        try:
            with pytest.raises(pktflow.PipelineError, match="tx") as caught:
                await asyncio.wait_for(tx.wait(), 30)
                await tx.stop()
            assert "the transport broke" in repr(caught.value.__cause__)
            assert tx.stats().as_dict()["mempools"]["pkts"]["in_use"] == 0
        finally:
            await rx.stop()

    asyncio.run(main())
