"""The pipeline runtime on lcore 0: the walk, fan-out/in, rings, stop, failures, embedding.

Each test runs on both event loops (asyncio's and uvloop's) through
``run_on``; every pipeline must end with every mbuf back in its pool.
"""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest
import uvloop

import pktflow

STAGES = "_pipeline_stages"  # tests/_pipeline_stages.py, loaded by "module:Class"


@pytest.fixture(params=["asyncio", "uvloop"])
def run_on(
    request: pytest.FixtureRequest,
) -> Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main())

    return run


def pipeline(stages: dict[str, Any], **top: Any) -> pktflow.Pipeline:
    return pktflow.Pipeline.from_dict(
        {"name": "t", "mempools": {"pkts": {"n": 2047, "cache_size": 64}}, "stages": stages, **top}
    )


def assert_all_back(stats: pktflow.Stats) -> None:
    for name, pool in stats.as_dict()["mempools"].items():
        assert pool["in_use"] == 0, f"mempool {name}: {pool}"


def test_generator_to_counter_counts_exactly(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 10_000, "size": 100},
            "count": {"type": "counter", "inputs": ["gen"]},
        }
    )
    stats = run_on(p.run).as_dict()
    assert stats["stages"]["gen"]["packets_out"] == 10_000
    assert stats["stages"]["count"]["packets_in"] == 10_000
    assert stats["stages"]["count"]["bytes_in"] == 10_000 * 100
    assert stats["stages"]["count"]["bursts"] == 10_000 // 32 + 1
    assert stats["edges"] == {"gen.out->count": {"count": 0, "capacity": 0, "drops": 0}}
    assert stats["mempools"]["pkts"] == {"n": 2047, "in_use": 0, "avail": 2047}
    assert stats["elapsed_s"] > 0
    assert set(stats["stages"]["gen"]) == {
        "lcore", "packets_in", "packets_out", "bytes_in", "drops", "bursts",
    }  # fmt: skip
    assert p.stage("count").counts() == {"gen.out": {"packets": 10_000, "bytes": 1_000_000}}


def test_custom_stage_by_module_path_with_options_start_and_stop(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 1000},
            "tag": {"type": f"{STAGES}:Tag", "inputs": ["gen"], "mark": 9},
            "keep": {"type": f"{STAGES}:Keep", "inputs": ["tag"]},
        }
    )

    stats = run_on(p.run)
    tag = p.stage("tag")
    assert (tag.mark, tag.started, tag.stopped) == (9, 1, 1)
    keep = p.stage("keep")
    assert np.concatenate(keep.handles).size == 1000
    assert set(np.concatenate(keep.ports).tolist()) == {9}
    assert_all_back(stats)


def test_fan_out_gives_every_consumer_every_packet_and_frees_once(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 5000},
            "a": {"type": "counter", "inputs": ["gen"]},
            "b": {"type": "counter", "inputs": ["gen"]},
            "c": {"type": f"{STAGES}:Keep", "inputs": ["gen"]},
        }
    )
    stats = run_on(p.run).as_dict()
    for name in "abc":
        assert stats["stages"][name]["packets_in"] == 5000
    assert stats["stages"]["a"]["bytes_in"] == 5000 * 64
    assert_all_back(p.stats())


def test_fan_in_adds_up_and_burst_input_names_the_edge(run_on):
    p = pipeline(
        {
            "g1": {"type": "generator", "count": 300},
            "g2": {"type": "generator", "count": 700, "burst": 16},
            "count": {"type": "counter", "inputs": ["g1", "g2.out"]},
        }
    )
    stats = run_on(p.run).as_dict()
    assert stats["stages"]["count"]["packets_in"] == 1000
    assert p.stage("count").counts() == {
        "g1.out": {"packets": 300, "bytes": 300 * 64},
        "g2.out": {"packets": 700, "bytes": 700 * 64},
    }
    assert stats["stages"]["g2"]["bursts"] == 700 // 16 + 1


