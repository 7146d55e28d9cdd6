"""``pktflow bench pipeline`` with tiny settings: the shape of its result, not its speed."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import pytest
import uvloop
import yaml
from click.testing import CliRunner
from rich.console import Console

import pktflow
from pktflow.bench._asyncio_pipeline import frames, run_peer
from pktflow.bench.pipeline import quickstart_spec, run_pipeline_bench
from pktflow.cli import main

QUICKSTART = Path(__file__).parent.parent / "pipelines" / "examples" / "quickstart.yaml"
ROW_FIELDS = {"key", "name", "group", "backend", "mode", "burst", "median", "min", "max", "runs"}
TINY = {"repeats": 1, "run_s": 0.01}


def _bench_zones() -> set[str]:
    # This process's only: other test runs on the machine create and drop their own.
    return {
        z.name
        for z in pktflow.list_zones()
        if "pktflow-bench-" in z.name and z.creator_pid == os.getpid()
    }


def test_json_has_rows_ratios_and_targets(capsys: pytest.CaptureFixture[str]) -> None:
    if pktflow.backend_unavailable_reason("numba"):
        pytest.skip("numba is unavailable here")
    before = _bench_zones()
    result = run_pipeline_bench(quick=True, as_json=True, bursts=[32, 8], **TINY)
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    assert printed["benchmark"] == "pipeline"
    assert printed["unit"] == "packets/s"
    rows = printed["rows"]
    assert {(r["name"], r["backend"], r["burst"]) for r in rows} == {
        (name, backend, burst)
        for burst in (32, 8)
        for name, backend in (
            ("run to completion", "numba"),
            ("ring on every edge", "numba"),
            ("3 tasks, lists of frames", "asyncio.Queue (uvloop)"),
            ("sharded", "hugepage"),
            ("split", "hugepage"),
            ("2 processes, lists of frames", "multiprocessing.Queue"),
        )
    }
    for row in rows:
        assert row.keys() >= ROW_FIELDS
        assert row["runs"] == 1 == len(row["rates"])
        assert 0 < row["min"] <= row["median"] <= row["max"]
        assert row["handles_per_run"] % row["burst"] == 0  # whole bursts
    # Walk vs peer and vs rings at each burst; burst 32's peer ratio carries the target.
    ratios = {r["label"]: r for r in printed["ratios"]}
    assert len(ratios) == 10
    assert all(r["ratio"] > 0 and r["met"] in (True, False, None) for r in ratios.values())
    headline = ratios["numba run to completion vs asyncio.Queue peer, burst 32"]
    assert headline["target"] == 4.0 and isinstance(headline["met"], bool)
    assert ratios["numba run to completion vs asyncio.Queue peer, burst 8"]["target"] is None
    assert ratios["2 lcores sharded vs numba on 1 lcore, burst 32"]["target"] == 1.6
    assert ratios["2 lcores sharded vs multiprocessing.Queue peer, burst 32"]["target"] == 10.0
    (target,) = printed["targets"]
    assert target["minimum"] == 8e6 and target["value"] > 0 and isinstance(target["met"], bool)
    settings = printed["settings"]
    assert settings["bursts"] == [32, 8] and settings["repeats"] == 1 and settings["quick"]
    assert settings["backends"] == ["numba"]
    assert settings["first_start_s"] > 0
    assert len(settings["start_s"]) == 8 and all(s > 0 for s in settings["start_s"].values())
    assert set(settings["idle_cpu_percent"]) == {"adaptive", "interrupt"}
    assert all(0 <= pct < 100 for pct in settings["idle_cpu_percent"].values())
    wakeup = settings["wakeup"]
    assert wakeup["lost"] == 0
    assert wakeup["pipe_floor"]["p50_us"] > 0 and wakeup["uvloop"]["p50_us"] > 0
    assert len(settings["wakeup_syscalls_per_1000_bursts"]) == 4
    notes = " ".join(printed["notes"])
    assert "stats.elapsed_s" in notes and "start-up" in notes and "µs per burst" in notes
    assert "idle: an lcore waiting on an empty edge" in notes and "floor" in notes
    assert _bench_zones() == before  # every pool and ring was closed
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY  # the run gave its lcore back


def test_tables_and_an_unavailable_backend() -> None:
    out = io.StringIO()
    result = run_pipeline_bench(
        backends=["no-such-backend"], bursts=[16], console=Console(file=out, width=120), **TINY
    )
    # Only the peer ran; the pktflow ratios and targets are kept, unmeasured.
    assert [r["name"] for r in result["rows"]] == ["3 tasks, lists of frames"]
    assert all(r["ratio"] is None for r in result["ratios"])
    assert all(t["value"] is None for t in result["targets"])
    assert any("no-such-backend" in note and "skipped" in note for note in result["notes"])
    text = out.getvalue()
    assert "pktflow bench pipeline: millions of packets/s" in text
    assert "not measured" in text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"bursts": [0]}, "burst sizes must be in 1..512"),
        ({"bursts": [513]}, "burst sizes must be in 1..512"),
        ({"repeats": 0}, "repeats must be at least 1"),
        ({"run_s": 0.0}, "run_s must be positive"),
    ],
)
def test_bad_arguments_are_value_errors(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(pktflow.PktflowValueError, match=message):
        run_pipeline_bench(**arguments)  # type: ignore[arg-type]


def test_cli_runs_and_rejects_bad_bursts(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(
        "pktflow.bench.pipeline.run_pipeline_bench", lambda **kwargs: calls.append(kwargs)
    )
    runner = CliRunner()
    ok = runner.invoke(main, ["bench", "pipeline", "--quick", "--json", "--burst", "64"])
    assert ok.exit_code == 0, ok.output
    assert calls == [
        {"quick": True, "as_json": True, "backends": None, "bursts": [64], "repeats": None}
    ]
    zero = runner.invoke(main, ["bench", "pipeline", "--burst", "0"])
    assert zero.exit_code == 2 and "--burst" in zero.stderr
    monkeypatch.undo()
    big = runner.invoke(main, ["bench", "pipeline", "--burst", "4096"])
    assert big.exit_code == 1
    assert big.stderr == "error: burst sizes must be in 1..512, not [4096]\n"


def test_the_spec_is_the_quickstart_graph() -> None:
    shipped = yaml.safe_load(QUICKSTART.read_text())
    spec = quickstart_spec(32, 1000, backend="numba", rings=False)
    assert spec["runtime"] == shipped["runtime"]
    assert {k: v for k, v in spec["mempools"]["pkts"].items() if k != "backend"} == (
        shipped["mempools"]["pkts"]
    )
    assert spec["stages"] == {
        **shipped["stages"],
        "gen": {**shipped["stages"]["gen"], "count": 1000},
    }
    rings = quickstart_spec(128, 1000, backend="numba", rings=True)
    assert rings["runtime"]["burst"] == 128
    assert [s.get("edge") for s in rings["stages"].values()] == [None] + [{"backend": "numba"}] * 3


def test_the_peer_parses_and_counts_every_frame() -> None:
    templates = frames(16, 64)
    assert all(len(f) == 64 for f in templates)
    assert len(set(templates)) == 16
    bad = b"\x00" * 12 + b"\x86\xdd" + b"\x00" * 50  # IPv6: not the peer's IPv4/UDP
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        counts = runner.run(run_peer(templates, 1000, 32, 4))
        mixed = runner.run(run_peer([*templates[:3], bad], 100, 7, 2))
    assert counts.packets == 1000 and counts.bytes == 64_000 and counts.invalid == 0
    assert counts.elapsed_s > 0
    assert mixed.packets == 75 and mixed.invalid == 25
