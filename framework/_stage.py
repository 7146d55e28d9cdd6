"""The stage API: what a user writes to handle bursts of mbuf handles.

A stage is DPDK's graph node written in Python: it receives a ``Burst`` (a
reused uint32 array of handles and a count), works on the packets through
jitted kernels over ``pool.headers`` and the pool's data, and gives every
handle to exactly one of ``emit``, ``drop`` or ``free``. A ``Source`` fills
bursts instead of receiving them. The runtime (``_walk.py``) wires each
stage's outputs when the pipeline is built; this module only knows that an
output is a callable taking a burst.

Usage::

    class Tag(pktflow.Stage):
        def process(self, burst: pktflow.Burst) -> None:
            self.ctx.pool.headers["port"][burst.handles] = 7
            self.emit(burst)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from ._errors import MbufError, PipelineError, PktflowTypeError

if TYPE_CHECKING:
    from ._mbuf import PktmbufPool
    from .abc import U32Array

__all__ = ["Burst", "Outlet", "Source", "Stage", "StageContext", "StageStats"]

# What ``Burst.take`` accepts: a mask over the handles, indices into them, a slice.
Selection = npt.NDArray[np.bool_] | npt.NDArray[np.integer[Any]] | Sequence[int] | slice

# An output as the runtime wires it: called with a non-empty burst, it takes
# the burst's handles (delivers, enqueues or frees them) and returns.
Outlet = Callable[["Burst"], None]


class StageStats:
    """One stage's counters; plain ints the runtime adds to per burst.

    ``handed`` counts every handle the stage gave away (emitted, dropped or
    freed); ``packets_out`` is what of it was emitted to a consumer.
    ``drops`` counts what the stage dropped (``drop()``, an output nothing
    consumes); what a sink frees with ``free()`` is not a drop.

    Usage: ``ctx.stats.packets_in``
    """

    __slots__ = ("bursts", "bytes_in", "drops", "freed", "handed", "packets_in")

    def __init__(self) -> None:
        self.packets_in = 0
        self.bytes_in = 0
        self.bursts = 0
        self.handed = 0
        self.drops = 0
        self.freed = 0

    @property
    def packets_out(self) -> int:
        """Handles emitted to consumers."""
        return self.handed - self.drops - self.freed

    def as_dict(self, lcore: int) -> dict[str, int]:
        """The JSON form of ``Stats.as_dict()["stages"][name]``."""
        return {
            "lcore": lcore,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "bytes_in": self.bytes_in,
            "drops": self.drops,
            "bursts": self.bursts,
        }


class StageContext:
    """What a stage knows of where it runs: its name, lcore, pools and options.

    Usage: ``self.ctx.pool.headers["pkt_len"][burst.handles]``
    """

    def __init__(
        self,
        name: str,
        *,
        lcore: int,
        pool: PktmbufPool,
        pools: Mapping[str, PktmbufPool],
        burst_size: int,
        options: Mapping[str, Any],
        replica: int = 0,
        replicas: int = 1,
    ) -> None:
        self.name = name
        self.lcore = lcore
        self.pool = pool
        self.pools = pools
        self.burst_size = burst_size
        self.options = options
        self.replica = replica
        self.replicas = replicas
        self.stats = StageStats()

    def __repr__(self) -> str:
        return f"<StageContext {self.name!r} lcore={self.lcore} pool={self.pool.name!r}>"


class Burst:
    """A reused array of mbuf handles: ``handles`` is ``array[:n]``.

    The runtime owns bursts and their arrays; a stage must not keep one
    after ``process`` returns, nor rebind ``array`` (kernels find the
    handles by its address). ``take`` selects some handles into a new
    burst (for splitting), leaving this one unchanged.

    Usage::

        small = burst.take(pool.headers["pkt_len"][burst.handles] < 128)
        self.emit(small, "small")
    """

    __slots__ = (
        "_address", "_free_bound", "_holder", "_sent", "array", "capacity", "input", "n",
        "nbytes", "pool",
    )  # fmt: skip

    def __init__(self, array: U32Array, pool: PktmbufPool) -> None:
        self.array = array
        # Where its handles are, for kernels called with addresses (0: not contiguous).
        self._address: int = array.ctypes.data if array.flags.c_contiguous else 0
        # Length of ``array``: the most handles this burst can hold.
        self.capacity: int = array.shape[0]
        self.n = 0
        self.pool = pool
        # The input edge the burst arrived on ("gen.out"), set per delivery.
        self.input = ""
        # Bytes of its packets (sum of pkt_len) as it reached the current
        # stage; -1 until the runtime counts them (a source that knows may set it).
        self.nbytes = -1
        # The stage holding the burst now: its take buffers serve ``take``.
        self._holder: Stage | None = None
        # Set when the stage that made this burst by ``take`` passed it on.
        self._sent = False
        # (pool, its free_bulk bound to ``array``): one compiled call per free.
        self._free_bound: tuple[PktmbufPool, Callable[[int], int]] | None = None

    @property
    def handles(self) -> U32Array:
        """The handles, ``array[:n]`` (a view)."""
        return self.array[: self.n]

    def take(self, selection: Selection) -> Burst:
        """A new burst of the selected handles: a boolean mask over ``handles``,
        indices into it, or a slice. Each handle must then leave through one burst.

        Usage: ``bad = burst.take(slice(k, burst.n))``
        """
        holder = self._holder
        if holder is None:
            raise PipelineError("take() is for a burst a stage is processing")
        chosen = self.array[: self.n][selection]
        if not isinstance(chosen, np.ndarray) or chosen.ndim != 1:
            raise PktflowTypeError("take() needs a mask, an index array or a slice")
        out = holder._take_buffer(self.capacity)
        k = chosen.shape[0]
        out.array[:k] = chosen
        out.n = k
        out.nbytes = -1  # not counted: a stage taking it computes it if it needs it
        out.pool = self.pool
        out.input = self.input
        out._holder = holder
        return out

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"<Burst n={self.n} capacity={self.capacity} input={self.input!r}>"


def foreign_burst(burst: Burst) -> MbufError:
    """The error for a burst holding a handle that is not an mbuf of its pool."""
    return MbufError(
        f"a burst of {burst.n} handles holds one that is not an mbuf of pool "
        f"{getattr(burst.pool, 'name', None)!r}"
    )


def _unwired(burst: Burst) -> None:
    raise PipelineError("this stage is not part of a running pipeline")


class Stage:
    """A step of a pipeline: receives bursts, emits, drops or frees their handles.

    Subclasses set ``outputs`` (default ``("out",)``), take their YAML
    options as keyword-only constructor arguments, and implement
    ``process`` (plain or ``async def``). ``start``/``stop`` run once on
    the stage's lcore, before the first burst and after the last.

    Usage::

        class Tag(pktflow.Stage):
            def __init__(self, ctx, *, mark: int = 7):
                super().__init__(ctx)
                self.mark = mark

            def process(self, burst):
                self.ctx.pool.headers["port"][burst.handles] = self.mark
                self.emit(burst)
    """

    # Not a ClassVar: a stage whose outputs depend on its options (``balance``)
    # sets ``self.outputs`` before ``super().__init__`` and overrides ``outputs_for``.
    outputs: tuple[str, ...] = ("out",)
    # True when ``process`` never changes a packet's length: the runtime then
    # reuses a burst's byte count downstream instead of summing pkt_len again.
    keeps_lengths: ClassVar[bool] = False

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.stats = ctx.stats
        # Output name -> what taking a burst means there; wired by the runtime.
        self._outlets: dict[str, Outlet] = dict.fromkeys(self.outputs, _unwired)
        self._takes: list[Burst] = []
        self._takes_used = 0

    @classmethod
    def outputs_for(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The outputs a stage of this class has with these (checked) YAML options.

        ``outputs`` by default. A stage whose outputs depend on its options
        overrides this and sets ``self.outputs`` to the same before
        ``super().__init__``; the YAML checks read it to validate inputs.

        Usage: ``Balance.outputs_for({"ways": 4})  # ('out0', 'out1', 'out2', 'out3')``
        """
        return cls.outputs

    def process(self, burst: Burst) -> Any:
        """Handle one burst: every handle to ``emit``, ``drop`` or ``free``.

        Usage: ``self.emit(burst)``
        """
        raise PipelineError(f"stage {self.ctx.name!r} ({type(self).__name__}) has no process()")

    async def start(self) -> None:
        """Run once on the stage's lcore before the first burst (optional)."""

    async def stop(self) -> None:
        """Run once on the stage's lcore after the last burst (optional)."""

    def emit(self, burst: Burst, output: str = "out") -> None:
        """Pass the burst's handles on through ``output``; never blocks.

        An empty burst does nothing; handles emitted to an output nothing
        consumes are dropped and counted.

        Usage: ``self.emit(burst, "invalid")``
        """
        n = burst.n
        if n:
            # Read only for this stage's own takes (_unsent_handles): a take is
            # passed on by the stage that made it before anyone else can.
            burst._sent = True
            self.stats.handed += n
            if not self.keeps_lengths:
                burst.nbytes = -1
            try:
                outlet = self._outlets[output]
            except KeyError:
                raise PipelineError(
                    f"stage {self.ctx.name!r} has no output {output!r}; "
                    f"declared: {', '.join(self.outputs)}"
                ) from None
            outlet(burst)

    def drop(self, burst: Burst) -> None:
        """Free the burst's handles and count them as this stage's drops.

        Usage: ``self.drop(burst)``
        """
        self.stats.drops += burst.n
        self._give_back(burst)

    def free(self, burst: Burst) -> None:
        """Free the burst's handles: what a sink does with what it consumed.

        Usage: ``self.free(burst)``
        """
        # _give_back and _free, inlined: a sink runs this for every burst.
        n = burst.n
        stats = self.stats
        stats.freed += n
        if n:
            burst._sent = True
            stats.handed += n
            pool = burst.pool
            bound = burst._free_bound
            if bound is None or bound[0] is not pool:
                bound = burst._free_bound = (pool, pool.bind(burst.array).free_bulk)
            done = bound[1](n)
            if done != n:
                _free_rest(burst, done)

    def _give_back(self, burst: Burst) -> None:
        n = burst.n
        if n:
            burst._sent = True
            self.stats.handed += n
            _free(burst)

    def _take_buffer(self, capacity: int) -> Burst:
        used = self._takes_used
        if used == len(self._takes) or self._takes[used].capacity < capacity:
            array = np.empty(max(capacity, self.ctx.burst_size), dtype=np.uint32)
            buffer = Burst(array, self.ctx.pool)
            if used == len(self._takes):
                self._takes.append(buffer)
            else:
                self._takes[used] = buffer
        self._takes_used = used + 1
        buffer = self._takes[used]
        buffer._sent = False
        return buffer

    def _unsent_handles(self, burst: Burst, accounted: int) -> U32Array:
        """What this stage still held of ``burst`` when it failed, having
        passed on ``accounted`` handles during that call."""
        handles = burst.array[: burst.n]
        if accounted == 0:
            return handles
        if accounted >= burst.n:
            return handles[:0]
        sent = [t.array[: t.n] for t in self._takes[: self._takes_used] if t._sent]
        if not sent:
            return handles[:0]
        return np.setdiff1d(handles, np.concatenate(sent)).astype(np.uint32)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ctx.name!r}>"


