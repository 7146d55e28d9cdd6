"""Cluster pipelines (DESIGN §7.7) on one local 2-node Ray cluster for the whole module.

Each test runs a pipeline whose shards are Ray actors on the two nodes, its
remote edges over ZeroMQ on loopback, and checks what the shards counted
and that nothing is left behind (zones of the shards, sockets).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pktflow
from pktflow import ConfigError, PipelineError

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before ray is imported

TESTS = Path(__file__).resolve().parent


def _bounded(what: Callable[[], Any], seconds: float) -> None:
    """Run ``what`` in a thread for at most ``seconds`` (a shutdown must not hang the run)."""
    worker = threading.Thread(target=what, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{what} took over {seconds} s"


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    ray = pytest.importorskip(
        "ray", reason="the cluster tests need Ray: pip install 'pktflow[cluster]'"
    )
    pytest.importorskip(
        "zmq", reason="the cluster tests need pyzmq: pip install 'pktflow[cluster]'"
    )
    from pktflow._cluster import LocalCluster

    before = os.environ.get("PYTHONPATH")
    # The shards import tests/_cluster_stages.py: Ray's processes inherit this.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), before]))
    local = LocalCluster(2)
    try:
        ray.init(address=local.address, log_to_driver=False, logging_level="ERROR")
        yield local.address
    finally:
        _bounded(ray.shutdown, 30)
        _bounded(local.shutdown, 30)
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
    assert not Path(local.temp_dir).exists()


def _pipeline(address: str, stages: dict[str, Any], **cluster: Any) -> pktflow.Pipeline:
    return pktflow.Pipeline.from_dict(
        {
            "name": "c",
            "cluster": {"engine": "ray", "address": address, "nodes": 2, **cluster},
            "mempools": {"pkts": {"n": 4095, "cache_size": 128}},
            "stages": stages,
        }
    )


def _run(p: pktflow.Pipeline, **kw: Any) -> dict[str, Any]:
    return asyncio.run(asyncio.wait_for(p.run(**kw), 120)).as_dict()


def _nothing_left(p: Any) -> None:
    """No zone of any shard is left, and no lcore id of one is claimed."""
    pids = {info["pid"] for info in p.nodes}
    assert pids
    left = [z for z in pktflow.list_zones() if z.creator_pid in pids]
    assert left == []


GEN_PARSE = {
    "gen": {"type": "generator", "count": 20_001, "size": 100, "flows": 8},
    "parse": {"type": "parse", "inputs": ["gen"]},
}


@pytest.mark.timeout(120)
def test_exact_counts_end_to_end_and_replicas_across_the_cluster(address: str) -> None:
    p = _pipeline(
        address, {**GEN_PARSE, "total": {"type": "counter", "inputs": ["parse"], "node": 0}}
    )
    stats = _run(p)
    # count 20,001 over 2 replicas (one per node): 10,001 + 10,000, not 20,001 each
    assert stats["stages"]["gen"]["packets_out"] == 20_001
    assert stats["stages"]["total"]["packets_in"] == 20_001
    assert stats["stages"]["total"]["bytes_in"] == 20_001 * 100
    nodes = stats["nodes"]
    assert {n["state"] for n in nodes.values()} == {"done"}
    made = sorted(n["stages"]["gen"]["packets_out"] for n in nodes.values())
    assert made == [10_000, 10_001]
    assert "total" in nodes[0]["stages"] and "total" not in nodes[1]["stages"]
    edge = stats["edges"]["parse.out->total"]
    assert edge["sent"] == edge["received"] == nodes[1]["stages"]["gen"]["packets_out"]
    assert edge["drops"] == 0 and edge["transport"] == "zmq"
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values())
    assert stats["mempools"]["pkts"]["n"] == 2 * 4095
    _nothing_left(p)


@pytest.mark.timeout(120)
def test_replicas_count_nodes_times_lcores(address: str) -> None:
    p = _pipeline(
        address,
        {
            "gen": {"type": "generator", "count": 4_003, "flows": 4, "lcore": [0, 1]},
            "parse": {"type": "parse", "inputs": ["gen"], "lcore": [0, 1]},
            "total": {"type": "counter", "inputs": ["parse"], "node": 0},
        },
    )
    stats = _run(p)
    # 4 replicas (2 nodes x 2 lcores): 1,001 + 1,001 + 1,001 + 1,000
    made = sorted(n["stages"]["gen"]["packets_out"] for n in stats["nodes"].values())
    assert made == [2_001, 2_002]
    assert stats["stages"]["total"]["packets_in"] == 4_003
    assert (
        stats["edges"]["parse.out->total"]["received"]
        == stats["nodes"][1]["stages"]["gen"]["packets_out"]
    )
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values())
    _nothing_left(p)


@pytest.mark.timeout(120)
def test_node_pins_a_stage_and_fields_cross_with_the_bytes(address: str) -> None:
    p = _pipeline(
        address,
        {
            "gen": {"type": "generator", "count": 5_000, "size": 64, "node": 1},
            "parse": {"type": "parse", "inputs": ["gen"], "node": 1},
            # filter reads the packet_type parse wrote on the other node
            "udp": {"type": "filter", "expr": "udp", "inputs": ["parse"], "node": 0},
            "total": {"type": "counter", "inputs": ["udp"], "node": 0},
        },
    )
    stats = _run(p)
    nodes = stats["nodes"]
    assert set(nodes[1]["stages"]) >= {"gen", "parse"} and "udp" not in nodes[1]["stages"]
    assert "gen" not in nodes[0]["stages"] and "total" in nodes[0]["stages"]
    assert stats["stages"]["total"]["packets_in"] == 5_000
    assert stats["stages"]["total"]["bytes_in"] == 5_000 * 64
    assert stats["edges"]["parse.out->udp"]["received"] == 5_000
    _nothing_left(p)


@pytest.mark.timeout(120)
def test_run_count_is_split_over_the_source_instances(address: str) -> None:
    p = _pipeline(
        address,
        {
            "gen": {"type": "generator", "size": 64},  # unlimited
            "total": {"type": "counter", "inputs": ["gen"], "node": 0},
        },
    )
    stats = _run(p, count=64_000)
    made = [n["stages"]["gen"]["packets_out"] for n in stats["nodes"].values()]
    # whole bursts: each instance stops once its 32,000 are out (at most one burst more)
    assert all(32_000 <= m < 32_000 + 32 for m in made)
    assert stats["stages"]["total"]["packets_in"] == sum(made)


@pytest.mark.timeout(120)
def test_stop_drains_remote_edges_upstream_first(address: str) -> None:
    async def main() -> dict[str, Any]:
        p = _pipeline(
            address,
            {
                "gen": {"type": "generator", "size": 64, "rate": 200_000},
                "total": {"type": "counter", "inputs": ["gen"], "node": 0},
            },
        )
        await p.start()
        await asyncio.sleep(1.5)
        running = p.stats().as_dict()  # gathered about once a second
        assert running["stages"]["total"]["packets_in"] > 0
        assert set(running["nodes"]) == {0, 1}
        return (await asyncio.wait_for(p.stop(), 60)).as_dict()

    stats = asyncio.run(main())
    assert stats["stages"]["total"]["packets_in"] == stats["stages"]["gen"]["packets_out"]
    assert stats["edges"]["gen.out->total"]["drops"] == 0
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values())


@pytest.mark.timeout(120)
def test_a_failing_stage_on_a_node_stops_every_node_naming_node_and_stage(address: str) -> None:
    p = _pipeline(
        address,
        {
            "gen": {"type": "generator", "size": 64, "rate": 100_000},
            # operator.neg(burst) raises TypeError on node 0's first burst
            "boom": {"type": "tap", "function": "operator:neg", "inputs": ["gen"], "node": 0},
        },
    )
    with pytest.raises(PipelineError) as caught:
        _run(p, duration=30)
    assert "node 0" in str(caught.value) and "'boom'" in str(caught.value)
    assert caught.value.stage == "boom"
    stats = p.stats().as_dict()
    assert {n["state"] for n in stats["nodes"].values()} == {"failed", "done"}
    assert stats["elapsed_s"] < 20
    _nothing_left(p)


def _pid_of(p: Any, node: int) -> int:
    return int(p.nodes[node]["pid"])


@pytest.mark.timeout(120)
def test_a_killed_shard_stops_the_pipeline_within_a_second_naming_the_node(address: str) -> None:
    async def main() -> tuple[float, BaseException | None, Any]:
        p = _pipeline(
            address,
            {
                "gen": {"type": "generator", "size": 64, "rate": 100_000},
                "total": {"type": "counter", "inputs": ["gen"], "node": 0},
            },
        )
        await p.start()
        await asyncio.sleep(1.0)
        os.kill(_pid_of(p, 1), signal.SIGKILL)
        killed = time.monotonic()
        assert await p.wait(10)
        took = time.monotonic() - killed
        try:
            await asyncio.wait_for(p.stop(), 60)
        except PipelineError as exc:
            return took, exc, p
        return took, None, p

    took, error, p = asyncio.run(main())
    assert took < 1.0
    assert isinstance(error, PipelineError)
    assert "node 1" in str(error) and "died" in str(error)
    assert getattr(error, "node", None) == 1
    stats = p.stats().as_dict()
    assert stats["nodes"][1]["state"] == "dead"
    assert stats["nodes"][0]["mempools"]["pkts"]["in_use"] == 0
    _nothing_left(p)  # the dead shard's zones too: a task on its node removed them


@pytest.mark.timeout(120)
def test_on_failure_continue_goes_on_and_counts_drops_to_the_dead_node(address: str) -> None:
    async def main() -> tuple[bool, dict[str, Any], Any]:
        p = _pipeline(
            address,
            {
                "gen": {"type": "generator", "size": 64, "rate": 100_000},
                "here": {"type": "counter", "inputs": ["gen"], "node": 0},
                "there": {
                    "type": "counter",
                    "inputs": ["gen"],
                    "node": 1,
                    "edge": {"full": "drop"},
                },
            },
            on_failure="continue",
        )
        await p.start()
        await asyncio.sleep(1.0)
        os.kill(_pid_of(p, 1), signal.SIGKILL)
        await asyncio.sleep(2.0)
        still = p.running
        before = p.stats().as_dict()["stages"]["here"]["packets_in"]
        await asyncio.sleep(1.5)
        assert p.stats().as_dict()["stages"]["here"]["packets_in"] > before  # node 0 goes on
        return still, (await asyncio.wait_for(p.stop(), 60)).as_dict(), p

    still, stats, p = asyncio.run(main())
    assert still
    assert stats["nodes"][1]["state"] == "dead" and stats["nodes"][0]["state"] == "done"
    assert stats["edges"]["gen.out->there"]["drops"] > 0
    assert stats["nodes"][0]["mempools"]["pkts"]["in_use"] == 0
    _nothing_left(p)


@pytest.mark.timeout(120)
def test_full_drop_counts_what_a_stalled_consumer_cannot_take(address: str) -> None:
    p = _pipeline(
        address,
        {
            "gen": {"type": "generator", "count": 200_000, "size": 64, "node": 1},
            "slow": {
                "type": "_cluster_stages:Slow",
                "pause": 0.002,
                "inputs": ["gen"],
                "node": 0,
                "edge": {"full": "drop", "size": 2048},
            },
        },
    )
    stats = _run(p)
    edge = stats["edges"]["gen.out->slow"]
    assert edge["drops"] > 0
    # every packet is accounted for once: received by the consumer, or dropped
    assert edge["received"] + edge["drops"] == 200_000
    assert stats["stages"]["slow"]["packets_in"] == edge["received"]
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values())


# -- checks before anything starts (no cluster needed) -------------------------------------


def _spec(stages: dict[str, Any], nodes: int = 2) -> dict[str, Any]:
    return {"name": "c", "cluster": {"nodes": nodes}, "stages": stages}


@pytest.mark.parametrize(
    ("stages", "key", "words"),
    [
        pytest.param(
            {"gen": {"type": "generator", "node": 1}, "c": {"type": "counter", "inputs": ["gen"]}},
            "stages.c.inputs", "runs on every node, but its input gen.out runs only on node 1",
            id="every-node-fed-by-one",
        ),
        pytest.param(
            {"gen": {"type": "generator", "lcore": [0, 1]},
             "c": {"type": "counter", "inputs": ["gen"], "node": 0, "lcore": [0, 1]}},
            "stages.c.lcore", "fed across nodes", id="sharded-remote-consumer",
        ),
        pytest.param(
            {"gen": {"type": "generator", "node": 0},
             "a": {"type": "parse", "inputs": ["gen"], "node": 1},
             "b": {"type": "parse", "inputs": ["a"], "node": 0},
             "c": {"type": "counter", "inputs": ["b"], "node": 1}},
            "stages", "from node to node and back", id="node-cycle",
        ),
        pytest.param(
            {
                "gen": {"type": "generator"},
                "c": {"type": "counter", "inputs": ["gen"], "node": 0,
                      "edge": {"transport": "tcp"}},
            },
            "stages.c.edge.transport", "invalid enum value 'tcp'", id="unknown-transport",
        ),
        pytest.param(
            {"gen": {"type": "generator", "node": 2}}, "stages.gen.node",
            "node 2 is outside 0..1", id="node-out-of-range",
        ),
    ],
)  # fmt: skip
def test_cluster_layout_errors(stages: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        pktflow.Pipeline.from_dict(_spec(stages))
    assert caught.value.key == key
    assert words in str(caught.value)


def test_node_needs_a_cluster() -> None:
    with pytest.raises(ConfigError, match="node: needs a cluster"):
        pktflow.Pipeline.from_dict({"name": "x", "stages": {"g": {"type": "generator", "node": 0}}})


def test_the_node_specs_are_ordinary_pipelines() -> None:
    from pktflow._cluster_plan import ClusterPlan

    spec = pktflow.Pipeline.from_dict(
        _spec({**GEN_PARSE, "total": {"type": "counter", "inputs": ["parse"], "node": 0}})
    ).spec
    plan = ClusterPlan(spec)
    [edge] = plan.remote
    assert (edge.name, edge.producer_nodes, edge.consumer_node) == ("parse.out->total", (1,), 0)
    zero = plan.node_spec(0, {edge.key: "tcp://127.0.0.1:1"})
    one = plan.node_spec(1, {edge.key: "tcp://127.0.0.1:1"})
    assert zero.cluster is None and one.cluster is None
    assert list(zero.stages) == ["gen", "parse", "parse.out->total:receive", "total"]
    assert list(one.stages) == ["gen", "parse", "parse.out->total:send"]
    assert [str(i) for i in zero.stages["total"].inputs] == [
        "parse.out", "parse.out->total:receive.out",
    ]  # fmt: skip
    assert zero.stages["gen"].options["replicas"] == 2
    assert (zero.stages["gen"].options["base"], one.stages["gen"].options["base"]) == (0, 1)


def test_pack_and_unpack_carry_bytes_lengths_fields_and_chains() -> None:
    import numpy as np

    from pktflow._cluster_kernels import HEADER_BYTES, pack, unpack
    from pktflow.abc import ERR_FOREIGN

    pool = pktflow.pktmbuf_pool_create("cluster-pack", 255, 0, 0, 2176)
    try:
        sent = np.empty(4, np.uint32)
        assert pool.alloc_bulk(sent, 4) == 4
        rng = np.random.default_rng(7)
        payloads = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in (60, 1, 1500)]
        for handle, payload in zip(sent[:3], payloads, strict=True):
            pool.mbuf(int(handle)).append(len(payload))[:] = payload
        head, tail = pool.mbuf(int(sent[2])), pool.mbuf(int(sent[3]))  # a 2-segment chain
        tail.append(40)[:] = b"t" * 40
        head.chain(tail)
        headers = pool.headers
        for i, handle in enumerate(sent[:3]):
            headers["packet_type"][handle] = 0x11 + i
            headers["l2_len"][handle], headers["l3_len"][handle] = 14, 20 + i
            headers["vlan_tci"][handle], headers["hash"][handle] = 100 + i, 0xDEAD0000 + i
            headers["timestamp"][handle] = 1_700_000_000_123_456_789 + i
        data = np.frombuffer(pool._object_bytes, np.uint8)
        short = np.full(100, 0xAB, np.uint8)
        needed = pack(pool.header_words, data, pool._stride, sent, 3, short)
        assert needed == HEADER_BYTES + 3 * 36 + 60 + 1 + 1540
        assert (short == 0xAB).all()  # too short: untouched
        message = np.zeros(needed + 10, np.uint8)
        assert pack(pool.header_words, data, pool._stride, sent, 3, message) == needed
        assert int.from_bytes(message[12:16].tobytes(), "little") == 3  # the packet count
        foreign = np.array([pool.n + 5], np.uint32)
        assert pack(pool.header_words, data, pool._stride, foreign, 1, message) == ERR_FOREIGN
        got = np.empty(3, np.uint32)
        assert pool.alloc_bulk(got, 3) == 3
        # two calls, as a receiver with a smaller burst makes them
        block = np.frombuffer(message[:needed].tobytes(), np.uint8)  # read-only, as received
        words = pool.header_words
        cut = block[: needed - 1]
        assert unpack(words, data, pool._stride, got, 3, cut, 3, 0, 0) == -1
        offset = unpack(words, data, pool._stride, got[:2], 2, block, 3, 0, 0)
        unpack(words, data, pool._stride, got[2:], 1, block, 3, 2, offset)
        expect = [payloads[0], payloads[1], payloads[2] + b"t" * 40]
        for handle, was, payload in zip(got, sent[:3], expect, strict=True):
            m = pool.mbuf(int(handle))
            assert bytes(m.data) == payload and m.pkt_len == len(payload) and m.nb_segs == 1
            for name in ("packet_type", "l2_len", "l3_len", "vlan_tci", "hash", "timestamp"):
                assert headers[name][handle] == headers[name][was], name
        pool.free_bulk(got, 3)
        pool.free_bulk(sent, 3)  # the chain's tail goes with its head
        assert pool.in_use_count() == 0
    finally:
        pool.close()


def test_validate_makes_the_layout_checks_and_cluster_overrides_the_address(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from pktflow._cluster import with_address

    path = tmp_path / "loop.yaml"
    path.write_text(
        "name: loop\ncluster: {nodes: 2}\nstages:\n"
        "  gen: {type: generator, node: 0}\n  a: {type: parse, inputs: [gen], node: 1}\n"
        "  b: {type: parse, inputs: [a], node: 0}\n  c: {type: counter, inputs: [b], node: 1}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pktflow", "validate", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "loop.yaml:3: stages: data crosses from node to node and back" in done.stderr
    spec = pktflow.Pipeline.from_dict(_spec({"gen": {"type": "generator"}})).spec
    moved = with_address(spec, "10.0.0.1:6379")
    assert moved.cluster is not None and moved.cluster.address == "10.0.0.1:6379"
    assert moved.cluster.nodes == 2
