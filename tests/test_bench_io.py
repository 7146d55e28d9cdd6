"""``pktflow bench io`` with tiny settings: the shape of its result, not its speed."""

from __future__ import annotations

import io
import json
import os

import pytest
from click.testing import CliRunner
from rich.console import Console

import pktflow
from pktflow.bench.io import run_io_bench
from pktflow.cli import main

TINY = {"repeats": 1, "run_s": 0.05}
PCAP = "pcap replay -> parse -> filter -> counter"
AFPACKET = "AF_PACKET receive -> counter"


def test_json_has_every_row_positive_and_the_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    if pktflow.backend_unavailable_reason("numba"):
        pytest.skip("numba is unavailable here")
    result = run_io_bench(quick=True, as_json=True, **TINY)
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    assert printed["benchmark"] == "io"
    assert printed["unit"] == "packets/s"
    names = {row["name"] for row in printed["rows"]}
    expected = {PCAP, "rdpcap + the filter in Python", "UDP echo, udp_source -> udp_sink",
                "DatagramProtocol echo"}  # fmt: skip
    skipped = [note for note in printed["notes"] if note.startswith("AF_PACKET rows skipped")]
    if not skipped:
        expected |= {AFPACKET, "sniff on the same veth"}
        assert any("sender flooded at" in note for note in printed["notes"])
    else:
        assert os.geteuid() != 0 or "ip netns add failed" in skipped[0]
    assert names == expected
    for row in printed["rows"]:
        assert row["runs"] == 1 == len(row["rates"])
        assert 0 < row["min"] <= row["median"] <= row["max"], row["key"]
    ratios = {r["label"].split(" vs ")[0]: r for r in printed["ratios"]}
    assert set(ratios) == {"pcap replay", "AF_PACKET receive", "UDP echo"}
    assert ratios["pcap replay"]["ratio"] > 1  # never slower than scapy
    assert [t["label"] for t in printed["targets"]] == ["pcap replay on one lcore, burst 32"]


def test_the_table_names_the_rows_and_the_ratios() -> None:
    if pktflow.backend_unavailable_reason("numba"):
        pytest.skip("numba is unavailable here")
    out = io.StringIO()
    run_io_bench(quick=True, console=Console(file=out, width=200), **TINY)
    text = out.getvalue()
    labels = [PCAP, "rdpcap + the filter in Python", "DatagramProtocol echo",
              "pcap replay vs scapy rdpcap + Python filter", "UDP echo vs asyncio"]  # fmt: skip
    for label in labels:
        assert label in text


def test_the_command_is_registered_and_checks_its_arguments() -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["bench", "io", "--help"])
    assert done.exit_code == 0
    assert "scapy" in done.output
    with pytest.raises(pktflow.PktflowValueError, match="repeats must be at least 1"):
        run_io_bench(repeats=0)
    with pytest.raises(pktflow.PktflowValueError, match=r"the burst must be in 1\.\.512"):
        run_io_bench(bursts=[1024])
