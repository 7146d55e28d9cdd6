"""The ``pktflow`` command line: info, cleanup, the bench group, errors, entry points."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import pktflow
from pktflow.cli import main

BUILTIN_BACKENDS = ("pure", "numba", "hugepage")
INFO_KEYS = {
    "pktflow",
    "python",
    "packages",
    "cpus",
    "hugepages",
    "transparent_hugepages",
    "default_backend",
    "backends",
    "zones",
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def info_json() -> dict[str, Any]:
    result = invoke("info", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _leave_zone(name: str) -> None:
    """Child process body: create a shared zone, then die without unlinking it."""
    zone = pktflow.Zone.create(name, 4096, shared=True, hugepages="never")
    zone.publish()
    os._exit(0)


@pytest.fixture
def dead_zone() -> Iterator[str]:
    """The name of a zone whose creating process has exited."""
    name = f"test-cli-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    child = multiprocessing.get_context("spawn").Process(target=_leave_zone, args=(name,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    yield name
    # The test may fail before its cleanup: never leave the file behind.
    for zone in pktflow.list_zones():
        if zone.name == name:
            Path(zone.path).unlink(missing_ok=True)


def left_behind_names(facts: dict[str, Any]) -> set[str]:
    return {zone["name"] for zone in facts["zones"]["left_behind"]}


# -- info -------------------------------------------------------------------


def test_info_json_has_every_fact() -> None:
    facts = info_json()
    assert facts.keys() >= INFO_KEYS
    assert facts["pktflow"] == pktflow.__version__
    assert set(facts["packages"]) == {"numpy", "numba", "llvmlite", "uvloop", "pyyaml"}
    assert facts["packages"]["numpy"] not in ("", "not installed")
    assert facts["cpus"]["count"] == os.cpu_count()
    assert facts["cpus"]["affinity"] == sorted(os.sched_getaffinity(0))
    assert {"page_size", "total", "free", "mount", "reserve_command"} <= facts["hugepages"].keys()
    assert "shmem_enabled" in facts["transparent_hugepages"]
    assert {"left_behind", "alive", "cleanup_command"} <= facts["zones"].keys()


def test_info_json_lists_the_builtin_backends_with_availability() -> None:
    facts = info_json()
    backends = facts["backends"]
    assert set(BUILTIN_BACKENDS) <= backends.keys()
    for name in BUILTIN_BACKENDS:
        entry = backends[name]
        reason = pktflow.backend_unavailable_reason(name)
        assert entry["available"] is (reason is None)
        assert entry["reason"] == reason
        if entry["available"]:
            assert entry["shared"] is pktflow.get_backend(name).shared
            assert entry["description"]
    assert backends["pure"]["available"] is True
    assert facts["default_backend"] == pktflow.default_backend_name()
    assert [n for n, e in backends.items() if e["default"]] == [facts["default_backend"]]


def test_info_json_asks_for_hugepages_only_when_none_are_free() -> None:
    pages = info_json()["hugepages"]
    if pages["free"] == 0:
        assert pages["reserve_command"] == "sysctl -w vm.nr_hugepages=64"
    else:
        assert pages["reserve_command"] is None


def test_info_renders_tables() -> None:
    result = invoke("info")
    assert result.exit_code == 0, result.output
    for text in ("numpy", "Huge pages", "Ring backends", "(default)", *BUILTIN_BACKENDS):
        assert text in result.stdout


# -- cleanup ----------------------------------------------------------------


def test_cleanup_removes_a_zone_left_behind(dead_zone: str) -> None:
    assert dead_zone in left_behind_names(info_json())
    rendered = invoke("info").stdout
    assert dead_zone in rendered
    assert "pktflow cleanup" in rendered

    result = invoke("cleanup")
    assert result.exit_code == 0, result.output
    assert dead_zone in result.stdout
    assert dead_zone not in left_behind_names(info_json())
    assert dead_zone not in {zone.name for zone in pktflow.list_zones()}


def test_cleanup_dry_run_removes_nothing(dead_zone: str) -> None:
    result = invoke("cleanup", "--dry-run")
    assert result.exit_code == 0, result.output
    assert dead_zone in result.stdout
    assert "Would remove" in result.stdout
    assert dead_zone in left_behind_names(info_json())


def test_cleanup_leaves_live_zones_alone() -> None:
    name = f"test-cli-live-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with pktflow.Zone.create(name, 4096, shared=True, hugepages="never") as zone:
        zone.publish()
        assert name in {z["name"] for z in info_json()["zones"]["alive"]}
        result = invoke("cleanup")
        assert result.exit_code == 0, result.output
        assert name not in result.stdout
        assert Path(str(zone.path)).exists()


# -- bench (the command wiring only; the benchmark has its own test) ---------


@pytest.fixture
def fake_ring_bench(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand in for pktflow.bench.ring and record each call's arguments."""
    calls: list[dict[str, Any]] = []
    module = types.ModuleType("pktflow.bench.ring")
    module.run_ring_bench = lambda **kwargs: calls.append(kwargs)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pktflow.bench.ring", module)
    return calls