class Source(Stage):
    """A stage that makes packets: ``poll`` fills a burst with mbufs it allocated.

    A source may set ``burst.nbytes`` (the sum of the packets' lengths)
    when it knows it; else the runtime counts it where it is needed.

    ``poll`` (plain or ``async def``) returns how many handles it put in
    ``burst.array`` (0: nothing now; the runtime polls again after a
    back-off that depends on the poll mode), or None when the source is
    exhausted. The runtime emits what it returns through ``out``.

    Usage::

        class Numbers(pktflow.Source):
            def poll(self, burst):
                return self.ctx.pool.alloc_bulk(burst.array, burst.capacity)
    """

    keeps_lengths: ClassVar[bool] = True  # what it emits is what it made

    def poll(self, burst: Burst) -> Any:
        """Fill ``burst.array[:k]`` with fresh mbufs; k, 0 for nothing now, None at the end.

        Usage: ``return self.ctx.pool.alloc_bulk(burst.array, burst.capacity)``
        """
        raise PipelineError(f"source {self.ctx.name!r} ({type(self).__name__}) has no poll()")

    def process(self, burst: Burst) -> Any:
        raise PipelineError(f"source {self.ctx.name!r} takes no input")


def _free(burst: Burst) -> None:
    """Free a burst's handles with the pool's free_bulk bound to its array."""
    pool, n = burst.pool, burst.n
    bound = burst._free_bound
    if bound is None or bound[0] is not pool:
        bound = burst._free_bound = (pool, pool.bind(burst.array).free_bulk)
    done = bound[1](n)
    if done != n:
        _free_rest(burst, done)


def _free_rest(burst: Burst, done: int) -> None:
    """After a bound free_bulk of a burst's n handles returned ``done`` (not n)."""
    pool, n = burst.pool, burst.n
    if done < 0:
        pool.free_bulk(burst.array, n)  # nothing was freed: raises the matching error
    else:
        pool.free_bulk(burst.array[done:n])  # a clone of another pool's buffer, and the rest
