"""``pktflow bench mempool`` with tiny settings: the shape of its result, not its speed."""

from __future__ import annotations

import io
import json
import os

import pytest
from rich.console import Console

import pktflow
from pktflow.bench.mempool import COMPARISONS, TARGETS, run_mempool_bench

ROW_FIELDS = {"key", "name", "group", "backend", "mode", "burst", "median", "min", "max", "runs"}
TINY = {"repeats": 1, "run_s": 0.001, "pool_size": 1024}


def _bench_zones() -> set[str]:
    # This process's only: other test runs on the machine create and drop their own.
    return {
        z.name
        for z in pktflow.list_zones()
        if "pktflow-bench-" in z.name and z.creator_pid == os.getpid()
    }


def _check_rows(rows: list[dict[str, object]], runs: int) -> None:
    assert rows
    for row in rows:
        assert row.keys() >= ROW_FIELDS
        assert row["runs"] == runs == len(row["rates"])  # type: ignore[arg-type]
        assert 0 < row["min"] <= row["median"] <= row["max"]  # type: ignore[operator]


def test_pure_rows_without_peers() -> None:
    out = io.StringIO()
    result = run_mempool_bench(
        backends=["pure"], bursts=[1, 8], peers=False, console=Console(file=out, width=120), **TINY
    )
    _check_rows(result["rows"], 1)
    found = {(r["name"], r["mode"], r["burst"]) for r in result["rows"]}
    assert found == {
        ("get()+put()", "cache", 1),
        ("get()+put()", "no cache", 1),
        ("get_bulk+put_bulk", "cache", 8),
        ("get_bulk+put_bulk", "no cache", 8),
        ("alloc()+append+free()", "cache", 1),
        ("alloc_bulk+append+free_bulk", "cache", 8),
        ("alloc_bulk+free_bulk", "cache", 8),
        # Twins whose loops call the operations of pool.bind(buf): at burst 1, get_bulk(1).
        ("bound get_bulk+put_bulk", "cache", 1),
        ("bound get_bulk+put_bulk", "no cache", 1),
        ("bound get_bulk+put_bulk", "cache", 8),
        ("bound get_bulk+put_bulk", "no cache", 8),
        ("bound alloc_bulk+free_bulk", "cache", 8),
    }
    assert all(r["backend"] == "pure" for r in result["rows"])
    for row in result["rows"]:
        assert row["group"] == ("bound" if row["name"].startswith("bound ") else "pktflow")
    # Nothing at burst 32 and no peers: every ratio and target is kept, unmeasured.
    assert len(result["ratios"]) == len(COMPARISONS)
    assert all(r["ratio"] is None for r in result["ratios"])
    assert all(t["value"] is None and t["met"] is None for t in result["targets"])
    assert "pktflow bench mempool" in out.getvalue()
    assert pktflow.lcore_id() == pktflow.LCORE_ID_ANY  # the run gave its lcore back


def test_every_backend_and_peers_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    before = _bench_zones()
    backends = [b for b in ("numba", "hugepage") if not pktflow.backend_unavailable_reason(b)]
    if not backends:
        pytest.skip("no backend with jitted kernels here")
    me = pktflow.register_lcore()
    try:
        result = run_mempool_bench(as_json=True, backends=backends, bursts=[1, 32], **TINY)
        assert pktflow.lcore_id() == me  # an lcore before the run stays one
    finally:
        pktflow.unregister_lcore()
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    _check_rows(printed["rows"], 1)
    keys = {r["key"] for r in printed["rows"]}
    for backend in backends:
        for mode in ("cache", "no cache"):
            assert f"{backend} {mode} get()+put() burst 1" in keys
            assert f"{backend} {mode} jitted get_bulk+put_bulk burst 32" in keys
            assert f"{backend} {mode} bound get_bulk+put_bulk burst 32" in keys
        assert f"{backend} cache alloc_bulk+free_bulk burst 32" in keys
        assert f"{backend} cache bound alloc_bulk+free_bulk burst 32" in keys
        assert f"{backend} cache jitted alloc_bulk+free_bulk burst 32" in keys
    for peer in (
        "list free list pop+append each burst 1",
        "list free list pop+append each burst 32",
        "list free list slice+del+extend burst 32",
        "bytearray(256) allocate+drop each burst 32",
        "bytearray(2176) allocate+drop each burst 32",
    ):
        assert peer in keys
    ratios = {r["label"]: r for r in printed["ratios"]}
    peer = "list free list, pop+append each, 32"
    for calls in ("", ", bound calls"):
        headline = ratios[f"{backends[0]} get_bulk+put_bulk 32, cache{calls} vs {peer}"]
        assert headline["ratio"] > 0 and headline["target"] == 2.0
        assert isinstance(headline["met"], bool)
    assert [t["label"] for t in printed["targets"]] == [t.label for t in TARGETS]
    measured = [t for t in printed["targets"] if t["label"].startswith(backends[0])]
    assert len(measured) == 4  # bulk and mbufs, each by methods and by bound calls
    assert all(t["value"] > 0 and isinstance(t["met"], bool) for t in measured)
    assert _bench_zones() == before  # every pool was closed and unlinked


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="burst"):
        run_mempool_bench(bursts=[0], peers=False, backends=["pure"])
    with pytest.raises(ValueError, match="burst"):
        run_mempool_bench(bursts=[300], pool_size=1024, peers=False, backends=["pure"])
    with pytest.raises(ValueError, match="pool_size"):
        run_mempool_bench(pool_size=100, peers=False, backends=["pure"])
    with pytest.raises(ValueError, match="repeats"):
        run_mempool_bench(repeats=0, peers=False, backends=["pure"])