def test_take_splits_a_burst_between_outputs(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 2000},
            "split": {"type": f"{STAGES}:Split", "inputs": ["gen"]},
            "even": {"type": f"{STAGES}:Keep", "inputs": ["split"]},
            "odd": {"type": f"{STAGES}:Keep", "inputs": ["split.odd"]},
        }
    )
    stats = run_on(p.run).as_dict()
    even = np.concatenate(p.stage("even").handles)
    odd = np.concatenate(p.stage("odd").handles)
    assert even.size + odd.size == 2000
    assert (even % 2 == 0).all() and (odd % 2 == 1).all()
    assert stats["stages"]["split"]["packets_out"] == 2000
    assert_all_back(p.stats())


def test_unconsumed_output_is_dropped_and_counted(run_on):
    p = pipeline(
        {
            "runts": {"type": f"{STAGES}:Runts", "count": 100, "size": 10},
            "parse": {"type": "parse", "inputs": ["runts"]},
            "count": {"type": "counter", "inputs": ["parse"]},
        }
    )
    stats = run_on(p.run).as_dict()
    assert stats["stages"]["parse"]["drops"] == 100
    assert stats["stages"]["parse"]["packets_out"] == 0
    assert stats["stages"]["count"]["packets_in"] == 0
    assert_all_back(p.stats())


def test_parse_splits_valid_and_invalid(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 64},
            "runts": {"type": f"{STAGES}:Runts", "count": 40, "size": 8},
            "parse": {"type": "parse", "inputs": ["gen", "runts"]},
            "good": {"type": "counter", "inputs": ["parse"]},
            "bad": {"type": "drop", "inputs": ["parse.invalid"]},
        }
    )
    stats = run_on(p.run).as_dict()
    assert stats["stages"]["good"]["packets_in"] == 64
    assert stats["stages"]["bad"]["packets_in"] == 40
    assert stats["stages"]["bad"]["drops"] == 40
    assert_all_back(p.stats())


def test_async_stage_process(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 3000},
            "tag": {"type": f"{STAGES}:AsyncTag", "inputs": ["gen"], "mark": 3},
            "count": {"type": "counter", "inputs": ["tag"]},
        }
    )
    stats = run_on(p.run).as_dict()
    assert stats["stages"]["count"]["packets_in"] == 3000
    assert_all_back(p.stats())


@pytest.mark.parametrize("full", ["block", "drop"])
def test_forced_ring_edge(run_on, full):
    p = pipeline(
        {
            "g1": {"type": "generator", "count": 4000},
            "g2": {"type": "generator", "count": 4000},
            "count": {
                "type": "counter",
                "inputs": ["g1", "g2"],
                "edge": {"size": 32, "full": full, "backend": "numba"},
            },
        }
    )
    stats = run_on(p.run).as_dict()
    drops = sum(edge["drops"] for edge in stats["edges"].values())
    assert stats["stages"]["count"]["packets_in"] + drops == 8000
    assert (drops == 0) == (full == "block")
    assert all(edge["capacity"] == 31 for edge in stats["edges"].values())
    assert_all_back(p.stats())


def test_count_stops_after_whole_bursts(run_on):
    p = pipeline({"gen": {"type": "generator"}, "count": {"type": "counter", "inputs": ["gen"]}})

    async def main() -> pktflow.Stats:
        return await p.run(count=1000)

    stats = run_on(main).as_dict()
    assert 1000 <= stats["stages"]["count"]["packets_in"] < 1000 + 32


def test_duration_stops_an_endless_source(run_on):
    p = pipeline({"gen": {"type": "generator"}, "count": {"type": "counter", "inputs": ["gen"]}})
    started = time.monotonic()
    stats = run_on(lambda: p.run(duration=0.3)).as_dict()
    assert 0.25 < time.monotonic() - started < 5
    assert stats["stages"]["count"]["packets_in"] > 0
    assert_all_back(p.stats())


def test_stop_drains_runs_every_stop_and_returns_every_mbuf(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator", "rate": 20000},
            "tag": {"type": f"{STAGES}:Tag", "inputs": ["gen"]},
            "count": {"type": "counter", "inputs": ["tag"]},
        }
    )

    async def main() -> pktflow.Stats:
        async with p:
            await asyncio.sleep(0.2)
            assert p.running
            live = p.stats().as_dict()
            assert live["stages"]["count"]["packets_in"] > 0
        return await p.stop()

    stats = run_on(main).as_dict()
    assert p.stage("tag").stopped == 1
    assert stats["stages"]["gen"]["packets_out"] == stats["stages"]["count"]["packets_in"]
    # rate: about 20000/s for 0.2 s
    assert 1000 < stats["stages"]["count"]["packets_in"] < 20000
    assert_all_back(p.stats())


