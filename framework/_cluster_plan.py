"""A cluster pipeline laid out over nodes: which stages run where, and its remote edges.

A stage runs on every node unless it names ``node: N``. An edge whose two
ends sit on different nodes is a *remote edge*: the producer's node gets a
``RemoteSend`` sink fed by the producer (on the producer's lcores), the
consumer's node a ``RemoteReceive`` source on lcore 0 that feeds the
consumer (through a ring when the consumer runs on another lcore). Every
real source becomes a ``NodeShare`` so its replica counts across the
cluster. Each node's spec is an ordinary ``PipelineSpec`` without
``cluster``: the node-local runtime builds and runs it unchanged.

The rules (each a ``ConfigError`` naming the key):

- a stage on every node takes inputs that run on every node (each node's
  copy feeds its own; pin the consumer with ``node:`` to gather);
- a stage fed by a remote edge runs on one lcore;
- data may cross from a node to another and come back only where a
  sender ends with its sources (they feed it on its own lcores, directly):
  a sender that ends only with its node makes that node's end wait on the
  receiving node's, and a cycle of those would wait on itself.

Usage::

    plan = ClusterPlan(spec)
    plan.remote                                  # [RemoteEdge("parse.out->total", ...)]
    node_spec = plan.node_spec(1, endpoints, count=None)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._cluster_stages import COALESCE, NodeShare, RemoteReceive, RemoteSend
from ._errors import ConfigError
from ._spec import ClusterSpec, EdgeSpec, InputRef, PipelineSpec, StageSpec

__all__ = ["ClusterPlan", "RemoteEdge"]

# High-water marks count messages, each up to COALESCE bursts: edge.size packets
# in full messages, and at least this many messages per remote edge.
MIN_HWM = 8


@dataclass(frozen=True)
class RemoteEdge:
    """One consumer's input from a producer output, crossing nodes."""

    key: str  # "e0": names its receiver in the consumer's shard
    producer: str
    output: str
    consumer: str
    consumer_node: int
    producer_nodes: tuple[int, ...]  # the nodes whose producer copies send
    full: str
    hwm: int
    burst: int
    transport: str = "zmq"

    @property
    def name(self) -> str:
        """The edge's name in stats, as on one machine: ``"a.out->b"``."""
        return f"{self.producer}.{self.output}->{self.consumer}"

    @property
    def send_stage(self) -> str:
        return f"{self.name}:send"

    @property
    def receive_stage(self) -> str:
        return f"{self.name}:receive"


