"""Where each stage runs and how each edge crosses lcores: the plan every lcore builds from.

A stage runs once per lcore in its ``lcore`` list (a list of more than one:
shards, ``replica`` i of ``replicas``). An edge from a producer stage to a
consumer stage becomes *links*, one per consumer instance:

- producer and consumer instance on one lcore, no forced ``edge.backend``:
  direct (the run-to-completion walk hands the burst over);
- otherwise a ring, which every producer instance not on the consumer's
  lcore (or every one, when the ring is forced) enqueues to: SP when one
  instance writes it, MP when several shards do; always SC (one consumer
  instance per ring).

The plan is a pure function of the checked spec, so the main lcore and
every worker compute the same one, and the ring names and control words it
numbers agree without being sent anywhere.

Usage::

    plan = Placement(spec)
    plan.lcores                      # [0, 1]
    [link.name for link in plan.links_into(1)]
"""

from __future__ import annotations

from dataclasses import dataclass

from ._spec import PipelineSpec, StageSpec

__all__ = ["Link", "Placement"]

_RING_F_SP_ENQ = 0x1  # pktflow.abc's flags (the plan stays free of backends)
_RING_F_SC_DEQ = 0x2


@dataclass(frozen=True)
class Link:
    """One consumer instance's input from one producer output."""

    producer: str
    output: str
    consumer: str
    consumer_lcore: int
    producer_lcores: tuple[int, ...]  # the producer instances that feed it
    ring: bool  # False: a direct hand-over on consumer_lcore
    index: int  # position among the plan's ring links (control words, ring names)
    size: int
    full: str
    backend: str | None  # a forced backend; None: the runtime's choice

    @property
    def name(self) -> str:
        """The edge's name in stats: ``"a.out->b"``."""
        return f"{self.producer}.{self.output}->{self.consumer}"

    @property
    def flags(self) -> int:
        """Ring flags: SP when one producer instance writes it; SC always."""
        sp = _RING_F_SP_ENQ if len(self.producer_lcores) == 1 else 0
        return sp | _RING_F_SC_DEQ

    def ring_name(self, tag: str) -> str:
        """The ring's shared name for a pipeline tagged ``tag``."""
        return f"{tag}-e{self.index}"


class Placement:
    """The checked spec laid out over lcores: instances per lcore and links."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.lcores = sorted({lcore for s in spec.stages.values() for lcore in s.lcores})
        self.links: list[Link] = []
        rings = 0
        for consumer in spec.stages.values():
            for ref in consumer.inputs:
                producer = spec.stages[ref.stage]
                for lcore in consumer.lcores:
                    for link in self._links(producer, ref.output, consumer, lcore, rings):
                        rings += link.ring
                        self.links.append(link)
        self.ring_links = [link for link in self.links if link.ring]

    def _links(
        self, producer: StageSpec, output: str, consumer: StageSpec, lcore: int, rings: int
    ) -> list[Link]:
        edge = consumer.edge
        if len(consumer.lcores) > 1:  # a shard: fed by the producer's shard on its lcore
            feeders: tuple[int, ...] = (lcore,)
        else:
            feeders = tuple(producer.lcores)
        forced = edge.backend is not None
        direct = () if forced else tuple(p for p in feeders if p == lcore)
        remote = tuple(p for p in feeders if p not in direct)
        links = []
        common = dict(
            producer=producer.name, output=output, consumer=consumer.name,
            consumer_lcore=lcore, size=edge.size, full=edge.full, backend=edge.backend,
        )  # fmt: skip
        if direct:
            links.append(Link(producer_lcores=direct, ring=False, index=-1, **common))  # type: ignore[arg-type]
        if remote:
            links.append(Link(producer_lcores=remote, ring=True, index=rings, **common))  # type: ignore[arg-type]
        return links

    @property
    def multi(self) -> bool:
        """Whether any stage runs outside lcore 0 (shared pools and rings needed)."""
        return self.lcores != [0]

    def stages_on(self, lcore: int) -> list[StageSpec]:
        """The stages with an instance on ``lcore``, every one after its inputs."""
        return [s for s in self.spec.stages.values() if lcore in s.lcores]

    def links_into(self, lcore: int) -> list[Link]:
        """The links whose consumer instance runs on ``lcore``."""
        return [link for link in self.links if link.consumer_lcore == lcore]

    def links_from(self, stage: str, lcore: int) -> list[Link]:
        """The links that ``stage``'s instance on ``lcore`` feeds."""
        return [
            link for link in self.links if link.producer == stage and lcore in link.producer_lcores
        ]

    def stages_of(self, lcore: int) -> list[str]:
        """Names of the stages on ``lcore`` (for errors about it)."""
        return [s.name for s in self.stages_on(lcore)]