@pytest.mark.parametrize("half", [False, True])
def test_a_stage_that_raises_stops_the_pipeline_and_nothing_leaks(run_on, half):
    p = pipeline(
        {
            "gen": {"type": "generator"},
            "boom": {"type": f"{STAGES}:Boom", "inputs": ["gen"], "after": 5, "half": half},
            "count": {"type": "counter", "inputs": ["boom"]},
        }
    )
    with pytest.raises(pktflow.PipelineError, match=r"stage 'boom' .*boom") as caught:
        run_on(p.run)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert caught.value.stage == "boom"
    assert caught.value.lcore == 0
    stats = p.stats().as_dict()
    expected = 4 * 32 + (16 if half else 0)
    assert stats["stages"]["count"]["packets_in"] == expected
    assert_all_back(p.stats())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "holds one that is not an mbuf of pool '.*pkts'"),
        ({"k": 33}, r"poll\(\) returned 33: not an int in 0..32 or None"),
        ({"k": 2.0}, r"poll\(\) returned 2.0"),
        ({"k": -1}, r"poll\(\) returned -1"),
    ],
)
def test_a_source_that_returns_what_it_did_not_make_fails_by_name(run_on, options, message):
    p = pipeline(
        {
            "forger": {"type": f"{STAGES}:Forger", **options},
            "count": {"type": "counter", "inputs": ["forger"]},
        }
    )
    with pytest.raises(pktflow.PipelineError, match=r"stage 'forger' .*" + message) as caught:
        run_on(p.run)
    assert caught.value.stage == "forger"
    assert p.stats().as_dict()["stages"]["count"]["packets_in"] == 0
    assert_all_back(p.stats())


def test_a_failing_sink_downstream_frees_what_upstream_held(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator"},
            "split": {"type": f"{STAGES}:Split", "inputs": ["gen"]},
            "boom": {"type": f"{STAGES}:Boom", "inputs": ["split"], "after": 2},
            "odd": {"type": "counter", "inputs": ["split.odd", "boom"]},
        }
    )
    with pytest.raises(pktflow.PipelineError, match="'boom'"):
        run_on(p.run)
    assert_all_back(p.stats())


def test_a_pipeline_runs_once(run_on):
    p = pipeline(
        {"gen": {"type": "generator", "count": 10}, "c": {"type": "drop", "inputs": ["gen"]}}
    )

    async def main() -> None:
        stats = await p.run()
        assert stats.as_dict()["stages"]["c"]["drops"] == 10
        with pytest.raises(pktflow.PipelineError, match="runs once"):
            await p.run()
        assert (await p.stop()) is stats

    run_on(main)


@pytest.mark.parametrize("poll", ["adaptive", "interrupt"])
def test_idle_source_does_not_spin_the_cpu(run_on, poll):
    p = pipeline(
        {"idle": {"type": f"{STAGES}:Idle"}, "c": {"type": "counter", "inputs": ["idle"]}},
        runtime={"poll": poll},
    )

    async def main() -> float:
        async with p:
            await asyncio.sleep(0.2)  # past the spinning rounds
            cpu = time.process_time()
            await asyncio.sleep(1.0)
            return time.process_time() - cpu

    used = run_on(main)
    # Measured here: adaptive about 4 % of a CPU (1 ms pauses), interrupt 0.4-1.4 %,
    # up to 10 % while other processes load this 2-CPU VM (each wake-up costs
    # more then). A walk that spins uses the whole second: the bound tells them apart.
    assert used < 0.3, f"an idle pipeline used {used:.3f} s of CPU in 1 s"
    assert p.stage("idle").polls > 100


def test_other_tasks_run_while_the_pipeline_walks(run_on):
    p = pipeline(
        {"gen": {"type": "generator"}, "c": {"type": "counter", "inputs": ["gen"]}},
        runtime={"yield_every": 8},
    )

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await p.run(duration=0.3)
        task.cancel()
        return ticks

    assert run_on(main) > 100


