"""Pipelines across machines: node-local shards placed and controlled by Ray.

The driver (the process that runs the pipeline) reserves one bundle per
node in a Ray placement group (``STRICT_SPREAD``: one per machine), starts
one ``Shard`` actor in each, and hands each its node's spec from
``ClusterPlan``: an ordinary ``PipelineSpec`` the shard builds and runs as
a ``pktflow.Pipeline`` on the actor's event loop (its own zones, lcores and
caches). Remote edges are stages of those pipelines (``_cluster_stages``):
the data goes over ZeroMQ, never through Ray. Through Ray go only start,
stop, stats (gathered about once a second) and failure: each shard has a
``wait()`` call outstanding, which fails within milliseconds when its
actor dies.

- The end: every node's pipeline ends (its sources exhausted; a node with
  receivers after its upstream nodes ended).
- ``stop()``: nodes stop in data order (upstream first), each after its
  receivers heard the end of every upstream sender, so what was sent is
  delivered and counted.
- A dead shard: ``PipelineError`` naming the node (the rest stop at once),
  or with ``cluster.on_failure: continue`` the rest go on; their remote
  edges to it count drops and their receivers stop waiting for it. A task
  on the dead node's bundle removes the zones its shard left.
- ``address: local``: a ``ray.cluster_utils.Cluster`` of ``nodes`` nodes on
  this machine (loopback, its own temp dir), shut down and removed after.

Usage (through ``Pipeline``, which hands a spec with ``cluster:`` here)::

    p = pktflow.Pipeline.from_file("pipelines/examples/two-nodes.yaml")
    stats = await p.run()
    stats.as_dict()["nodes"][1]["stages"]["gen"]["packets_out"]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from ._cluster_plan import ClusterPlan
from ._cluster_stages import COALESCE
from ._errors import ConfigError, PipelineError
from ._pipeline import Pipeline, Stats, check_start
from ._spec import ClusterSpec, PipelineSpec

__all__ = ["ClusterPipeline", "ClusterStats", "LocalCluster", "import_ray", "with_address"]

STATS_EVERY_S = 1.0
CALL_TIMEOUT_S = 10.0  # a control call to a live shard
START_TIMEOUT_S = 300.0  # a shard's build: a cold numba cache compiles for minutes
END_TIMEOUT_S = 30.0  # a node draining after stop
DRAIN_TIMEOUT_S = 5.0  # a node's receivers hearing their senders' end
SHUTDOWN_S = 30.0  # ray.shutdown() and a local cluster's
SWITCH_INTERVAL_S = 0.0005  # a shard process's GIL switch interval (see Shard)


def import_ray() -> Any:
    """``ray``, imported with the settings FIELD-NOTES lists (loopback clusters work).

    Usage: ``ray = import_ray()``
    """
    # Before the import: else ray.init(address="127.0.0.1:port") is rewritten to
    # the machine's outward address and retries forever against a loopback cluster.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "cluster: needs Ray and pyzmq: pip install 'pktflow[cluster]'", key="cluster"
        ) from None
    return ray


def with_address(spec: PipelineSpec, address: str) -> PipelineSpec:
    """``spec`` with its cluster address replaced (``pktflow run --cluster ADDRESS``)."""
    cluster = msgspec.structs.replace(spec.cluster or ClusterSpec(), address=address)
    return replace(spec, cluster=cluster)


@dataclass(frozen=True)
class ClusterStats(Stats):
    """A cluster pipeline's counters: the totals, and each node's under ``"nodes"``.

    Usage: ``stats.as_dict()["nodes"][0]["stages"]["total"]["packets_in"]``
    """

    nodes: dict[int, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        out["nodes"] = {node: dict(row) for node, row in self.nodes.items()}
        return out


class LocalCluster:
    """A Ray cluster of ``nodes`` nodes on this machine, on loopback, in its own temp dir.

    Usage::

        with LocalCluster(2) as cluster:
            ray.init(address=cluster.address)
    """

    def __init__(self, nodes: int, *, cpus_per_node: int = 1) -> None:
        ray = import_ray()
        from ray.cluster_utils import Cluster

        # Short: Ray puts UNIX socket paths (at most 107 bytes) under it.
        self.temp_dir = tempfile.mkdtemp(prefix="pktray-")
        common = {
            "num_cpus": cpus_per_node, "node_ip_address": "127.0.0.1",
            "object_store_memory": 80 * 1024 * 1024,
        }  # fmt: skip
        self._ray = ray
        self._cluster: Any = None
        utils = ray._private.utils
        write_address = utils.write_ray_address
        # Cluster writes the head's address to /tmp/ray/ray_current_cluster (for a
        # later bare ray.init()): keep it in our temp dir, which goes with us.
        utils.write_ray_address = lambda address, temp_dir=None: write_address(
            address, self.temp_dir
        )
        try:
            self._cluster = Cluster(
                initialize_head=True,
                head_node_args={**common, "temp_dir": self.temp_dir, "include_dashboard": False},
            )
            for _ in range(nodes - 1):
                self._cluster.add_node(**common)
            self._cluster.wait_for_nodes()
        except BaseException:
            self.shutdown()
            raise
        finally:
            utils.write_ray_address = write_address
        self.address: str = self._cluster.address

    def shutdown(self) -> None:
        """Stop every node and remove the temp dir (idempotent)."""
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.shutdown()
            self._cluster = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class Shard:
    """One node's part of a cluster pipeline: a Ray actor running a node-local Pipeline."""

    def __init__(self, node: int) -> None:
        # Ray hands a control call (stop, forget, stats) to this actor through
        # several steps that each need the GIL, which a busy walk holds: with
        # Python's default 5 ms switch interval a stop took 0.02-6 s to arrive
        # under 100 k packets/s; at 0.5 ms, 10-40 ms. A walk pays nothing while
        # no other thread asks for the GIL (thread lcores in one shard switch more).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.node = node
        self.pipeline: Pipeline | None = None
        self.receivers: list[Any] = []

    def info(self) -> dict[str, Any]:
        ray = import_ray()

        return {
            "node": self.node, "pid": os.getpid(), "ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }  # fmt: skip

    def listen(self, edges: list[tuple[str, int, str]]) -> dict[str, str]:
        """Bind a receiver per remote edge into this node; their endpoints."""
        from ._cluster_stages import offer_receiver
        from ._cluster_transport import transport

        host = import_ray().util.get_node_ip_address()
        endpoints = {}
        for key, hwm, name in edges:
            receiver = transport(name).listen(host, hwm=hwm)
            self.receivers.append(receiver)
            offer_receiver(key, receiver)
            endpoints[key] = receiver.endpoint
        return endpoints

    async def start(self, spec: PipelineSpec) -> None:
        self.pipeline = Pipeline(spec)
        await self.pipeline.start()

    async def wait(self) -> dict[str, Any]:
        """When this node's pipeline ended: its final stats and failure, if any."""
        assert self.pipeline is not None
        while not await self.pipeline.wait(None):
            pass
        try:
            stats = await self.pipeline.stop()
            error = None
        except PipelineError as exc:
            stats, error = self.pipeline.stats(), exc
        finally:
            self._close_receivers()
        result: dict[str, Any] = {"stats": stats.as_dict()}
        if error is not None:
            result["error"] = {"text": str(error), "stage": error.stage, "lcore": error.lcore}
        return result

    def stats(self) -> dict[str, Any]:
        assert self.pipeline is not None
        return self.pipeline.stats().as_dict()

    def request_stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.request_stop()

    def _stages_of(self, cls: type) -> list[Any]:
        """This node's stages of ``cls`` on lcore 0 (the shard's own process)."""
        if self.pipeline is None:
            return []
        return [s for s in self.pipeline._stages.values() if isinstance(s, cls)]

    def _receive_stages(self) -> list[Any]:
        from ._cluster_stages import RemoteReceive

        return self._stages_of(RemoteReceive)

    async def receivers_ended(self, timeout: float) -> bool:
        """Wait until every receiver here heard the end of its senders (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not all(s.ended for s in self._receive_stages()):
            if time.monotonic() > deadline or self.pipeline is None or not self.pipeline.running:
                return False
            await asyncio.sleep(0.005)
        return True

    def upstream_ended(self, node: int) -> None:
        """Node ``node``'s pipeline ended: the receivers here need no end mark from it."""
        for stage in self._receive_stages():
            stage.upstream_ended(node)
        if self.pipeline is not None:
            self.pipeline._poll_sources_now()  # asleep on the receivers' sockets

    def forget(self, node: int) -> None:
        """Node ``node`` is lost: the receivers here stop waiting for its end, and the
        senders to it here (on lcore 0) give up what they queued at once when they close."""
        from ._cluster_stages import RemoteSend

        for stage in self._receive_stages():
            stage.forget(node)
        for send in self._stages_of(RemoteSend):
            if send.to_node == node:
                send.peer_lost = True
        if self.pipeline is not None:
            self.pipeline._poll_sources_now()

    def _close_receivers(self) -> None:
        for receiver in self.receivers:
            with contextlib.suppress(Exception):
                receiver.close()

    def close(self) -> None:
        self._close_receivers()


def _cleanup_node(pid: int) -> int:
    """On a node whose shard (process ``pid``) died: remove the zones it created.

    Only its own: another run's leftovers are ``pktflow cleanup``'s to
    judge. Its worker lcores let go of the zones once they see it gone.
    """
    from ._lcore import release_dead_claims
    from ._memory import _unlink_zone, list_zones

    removed = 0
    for _ in range(30):
        release_dead_claims()
        mine = [z for z in list_zones() if z.creator_pid == pid and not z.creator_alive]
        if not mine:
            break
        removed += sum(_unlink_zone(zone) for zone in mine if not zone.mapped_by)
        time.sleep(0.1)
    return removed


class ClusterPipeline(Pipeline):
    """A pipeline whose spec has ``cluster:``: one shard per node (see the module docstring).

    Usage: ``stats = await pktflow.Pipeline.from_file("two-nodes.yaml").run()``
    """

    def __init__(self, spec: PipelineSpec) -> None:
        super().__init__(spec)
        self.plan = ClusterPlan(spec)  # its ConfigErrors before anything starts
        assert spec.cluster is not None
        self.cluster: ClusterSpec = spec.cluster
        self.nodes: list[dict[str, Any]] = []  # each shard's info: node, pid, ip, node_id
        self._local: LocalCluster | None = None
        self._connected = False
        self._pg: Any = None
        self._shards: list[Any] = []
        self._node_stats: dict[int, dict[str, Any]] = {}
        self._node_state: dict[int, str] = {}  # running, done, failed, dead
        self._ended: dict[int, asyncio.Event] = {}
        self._failure: PipelineError | None = None
        self._stopper: asyncio.Task[None] | None = None
        self._cluster_task: asyncio.Task[None] | None = None

    # -- start ---------------------------------------------------------------------

    async def start(self, *, count: int | None = None) -> None:
        check_start(self.name, self._state, count)
        self._state = "running"
        try:
            await self._launch(count)
        except BaseException:
            await self._shutdown()
            self._state = "ended"
            raise
        self._task = asyncio.get_running_loop().create_task(
            self._watch(), name=f"pktflow {self.name} cluster"
        )

    async def _launch(self, count: int | None) -> None:
        ray = import_ray()
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        nodes = self.cluster.nodes
        if self.cluster.address == "local":
            self._local = LocalCluster(nodes)
            ray.init(address=self._local.address, log_to_driver=False, logging_level="ERROR")
            self._connected = True
        elif not ray.is_initialized():
            ray.init(address=self.cluster.address, log_to_driver=False, logging_level="ERROR")
            self._connected = True
        self._pg = placement_group([{"CPU": 1}] * nodes, strategy="STRICT_SPREAD")
        try:
            await asyncio.wait_for(self._pg.ready(), CALL_TIMEOUT_S * 3)
        except TimeoutError:
            raise PipelineError(
                f"cluster: no room for {nodes} shards on {nodes} distinct nodes with a CPU "
                f"each (STRICT_SPREAD) at {self.cluster.address!r}"
            ) from None
        actor = ray.remote(Shard)
        for node in range(nodes):
            strategy = PlacementGroupSchedulingStrategy(
                placement_group=self._pg, placement_group_bundle_index=node
            )
            self._shards.append(
                actor.options(
                    scheduling_strategy=strategy,
                    num_cpus=1,
                    max_restarts=0,
                    max_concurrency=64,
                    name=None,
                ).remote(node)
            )
            self._node_state[node] = "running"
            self._ended[node] = asyncio.Event()
        self.nodes = list(
            await self._all(
                [shard.info.remote() for shard in self._shards], START_TIMEOUT_S, "start"
            )
        )
        endpoints: dict[str, str] = {}
        for node, shard in enumerate(self._shards):
            edges = [(e.key, e.hwm, e.transport) for e in self.plan.receivers_on(node)]
            if edges:
                endpoints.update(await self._call(node, shard.listen.remote(edges), "listen"))
        tag = f"{self.name}-{os.getpid()}-{id(self):x}-{time.monotonic_ns()}"
        specs = [self.plan.node_spec(node, endpoints, count, tag) for node in range(nodes)]
        await self._all(
            [shard.start.remote(spec) for shard, spec in zip(self._shards, specs, strict=True)],
            START_TIMEOUT_S, "start",
        )  # fmt: skip
        self._started_at = time.perf_counter()

    async def _call(self, node: int, ref: Any, what: str, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            return await asyncio.wait_for(ref, timeout)
        except TimeoutError:
            raise PipelineError(f"node {node}: {what} took over {timeout:.0f} s") from None
        except Exception as exc:
            raise self._node_error(node, exc, what) from exc

    async def _all(self, refs: list[Any], timeout: float, what: str) -> list[Any]:
        return list(
            await asyncio.gather(*(self._call(i, r, what, timeout) for i, r in enumerate(refs)))
        )

    def _node_error(self, node: int, exc: BaseException, what: str = "run") -> PipelineError:
        info = self.nodes[node] if node < len(self.nodes) else {}
        where = f"node {node}" + (f" ({info['ip']}, shard pid {info['pid']})" if info else "")
        cause = getattr(exc, "cause", None)
        if type(exc).__name__ in ("ActorDiedError", "RayActorError", "ActorUnavailableError"):
            text = f"{where} died: its shard actor is gone ({type(exc).__name__})"
        elif isinstance(cause, PipelineError | ConfigError):
            text = f"{where}: {what}: {cause}"
        else:
            text = f"{where}: {what}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        error = PipelineError(text, stage=getattr(cause, "stage", None))
        error.node = node  # type: ignore[attr-defined]
        return error

    # -- running ---------------------------------------------------------------------

    async def _watch(self) -> None:
        """Hear each shard's end (or death); gather stats about once a second meanwhile."""
        waits = {
            asyncio.ensure_future(self._wait_node(node, shard)): node
            for node, shard in enumerate(self._shards)
        }
        gatherer = asyncio.get_running_loop().create_task(self._gather_stats())
        try:
            await asyncio.wait(waits)
        finally:
            gatherer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gatherer
            self._ended_at = time.perf_counter()

    async def _wait_node(self, node: int, shard: Any) -> None:
        try:
            result = await shard.wait.remote()
        except Exception as exc:
            self._node_state[node] = "dead"
            self._ended[node].set()
            self._lost(node, self._node_error(node, exc))
            return
        self._node_stats[node] = result["stats"]
        failed = result.get("error")
        self._node_state[node] = "failed" if failed else "done"
        self._ended[node].set()
        for other, shard_ in enumerate(self._shards):
            if self._node_state[other] == "running" and node in self.plan.senders_to(other):
                shard_.upstream_ended.remote(node)
        if failed and self._failure is None:
            error = PipelineError(
                f"node {node}: {failed['text']}", stage=failed["stage"], lcore=failed["lcore"]
            )
            error.node = node  # type: ignore[attr-defined]
            self._failure = error
            self._abort()

    def _lost(self, node: int, error: PipelineError) -> None:
        for other, shard in enumerate(self._shards):
            if self._node_state[other] == "running":
                shard.forget.remote(node)
        if self.cluster.on_failure == "continue":
            return
        if self._failure is None:
            self._failure = error
        self._abort()

    def _abort(self) -> None:
        for other, shard in enumerate(self._shards):
            if self._node_state[other] == "running":
                shard.request_stop.remote()

    async def _gather_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            live = [n for n, state in self._node_state.items() if state == "running"]
            results = await asyncio.gather(
                *(asyncio.wait_for(self._shards[n].stats.remote(), CALL_TIMEOUT_S) for n in live),
                return_exceptions=True,
            )
            for node, result in zip(live, results, strict=True):
                if isinstance(result, dict) and self._node_state[node] == "running":
                    self._node_stats[node] = result

    def request_stop(self) -> None:
        if self._task is None or self._task.done() or self._stopper is not None:
            return
        self._stopper = asyncio.get_running_loop().create_task(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        """Upstream nodes first; a node with receivers once they heard their senders' end."""
        stopped: set[int] = set()
        for node in self.plan.order:
            stopped.add(node)
            if self._node_state[node] != "running":
                continue
            shard = self._shards[node]
            # Its receivers drain what their senders sent, when those senders all stopped
            # first (in a cycle between nodes they cannot: what is in flight is lost).
            if self.plan.receivers_on(node) and self.plan.senders_to(node) <= stopped - {node}:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        shard.receivers_ended.remote(DRAIN_TIMEOUT_S), DRAIN_TIMEOUT_S + 2
                    )
            shard.request_stop.remote()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ended[node].wait(), END_TIMEOUT_S)

    async def wait(self, timeout: float | None = None) -> bool:
        if self._task is None:
            return self._state != "running"
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        return bool(done)

    async def stop(self) -> Stats:
        if self._final is None:
            if self._state == "new":
                raise PipelineError(f"pipeline {self.name!r} was never started")
            if self._task is not None and not self._task.done():
                self.request_stop()
                await asyncio.shield(self._task)
            self._final = self._collect()
            await self._shutdown()
            self._state = "ended"
        if self._failure is not None:
            raise self._failure
        return self._final

    def stats(self) -> Stats:
        if self._final is not None:
            return self._final
        return self._collect()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def stage(self, name: str) -> Any:
        raise PipelineError(
            f"pipeline {self.name!r} runs on a cluster: its stages live in the shards; "
            "read p.stats() instead"
        )

    # -- the end -------------------------------------------------------------------

    async def _shutdown(self) -> None:
        ray = import_ray()
        if self._stopper is not None and not self._stopper.done():
            self._stopper.cancel()
        dead = [n for n, state in self._node_state.items() if state == "dead"]
        for node, shard in enumerate(self._shards):
            if self._node_state.get(node) != "dead":
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(shard.close.remote(), CALL_TIMEOUT_S)
            with contextlib.suppress(Exception):
                ray.kill(shard)
        self._shards = []
        if dead and self._pg is not None:
            await self._clean_dead_nodes(ray, dead)
        if self._pg is not None:
            from ray.util.placement_group import remove_placement_group

            with contextlib.suppress(Exception):
                remove_placement_group(self._pg)
            self._pg = None
        loop = asyncio.get_running_loop()
        if self._connected:
            self._connected = False
            with contextlib.suppress(Exception):  # bounded: a hung shutdown must not hang us
                await asyncio.wait_for(loop.run_in_executor(None, ray.shutdown), SHUTDOWN_S)
        if self._local is not None:
            local, self._local = self._local, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop.run_in_executor(None, local.shutdown), SHUTDOWN_S)

    async def _clean_dead_nodes(self, ray: Any, dead: list[int]) -> None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        task = ray.remote(_cleanup_node)
        refs = [
            task.options(
                num_cpus=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self._pg, placement_group_bundle_index=node
                ),
            ).remote(self.nodes[node]["pid"])
            for node in dead
        ]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*refs), CALL_TIMEOUT_S * 3)

    # -- stats ---------------------------------------------------------------------

    def _collect(self) -> ClusterStats:
        elapsed = 0.0
        if self._started_at:
            elapsed = (self._ended_at or time.perf_counter()) - self._started_at
        return aggregate(self.plan, self._node_stats, self._node_state, self.nodes, elapsed)


