"""``pktflow bench ring`` with tiny settings: the shape of its result, not its speed."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

import pktflow
from pktflow.bench._measure import MIN_RUNS, Span
from pktflow.bench.ring import COMPARISONS, TARGETS, run_ring_bench

ROW_FIELDS = {"key", "name", "group", "backend", "mode", "burst", "median", "min", "max", "runs"}


def _bench_zones() -> set[str]:
    return {z.name for z in pktflow.list_zones() if z.name.startswith("pktflow-bench-")}


def _check_rows(rows: list[dict[str, object]], runs: int) -> None:
    assert rows
    for row in rows:
        assert row.keys() >= ROW_FIELDS
        assert row["runs"] == runs == len(row["rates"])  # type: ignore[arg-type]
        assert 0 < row["min"] <= row["median"] <= row["max"]  # type: ignore[operator]


def test_pure_rows_without_peers() -> None:
    out = io.StringIO()
    result = run_ring_bench(
        backends=["pure"],
        bursts=[8],
        repeats=2,
        handles=256,
        peers=False,
        console=Console(file=out, width=120),
    )
    _check_rows(result["rows"], 2)
    found = {(r["name"], r["group"], r["mode"]) for r in result["rows"]}
    assert found == {
        (f"{prefix}{name}", group, mode)
        for name in ("1 thread", "1 -> 1 threads")
        for prefix, group in (("", "pktflow"), ("bound ", "bound"))  # methods, bound calls
        for mode in ("SP/SC", "MP/MC")
    }
    assert all(r["backend"] == "pure" and r["burst"] == 8 for r in result["rows"])
    # Peers were not measured: every ratio is kept, unmeasured.
    assert len(result["ratios"]) == len(COMPARISONS)
    assert all(r["ratio"] is None for r in result["ratios"])
    assert any(f"fewer than {MIN_RUNS}" in note for note in result["notes"])
    text = out.getvalue()
    assert "pktflow bench ring" in text and "bound 1 -> 1 threads" in text
    assert any("ring.bind(buf)" in note for note in result["notes"])


def test_hugepage_and_peers_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    if pktflow.backend_unavailable_reason("hugepage"):
        pytest.skip("the hugepage backend is unavailable here")
    before = _bench_zones()
    result = run_ring_bench(
        as_json=True, backends=["hugepage"], bursts=[32], repeats=1, handles=1024
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    _check_rows(printed["rows"], 1)
    keys = {r["key"] for r in printed["rows"]}
    for name in ("1 thread", "1 -> 1 threads", "1 -> 1 processes"):
        assert f"hugepage SP/SC {name} burst 32" in keys
        assert f"hugepage SP/SC bound {name} burst 32" in keys
    assert "hugepage SP/SC jitted loop, 1 thread burst 32" in keys
    assert "hugepage MP/MC 2 -> 2 processes burst 32" in keys
    assert "hugepage MP/MC bound 2 -> 2 processes burst 32" in keys
    peers = {r["backend"] for r in printed["rows"] if r["group"] == "peer"}
    assert {"collections.deque", "queue.Queue", "asyncio.Queue+uvloop"} <= peers
    assert "multiprocessing.Queue" in peers
    fifo_missing = "install pktflow[bench] to compare with faster-fifo" in printed["notes"]
    assert fifo_missing != ("faster-fifo" in peers)
    ratios = {r["label"]: r for r in printed["ratios"]}
    for calls in ("", ", bound calls"):
        headline = ratios[
            f"hugepage 1 -> 1 processes, burst 32{calls} vs multiprocessing.Queue, lists of 32"
        ]
        assert headline["ratio"] > 0 and headline["target"] == 10.0
        assert isinstance(headline["met"], bool)
    targets = {t["label"]: t for t in printed["targets"]}
    assert list(targets) == [t.label for t in TARGETS]
    for calls in ("", ", bound calls"):
        assert targets[f"hugepage 1 -> 1 processes, burst 32{calls}"]["value"] > 0
    assert _bench_zones() == before  # every ring was closed and unlinked


def test_span_rate_and_combine() -> None:
    combined = Span.combine([Span(1.0, 2.0, 0), Span(1.5, 3.0, 100)])
    assert combined == Span(1.0, 3.0, 100)
    assert combined.rate == 50.0


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="burst"):
        run_ring_bench(bursts=[0], peers=False, backends=["pure"])
    with pytest.raises(ValueError, match="repeats"):
        run_ring_bench(repeats=0, peers=False, backends=["pure"])
