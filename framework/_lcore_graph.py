"""One lcore's part of a pipeline: its stage instances, wired, and the walk that runs them.

The main lcore and every worker build theirs the same way from the same
placement: make each stage instance on this lcore (``ctx.replica`` of
``ctx.replicas`` for shards), then give every output its outlet — direct
inlets of consumers here, ring outlets towards other lcores, or the
unconsumed drop — and the walk its sources, ring inputs and end rules.

Usage::

    graph = LcoreGraph(plan, lcore, pools, rings, control)
    await graph.start_stages()
    await graph.walk.run()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ._errors import ConfigError, PipelineError
from ._stage import Burst, Outlet, Source, Stage, StageContext
from ._walk import (
    AsyncInlet,
    FanOut,
    Finish,
    Inlet,
    RingInlet,
    RingOutlet,
    SourceRun,
    Walk,
    make_inlet,
    unconsumed,
)  # fmt: skip

if TYPE_CHECKING:
    from ._control import Control
    from ._mbuf import PktmbufPool
    from ._placement import Link, Placement
    from ._ring import Ring
    from ._spec import StageSpec

__all__ = ["LcoreGraph", "release"]


class LcoreGraph:
    """The stage instances of one lcore and their walk."""

    def __init__(
        self,
        plan: Placement,
        lcore: int,
        pools: Mapping[str, PktmbufPool],
        rings: Mapping[int, Ring],
        control: Control,
    ) -> None:
        self.plan = plan
        self.lcore = lcore
        self.pools = pools
        self.rings = rings
        self.control = control
        self.stages: dict[str, Stage] = {}
        self.outlets: list[RingOutlet] = []  # ring links this lcore feeds
        self.started: list[Stage] = []
        for spec in plan.stages_on(lcore):
            self.stages[spec.name] = self._make_stage(spec)
        self.walk = Walk(lcore, plan.spec.runtime, control)
        self.walk.stages = list(self.stages.values())
        self._wire()
        self.walk.prepare_sleep()

    def _make_stage(self, spec: StageSpec) -> Stage:
        ctx = StageContext(
            spec.name,
            lcore=self.lcore,
            pool=self.pools[spec.pool],
            pools=dict(self.pools),
            burst_size=spec.burst,
            options=spec.options,
            replica=spec.lcores.index(self.lcore),
            replicas=len(spec.lcores),
        )
        pipeline = self.plan.spec
        try:
            stage = spec.cls(ctx, **spec.options)
        except Exception as exc:
            options = ", ".join(f"{k}={v!r}" for k, v in spec.options.items())
            raise ConfigError(
                f"{spec.cls.__name__}({options}) failed: {exc}",
                file=pipeline.file,
                line=pipeline.lines.get(("stages", spec.name)),
                key=f"stages.{spec.name}",
            ) from exc
        if not isinstance(stage, Stage) or not hasattr(stage, "_outlets"):
            raise ConfigError(
                f"{spec.cls.__name__}.__init__ must call super().__init__(ctx)",
                file=pipeline.file,
                key=f"stages.{spec.name}",
            )
        return stage

    def _wire(self) -> None:
        plan, lcore, walk = self.plan, self.lcore, self.walk
        inlets: dict[tuple[str, str, str], Inlet] = {}  # (producer, output, consumer)
        ring_inputs: dict[str, list[RingInlet]] = {name: [] for name in self.stages}
        upstream: dict[str, list[str]] = {name: [] for name in self.stages}
        for link in plan.links_into(lcore):
            consumer = self.stages[link.consumer]
            key = (link.producer, link.output, link.consumer)
            if key not in inlets:
                inlets[key] = make_inlet(consumer, f"{link.producer}.{link.output}", walk.pending)
            if link.ring:
                edge = RingInlet(
                    link.name, self.rings[link.index], inlets[key], consumer.ctx.pool,
                    burst_size=consumer.ctx.burst_size, control=self.control,
                    flags=[self.control.flag_index(link, p) for p in link.producer_lcores],
                    block=link.full == "block",
                )  # fmt: skip
                walk.inputs.append(edge)
                ring_inputs[link.consumer].append(edge)
            else:
                upstream[link.consumer].append(link.producer)
        feeds: dict[str, list[RingOutlet]] = {name: [] for name in self.stages}
        for name, stage in self.stages.items():
            for output in plan.spec.stages[name].outputs:
                targets: list[Inlet] = []
                rings: list[RingOutlet] = []
                for link in plan.links_from(name, lcore):
                    if link.output != output:
                        continue
                    if link.ring:
                        rings.append(self._outlet_for(link, stage))
                    else:
                        targets.append(inlets[(name, output, link.consumer)])
                stage._outlets[output] = _outlet(stage, targets, rings)
                feeds[name].extend(rings)
        walk.outlets = [outlet for outs in feeds.values() for outlet in outs]
        for name, stage in self.stages.items():
            source = None
            if isinstance(stage, Source):
                burst = Burst(np.empty(stage.ctx.burst_size, np.uint32), stage.ctx.pool)
                source = SourceRun(stage, burst, self._rings_fed(name, feeds))
                walk.sources.append(source)
            walk.order.append(Finish(name, source, tuple(upstream[name]), tuple(ring_inputs[name])))
        walk.has_async = any(isinstance(inlet, AsyncInlet) for inlet in inlets.values())

    def _outlet_for(self, link: Link, stage: Stage) -> RingOutlet:
        return RingOutlet(
            link.name, self.rings[link.index], stage.ctx.pool,
            full=link.full, burst_size=stage.ctx.burst_size, producer=stage.ctx.name,
            control=self.control, flag=self.control.flag_index(link, self.lcore),
        )  # fmt: skip

    def _rings_fed(self, source: str, feeds: dict[str, list[RingOutlet]]) -> list[RingOutlet]:
        """The ring outlets a source's bursts reach through direct links (its back-pressure)."""
        found: list[RingOutlet] = []
        todo, seen = [source], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            found.extend(feeds[name])
            for link in self.plan.links_from(name, self.lcore):
                if not link.ring:
                    todo.append(link.consumer)
        return found

    async def start_stages(self) -> None:
        """Run every stage's ``start()`` here, in order; ``PipelineError`` naming a failure."""
        for name, stage in self.stages.items():
            try:
                await stage.start()
            except Exception as exc:
                raise PipelineError(
                    f"stage {name!r} (lcore {self.lcore}) failed to start: "
                    f"{type(exc).__name__}: {exc}",
                    stage=name,
                    lcore=self.lcore,
                ) from exc
            self.started.append(stage)

    async def stop_stages(self) -> PipelineError | None:
        """Run every started stage's ``stop()``; the first failure, or None."""
        error: PipelineError | None = None
        for stage in self.started:
            try:
                await stage.stop()
            except Exception as exc:
                if error is None:
                    name = stage.ctx.name
                    error = PipelineError(
                        f"stage {name!r} (lcore {self.lcore}) failed to stop: "
                        f"{type(exc).__name__}: {exc}",
                        stage=name,
                        lcore=self.lcore,
                    )
                    error.__cause__ = exc
        self.started.clear()
        return error


def release(
    rings: Mapping[int, Ring], pools: Mapping[str, PktmbufPool], control: Control | None
) -> None:
    """Close an lcore's rings, pools and control block (the creator's close removes them)."""
    for ring in rings.values():
        ring.close()
    for pool in pools.values():
        pool.close()
    if control is not None:
        control.close()


def _outlet(stage: Stage, targets: list[Inlet], rings: list[RingOutlet]) -> Outlet:
    if not targets and not rings:
        return unconsumed(stage)
    if len(targets) + len(rings) == 1:
        return targets[0].deliver if targets else rings[0]
    # Fan-out: rings take their reference as an ordinary consumer would.
    receivers = [*targets, *(_RingTarget(ring) for ring in rings)]
    return FanOut(receivers, stage.ctx.burst_size, stage.ctx.pool)  # type: ignore[arg-type]


class _RingTarget:
    """A ring outlet as one receiver of a fan-out (it holds one reference)."""

    __slots__ = ("deliver",)

    def __init__(self, outlet: RingOutlet) -> None:
        self.deliver = outlet