def test_steady_state_allocates_nothing_per_burst():
    p = pipeline(
        {
            "gen": {"type": "generator"},
            "parse": {"type": "parse", "inputs": ["gen"]},
            "count": {"type": "counter", "inputs": ["parse"]},
        }
    )

    async def main() -> tuple[int, int]:
        await p.start()
        await asyncio.sleep(0.2)  # warm: every buffer and bound call made
        tracemalloc.start()
        try:
            before_bursts = p.stats().stages["count"]["bursts"]
            first = tracemalloc.take_snapshot()
            await asyncio.sleep(0.5)
            second = tracemalloc.take_snapshot()
            bursts = p.stats().stages["count"]["bursts"] - before_bursts
        finally:
            tracemalloc.stop()
        await p.stop()
        grown = sum(d.size_diff for d in second.compare_to(first, "filename") if d.size_diff > 0)
        return bursts, grown

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        bursts, grown = runner.run(main())
    assert bursts > 1000
    # Less than one byte per burst: what grows is the loop's, not the walk's.
    assert grown < bursts, f"{grown} bytes grew over {bursts} bursts"


def test_start_failure_stops_nothing_half_built(run_on):
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 10, "size": 5000},  # larger than the data room
            "c": {"type": "counter", "inputs": ["gen"]},
        }
    )
    with pytest.raises(pktflow.ConfigError, match=r"stages\.gen: Generator.*size 5000"):
        run_on(p.run)
    with pytest.raises(pktflow.PipelineError, match="runs once"):
        run_on(p.run)


def test_stage_accessor_names_what_is_missing():
    p = pipeline(
        {"gen": {"type": "generator", "count": 1}, "c": {"type": "drop", "inputs": ["gen"]}}
    )
    with pytest.raises(pktflow.PipelineError, match="not started"):
        p.stage("gen")


def test_main_thread_lcore_is_registered_only_while_running(run_on):
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY
    p = pipeline(
        {"gen": {"type": "generator", "count": 64}, "c": {"type": "drop", "inputs": ["gen"]}}
    )
    seen = []

    async def main() -> None:
        await p.start()
        seen.append(pktflow.lcore_id())
        await p.stop()

    run_on(main)
    assert seen[0] != pktflow.LCORE_ID_ANY
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY


@pytest.mark.parametrize("backend", ["pure", "numba", "hugepage"])
def test_every_pool_backend_runs_a_pipeline_and_leaves_no_zone(backend):
    p = pktflow.Pipeline.from_dict(
        {
            "name": f"backend-{backend}",
            "mempools": {"pkts": {"n": 1023, "cache_size": 32, "backend": backend}},
            "stages": {
                "gen": {"type": "generator", "count": 3000, "flows": 3},
                "parse": {"type": "parse", "inputs": ["gen"]},
                "a": {"type": "counter", "inputs": ["parse"]},
                "b": {"type": "counter", "inputs": ["parse"]},
            },
        }
    )
    stats = asyncio.run(p.run()).as_dict()
    assert stats["stages"]["a"]["packets_in"] == stats["stages"]["b"]["packets_in"] == 3000
    assert_all_back(p.stats())
    assert not [z for z in pktflow.list_zones() if z.name.startswith(f"backend-{backend}")]


def test_an_idle_source_with_a_wait_fd_sleeps_until_it_is_readable(run_on):
    async def main() -> tuple[int, dict[str, Any]]:
        p = pipeline(
            {
                "src": {"type": f"{STAGES}:PipeSource"},
                "count": {"type": "counter", "inputs": ["src"]},
            }
        )
        await p.start()
        source = p.stage("src")
        await asyncio.sleep(0.5)
        idle_polls = source.polls  # polling with back-off would be hundreds
        os.write(source.write_fd, b"x" * 10)
        deadline = time.monotonic() + 10
        while p.stats().as_dict()["stages"]["count"]["packets_in"] < 10:
            assert time.monotonic() < deadline, "the write never woke the walk"
            await asyncio.sleep(0.01)
        os.close(source.write_fd)  # the end of the source
        assert await p.wait(10)
        return idle_polls, (await p.stop()).as_dict()

    idle_polls, stats = run_on(main)
    assert idle_polls < 100  # the adaptive spin (100 µs); back-off polling makes ~500
    assert stats["stages"]["count"]["packets_in"] == 10
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values())
