"""Pipelines on several lcores: worker processes, hugepage rings between them, shards.

Every test counts packets exactly across processes, ends with every mbuf
back in its pool, and leaves no zone or lcore id behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import pktflow
from pktflow._info import collect_info
from pktflow._lcore import release_dead_claims
from pktflow._memory import list_zones

STAGES = "_lcore_stages"  # tests/_lcore_stages.py, imported by path in the workers
EXAMPLES = Path(pktflow.__file__).resolve().parent.parent / "pipelines" / "examples"


def pipeline(stages: dict[str, Any], name: str = "lc", **top: Any) -> pktflow.Pipeline:
    return pktflow.Pipeline.from_dict(
        {"name": name, "mempools": {"pkts": {"n": 4095, "cache_size": 64}}, "stages": stages, **top}
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def assert_nothing_left(name: str, pid: int | None = None) -> None:
    """No zone of the pipeline on /dev/shm or hugetlbfs, no lcore id of a dead process."""
    mine = f"{name}-{pid or os.getpid()}-"  # other test runs on this machine make their own
    zones = [z.name for z in list_zones() if z.name.startswith(mine)]
    assert zones == [], zones
    assert collect_info()["lcores"]["left_behind"] == []


def assert_all_back(stats: dict[str, Any]) -> None:
    for name, pool in stats["mempools"].items():
        assert pool["in_use"] == 0, f"mempool {name}: {pool}"


def test_generator_on_lcore_0_feeds_parse_and_counter_on_lcore_1():
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 200_000, "size": 64, "flows": 8},
            "parse": {"type": "parse", "inputs": ["gen"], "lcore": 1},
            "count": {"type": "counter", "inputs": ["parse"], "lcore": 1},
        },
        name="split",
    )
    stats = run(p.run()).as_dict()
    assert stats["stages"]["gen"] | {"lcore": 0} == stats["stages"]["gen"]
    assert stats["stages"]["parse"]["lcore"] == 1
    assert stats["stages"]["parse"]["packets_in"] == 200_000
    assert stats["stages"]["count"]["packets_in"] == 200_000
    assert stats["stages"]["count"]["bytes_in"] == 200_000 * 64
    assert stats["edges"]["gen.out->parse"]["drops"] == 0
    assert stats["edges"]["gen.out->parse"]["capacity"] == 1023
    assert_all_back(stats)
    assert_nothing_left("split")


def test_shards_run_one_copy_each_and_their_stats_add_up():
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 100_001, "flows": 16, "lcore": [0, 1]},
            "tag": {"type": f"{STAGES}:WhereAmI", "inputs": ["gen"], "lcore": [0, 1]},
            "count": {"type": "counter", "inputs": ["tag"], "lcore": [0, 1]},
        },
        name="shards",
    )
    stats = run(p.run()).as_dict()
    assert stats["stages"]["gen"]["lcore"] == [0, 1]
    assert stats["stages"]["gen"]["packets_out"] == 100_001  # the count split between replicas
    assert stats["stages"]["count"]["packets_in"] == 100_001
    assert stats["edges"]["tag.out->count"] == {"count": 0, "capacity": 0, "drops": 0}
    assert_all_back(stats)
    assert_nothing_left("shards")


def test_shards_feeding_one_stage_share_a_multi_producer_ring():
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 60_000, "lcore": [1, 2]},
            "count": {"type": "counter", "inputs": ["gen"], "edge": {"size": 64}},
        },
        name="fanin",
    )
    stats = run(p.run()).as_dict()
    assert stats["stages"]["count"]["packets_in"] == 60_000
    assert stats["edges"]["gen.out->count"]["capacity"] == 63
    assert_all_back(stats)
    assert_nothing_left("fanin")


def test_full_drop_counts_what_a_slow_consumer_missed():
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 50_000},
            "slow": {
                "type": f"{STAGES}:Slow",
                "inputs": ["gen"],
                "lcore": 1,
                "delay": 0.0005,
                "edge": {"size": 64, "full": "drop"},
            },
        },
        name="drops",
    )
    stats = run(p.run()).as_dict()
    got = stats["stages"]["slow"]["packets_in"]
    drops = stats["edges"]["gen.out->slow"]["drops"]
    assert drops > 0
    assert got + drops == 50_000
    assert_all_back(stats)


def test_full_block_loses_nothing_behind_a_slow_consumer():
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 3_000},
            "slow": {
                "type": f"{STAGES}:Slow",
                "inputs": ["gen"],
                "lcore": 1,
                "delay": 0.0002,
                "edge": {"size": 64},
            },
        },
        name="block",
    )
    stats = run(p.run()).as_dict()
    assert stats["stages"]["slow"]["packets_in"] == 3_000
    assert stats["edges"]["gen.out->slow"]["drops"] == 0
    assert_all_back(stats)


def test_stop_drains_every_lcore_and_gives_every_mbuf_back():
    async def main() -> dict[str, Any]:
        p = pipeline(
            {
                "gen": {"type": "generator"},  # endless
                "parse": {"type": "parse", "inputs": ["gen"], "lcore": 1},
                "count": {"type": "counter", "inputs": ["parse"], "lcore": 1},
            },
            name="stop",
        )
        await p.start()
        deadline = time.monotonic() + 30
        while p.stats().as_dict()["stages"]["count"]["packets_in"] == 0:
            # Counters of lcore 1 reach the main lcore while it runs (about twice a second).
            assert time.monotonic() < deadline, "lcore 1's counters never arrived"
            await asyncio.sleep(0.1)
        return (await p.stop()).as_dict()

    stats = run(main())
    assert stats["stages"]["count"]["packets_in"] == stats["stages"]["gen"]["packets_out"]
    assert_all_back(stats)
    assert_nothing_left("stop")


def test_run_count_stops_after_count_packets_across_lcores():
    p = pipeline(
        {
            "gen": {"type": "generator", "lcore": [0, 1]},
            "count": {"type": "counter", "inputs": ["gen"], "lcore": [0, 1]},
        },
        name="count",
    )
    stats = run(p.run(count=10_000)).as_dict()
    made = stats["stages"]["gen"]["packets_out"]
    assert 10_000 <= made <= 10_000 + 2 * 32  # at most one burst more per source
    assert stats["stages"]["count"]["packets_in"] == made
    assert_all_back(stats)


def test_a_stage_failing_on_a_worker_names_stage_and_lcore():
    p = pipeline(
        {
            "gen": {"type": "generator"},
            "boom": {"type": "_pipeline_stages:Boom", "inputs": ["gen"], "lcore": 1, "after": 5},
        },
        name="boom",
    )
    with pytest.raises(pktflow.PipelineError, match=r"stage 'boom' \(lcore 1\) failed") as info:
        run(p.run())  # endless source: the failure must stop every lcore
    assert info.value.stage == "boom" and info.value.lcore == 1
    assert isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value.__cause__) == "boom"
    assert_nothing_left("boom")


def test_a_killed_worker_is_noticed_within_a_second():
    async def main() -> float:
        p = pipeline(
            {
                "gen": {"type": "generator"},
                "parse": {"type": "parse", "inputs": ["gen"], "lcore": 1},
                "count": {"type": "counter", "inputs": ["parse"], "lcore": 1},
            },
            name="killed",
        )
        await p.start()
        await asyncio.sleep(0.3)
        os.kill(p._workers.workers[1].pid, signal.SIGKILL)  # type: ignore[union-attr]
        killed = time.monotonic()
        assert await p.wait(5.0)
        noticed = time.monotonic() - killed
        with pytest.raises(pktflow.PipelineError) as info:
            await p.stop()
        assert "lcore 1 (stages parse, count) died: killed by SIGKILL" in str(info.value)
        assert info.value.lcore == 1
        return noticed

    assert run(main()) < 1.0
    assert_nothing_left("killed")


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_cpu_that_does_not_exist_is_one_clear_error(kind: str):
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 10},
            "count": {"type": "counter", "inputs": ["gen"], "lcore": 1},
        },
        name="badcpu",
        runtime={"lcores": {1: kind}, "cpus": [0, 4000]},
    )
    with pytest.raises(pktflow.PipelineError, match=r"lcore 1 cannot start: .*CPU 4000"):
        run(p.run())
    assert_nothing_left("badcpu")


def test_an_import_error_in_a_worker_names_lcore_and_stage():
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 10},
            "odd": {"type": "_import_fails_in_workers:Passthrough", "inputs": ["gen"], "lcore": 1},
        },
        name="badimport",
    )
    with pytest.raises(pktflow.PipelineError) as info:
        run(p.run())
    text = str(info.value)
    assert "stage 'odd' on lcore 1 cannot start" in text
    assert "refuses to load in a child process" in text
    assert info.value.stage == "odd" and info.value.lcore == 1
    assert_nothing_left("badimport")


def test_a_stage_start_failing_on_a_worker_names_it():
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 10},
            "dev": {"type": f"{STAGES}:FailsToStart", "inputs": ["gen"], "lcore": 1},
        },
        name="badstart",
    )
    with pytest.raises(pktflow.PipelineError, match=r"stage 'dev' on lcore 1 cannot start") as info:
        run(p.run())
    assert "the device is not there" in str(info.value)
    assert_nothing_left("badstart")


def test_a_non_shared_pool_backend_across_lcores_is_a_config_error():
    p = pktflow.Pipeline.from_dict(
        {
            "name": "private",
            "mempools": {"pkts": {"n": 1023, "backend": "numba"}},
            "stages": {
                "gen": {"type": "generator", "count": 10},
                "count": {"type": "counter", "inputs": ["gen"], "lcore": 1},
            },
        }
    )
    with pytest.raises(pktflow.ConfigError, match=r"mempools.pkts.backend: .*must be shared"):
        run(p.run())
    assert_nothing_left("private")


def test_ctrl_c_drains_every_lcore_of_the_shipped_example():
    proc = subprocess.Popen(
        [sys.executable, "-m", "pktflow", "run", str(EXAMPLES / "two-lcores.yaml"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()  # running: the first line of stats
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["stages"]["count"]["packets_in"] == final["stages"]["gen"]["packets_out"]
    assert final["stages"]["count"]["packets_in"] < 10_000_000  # stopped early
    assert_all_back(final)


def test_a_thread_lcore_runs_its_stages_in_a_pinned_thread_of_this_process():
    p = pipeline(
        {
            "gen": {"type": "generator", "count": 50_000},
            "parse": {"type": "parse", "inputs": ["gen"], "lcore": 1},
            "count": {"type": "counter", "inputs": ["parse"], "lcore": 1},
        },
        name="thread",
        runtime={"lcores": {1: "thread"}},
    )
    stats = run(p.run()).as_dict()
    assert stats["stages"]["count"]["packets_in"] == 50_000
    assert_all_back(stats)
    assert_nothing_left("thread")


def test_runtime_lcores_must_name_an_lcore_in_use():
    with pytest.raises(pktflow.ConfigError, match=r"runtime.lcores.3: no stage runs on lcore 3"):
        pipeline({"gen": {"type": "generator"}}, runtime={"lcores": {3: "thread"}})


def test_workers_end_when_the_main_process_is_killed(tmp_path: Path):
    script = tmp_path / "orphan.py"
    script.write_text(
        "import asyncio, pktflow\n"
        "async def main():\n"
        "    p = pktflow.Pipeline.from_dict({'name': 'orphan', 'stages': {\n"
        "        'gen': {'type': 'generator'},\n"
        "        'count': {'type': 'counter', 'inputs': ['gen'], 'lcore': 1}}})\n"
        "    await p.start()\n"
        "    print(p._workers.workers[1].pid, flush=True)\n"
        "    await asyncio.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    main = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert main.stdout is not None
    worker = int(main.stdout.readline())
    main.kill()
    main.wait(30)
    main.stdout.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{worker}").exists():
        if Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z":
            break  # a zombie: it ended, only its parent (gone) would reap it
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists() or (
        Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"
    ), "the worker outlived its main process"
    # What `pktflow cleanup` does after a crash: the killed creator's zones, now
    # that nobody maps them, and its lcore id.
    pktflow.cleanup_zones()
    release_dead_claims()
    assert_nothing_left("orphan", main.pid)
