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

from ._errors import ConfigError, PipelineError
from ._lcore import LCORE_ID_ANY, lcore_id, register_lcore, unregister_lcore
from ._mbuf import PKTMBUF_HEADROOM, PktmbufPool, pktmbuf_pool_create
from ._ring import Ring
from ._spec import PipelineSpec, StageSpec, load_spec_dict, load_spec_file, load_spec_text
from ._stage import Burst, Outlet, Source, Stage, StageContext


class Closeable(Protocol):
    def close(self) -> None: ...


if TYPE_CHECKING:  # the walk (and its kernels) load when a pipeline is built
    from ._walk import Inlet, RingEdge, Walk

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

    def __init__(self, spec: PipelineSpec) -> None:
        if not isinstance(spec, PipelineSpec):
            raise TypeError(
                "Pipeline(spec) takes a PipelineSpec; use Pipeline.from_file/_yaml/_dict"
            )
        self.spec = spec
        self.name = spec.name
        self._state = "new"  # -> running -> ended
        self._pools: dict[str, PktmbufPool] = {}
        self._stages: dict[str, Stage] = {}
        self._edges: dict[str, RingEdge | None] = {}
        self._walk: Walk | None = None
        self._task: asyncio.Task[None] | None = None
        self._final: Stats | None = None
        self._registered_lcore = False
        self._started_stages: list[Stage] = []
        self._metrics: Closeable | None = None

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
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 0
        ):
            raise ValueError(f"count must be an int >= 0, not {count!r}")
        if self._state != "new":
            raise PipelineError(f"pipeline {self.name!r} runs once; build a new one to run again")
        self._state = "running"
        try:
            self._build()
            await self._start_stages()
        except BaseException:
            await self._teardown()
            self._state = "ended"
            raise
        assert self._walk is not None
        self._task = asyncio.get_running_loop().create_task(
            self._walk.run(count), name=f"pktflow {self.name} lcore 0"
        )
        metrics = self.spec.runtime.metrics
        if metrics is not None and metrics.prometheus is not None:
            from ._metrics import serve_metrics  # needs the metrics extra

            self._metrics = serve_metrics(self, metrics.prometheus)

    def request_stop(self) -> None:
        """Ask the sources to stop (safe from a signal handler); ``stop()`` waits for the end.

        Usage: ``loop.add_signal_handler(signal.SIGINT, p.request_stop)``
        """
        if self._walk is not None:
            self._walk.request_stop()

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
    def running(self) -> bool:
        """Whether the walk is still going."""
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- building ----------------------------------------------------------------

    def _build(self) -> None:
        from ._walk import Walk

        spec = self.spec
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
                backend=pool.backend,
                hugepages=pool.hugepages or spec.runtime.hugepages,
            )
        for name, stage_spec in spec.stages.items():
            self._stages[name] = self._make_stage(stage_spec)
        walk = Walk(0, [], [], spec.runtime)
        inlets = self._wire(walk, tag)
        walk.has_async = any(inlet.async_queue is not None for inlet in inlets)
        self._walk = walk

    def _make_stage(self, spec: StageSpec) -> Stage:
        ctx = StageContext(
            spec.name,
            lcore=spec.lcore,
            pool=self._pools[spec.pool],
            pools=dict(self._pools),
            burst_size=spec.burst,
            options=spec.options,
        )
        try:
            stage = spec.cls(ctx, **spec.options)
        except Exception as exc:
            options = ", ".join(f"{k}={v!r}" for k, v in spec.options.items())
            raise ConfigError(
                f"{spec.cls.__name__}({options}) failed: {exc}",
                file=self.spec.file,
                line=self.spec.lines.get(("stages", spec.name)),
                key=f"stages.{spec.name}",
            ) from exc
        if not isinstance(stage, Stage) or not hasattr(stage, "_outlets"):
            raise ConfigError(
                f"{spec.cls.__name__}.__init__ must call super().__init__(ctx)",
                file=self.spec.file,
                key=f"stages.{spec.name}",
            )
        return stage

    def _wire(self, walk: Walk, tag: str) -> list[Inlet]:
        """Give every output its outlet and every source its run; the inlets made."""
        from ._walk import Inlet, RingEdge, SourceRun

        spec = self.spec
        inlets: list[Inlet] = []
        ring_feeds: dict[str, list[RingEdge]] = {name: [] for name in spec.stages}
        for name, stage_spec in spec.stages.items():
            stage = self._stages[name]
            for output, consumers in spec.consumers(name).items():
                targets: list[Inlet] = []
                rings: list[RingEdge] = []
                for consumer in consumers:
                    consumer_spec = spec.stages[consumer]
                    edge_name = f"{name}.{output}->{consumer}"
                    inlet = Inlet(self._stages[consumer], f"{name}.{output}", walk.pending)
                    inlets.append(inlet)
                    if consumer_spec.edge.backend is None:
                        targets.append(inlet)
                        self._edges[edge_name] = None
                        continue
                    ring = Ring(
                        f"{tag}-{name}.{output}-{consumer}",
                        consumer_spec.edge.size,
                        backend=consumer_spec.edge.backend,
                    )
                    edge = RingEdge(
                        edge_name, ring, inlet, self._pools[stage_spec.pool],
                        full=consumer_spec.edge.full, burst_size=consumer_spec.burst,
                    )  # fmt: skip
                    self._edges[edge_name] = edge
                    walk.rings.append(edge)
                    rings.append(edge)
                stage._outlets[output] = self._outlet(stage, targets, rings)
                ring_feeds[name].extend(rings)
        for name, stage_spec in spec.stages.items():
            stage = self._stages[name]
            if isinstance(stage, Source):
                burst = Burst(np.empty(stage_spec.burst, np.uint32), self._pools[stage_spec.pool])
                walk.sources.append(SourceRun(stage, burst, self._rings_fed(name, ring_feeds)))
        return inlets

    def _outlet(self, stage: Stage, targets: list[Inlet], rings: list[RingEdge]) -> Outlet:
        from ._walk import FanOut, unconsumed

        if not targets and not rings:
            return unconsumed(stage)
        if len(targets) + len(rings) == 1:
            return targets[0].deliver if targets else rings[0]
        # Fan-out: rings take their reference as an ordinary consumer would.
        receivers = [*targets, *(_RingTarget(ring) for ring in rings)]
        return FanOut(receivers, stage.ctx.burst_size, stage.ctx.pool)  # type: ignore[arg-type]

    def _rings_fed(self, source: str, ring_feeds: dict[str, list[RingEdge]]) -> list[RingEdge]:
        """The ring edges a source's bursts reach through direct edges (its back-pressure)."""
        found: list[RingEdge] = []
        todo, seen = [source], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            found.extend(ring_feeds[name])
            for consumers in self.spec.consumers(name).values():
                for consumer in consumers:
                    if self.spec.stages[consumer].edge.backend is None:
                        todo.append(consumer)
        return found

    async def _start_stages(self) -> None:
        for name, stage in self._stages.items():
            try:
                await stage.start()
            except Exception as exc:
                raise PipelineError(
                    f"stage {name!r} (lcore {stage.ctx.lcore}) failed to start: "
                    f"{type(exc).__name__}: {exc}",
                    stage=name,
                    lcore=stage.ctx.lcore,
                ) from exc
            self._started_stages.append(stage)

    # -- the end -----------------------------------------------------------------

    async def _finish(self) -> None:
        stop_error: PipelineError | None = None
        for stage in self._started_stages:
            try:
                await stage.stop()
            except Exception as exc:
                if stop_error is None:
                    name = stage.ctx.name
                    stop_error = PipelineError(
                        f"stage {name!r} (lcore {stage.ctx.lcore}) failed to stop: "
                        f"{type(exc).__name__}: {exc}",
                        stage=name,
                        lcore=stage.ctx.lcore,
                    )
                    stop_error.__cause__ = exc
        self._started_stages.clear()
        self._final = self._collect()
        await self._teardown()
        self._state = "ended"
        if self._walk is not None and self._walk.failure is None and stop_error is not None:
            self._walk.failure = stop_error

    async def _teardown(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        for edge in self._edges.values():
            if edge is not None:
                edge.ring.close()
        for pool in self._pools.values():
            pool.close()
        if self._registered_lcore:
            unregister_lcore()
            self._registered_lcore = False

    def _collect(self) -> Stats:
        walk = self._walk
        if walk is None or not walk.started:
            elapsed = 0.0
        else:
            elapsed = (walk.ended or time.perf_counter()) - walk.started
        stages = {
            name: stage.stats.as_dict(stage.ctx.lcore) for name, stage in self._stages.items()
        }
        edges = {}
        for name, edge in self._edges.items():
            if edge is None:
                edges[name] = {"count": 0, "capacity": 0, "drops": 0}
            else:
                live = not edge.ring.closed
                edges[name] = {
                    "count": (edge.ring.count() + edge.backlog_n) if live else edge.backlog_n,
                    "capacity": edge.ring.capacity,
                    "drops": edge.drops,
                }
        mempools = {}
        for name, pool in self._pools.items():
            if not pool.closed:
                avail = pool.avail_count()
                mempools[name] = {"n": pool.n, "in_use": pool.n - avail, "avail": avail}
        return Stats(round(elapsed, 6), stages, edges, mempools)

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r} {self._state}, {len(self.spec.stages)} stages>"


class _RingTarget:
    """A ring edge as one receiver of a fan-out (it holds one reference)."""

    __slots__ = ("deliver",)

    def __init__(self, edge: RingEdge) -> None:
        self.deliver = edge
