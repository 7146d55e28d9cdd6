"""Pipelines: build a checked spec into pools, stages and edges, run it, report stats.

A ``Pipeline`` runs on the caller's event loop (uvloop or not) without
owning it: its lcore-0 walk is a task there, so a pipeline embeds in an
existing asyncio application. Building creates the mempools (private
``numba`` memory unless a pool names a backend), registers the running
thread as an lcore when it is not one (its mempool cache), makes the
stages, and wires every output (``_walk``). The end — sources exhausted,
``count``, ``duration``, ``stop()`` or a failed stage — drains the graph,
runs every stage's ``stop()``, takes the final stats and closes the pools.

Usage::

    p = pktflow.Pipeline.from_file("quick.yaml")
    stats = await p.run(duration=5)
    print(stats.as_dict()["stages"]["count"]["packets_in"])
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ._affinity import lcore_cpus, pin
from ._control import STAGE_FIELDS, Control
from ._errors import ConfigError, PipelineError
from ._lcore import LCORE_ID_ANY, lcore_id, register_lcore, unregister_lcore
from ._mbuf import PKTMBUF_HEADROOM, PktmbufPool, pktmbuf_pool_create
from ._placement import Link, Placement
from ._registry import get_backend
from ._ring import Ring
from ._spec import PipelineSpec, load_spec_dict, load_spec_file, load_spec_text
from ._stage import Stage

if TYPE_CHECKING:  # the walk (and its kernels) load when a pipeline is built
    from ._lcore_graph import LcoreGraph
    from ._lcores import WorkerLcores
    from ._walk import Walk


class MetricsEndpoint(Protocol):
    @property
    def url(self) -> str: ...  # where the counters are served (port 0: the one chosen)

    def close(self) -> None: ...


__all__ = ["Pipeline", "Stats"]

_instances = itertools.count()


@dataclass(frozen=True)
class Stats:
    """A pipeline's counters at one moment; ``as_dict()`` is JSON-ready.

    Usage: ``p.stats().as_dict()["stages"]["parse"]["packets_out"]``
    """

    elapsed_s: float
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    edges: dict[str, dict[str, int]] = field(default_factory=dict)
    mempools: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """``{"elapsed_s", "stages", "edges", "mempools"}`` as DESIGN §7.4 lays out.

        Usage: ``json.dumps(stats.as_dict())``
        """
        return {
            "elapsed_s": self.elapsed_s,
            "stages": {name: dict(row) for name, row in self.stages.items()},
            "edges": {name: dict(row) for name, row in self.edges.items()},
            "mempools": {name: dict(row) for name, row in self.mempools.items()},
        }


class Pipeline:
    """A graph of stages built from a checked spec; runs once.

    Usage::

        async with pktflow.Pipeline.from_file("quick.yaml") as p:
            await asyncio.sleep(1)
            print(p.stats().as_dict())
    """

    def __new__(cls, spec: PipelineSpec) -> Pipeline:
        # A spec with cluster: runs as shards on several nodes (pktflow._cluster).
        if cls is Pipeline and isinstance(spec, PipelineSpec) and spec.cluster is not None:
            from ._cluster import ClusterPipeline

            return super().__new__(ClusterPipeline)
        return super().__new__(cls)

    def __init__(self, spec: PipelineSpec) -> None:
        if not isinstance(spec, PipelineSpec):
            raise TypeError(
                "Pipeline(spec) takes a PipelineSpec; use Pipeline.from_file/_yaml/_dict"
            )
        self.spec = spec
        self.name = spec.name
        self._state = "new"  # -> running -> ended
        self._pools: dict[str, PktmbufPool] = {}
        self._rings: dict[int, Ring] = {}  # by Link.index
        self._plan: Placement | None = None
        self._control: Control | None = None
        self._graph: LcoreGraph | None = None  # lcore 0's part
        self._workers: WorkerLcores | None = None  # the other lcores
        self._stages: dict[str, Stage] = {}
        self._walk: Walk | None = None
        self._task: asyncio.Task[None] | None = None
        self._final: Stats | None = None
        self._count: int | None = None
        self._own_count: int | None = None
        self._pinned_from: set[int] | None = None
        self._started_at = self._ended_at = 0.0  # of the walks, all lcores together
        self._registered_lcore = False
        self._metrics: MetricsEndpoint | None = None

    # -- construction ----------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> Pipeline:
        """A pipeline from a YAML file, checked before anything is created.

        Usage: ``p = pktflow.Pipeline.from_file("pipelines/examples/quickstart.yaml")``
        """
        return cls(load_spec_file(path))

    @classmethod
    def from_yaml(cls, text: str, *, file: str | None = None) -> Pipeline:
        """A pipeline from YAML text (``file`` names it in errors).

        Usage: ``p = pktflow.Pipeline.from_yaml(text)``
        """
        return cls(load_spec_text(text, file=file))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pipeline:
        """A pipeline from a mapping shaped like the YAML.

        Usage: ``p = pktflow.Pipeline.from_dict({"name": "p", "stages": {...}})``
        """
        return cls(load_spec_dict(data))

    # -- running -------------------------------------------------------------------

    async def run(self, duration: float | None = None, count: int | None = None) -> Stats:
        """Run until the sources end, ``count`` packets left them, or ``duration`` seconds.

        Returns the final stats; raises ``PipelineError`` when a stage failed.

        Usage: ``stats = await p.run(duration=10)``
        """
        if duration is not None and not duration >= 0:
            raise ValueError(f"duration must be >= 0 seconds, not {duration!r}")
        await self.start(count=count)
        try:
            await self.wait(duration)
        except BaseException:  # cancelled: still drain and close before going
            with contextlib.suppress(PipelineError):
                await self.stop()
            raise
        return await self.stop()

    async def start(self, *, count: int | None = None) -> None:
        """Build the pipeline and start its walk as a task on the running loop.

        Usage: ``await p.start(); ...; stats = await p.stop()``
        """
        check_start(self.name, self._state, count)
        self._state = "running"
        self._count = count
        try:
            metrics = self.spec.runtime.metrics
            if metrics is not None and metrics.prometheus is not None:
                from ._metrics import serve_metrics  # needs the metrics extra

                self._metrics = serve_metrics(self, metrics.prometheus)
            self._build()
            assert self._graph is not None
            await self._graph.start_stages()
            if self._workers is not None:
                await self._workers.wait_ready()
                self._workers.go()
        except BaseException:
            if self._graph is not None:
                await self._graph.stop_stages()
            await self._teardown()
            self._state = "ended"
            raise
        self._task = asyncio.get_running_loop().create_task(
            self._run_lcores(), name=f"pktflow {self.name} lcore 0"
        )

    def request_stop(self) -> None:
        """Ask the sources to stop (safe from a signal handler); ``stop()`` waits for the end.

        Usage: ``loop.add_signal_handler(signal.SIGINT, p.request_stop)``
        """
        if self._walk is not None:
            self._walk.request_stop()
        if self._workers is not None:
            self._workers.request_stop()

    def _poll_sources_now(self) -> None:
        """Wake lcore 0's walk if it sleeps: a source's state changed from outside
        the walk (a remote edge was told its sender's node ended)."""
        if self._walk is not None:
            self._walk.wake()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until the walk ends (sources exhausted, or stopped), at most ``timeout`` s.

        True when it ended; then ``stop()`` gives the final stats.

        Usage: ``while not await p.wait(1.0): print(p.stats())``
        """
        if self._task is None:
            return self._state != "running"
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        return bool(done)

    async def stop(self) -> Stats:
        """Stop the sources, drain, run every stage's ``stop()``, close the pools.

        Returns the final stats (again on later calls); raises
        ``PipelineError`` when a stage failed.

        Usage: ``stats = await p.stop()``
        """
        if self._final is None:
            if self._state == "new":
                raise PipelineError(f"pipeline {self.name!r} was never started")
            self.request_stop()
            if self._task is not None:
                try:
                    await asyncio.shield(self._task)
                except asyncio.CancelledError:
                    self._task.cancel()
                    raise
            await self._finish()
        failure = self._walk.failure if self._walk is not None else None
        if failure is not None:
            raise failure
        assert self._final is not None
        return self._final

    def stats(self) -> Stats:
        """The counters now (final ones once the pipeline ended).

        Usage: ``p.stats().as_dict()``
        """
        if self._final is not None:
            return self._final
        return self._collect()

    def stage(self, name: str) -> Stage:
        """The stage object named ``name`` (built by ``start()``).

        Usage: ``p.stage("count").counts()``
        """
        try:
            return self._stages[name]
        except KeyError:
            state = "has no" if self._state != "new" else "is not started, so it has no"
            raise PipelineError(f"pipeline {self.name!r} {state} stage {name!r}") from None

    @property
    def metrics_url(self) -> str | None:
        """Where ``runtime.metrics.prometheus`` serves the counters while it runs, or None.

        Usage: ``urllib.request.urlopen(p.metrics_url).read()``
        """
        return self._metrics.url if self._metrics is not None else None

    @property
    def running(self) -> bool:
        """Whether the pipeline's lcores are still going."""
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- building ----------------------------------------------------------------

    def _build(self) -> None:
        from ._lcore_graph import LcoreGraph
        from ._lcore_main import LcoreJob
        from ._lcores import WorkerLcores

        spec = self.spec
        plan = self._plan = Placement(spec)
        if lcore_id() == LCORE_ID_ANY:
            register_lcore()
            self._registered_lcore = True
        tag = f"{spec.name}-{os.getpid()}-{next(_instances)}"
        for name, pool in spec.mempools.items():
            self._pools[name] = pktmbuf_pool_create(
                f"{tag}-{name}",
                pool.n,
                pool.cache_size,
                pool.priv_size,
                pool.data_room + PKTMBUF_HEADROOM,
                backend=self._pool_backend(name, pool.backend),
                hugepages=pool.hugepages or spec.runtime.hugepages,
            )
        control_name = f"{tag}-control"
        self._control = Control.create(control_name, plan) if plan.multi else Control.private(plan)
        for link in plan.ring_links:
            self._rings[link.index] = Ring(
                link.ring_name(tag), link.size, flags=link.flags, backend=self._ring_backend(link)
            )
        cpus = lcore_cpus(max(plan.lcores) + 1, spec.runtime.cpus) if plan.multi else []
        shares = _count_shares(plan, self._count)
        jobs = [
            LcoreJob.portable(
                spec,
                lcore=lcore,
                cpu=cpus[lcore],
                pools={name: pool.name for name, pool in self._pools.items()},
                tag=tag,
                control=control_name,
                count=shares.get(lcore),
            )
            for lcore in plan.lcores
            if lcore != 0
        ]
        if jobs:
            self._workers = WorkerLcores(
                spec.name, plan, jobs, on_death=self._on_death, on_failure=self._on_failure,
                threads=frozenset(n for n, kind in spec.runtime.lcores.items() if kind == "thread"),
            )  # fmt: skip
        if plan.multi:
            self._pinned_from = os.sched_getaffinity(0)
            pin(cpus[0])
        self._graph = LcoreGraph(plan, 0, self._pools, self._rings, self._control)
        self._stages = self._graph.stages
        self._walk = self._graph.walk
        self._walk.on_failure = self._on_failure
        self._own_count = shares.get(0)

    def _pool_backend(self, name: str, backend: str | None) -> str | None:
        """The pool's backend: a shared one when stages run on several lcores."""
        assert self._plan is not None
        if not self._plan.multi:
            return backend
        if backend is None:
            return "hugepage"
        if not get_backend(backend).shared:
            raise ConfigError(
                f"stages run on lcores {self._plan.lcores}: the pool must be shared, and "
                f"backend {backend!r} is not (use hugepage, or leave backend out)",
                file=self.spec.file,
                line=self.spec.lines.get(("mempools", name, "backend")),
                key=f"mempools.{name}.backend",
            )
        return backend

    def _ring_backend(self, link: Link) -> str:
        crosses = link.producer_lcores != (link.consumer_lcore,)
        if link.backend is None:
            return "hugepage"
        if crosses and not get_backend(link.backend).shared:
            raise ConfigError(
                f"edge {link.name} crosses lcores {list(link.producer_lcores)} -> "
                f"{link.consumer_lcore}: backend {link.backend!r} is not shared (use hugepage)",
                file=self.spec.file,
                line=self.spec.lines.get(("stages", link.consumer, "edge", "backend")),
                key=f"stages.{link.consumer}.edge.backend",
            )
        return link.backend

    def _on_death(self, error: PipelineError) -> None:
        """A worker lcore died: every other lcore ends now."""
        if self._walk is not None:
            self._walk.abort()
        if self._workers is not None:
            self._workers.abort()

    def _on_failure(self, error: PipelineError) -> None:
        """A stage failed on some lcore: every lcore stops its sources and drains."""
        self.request_stop()

    async def _run_lcores(self) -> None:
        assert self._walk is not None
        self._started_at = time.perf_counter()
        try:
            await self._walk.run(self._own_count)
        finally:
            try:
                if self._workers is not None:
                    await self._workers.wait_done()
            finally:
                self._ended_at = time.perf_counter()

    # -- the end -----------------------------------------------------------------

    async def _finish(self) -> None:
        stop_error = await self._graph.stop_stages() if self._graph is not None else None
        if self._workers is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._workers.close)
        self._final = self._collect()
        await self._teardown()
        self._state = "ended"
        if self._walk is not None and self._walk.failure is None:
            remote = self._workers.failure if self._workers is not None else None
            self._walk.failure = remote or stop_error

    async def _teardown(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._workers is not None:
            self._workers.close()
        if self._walk is not None:
            self._walk.stop_sleeping()
        if self._pools:  # built: the walk's modules are loaded
            from ._lcore_graph import release

            release(self._rings, self._pools, self._control)
        if self._pinned_from is not None:
            os.sched_setaffinity(0, self._pinned_from)
            self._pinned_from = None
        if self._registered_lcore:
            unregister_lcore()
            self._registered_lcore = False

    def _collect(self) -> Stats:
        walk = self._walk
        if not self._started_at:
            elapsed = 0.0
        else:
            elapsed = (self._ended_at or time.perf_counter()) - self._started_at
        stages: dict[str, dict[str, Any]] = {}
        edges: dict[str, dict[str, int]] = {}
        mempools: dict[str, dict[str, int]] = {}
        if self._plan is None or self._control is None:
            return Stats(0.0, stages, edges, mempools)
        plan, control = self._plan, self._control
        if walk is not None and not self._final:
            walk.publish()  # lcore 0's own counters, into the same rows
        for name, spec in self.spec.stages.items():
            total = np.zeros(len(STAGE_FIELDS), np.int64)
            for lcore in spec.lcores:
                total += control.stage_row(name, lcore)
            row = dict(zip(STAGE_FIELDS, (int(v) for v in total), strict=True))
            stages[name] = {
                "lcore": spec.lcores[0] if len(spec.lcores) == 1 else list(spec.lcores),
                "packets_in": row["packets_in"],
                "packets_out": row["handed"] - row["drops"] - row["freed"],
                "bytes_in": row["bytes_in"],
                "drops": row["drops"],
                "bursts": row["bursts"],
            }
        for link in plan.links:
            row_ = edges.setdefault(link.name, {"count": 0, "capacity": 0, "drops": 0})
            if not link.ring:
                continue
            ring = self._rings.get(link.index)
            for lcore in link.producer_lcores:
                index = control.flag_index(link, lcore)
                row_["drops"] += int(control.edge_rows[index, 0])
                row_["count"] += int(control.edge_rows[index, 1])
            if ring is not None and not ring.closed:
                row_["count"] += ring.count()
                row_["capacity"] += ring.capacity
        for name, pool in self._pools.items():
            if not pool.closed:
                avail = pool.avail_count()
                mempools[name] = {"n": pool.n, "in_use": pool.n - avail, "avail": avail}
        return Stats(round(elapsed, 6), stages, edges, mempools)

    def _wakeups(self) -> tuple[int, int]:
        """Wake-up signals sent and sleeps, all lcores together (their last published values).

        Usage (the bench's): ``signals, sleeps = p._wakeups()``
        """
        if self._control is None:
            return 0, 0
        if self._walk is not None and self._final is None:
            self._walk.publish()
        rows = self._control.lcore_rows
        return int(rows[:, 0].sum()), int(rows[:, 1].sum())

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r} {self._state}, {len(self.spec.stages)} stages>"


def check_start(name: str, state: str, count: int | None) -> None:
    """Refuse a bad ``count`` and a second start (a pipeline runs once)."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ValueError(f"count must be an int >= 0, not {count!r}")
    if state != "new":
        raise PipelineError(f"pipeline {name!r} runs once; build a new one to run again")


def _count_shares(plan: Placement, count: int | None) -> dict[int, int | None]:
    """Each lcore's part of ``run(count=N)``: N split over the source instances."""
    per_lcore: dict[int, int] = {}
    for spec in plan.spec.stages.values():
        if spec.is_source:
            for lcore in spec.lcores:
                per_lcore[lcore] = per_lcore.get(lcore, 0) + 1
    if count is None or not per_lcore:
        return {lcore: count for lcore in plan.lcores}
    total = sum(per_lcore.values())
    shares: dict[int, int | None] = {}
    given = 0
    for i, (lcore, sources) in enumerate(sorted(per_lcore.items())):
        share = count - given if i == len(per_lcore) - 1 else count * sources // total
        shares[lcore] = share
        given += share
    return shares