def aggregate(
    plan: ClusterPlan,
    node_stats: dict[int, dict[str, Any]],
    node_state: dict[int, str],
    infos: list[dict[str, Any]],
    elapsed: float,
) -> ClusterStats:
    """The cluster's totals from each node's ``as_dict()``: stages, edges, mempools, nodes."""
    spec = plan.spec
    fields = ("packets_in", "packets_out", "bytes_in", "drops", "bursts")
    stages: dict[str, dict[str, Any]] = {}
    for name, s in spec.stages.items():
        row: dict[str, Any] = {
            "lcore": s.lcores[0] if len(s.lcores) == 1 else list(s.lcores),
            "node": s.node if s.node is not None else plan.nodes_of(s),
        }
        row.update(dict.fromkeys(fields, 0))
        for stats in node_stats.values():
            got = stats["stages"].get(name)
            if got is not None:
                for key in fields:
                    row[key] += got[key]
        stages[name] = row
    inserted = {e.send_stage for e in plan.remote} | {e.receive_stage for e in plan.remote}
    edges: dict[str, dict[str, Any]] = {}
    for stats in node_stats.values():
        for name, got in stats["edges"].items():
            if any(stage in name for stage in inserted):
                continue  # folded into its remote edge's row below
            row = edges.setdefault(name, {"count": 0, "capacity": 0, "drops": 0})
            for key in ("count", "capacity", "drops"):
                row[key] += got[key]
    for e in plan.remote:
        sent = drops = received = 0
        for stats in node_stats.values():
            send = stats["stages"].get(e.send_stage)
            if send is not None:
                sent += send["packets_in"] - send["drops"]
                drops += send["drops"]
            receive = stats["stages"].get(e.receive_stage)
            if receive is not None:
                received += receive["packets_out"]
        local = edges.get(e.name, {})  # the consumer's node's own producer copy: direct
        edges[e.name] = {
            "count": max(0, sent - received) + local.get("count", 0),
            "capacity": e.hwm * e.burst * COALESCE + local.get("capacity", 0),
            "drops": drops + local.get("drops", 0),
            "transport": e.transport,
            "nodes": [list(e.producer_nodes), e.consumer_node],
            "sent": sent,
            "received": received,
        }
    mempools: dict[str, dict[str, int]] = {}
    for stats in node_stats.values():
        for name, got in stats["mempools"].items():
            row = mempools.setdefault(name, {"n": 0, "in_use": 0, "avail": 0})
            for key in ("n", "in_use", "avail"):
                row[key] += got[key]
    nodes: dict[int, dict[str, Any]] = {}
    for node in range(plan.count):
        info = infos[node] if node < len(infos) else {}
        nodes[node] = {
            "state": node_state.get(node, "new"),
            "ip": info.get("ip"),
            "pid": info.get("pid"),
            **node_stats.get(node, {"elapsed_s": 0.0, "stages": {}, "edges": {}, "mempools": {}}),
        }
    return ClusterStats(round(elapsed, 6), stages, edges, mempools, nodes)
