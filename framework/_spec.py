"""The pipeline YAML: parsed and checked into typed structures before anything exists.

``yaml.safe_load``'s data goes through msgspec ``Struct``s (strict types:
"32" is not an int, no silent casts) section by section, so every error
knows its key; the YAML nodes give each key's line. Then the graph rules:
stage types, options against each constructor, pools, inputs, cycles,
sources with inputs, stages no source feeds. Every error is one
``ConfigError`` line: ``file:line: key: what is wrong (did you mean ...?)``.

msgspec over pydantic: it is strict by default, small, fast, and its
``convert`` validates plain data against the same types the runtime reads.

Usage::

    spec = load_spec_file("quick.yaml")      # or load_spec_text(text), load_spec_dict(d)
    spec.stages["parse"].inputs              # [InputRef('gen', 'out')]
"""

from __future__ import annotations

import builtins
import inspect
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import msgspec
import msgspec.inspect
import yaml

from ._cache import check_cache_size
from ._errors import ConfigError, PktflowValueError
from ._lcore import MAX_LCORE
from ._mbuf import PKTMBUF_HEADROOM
from ._registry import backend_names, did_you_mean
from ._stage import Source, Stage
from ._stage_types import stage_type

__all__ = [
    "ClusterSpec",
    "EdgeSpec",
    "InputRef",
    "MempoolSpec",
    "MetricsSpec",
    "PipelineSpec",
    "RuntimeSpec",
    "StageSpec",
    "load_spec_dict",
    "load_spec_file",
    "load_spec_text",
]

Poll = Literal["busy", "adaptive", "interrupt"]
HugePagesMode = Literal["auto", "require", "never"]
Full = Literal["block", "drop"]
LcoreKind = Literal["process", "thread"]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")  # matched whole (fullmatch)
DEFAULT_POOL = "pkts"

Path_ = tuple[str | int, ...]
S = TypeVar("S", bound=msgspec.Struct)


class _Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


def _about(text: str, **constraints: Any) -> msgspec.Meta:
    """A field's constraints and its meaning (the docs' YAML reference reads it)."""
    return msgspec.Meta(description=text, **constraints)


class MetricsSpec(_Spec, frozen=True):
    """``runtime.metrics:``: where the pipeline's counters are served."""

    prometheus: Annotated[
        str | None,
        _about(
            "Serve per-stage, per-edge and per-mempool counters in the Prometheus text format "
            'at "host:port" (needs the metrics extra: prometheus-client); null: off.'
        ),
    ] = None


class RuntimeSpec(_Spec, frozen=True):
    """``runtime:``: burst size, poll mode, huge pages, CPUs, yield period."""

    burst: Annotated[
        int, _about("Handles per burst: how many mbufs a source fills per poll.", ge=1, le=65535)
    ] = 32
    poll: Annotated[
        Poll,
        _about(
            "How an idle source waits: busy (spin), adaptive (spin briefly, then sleep with "
            "a growing pause up to about 1 ms) or interrupt (sleep at once, up to 10 ms)."
        ),
    ] = "adaptive"
    hugepages: Annotated[
        HugePagesMode,
        _about(
            "Where the mempools' zones live: auto (huge pages when the system has them, "
            "/dev/shm otherwise), require (huge pages or an error), never (/dev/shm)."
        ),
    ] = "auto"
    cpus: Annotated[
        list[Annotated[int, msgspec.Meta(ge=0)]] | None,
        _about(
            "The CPU of each lcore: lcore i runs on cpus[i]; null: the i-th CPU this "
            "process may use (wrapping, with a warning, when there are more lcores)."
        ),
    ] = None
    lcores: Annotated[
        dict[Annotated[int, msgspec.Meta(ge=1)], LcoreKind],
        _about(
            "How lcores other than 0 run: process (default: a spawned, pinned worker "
            "process) or thread (a pinned thread of this process, for numba nogil stages)."
        ),
    ] = {}
    yield_every: Annotated[
        int,
        _about("Bursts between yields to the event loop (stats, stop and other tasks run).", ge=1),
    ] = 64
    metrics: Annotated[
        MetricsSpec | None, _about("Where counters are served (the keys under metrics: below).")
    ] = None


