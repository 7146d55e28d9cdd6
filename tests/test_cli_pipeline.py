"""`pktflow run` and `pktflow validate` as a user runs them: real processes, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
def test_every_shipped_example_runs(example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import asyncio

    setup = EXAMPLE_SETUPS.get(example.name, _no_setup)
    with setup(tmp_path, monkeypatch):  # its input files, its traffic, its namespace
        pipeline = pktflow.Pipeline.from_file(example)
        started = time.monotonic()
        stats = asyncio.run(pipeline.run(count=50_000, duration=20)).as_dict()
    assert time.monotonic() - started < 30
    assert sum(row["packets_out"] for row in stats["stages"].values()) > 0
    assert all(pool["in_use"] == 0 for pool in stats["mempools"].values())


# -- what an example needs around its run (keyed by file name) ----------------------------


@contextlib.contextmanager
def _no_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield


@contextlib.contextmanager
def _pcap_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example reads pipelines/examples/data/sample.pcap and writes filtered.pcap, both
    relative to the working directory (the repository root in the README): run it in a
    directory where the first is the shipped file, so the output stays out of the tree."""
    import dpkt

    data = tmp_path / "pipelines" / "examples" / "data"
    data.mkdir(parents=True)
    (data / "sample.pcap").symlink_to(EXAMPLES / "data" / "sample.pcap")
    monkeypatch.chdir(tmp_path)
    yield
    with (tmp_path / "filtered.pcap").open("rb") as f:  # an independent reader
        kept = [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]
    assert kept and all(dpkt.ethernet.Ethernet(k).data.data.dport == 53 for k in kept)


def test_the_shipped_sample_pcap_is_what_its_script_makes(tmp_path: Path):
    script = EXAMPLES / "data" / "make_sample.py"
    copy = tmp_path / "make_sample.py"
    copy.write_text(script.read_text())
    done = subprocess.run([sys.executable, str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sample.pcap").read_bytes() == (
        EXAMPLES / "data" / "sample.pcap"
    ).read_bytes()


@contextlib.contextmanager
def _udp_echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Datagrams to the example's 127.0.0.1:9000 from a thread, until the run ends."""
    import socket
    import threading

    done = threading.Event()
    replies = [0]

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            while not done.is_set():
                for _ in range(32):
                    with contextlib.suppress(OSError):  # refused until the source binds
                        sock.sendto(b"ping" * 16, ("127.0.0.1", 9000))
                with contextlib.suppress(OSError):
                    while True:
                        sock.recv(2048)
                        replies[0] += 1
                time.sleep(0.0005)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        done.set()
        sender.join(10)
    assert replies[0] > 0


@contextlib.contextmanager
def _afpacket_capture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example captures on eth0: a namespace whose veth pair is eth0 <-> eth0-peer, the
    run in it, and a thread there sending frames into eth0-peer until the run ends."""
    import socket
    import threading

    from pktflow.bench._io_netns import NetnsUnavailable, veth_netns

    monkeypatch.chdir(tmp_path)  # capture.pcap lands here
    with contextlib.ExitStack() as stack:
        try:
            netns = stack.enter_context(veth_netns("eth0-peer", "eth0"))
        except NetnsUnavailable as exc:
            pytest.skip(f"the AF_PACKET example needs a network namespace: {exc}")
        done = threading.Event()

        def send() -> None:
            with netns.entered(), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
                sock.bind(("eth0-peer", 0))
                frame = b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x88\xb5" + bytes(50)
                while not done.is_set():
                    for _ in range(32):
                        sock.send(frame)
                    time.sleep(0.001)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            with netns.entered():  # the pipeline's sockets open in the namespace
                yield
        finally:
            done.set()
            sender.join(10)
    assert (tmp_path / "capture.pcap").stat().st_size > 24 + 1000 * 16


@contextlib.contextmanager
def _two_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """address: local starts a 2-node Ray cluster here (pktflow[cluster]) and removes it after."""
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before ray is imported
    pytest.importorskip("ray", reason="two-nodes.yaml needs Ray: pip install 'pktflow[cluster]'")
    pytest.importorskip("zmq", reason="two-nodes.yaml needs pyzmq: pip install 'pktflow[cluster]'")
    before = set(Path(tempfile.gettempdir()).glob("pktray-*"))
    yield
    assert set(Path(tempfile.gettempdir()).glob("pktray-*")) == before  # its temp dir went


EXAMPLE_SETUPS = {
    "pcap-filter.yaml": _pcap_filter,
    "udp-echo.yaml": _udp_echo,
    "afpacket-capture.yaml": _afpacket_capture,
    "two-nodes.yaml": _two_nodes,
}


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