def test_bench_ring_passes_defaults_as_none(fake_ring_bench: list[dict[str, Any]]) -> None:
    result = invoke("bench", "ring")
    assert result.exit_code == 0, result.output
    assert fake_ring_bench == [
        {"quick": False, "as_json": False, "backends": None, "bursts": None, "repeats": None}
    ]


def test_bench_ring_passes_every_option(fake_ring_bench: list[dict[str, Any]]) -> None:
    args = ["--quick", "--json", "--backend", "numba", "--backend", "pure"]
    args += ["--burst", "8", "--burst", "32", "--repeats", "3"]
    result = invoke("bench", "ring", *args)
    assert result.exit_code == 0, result.output
    assert fake_ring_bench == [
        {
            "quick": True,
            "as_json": True,
            "backends": ["numba", "pure"],
            "bursts": [8, 32],
            "repeats": 3,
        }
    ]


def test_bench_ring_rejects_a_burst_of_zero(fake_ring_bench: list[dict[str, Any]]) -> None:
    result = invoke("bench", "ring", "--burst", "0")
    assert result.exit_code == 2
    assert fake_ring_bench == []


@pytest.fixture
def fake_mempool_bench(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand in for pktflow.bench.mempool and record each call's arguments."""
    calls: list[dict[str, Any]] = []
    module = types.ModuleType("pktflow.bench.mempool")
    module.run_mempool_bench = lambda **kwargs: calls.append(kwargs)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pktflow.bench.mempool", module)
    return calls


def test_bench_mempool_passes_every_option(fake_mempool_bench: list[dict[str, Any]]) -> None:
    assert invoke("bench", "mempool").exit_code == 0
    args = ["--quick", "--json", "--backend", "numba", "--backend", "pure"]
    args += ["--burst", "1", "--burst", "32", "--repeats", "3"]
    result = invoke("bench", "mempool", *args)
    assert result.exit_code == 0, result.output
    assert fake_mempool_bench == [
        {"quick": False, "as_json": False, "backends": None, "bursts": None, "repeats": None},
        {
            "quick": True,
            "as_json": True,
            "backends": ["numba", "pure"],
            "bursts": [1, 32],
            "repeats": 3,
        },
    ]


def test_bench_is_a_group() -> None:
    result = invoke("bench", "--help")
    assert result.exit_code == 0
    assert "ring" in result.stdout


# -- errors and entry points --------------------------------------------------


def test_a_pktflow_error_is_one_line_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(**kwargs: Any) -> None:
        raise pktflow.BackendError("ring backend 'nope' is unavailable here")

    module = types.ModuleType("pktflow.bench.ring")
    module.run_ring_bench = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pktflow.bench.ring", module)
    result = invoke("bench", "ring", "--backend", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: ring backend 'nope' is unavailable here\n"
    assert result.stdout == ""


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert pktflow.__version__ in result.stdout


def test_console_script_info_json() -> None:
    script = Path(sys.executable).parent / "pktflow"
    assert script.exists(), f"console script missing: {script} (pip install -e .)"
    done = subprocess.run(
        [str(script), "info", "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts.keys() >= INFO_KEYS
    assert set(BUILTIN_BACKENDS) <= facts["backends"].keys()


def test_python_dash_m_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pktflow", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"pktflow, version {pktflow.__version__}"