class MempoolSpec(_Spec, frozen=True):
    """A mempool of mbufs: ``data_room`` bytes of data after the 128-byte headroom."""

    n: Annotated[
        int,
        _about(
            "Number of mbufs; 2^k - 1 (8191, 65535) fills the free-list ring exactly.",
            ge=1,
            le=(1 << 31) - 2,
        ),
    ]
    cache_size: Annotated[
        int,
        _about(
            "Objects each lcore keeps in its own cache (0: none); at most 512 and at most "
            "n / 1.5, DPDK's rule.",
            ge=0,
            le=512,
        ),
    ] = 256
    data_room: Annotated[
        int,
        _about(
            "Bytes of packet data after the 128-byte headroom: a buffer is data_room + 128.",
            ge=0,
            le=0xFFFF - PKTMBUF_HEADROOM,
        ),
    ] = 2048
    priv_size: Annotated[
        int,
        _about("Bytes of private area per mbuf, a multiple of 8.", ge=0, le=0xFFFF, multiple_of=8),
    ] = 0
    backend: Annotated[
        str | None,
        _about("Ring backend of the free list (pure, numba, hugepage, ...); null: the default."),
    ] = None
    hugepages: Annotated[
        HugePagesMode | None, _about("This pool's huge-page mode; null: runtime.hugepages.")
    ] = None


class EdgeSpec(_Spec, frozen=True):
    """A stage's input edges: ring ``size``, back-pressure ``full``, forced ``backend``."""

    size: Annotated[int, _about("Slots of the edge's ring, a power of two.", ge=2, le=1 << 30)] = (
        1024
    )
    full: Annotated[
        Full,
        _about(
            "When the ring is full: block (the producer is not run until there is room) or "
            "drop (count the handles in the edge's drops and free them)."
        ),
    ] = "block"
    backend: Annotated[
        str | None,
        _about(
            "Put a ring of this backend on the edge; null: none, the burst is handed over "
            "directly (same lcore)."
        ),
    ] = None
    transport: Annotated[
        Literal["zmq"],
        _about(
            "How an edge between stages on different cluster nodes carries bursts: zmq "
            "(ZeroMQ PUSH/PULL, a message per turn of the sender's walk: up to 8 bursts)."
        ),
    ] = "zmq"


class ClusterSpec(_Spec, frozen=True):
    """``cluster:``: shards on several machines (§7.7)."""

    engine: Annotated[Literal["ray"], _about("The engine that places the shards.")] = "ray"
    address: Annotated[str, _about("local, auto or host:port of the cluster.")] = "local"
    nodes: Annotated[int, _about("Number of shards, one per node.", ge=1)] = 2
    on_failure: Annotated[
        Literal["stop", "continue"],
        _about("What a lost node does: stop the pipeline, or continue without it."),
    ] = "stop"


class _StageKeys(_Spec, frozen=True):
    """The keys every stage has; the rest of its mapping are its own options."""

    type: Annotated[
        str,
        _about(
            "A built-in stage type, a name given to pktflow.register_stage or the "
            'pktflow.stages entry points, or "package.module:Class" (imports that module).'
        ),
    ]
    inputs: Annotated[
        list[str],
        _about(
            'Outputs this stage consumes: "stage" (its out output) or "stage.output"; '
            "several: fan-in. Several stages on one output: fan-out (each gets every handle)."
        ),
    ] = []
    lcore: Annotated[
        Annotated[int, msgspec.Meta(ge=0)] | list[Annotated[int, msgspec.Meta(ge=0)]],
        _about(
            "The lcore this stage runs on (0: the main lcore, the caller's event loop). "
            "A list on a source and the stages it feeds: shards, one copy of that "
            "subgraph per lcore."
        ),
    ] = 0
    burst: Annotated[
        Annotated[int, msgspec.Meta(ge=1, le=65535)] | None,
        _about("This stage's burst size; null: runtime.burst."),
    ] = None
    edge: Annotated[EdgeSpec | None, _about("Its input edges (the keys under edge: below).")] = None
    pool: Annotated[
        str | None,
        _about("The mempool its mbufs come from; may be left out when there is one mempool."),
    ] = None
    node: Annotated[
        Annotated[int, msgspec.Meta(ge=0)] | None,
        _about("The cluster node of a stage that runs once (needs cluster:)."),
    ] = None


