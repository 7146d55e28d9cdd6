"""`pktflow run` and `pktflow validate` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pktflow
from pktflow.pipelines import EXAMPLES

ENDLESS = """\
name: endless
runtime: {burst: 32}
stages:
  gen:   {type: generator, rate: 200000}
  parse: {type: parse, inputs: [gen]}
  count: {type: counter, inputs: [parse]}
"""


def pktflow_cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pktflow", *args],
        capture_output=True, text=True, timeout=120, **kwargs,
    )  # fmt: skip


def test_validate_shows_the_graph():
    done = pktflow_cli("validate", str(EXAMPLES / "quickstart.yaml"))
    assert done.returncode == 0, done.stderr
    assert "quickstart" in done.stdout
    for stage in ("gen", "parse", "count", "bad"):
        assert stage in done.stdout
    assert "invalid -> bad" in done.stdout


def test_validate_reports_one_line_with_file_line_and_key(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nstages:\n  gen: {type: generator}\n  p: {type: parse, inputs: [gne]}\n"
    )
    done = pktflow_cli("validate", str(bad))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f'error: {bad}:4: stages.p.inputs[0]: no stage named "gne" (did you mean "gen"?)'
    ]


def test_run_count_json_prints_the_final_stats_last(tmp_path: Path):
    path = tmp_path / "endless.yaml"
    path.write_text(ENDLESS)
    done = pktflow_cli("run", str(path), "--count", "3200", "--json")
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert 3200 <= final["stages"]["count"]["packets_in"] < 3200 + 32  # whole bursts
    assert final["mempools"]["pkts"]["in_use"] == 0


def test_run_duration_prints_a_json_line_per_second(tmp_path: Path):
    path = tmp_path / "endless.yaml"
    path.write_text(ENDLESS)
    done = pktflow_cli("run", str(path), "--duration", "2.5", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert len(lines) >= 3
    counts = [line["stages"]["count"]["packets_in"] for line in lines]
    assert counts == sorted(counts) and counts[-1] > 0
    assert 2.0 < lines[-1]["elapsed_s"] < 4.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_drains_and_exits_0_with_a_summary(tmp_path: Path, sig: signal.Signals):
    path = tmp_path / "endless.yaml"
    path.write_text(ENDLESS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pktflow", "run", str(path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = proc.stdout.readline()  # a stats line: it runs
    assert json.loads(first)["stages"]["gen"]["packets_out"] > 0
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["stages"]["count"]["packets_in"] == final["stages"]["gen"]["packets_out"]
    assert final["mempools"]["pkts"]["in_use"] == 0
    assert "draining" in err


def test_run_prints_a_summary_table(tmp_path: Path):
    path = tmp_path / "endless.yaml"
    path.write_text(ENDLESS)
    done = pktflow_cli("run", str(path), "--count", "1000")
    assert done.returncode == 0, done.stderr
    assert "endless: done in" in done.stdout
    assert "in use=0" in done.stdout


def test_run_bad_file_is_one_error_line(tmp_path: Path):
    done = pktflow_cli("run", str(tmp_path / "missing.yaml"))
    assert done.returncode == 1
    assert "cannot read the pipeline" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failing_stage_exits_1_naming_it(tmp_path: Path):
    path = tmp_path / "boom.yaml"
    path.write_text(
        "name: boom\nstages:\n  gen: {type: generator}\n"
        "  boom: {type: '_pipeline_stages:Boom', inputs: [gen], after: 3}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = pktflow_cli("run", str(path), env=env)
    assert done.returncode == 1
    assert "error: stage 'boom' (lcore 0) failed: RuntimeError: boom" in done.stderr


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_example_runs(example: Path):
    import asyncio

    pipeline = pktflow.Pipeline.from_file(example)
    started = time.monotonic()
    stats = asyncio.run(pipeline.run(count=50_000, duration=20)).as_dict()
    assert time.monotonic() - started < 30
    assert sum(row["packets_out"] for row in stats["stages"].values()) > 0
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values())


def test_the_readme_quick_start_pipeline_ends_by_itself():
    done = pktflow_cli("run", str(EXAMPLES / "quickstart.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["stages"]["count"]["packets_in"] == 20_000_000


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path):
    path = tmp_path / "slow.yaml"
    path.write_text(
        "name: slow\nstages:\n  gen: {type: generator}\n"
        "  sink: {type: '_pipeline_stages:SlowStop', inputs: [gen]}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pktflow", "run", str(path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    proc.stdout.readline()  # running
    proc.send_signal(signal.SIGINT)  # drains, then waits for the sink's stop()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "stopped at once" in err


def test_live_and_summary_tables_render():
    from rich.console import Console

    from pktflow._terminal import graph_table, rate_table, summary_table

    p = pktflow.Pipeline.from_file(EXAMPLES / "quickstart.yaml")
    before = pktflow.Stats(1.0, {"gen": _row(0, 1000), "count": _row(1000, 0)})
    now = pktflow.Stats(2.0, {"gen": _row(0, 3000), "count": _row(3000, 0)})
    console = Console(record=True, width=100)
    console.print(rate_table(p, before, now))
    console.print(summary_table(p, now))
    console.print(graph_table(p.spec))
    text = console.export_text()
    assert "2.00 kpps" in text  # (3000 - 1000) packets in 1 s
    assert "128.00 kbps" in text  # 2000 packets x 8 bytes x 8 bits in 1 s
    assert "quickstart: done in 2.00 s" in text
    assert "invalid -> bad" in text


def _row(packets_in: int, packets_out: int) -> dict[str, int]:
    return {
        "lcore": 0, "packets_in": packets_in, "packets_out": packets_out,
        "bytes_in": 8 * packets_in, "drops": 0, "bursts": packets_in // 32,
    }  # fmt: skip