class ClusterPlan:
    """The checked spec over ``cluster.nodes`` nodes (see the module docstring)."""

    def __init__(self, spec: PipelineSpec) -> None:
        if spec.cluster is None:
            raise ValueError("ClusterPlan needs a spec with cluster:")
        self.spec = spec
        self.cluster: ClusterSpec = spec.cluster
        self.count = self.cluster.nodes
        self.remote: list[RemoteEdge] = []
        for consumer in spec.stages.values():
            for ref in consumer.inputs:
                self._edge(spec.stages[ref.stage], ref, consumer)
        # (edge key, producer node) -> the sources whose end is the sender's end there,
        # or None when the sender ends only with its node (see _direct_sources).
        self.feeders = {
            (e.key, n): self._direct_sources(n, spec.stages[e.producer])
            for e in self.remote
            for n in e.producer_nodes
        }
        self.order = self._node_order()

    def nodes_of(self, stage: StageSpec) -> list[int]:
        """The nodes ``stage`` runs on."""
        node = _node(stage)
        return list(range(self.count)) if node is None else [node]

    def _error(self, path: tuple[str, ...], message: str) -> ConfigError:
        line = None
        for cut in range(len(path), 0, -1):
            line = self.spec.lines.get(path[:cut])
            if line is not None:
                break
        return ConfigError(message, file=self.spec.file, line=line, key=".".join(path))

    def _edge(self, producer: StageSpec, ref: InputRef, consumer: StageSpec) -> None:
        p_node, c_node = _node(producer), _node(consumer)
        if c_node is None:
            if p_node is not None and self.count > 1:
                raise self._error(
                    ("stages", consumer.name, "inputs"),
                    f"{consumer.name!r} runs on every node, but its input {ref} runs only on "
                    f"node {p_node}: pin {consumer.name!r} with node:, or run "
                    f"{producer.name!r} on every node",
                )
            return
        senders = tuple(n for n in self.nodes_of(producer) if n != c_node)
        if not senders:
            return
        if len(consumer.lcores) != 1:
            raise self._error(
                ("stages", consumer.name, "lcore"),
                f"{consumer.name!r} is fed across nodes (by {ref}): it runs on one lcore, "
                f"not {consumer.lcores}",
            )
        burst = max(producer.burst, consumer.burst)
        self.remote.append(
            RemoteEdge(
                key=f"e{len(self.remote)}",
                producer=producer.name,
                output=ref.output,
                consumer=consumer.name,
                consumer_node=c_node,
                producer_nodes=senders,
                full=consumer.edge.full,
                hwm=max(MIN_HWM, -(-consumer.edge.size // (burst * COALESCE))),
                burst=burst,
                transport=consumer.edge.transport,
            )
        )

    def _direct_sources(self, node: int, producer: StageSpec) -> list[str] | None:
        """The sources feeding ``producer`` on ``node`` when all of them are on its lcores,
        handing over directly (no ring, no remote edge): their end is the sender's end."""
        spec, found, todo, seen = self.spec, [], [producer.name], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            s = spec.stages[name]
            if s.lcores != producer.lcores or s.edge.backend is not None:
                return None
            if any(e.consumer == name and e.consumer_node == node for e in self.remote):
                return None
            if s.is_source:
                found.append(name)
            todo.extend(
                ref.stage for ref in s.inputs if node in self.nodes_of(spec.stages[ref.stage])
            )
        return sorted(found)

    def _node_order(self) -> list[int]:
        """Nodes, every one after the nodes that send to it.

        Only senders that end with their node count: a cycle of those would
        wait on itself (an error); a sender that ends with its sources breaks one.
        """
        every: dict[int, set[int]] = {n: set() for n in range(self.count)}
        late: dict[int, set[int]] = {n: set() for n in range(self.count)}
        for edge in self.remote:
            every[edge.consumer_node].update(edge.producer_nodes)
            late[edge.consumer_node].update(
                n for n in edge.producer_nodes if self.feeders[(edge.key, n)] is None
            )
        try:
            return self._topological(every)  # stop() drains every remote edge
        except ConfigError:
            return self._topological(late)  # a cycle: stop() drains what it can

    def _topological(self, into: dict[int, set[int]]) -> list[int]:
        order: list[int] = []
        state: dict[int, int] = {}

        def visit(node: int, trail: list[int]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                cycle = " -> ".join(str(n) for n in [*trail[trail.index(node) :], node][::-1])
                raise self._error(
                    ("stages",),
                    f"data crosses from node to node and back ({cycle}): not supported "
                    "(each node's stream ends after its upstream nodes' streams)",
                )
            state[node] = 1
            for upstream in sorted(into[node]):
                visit(upstream, [*trail, node])
            state[node] = 2
            order.append(node)

        for node in range(self.count):
            visit(node, [])
        return order

    def receivers_on(self, node: int) -> list[RemoteEdge]:
        """The remote edges whose receiver runs on ``node``."""
        return [edge for edge in self.remote if edge.consumer_node == node]

    def count_shares(self, count: int | None) -> dict[tuple[str, int, int], int | None]:
        """(source, node, lcore) -> its share of ``run(count=N)``; all None without N."""
        instances = [
            (s.name, node, lcore)
            for s in self.spec.stages.values()
            if s.is_source
            for node in self.nodes_of(s)
            for lcore in s.lcores
        ]
        if count is None or not instances:
            return dict.fromkeys(instances)
        share, extra = divmod(count, len(instances))
        return {key: share + (i < extra) for i, key in enumerate(instances)}

    def senders_to(self, node: int) -> set[int]:
        """The nodes with a sender to a receiver on ``node``."""
        return {n for e in self.receivers_on(node) for n in e.producer_nodes}

    def node_spec(
        self, node: int, endpoints: dict[str, str], count: int | None = None, tag: str = ""
    ) -> PipelineSpec:
        """The ordinary pipeline spec node ``node`` runs (no ``cluster``)."""
        spec = self.spec
        shares = self.count_shares(count)
        stages: dict[str, StageSpec] = {}
        for s in spec.stages.values():
            if node not in self.nodes_of(s):
                continue
            inputs = []
            for ref in s.inputs:
                if node in self.nodes_of(spec.stages[ref.stage]):
                    inputs.append(ref)
            for edge in self.remote:
                if edge.consumer == s.name and edge.consumer_node == node:
                    receive = self._receive_stage(edge, s)
                    stages[receive.name] = receive
                    inputs.append(InputRef(receive.name, "out"))
            if s.is_source:
                s = self._share(s, node, shares, tag)
            stages[s.name] = replace(s, inputs=inputs)
            for edge in self.remote:
                if edge.producer == s.name and node in edge.producer_nodes:
                    send = self._send_stage(edge, s, node, endpoints[edge.key], tag)
                    stages[send.name] = send
        return replace(spec, stages=stages, cluster=None)

    def _share(
        self, s: StageSpec, node: int, shares: dict[tuple[str, int, int], int | None], tag: str
    ) -> StageSpec:
        nodes = self.nodes_of(s)
        limits = [shares[(s.name, node, lcore)] for lcore in s.lcores]
        options = {
            "stage": f"{s.cls.__module__}:{s.cls.__qualname__}",
            "options": dict(s.options),
            "base": nodes.index(node) * len(s.lcores),
            "replicas": len(nodes) * len(s.lcores),
            "limits": None if all(v is None for v in limits) else limits,
            "tag": tag,
        }
        return replace(s, cls=NodeShare, options=options)

    def _send_stage(
        self, edge: RemoteEdge, producer: StageSpec, node: int, endpoint: str, tag: str
    ) -> StageSpec:
        options = {
            "endpoint": endpoint, "node": node, "full": edge.full, "hwm": edge.hwm,
            "tag": tag, "feeders": self.feeders[(edge.key, node)], "to_node": edge.consumer_node,
            "transport_name": edge.transport,
        }  # fmt: skip
        return StageSpec(
            name=edge.send_stage, type="remote_send", cls=RemoteSend, options=options,
            pool=producer.pool, inputs=[InputRef(edge.producer, edge.output)],
            lcores=list(producer.lcores), burst=producer.burst, edge=EdgeSpec(), outputs=(),
        )  # fmt: skip

    def _receive_stage(self, edge: RemoteEdge, consumer: StageSpec) -> StageSpec:
        producer = self.spec.stages[edge.producer]
        senders = [[n, r] for n in edge.producer_nodes for r in range(len(producer.lcores))]
        return StageSpec(
            name=edge.receive_stage, type="remote_receive", cls=RemoteReceive,
            options={"edge": edge.key, "senders": senders},
            pool=consumer.pool, inputs=[], lcores=[0], burst=edge.burst, edge=EdgeSpec(),
            outputs=("out",),
        )  # fmt: skip


def _node(stage: StageSpec) -> int | None:
    return getattr(stage, "node", None)