_TOP_KEYS = ("name", "runtime", "mempools", "stages", "cluster")
_STAGE_KEYS = frozenset(f.name for f in msgspec.structs.fields(_StageKeys))


class InputRef(NamedTuple):
    """One entry of ``inputs``: a stage's output."""

    stage: str
    output: str

    def __str__(self) -> str:
        return f"{self.stage}.{self.output}"


@dataclass(frozen=True)
class StageSpec:
    """A checked stage: its class, options, pool, inputs and lcore(s)."""

    name: str
    type: str
    cls: builtins.type[Stage]
    options: dict[str, Any]
    pool: str
    inputs: list[InputRef]
    lcores: list[int]
    burst: int
    edge: EdgeSpec
    outputs: tuple[str, ...] = ()  # the class's outputs_for(options)
    node: int | None = None  # cluster: the one node it runs on; None: every node

    @property
    def is_source(self) -> bool:
        return issubclass(self.cls, Source)

    @property
    def lcore(self) -> int:
        return self.lcores[0]


@dataclass(frozen=True)
class PipelineSpec:
    """A checked pipeline: what ``Pipeline`` builds, in topological order."""

    name: str
    runtime: RuntimeSpec
    mempools: dict[str, MempoolSpec]
    stages: dict[str, StageSpec]  # every stage after its inputs
    cluster: ClusterSpec | None = None
    file: str | None = None
    lines: dict[Path_, int] = field(default_factory=dict, repr=False)

    def consumers(self, stage: str) -> dict[str, list[str]]:
        """Output name -> the stages that take it, for ``stage``."""
        table: dict[str, list[str]] = {out: [] for out in self.stages[stage].outputs}
        for other in self.stages.values():
            for ref in other.inputs:
                if ref.stage == stage:
                    table[ref.output].append(other.name)
        return table


# -- entry points -------------------------------------------------------------


def load_spec_file(path: str | Path) -> PipelineSpec:
    """Read and check a pipeline YAML file.

    Usage: ``spec = load_spec_file("pipelines/examples/quickstart.yaml")``
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the pipeline: {exc.strerror}", file=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=str(path), line=line) from None
    return load_spec_text(text, file=str(path))


def load_spec_text(text: str, *, file: str | None = None) -> PipelineSpec:
    """Check a pipeline given as YAML text (safe loading only).

    Usage: ``spec = load_spec_text(open("q.yaml").read(), file="q.yaml")``
    """
    data, lines = _load_yaml(text, file)
    return _Checker(file, lines).pipeline(data)


def load_spec_dict(data: Mapping[str, Any]) -> PipelineSpec:
    """Check a pipeline given as a mapping (what ``yaml.safe_load`` returns).

    Usage: ``spec = load_spec_dict({"name": "p", "stages": {...}})``
    """
    return _Checker(None, {}).pipeline(data)


# -- YAML with lines ------------------------------------------------------------


def _load_yaml(text: str, file: str | None) -> tuple[Any, dict[Path_, int]]:
    """The data of one YAML document and the line of every key and item in it."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        raise _reader_error(exc, text, file) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file is empty: a pipeline needs name and stages", file=file)
        lines: dict[Path_, int] = {(): node.start_mark.line + 1}
        _record_lines(node, (), lines, file, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "malformed YAML"
        raise ConfigError(f"YAML syntax: {problem}", file=file, line=line) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax: {exc}", file=file) from None
    finally:
        loader.dispose()
    return data, lines


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str | None) -> ConfigError:
    line = text[: exc.position].count("\n") + 1
    character = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return ConfigError(
        f"YAML syntax: unacceptable character #x{character:04x}: {exc.reason}",
        file=file,
        line=line,
    )


