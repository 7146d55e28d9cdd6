"""Prometheus metrics: a pipeline's counters served in the text format over HTTP.

``Pipeline.start()`` calls ``serve_metrics`` when ``runtime.metrics.prometheus``
is set. A custom collector reads ``pipeline.stats().as_dict()`` when a
scrape arrives, so the hot path pays nothing: no counter is mirrored per
burst. The server runs on its own registry (not prometheus-client's global
one, which would mix in the process's own metrics and clash between two
pipelines) in prometheus-client's daemon thread.

Metrics (label ``pipeline`` on all):

- per stage (``stage``, ``lcore``): ``pktflow_stage_packets_in_total``,
  ``..._packets_out_total``, ``..._bytes_in_total``, ``..._drops_total``,
  ``..._bursts_total``;
- per edge (``edge``): ``pktflow_edge_count``, ``pktflow_edge_capacity``,
  ``pktflow_edge_drops_total``;
- per mempool (``mempool``): ``pktflow_mempool_size``, ``..._in_use``,
  ``..._avail``;
- ``pktflow_pipeline_elapsed_seconds``.

Usage (YAML)::

    runtime: {metrics: {prometheus: "127.0.0.1:9100"}}   # port 0: any free port
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["MetricsServer", "parse_address", "serve_metrics"]

_KEY = "runtime.metrics.prometheus"
_STAGE_COUNTERS = {
    "packets_in": "Packets the stage received.",
    "packets_out": "Packets the stage emitted to consumers.",
    "bytes_in": "Bytes of the packets the stage received.",
    "drops": "Packets the stage dropped.",
    "bursts": "Bursts the stage handled.",
}
_MEMPOOL_GAUGES = {
    "n": ("size", "Mbufs in the mempool."),
    "in_use": ("in_use", "Mbufs allocated and not yet freed."),
    "avail": ("avail", "Mbufs free in the mempool (ring and caches)."),
}


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"`` for IPv6; port 0: any free one) as (host, port).

    Usage: ``parse_address("127.0.0.1:9100")  # ('127.0.0.1', 9100)``
    """
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            host = ""
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f'expected "host:port" (e.g. "127.0.0.1:9100"; port 0 picks a free one), not {text!r}',
            key=_KEY,
        )
    return host, int(port)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "serving metrics needs prometheus-client: install pktflow[metrics]", key=_KEY
        ) from None
    return prometheus_client


class _PipelineCollector:
    """Reads the pipeline's stats at scrape time; nothing runs between scrapes."""

    def __init__(self, pipeline: Pipeline, lock: threading.Lock) -> None:
        self.pipeline = pipeline
        self.lock = lock
        self.closed = False

    def describe(self) -> list[Any]:
        return []  # unchecked collector: its families follow the pipeline's graph

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        # The lock keeps a scrape from reading a pool or ring while close()
        # (called before the pipeline frees them) is under way.
        with self.lock:
            if self.closed:
                return
            stats = self.pipeline.stats().as_dict()
        name = self.pipeline.name
        stage_families = {
            field: CounterMetricFamily(
                f"pktflow_stage_{field}", text, labels=["pipeline", "stage", "lcore"]
            )
            for field, text in _STAGE_COUNTERS.items()
        }
        for stage, row in stats["stages"].items():
            for field, family in stage_families.items():
                family.add_metric([name, stage, str(row["lcore"])], row[field])
        yield from stage_families.values()
        edge_labels = ["pipeline", "edge"]
        count = GaugeMetricFamily(
            "pktflow_edge_count", "Handles queued on the edge.", labels=edge_labels
        )
        capacity = GaugeMetricFamily(
            "pktflow_edge_capacity", "Handles the edge's ring holds.", labels=edge_labels
        )
        drops = CounterMetricFamily(
            "pktflow_edge_drops", "Handles the edge discarded (full: drop).", labels=edge_labels
        )
        for edge, row in stats["edges"].items():
            count.add_metric([name, edge], row["count"])
            capacity.add_metric([name, edge], row["capacity"])
            drops.add_metric([name, edge], row["drops"])
        yield from (count, capacity, drops)
        pool_families = {
            field: GaugeMetricFamily(
                f"pktflow_mempool_{suffix}", text, labels=["pipeline", "mempool"]
            )
            for field, (suffix, text) in _MEMPOOL_GAUGES.items()
        }
        for pool, row in stats["mempools"].items():
            for field, gauge in pool_families.items():
                gauge.add_metric([name, pool], row[field])
        yield from pool_families.values()
        elapsed = GaugeMetricFamily(
            "pktflow_pipeline_elapsed_seconds", "Seconds the pipeline has run.", labels=["pipeline"]
        )
        elapsed.add_metric([name], stats["elapsed_s"])
        yield elapsed


class MetricsServer:
    """A running metrics endpoint: ``address`` is the (host, port) bound; ``close()`` ends it.

    Usage: ``server = serve_metrics(p, "127.0.0.1:0"); print(server.url); server.close()``
    """

    def __init__(self, pipeline: Pipeline, host: str, port: int) -> None:
        prometheus_client = _prometheus()
        self._lock = threading.Lock()
        self._collector = _PipelineCollector(pipeline, self._lock)
        self.registry = prometheus_client.CollectorRegistry(auto_describe=False)
        self.registry.register(self._collector)
        try:
            self._server, self._thread = prometheus_client.start_http_server(
                port, addr=host, registry=self.registry
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {reason}", key=_KEY
            ) from None
        bound = self._server.server_address
        self.address: tuple[str, int] = (str(bound[0]), int(bound[1]))

    @property
    def port(self) -> int:
        """The port bound (the one the system picked for port 0)."""
        return self.address[1]

    @property
    def url(self) -> str:
        """Where to scrape: ``http://host:port/metrics``."""
        host = self.address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving; once it returns no scrape reads the pipeline any more."""
        with self._lock:
            self._collector.closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}>"


def serve_metrics(pipeline: Pipeline, address: str) -> MetricsServer:
    """Serve ``pipeline``'s counters in the Prometheus text format at ``address`` ("host:port").

    ``ConfigError`` (key ``runtime.metrics.prometheus``) for a malformed
    address, one in use, or prometheus-client missing (``pktflow[metrics]``).

    Usage: ``server = serve_metrics(p, "127.0.0.1:9100")  # then GET /metrics``
    """
    host, port = parse_address(address)
    return MetricsServer(pipeline, host, port)
