"""runtime.metrics.prometheus: the counters scraped over loopback match ``stats()``."""

from __future__ import annotations

import asyncio
import socket
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

import pktflow
from pktflow._metrics import MetricsServer, parse_address, serve_metrics

parser = pytest.importorskip("prometheus_client.parser", reason="needs pktflow[metrics]")

SPEC: dict[str, Any] = {
    "name": "scraped",
    "runtime": {"burst": 32, "metrics": {"prometheus": "127.0.0.1:0"}},
    "mempools": {"pkts": {"n": 4095, "cache_size": 128}},
    "stages": {
        "gen": {"type": "generator", "count": 40_000, "rate": 100_000, "flows": 8},
        "parse": {"type": "parse", "inputs": ["gen"]},
        "keep": {"type": "filter", "inputs": ["parse"], "expr": "udp.sport < 1028"},
        "count": {"type": "counter", "inputs": ["keep"]},
        "rest": {"type": "drop", "inputs": ["keep.rejected"]},
    },
}


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample name and sorted labels -> value, read with prometheus-client's own parser."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def expected(
    stats: dict[str, Any], name: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What the scrape must hold for ``stats`` (``Stats.as_dict()``)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for stage, row in stats["stages"].items():
        labels = (("lcore", str(row["lcore"])), ("pipeline", name), ("stage", stage))
        for field in ("packets_in", "packets_out", "bytes_in", "drops", "bursts"):
            out[f"pktflow_stage_{field}_total", labels] = row[field]
    for edge, row in stats["edges"].items():
        labels = (("edge", edge), ("pipeline", name))
        out["pktflow_edge_count", labels] = row["count"]
        out["pktflow_edge_capacity", labels] = row["capacity"]
        out["pktflow_edge_drops_total", labels] = row["drops"]
    for pool, row in stats["mempools"].items():
        labels = (("mempool", pool), ("pipeline", name))
        out["pktflow_mempool_size", labels] = row["n"]
        out["pktflow_mempool_in_use", labels] = row["in_use"]
        out["pktflow_mempool_avail", labels] = row["avail"]
    return out


def test_scrapes_while_running_and_after_the_end_match_stats():
    pipeline = pktflow.Pipeline.from_dict(SPEC)

    async def main() -> None:
        await pipeline.start()
        server = pipeline._metrics
        assert isinstance(server, MetricsServer) and server.port > 0
        url = server.url
        # While it runs: every counter lies between the stats before and after the scrape.
        await asyncio.sleep(0.1)
        before = expected(pipeline.stats().as_dict(), "scraped")
        seen = await asyncio.to_thread(scrape, url)
        after = expected(pipeline.stats().as_dict(), "scraped")
        assert set(before) <= set(seen)
        for key, low in before.items():
            if key[0].endswith("_total"):  # counters only grow
                assert low <= seen[key] <= after[key], key
        gen = ("pktflow_stage_packets_out_total",
               (("lcore", "0"), ("pipeline", "scraped"), ("stage", "gen")))  # fmt: skip
        assert 0 < seen[gen] < 40_000  # caught mid-run (100 k packets/s for 0.4 s)
        # The walk ended (the generator is exhausted), the pipeline not yet stopped:
        # the scrape is exact.
        assert await pipeline.wait(30)
        final = pipeline.stats().as_dict()
        seen = await asyncio.to_thread(scrape, url)
        for key, value in expected(final, "scraped").items():
            assert seen[key] == value, key
        elapsed = seen["pktflow_pipeline_elapsed_seconds", (("pipeline", "scraped"),)]
        assert elapsed == pytest.approx(final["elapsed_s"])
        assert final["stages"]["count"]["packets_in"] == 20_000  # 4 of 8 flows kept
        stats = (await pipeline.stop()).as_dict()
        assert stats["mempools"]["pkts"]["in_use"] == 0
        with pytest.raises(urllib.error.URLError):  # stop() closed the server
            await asyncio.to_thread(scrape, url)

    asyncio.run(main())


def test_a_malformed_address_is_a_config_error_naming_the_key():
    for text in ("9100", "localhost", ":9100", "host:http", "host:70000", "[zz]:1"):
        with pytest.raises(pktflow.ConfigError, match=r"runtime\.metrics\.prometheus: expected"):
            parse_address(text)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert parse_address("0.0.0.0:9100") == ("0.0.0.0", 9100)


def test_an_address_in_use_is_a_config_error():
    pipeline = pktflow.Pipeline.from_dict({**SPEC, "runtime": {}})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(pktflow.ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            serve_metrics(pipeline, f"127.0.0.1:{port}")


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    pipeline = pktflow.Pipeline.from_dict({**SPEC, "runtime": {}})
    with pytest.raises(pktflow.ConfigError, match=r"install pktflow\[metrics\]"):
        serve_metrics(pipeline, "127.0.0.1:0")