def _record_lines(
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    file: str | None,
    walked: set[int],
    above: set[int] | None = None,
) -> None:
    """Record the line of every key and item under ``node``; refuse duplicate keys.

    An alias is the same node object as its anchor: it is walked once (so
    nested aliases cannot make this exponential) and one that contains
    itself is refused. ``walked``: ids of the nodes seen; ``above``: of
    those on the path to this one.
    """
    if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        return
    above = set() if above is None else above
    if id(node) in above:
        raise ConfigError(
            "a YAML alias that contains itself", file=file, line=node.start_mark.line + 1,
            key=_dotted(path) or None,
        )  # fmt: skip
    if id(node) in walked:
        return
    walked.add(id(node))
    above.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    "this key appears twice", file=file, line=line, key=_dotted((*path, key))
                )
            seen.add(key)
            lines[(*path, key)] = line
            _record_lines(value_node, (*path, key), lines, file, walked, above)
    else:
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _record_lines(item, (*path, i), lines, file, walked, above)
    above.discard(id(node))


def _lcore_text(lcores: list[int]) -> str:
    return str(lcores[0]) if len(lcores) == 1 else str(lcores)


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- the checks -------------------------------------------------------------------


class _Checker:
    def __init__(self, file: str | None, lines: dict[Path_, int]) -> None:
        self.file = file
        self.lines = lines
        self.cluster: ClusterSpec | None = None

    def error(self, path: Path_, message: str) -> ConfigError:
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line is not None:
                break
        return ConfigError(message, file=self.file, line=line, key=_dotted(path) or None)

    def mapping(self, value: Any, path: Path_, what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"{what} must be a mapping, not {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(path, f"keys must be strings, not {_kind(key)} {key!r}")
        return value

    def unknown_keys(
        self, value: Mapping[str, Any], known: typing.Iterable[str], path: Path_
    ) -> None:
        known = list(known)
        for key in value:
            if key not in known:
                raise self.error(
                    (*path, key),
                    f"unknown key {key!r}{did_you_mean(key, known)}; known: {', '.join(known)}",
                )

    def convert(self, value: Any, cls: type[S], path: Path_, what: str) -> S:
        data = self.mapping(value if value is not None else {}, path, what)
        self.unknown_keys(data, _field_names(cls), path)
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            message, sub = _split_msgspec_error(str(exc))
            raise self.error((*path, *sub), message) from None

    # -- sections ----------------------------------------------------------

    def pipeline(self, data: Any) -> PipelineSpec:
        top = self.mapping(data, (), "a pipeline")
        self.unknown_keys(top, _TOP_KEYS, ())
        for required in ("name", "stages"):
            if required not in top:
                raise self.error((required,), f"missing key {required!r}")
        name = top["name"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise self.error(("name",), f"a pipeline name is letters, digits, _ and -: {name!r}")
        runtime = self.convert(top.get("runtime"), RuntimeSpec, ("runtime",), "runtime")
        cluster = None
        if top.get("cluster") is not None:  # laid out over nodes by pktflow._cluster_plan
            cluster = self.convert(top["cluster"], ClusterSpec, ("cluster",), "cluster")
        self.cluster = cluster
        mempools = self.mempools(top.get("mempools"))
        raw_stages = self.mapping(top["stages"], ("stages",), "stages")
        if not raw_stages:
            raise self.error(("stages",), "a pipeline needs at least one stage")
        stages = {
            name: self.stage(name, raw, runtime, mempools) for name, raw in raw_stages.items()
        }
        self.check_inputs(stages)
        ordered = self.topological(stages)
        self.check_lcores(ordered, runtime)
        return PipelineSpec(
            name=name,
            runtime=runtime,
            mempools=mempools or {DEFAULT_POOL: MempoolSpec(n=8191)},
            stages=ordered,
            cluster=cluster,
            file=self.file,
            lines=self.lines,
        )

    def mempools(self, raw: Any) -> dict[str, MempoolSpec]:
        pools: dict[str, MempoolSpec] = {}
        raw = {} if raw is None else raw
        for name, value in self.mapping(raw, ("mempools",), "mempools").items():
            path = ("mempools", name)
            if not _NAME.fullmatch(name):
                raise self.error(path, "a mempool name is letters, digits, _ and -")
            pool = self.convert(value, MempoolSpec, path, "a mempool")
            try:
                check_cache_size(pool.cache_size, pool.n)  # the rule the Mempool applies
            except PktflowValueError as exc:
                raise self.error((*path, "cache_size"), str(exc)) from None
            if pool.backend is not None:
                self.backend(pool.backend, (*path, "backend"))
            pools[name] = pool
        return pools

    def backend(self, name: str, path: Path_) -> None:
        names = backend_names()
        if name not in names:
            raise self.error(
                path,
                f"unknown ring backend {name!r}{did_you_mean(name, names)}; "
                f"known: {', '.join(names)}",
            )

    def stage(
        self, name: str, raw: Any, runtime: RuntimeSpec, mempools: dict[str, MempoolSpec]
    ) -> StageSpec:
        path: Path_ = ("stages", name)
        if not _NAME.fullmatch(name):
            raise self.error(path, "a stage name is letters, digits, _ and -")
        data = self.mapping(raw, path, "a stage")
        if "type" not in data:
            raise self.error(path, "missing key 'type'")
        known = {k: v for k, v in data.items() if k in _STAGE_KEYS}
        options = {k: v for k, v in data.items() if k not in _STAGE_KEYS}
        if isinstance(known.get("edge"), Mapping):
            self.unknown_keys(known["edge"], _field_names(EdgeSpec), (*path, "edge"))
        keys = self.convert(known, _StageKeys, path, "a stage")
        cls = self.stage_class(keys.type, (*path, "type"))
        options = self.options(cls, options, path)
        try:
            outputs = tuple(cls.outputs_for(options))
        except ConfigError as exc:  # about one option: its key under the stage's
            where = (*path, *exc.key.split(".")) if exc.key else path
            raise self.error(where, exc.reason) from None
        except (ValueError, TypeError) as exc:
            raise self.error(path, str(exc)) from None
        lcores = keys.lcore if isinstance(keys.lcore, list) else [keys.lcore]
        if not lcores:
            raise self.error((*path, "lcore"), "an empty lcore list")
        for i, lcore in enumerate(lcores):
            where = (*path, "lcore", i) if isinstance(keys.lcore, list) else (*path, "lcore")
            if lcore >= MAX_LCORE:
                raise self.error(where, f"lcore {lcore} is outside 0..{MAX_LCORE - 1}")
        if len(set(lcores)) != len(lcores):
            raise self.error((*path, "lcore"), f"an lcore appears twice in {lcores}")
        if keys.node is not None and self.cluster is None:
            raise self.error((*path, "node"), "node: needs a cluster: section")
        if keys.node is not None and self.cluster is not None and keys.node >= self.cluster.nodes:
            raise self.error(
                (*path, "node"), f"node {keys.node} is outside 0..{self.cluster.nodes - 1}"
            )
        edge = keys.edge or EdgeSpec()
        if keys.edge is not None:
            if edge.size & (edge.size - 1):
                raise self.error((*path, "edge", "size"), f"{edge.size} is not a power of two")
            if edge.backend is not None:
                self.backend(edge.backend, (*path, "edge", "backend"))
        pool = self.pool_name(keys.pool, mempools, path)
        inputs = [self.input_ref(ref, (*path, "inputs", i)) for i, ref in enumerate(keys.inputs)]
        return StageSpec(
            name=name,
            type=keys.type,
            cls=cls,
            options=options,
            pool=pool,
            inputs=inputs,
            lcores=lcores,
            burst=keys.burst or runtime.burst,
            edge=edge,
            outputs=outputs,
            node=keys.node,
        )

    def stage_class(self, type_name: str, path: Path_) -> type[Stage]:
        try:
            return stage_type(type_name)
        except ConfigError as exc:
            raise self.error(path, exc.reason) from exc.__cause__

    def options(self, cls: type[Stage], options: dict[str, Any], path: Path_) -> dict[str, Any]:
        """The stage's own options, checked against its constructor's keywords and types."""
        params = _option_params(cls)
        if params is None:  # the constructor takes **options: anything goes
            return options
        for key in options:
            if key not in params:
                choices = [*params, *_STAGE_KEYS]
                accepted = ", ".join(params) or "none"
                raise self.error(
                    (*path, key),
                    f"{cls.__name__} takes no option {key!r}{did_you_mean(key, choices)}; "
                    f"its options: {accepted}",
                )
        for key, param in params.items():
            if param.default is inspect.Parameter.empty and key not in options:
                raise self.error(path, f"{cls.__name__} needs the option {key!r}")
        hints = _option_hints(cls, params)
        checked = dict(options)
        for key, value in options.items():
            if key in hints:
                try:
                    checked[key] = msgspec.convert(value, hints[key])
                except msgspec.ValidationError as exc:
                    message, _ = _split_msgspec_error(str(exc))
                    raise self.error((*path, key), message) from None
        return checked

    def pool_name(self, pool: str | None, mempools: dict[str, MempoolSpec], path: Path_) -> str:
        if pool is None:
            if len(mempools) > 1:
                raise self.error(
                    path, f"several mempools ({', '.join(mempools)}): say which with pool:"
                )
            return next(iter(mempools), DEFAULT_POOL)
        if pool not in mempools and (mempools or pool != DEFAULT_POOL):
            declared = ", ".join(mempools) or f"none (the default is {DEFAULT_POOL!r})"
            raise self.error(
                (*path, "pool"),
                f"no mempool named {pool!r}{did_you_mean(pool, mempools)}; declared: {declared}",
            )
        return pool

    def input_ref(self, ref: str, path: Path_) -> InputRef:
        stage, _, output = ref.partition(".")
        if not stage or (ref.count(".") and not output):
            raise self.error(path, f"an input is 'stage' or 'stage.output', not {ref!r}")
        return InputRef(stage, output or "out")

    def check_inputs(self, stages: dict[str, StageSpec]) -> None:
        for spec in stages.values():
            path: Path_ = ("stages", spec.name, "inputs")
            if spec.is_source and spec.inputs:
                raise self.error(
                    path, f"{spec.name!r} is a source ({spec.type}): it takes no inputs"
                )
            if not spec.is_source and not spec.inputs:
                raise self.error(
                    ("stages", spec.name),
                    f"no source feeds {spec.name!r}: give it inputs (e.g. inputs: [gen])",
                )
            for i, ref in enumerate(spec.inputs):
                if ref.stage not in stages:
                    raise self.error(
                        (*path, i),
                        f'no stage named "{ref.stage}"{did_you_mean(ref.stage, stages)}',
                    )
                outputs = stages[ref.stage].outputs
                if ref.output not in outputs:
                    raise self.error(
                        (*path, i),
                        f"stage {ref.stage!r} has no output {ref.output!r}"
                        f"{did_you_mean(ref.output, outputs)}; its outputs: "
                        f"{', '.join(outputs) or 'none'}",
                    )
                if ref.stage == spec.name:
                    raise self.error((*path, i), f"{spec.name!r} cannot feed itself")
            if len(set(spec.inputs)) != len(spec.inputs):
                raise self.error(path, "the same input is named twice")

    def check_lcores(self, stages: dict[str, StageSpec], runtime: RuntimeSpec) -> None:
        """Shards take their inputs from the same shards; thread lcores name used lcores."""
        for spec in stages.values():
            if len(spec.lcores) == 1 or spec.is_source:
                continue
            for ref in spec.inputs:
                upstream = stages[ref.stage]
                if upstream.lcores != spec.lcores:
                    raise self.error(
                        ("stages", spec.name, "lcore"),
                        f"a sharded stage (lcore {spec.lcores}) is fed by its own shard on "
                        f"each lcore, but input {ref} runs on lcore "
                        f"{_lcore_text(upstream.lcores)}: give both the same lcore list, or "
                        f"split the traffic with a balance stage",
                    )
        used = {lcore for spec in stages.values() for lcore in spec.lcores}
        for lcore in runtime.lcores:
            if lcore not in used:
                raise self.error(
                    ("runtime", "lcores", str(lcore)),  # as the YAML key reads
                    f"no stage runs on lcore {lcore} (stages use {sorted(used)})",
                )
        if runtime.cpus is not None and len(runtime.cpus) < max(used) + 1:
            raise self.error(
                ("runtime", "cpus"),
                f"{len(runtime.cpus)} CPUs for lcores 0..{max(used)}: name one per lcore",
            )

    def topological(self, stages: dict[str, StageSpec]) -> dict[str, StageSpec]:
        """Stages with every stage after its inputs; cycles are errors."""
        ordered: dict[str, StageSpec] = {}
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = [*trail[trail.index(name) :], name][::-1]  # in the data's direction
                raise self.error(
                    ("stages", name, "inputs"), f"the inputs form a cycle: {' -> '.join(cycle)}"
                )
            state[name] = 1
            for ref in stages[name].inputs:
                visit(ref.stage, [*trail, name])
            state[name] = 2
            ordered[name] = stages[name]

        for name in stages:
            visit(name, [])
        return ordered


def _field_names(cls: type[msgspec.Struct]) -> list[str]:
    return [f.name for f in msgspec.structs.fields(cls)]


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


_MSGSPEC_AT = re.compile(r"^(.*) - at `\$(.*)`$", re.S)
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _split_msgspec_error(text: str) -> tuple[str, Path_]:
    """msgspec's "Expected `int`, got `str` - at `$.edge.size`" as (message, path)."""
    match = _MSGSPEC_AT.match(text)
    message, where = (match.group(1), match.group(2)) if match else (text, "")
    path: list[str | int] = []
    for name, index in _PATH_PART.findall(where):
        path.append(name if name else int(index))
    message = message.replace("`", "")
    return message[:1].lower() + message[1:], tuple(path)


def _option_params(cls: type[Stage]) -> dict[str, inspect.Parameter] | None:
    """The constructor's option keywords (after ``ctx``), or None if it takes ``**``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, ctx
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {
        p.name: p
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def _option_hints(cls: type[Stage], params: dict[str, inspect.Parameter]) -> dict[str, Any]:
    """Type hints of the options that msgspec can check.

    Each annotation is resolved on its own, so one that cannot be (a name
    imported only for type checkers) leaves just that option unchecked.
    """
    init = cls.__init__
    raw = getattr(init, "__annotations__", {})
    namespace = getattr(init, "__globals__", {})
    checked = {}
    for name in params:
        if name not in raw:
            continue
        holder = types.SimpleNamespace(__annotations__={name: raw[name]})
        try:
            hint = typing.get_type_hints(holder, globalns=namespace, include_extras=True)[name]
            if hint is Any:
                continue
            msgspec.inspect.type_info(hint)  # a type msgspec knows, or TypeError
        except Exception:
            continue  # left to the constructor
        checked[name] = hint
    return checked
