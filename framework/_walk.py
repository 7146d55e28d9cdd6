"""One lcore's run-to-completion walk of its part of the graph (rte_graph's walk).

The walk is one coroutine. It polls the lcore's sources and the rings that
feed it; a burst a stage emits goes straight into the next stage on the
same lcore (an ``Inlet`` called from ``emit``: no ring, no task switch),
so a burst crosses the whole subgraph before the next poll. Outputs are
wired once, when the graph is built:

- one consumer: that consumer's inlet;
- several (fan-out): every chain's refcnt is raised once per extra
  consumer (one jitted call), later consumers get a copy of the handles,
  and each frees its own reference;
- none: the handles are freed and counted as the stage's drops;
- a ring (lcores apart, or a forced ``edge.backend``): a ``RingOutlet``
  here, and on the consumer's lcore a ``RingInlet`` that the walk polls
  like a source. What does not fit waits in the outlet's backlog
  (``full: block``; the sources feeding it pause until it is empty) or is
  freed and counted (``full: drop``).

A stage whose ``process`` is ``async def`` gets its bursts through a queue
the walk awaits after each dispatch; sync stages never await. The choice
is made when the inlet is built, not per burst.

Usage (the runtime's)::

    walk = LcoreGraph(plan, lcore, pools, rings, control).walk   # see _lcore_graph
    await walk.run(count=None)
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

import numpy as np

from pktflow.backends._numba._ring import _compiled

from ._burst_kernels import burst_bytes as _burst_bytes_dispatcher
from ._burst_kernels import refcnt_add_bulk as _refcnt_dispatcher
from ._errors import PipelineError
from ._stage import Burst, Source, Stage, foreign_burst
from ._wakeup import Waker, signals_sent
from .abc import WAIT_DATA, WAIT_ROOM

if TYPE_CHECKING:
    from ._control import Control
    from ._mbuf import PktmbufPool
    from ._ring import Ring
    from ._spec import RuntimeSpec

__all__ = [
    "AsyncInlet", "FanOut", "Finish", "Inlet", "RingInlet", "RingOutlet", "SourceRun", "Walk",
    "make_inlet", "unconsumed",
]  # fmt: skip

# adaptive: how long an idle walk polls at once before it sleeps. About 100 µs
# buys ~2 µs latency under dense traffic for ~100 µs of CPU per sparse burst.
# A walk that was busy longer polls longer, up to a tenth of the time it was
# awake (at most 1 ms): in a busy pipeline an empty input or a full output
# is mostly the other lcore's stall on this VM (often past 100 µs), and
# sleeping through each would cost a wake-up system call every time.
_SPIN_S = 100e-6
_SPIN_SHARE = 0.1
_LONGEST_SPIN_S = 1e-3
_FIRST_PAUSE_S = 50e-6
_MAX_PAUSE_S = 1e-3
# The longest pause per poll mode. A wake-up of an idle lcore costs about
# 40 µs of CPU on this VM: 1 ms pauses keep an idle adaptive lcore near 4 %
# of a CPU; interrupt mode trades latency for < 1 %.
_LONGEST_PAUSE_S = {"busy": 0.0, "adaptive": _MAX_PAUSE_S, "interrupt": 10e-3}
# A walk asleep on its rings is woken by them, by a stop or by a finished
# producer; this bound only caps the cost of a wake-up that never comes.
_LONGEST_RING_SLEEP_S = 1.0
# No count: the sources may make handles without end.
_UNLIMITED = sys.maxsize


# Deliveries waiting for async stages, in the order they were emitted.
Pending: TypeAlias = "collections.deque[tuple[AsyncInlet, Burst]]"


class StageFailed(BaseException):
    """Unwinds the walk from a failed stage up to the walk loop.

    A BaseException, as ``CancelledError`` is, so that a stage's
    ``except Exception`` around ``emit`` does not swallow it.
    """

    def __init__(self, stage: Stage, cause: BaseException) -> None:
        super().__init__(stage.ctx.name)
        self.stage = stage
        self.cause = cause


# The compiled entry points: the runtime's arrays are uint32 and C-contiguous
# by construction, so numba's per-call type dispatch is skipped.
burst_bytes = _compiled(_burst_bytes_dispatcher)
refcnt_add_bulk = _compiled(_refcnt_dispatcher)

# Failures that unwind as they are: a downstream stage's, or the loop's own.
_PASS_THROUGH = (StageFailed, KeyboardInterrupt, SystemExit, asyncio.CancelledError)


def _count_bytes(burst: Burst) -> int:
    """The bytes of a burst's packets; raises for handles that are not the pool's."""
    nbytes: int = burst_bytes(burst.pool._header_words, burst.array, burst.n)
    if nbytes < 0:
        raise foreign_burst(burst)
    return nbytes


def _bad_poll(k: object, capacity: int) -> PipelineError:
    return PipelineError(f"poll() returned {k!r}: not an int in 0..{capacity} or None")


def _release_unsent(stage: Stage, burst: Burst, accounted: int) -> None:
    """Free what a failed stage still held of its burst (so pools end full)."""
    held = stage._unsent_handles(burst, accounted)
    if held.shape[0]:
        burst.pool.free_bulk(np.ascontiguousarray(held, dtype=np.uint32))


class Inlet:
    """One input edge of a stage on this lcore: counts the burst, runs ``process``."""

    __slots__ = ("name", "process", "stage", "stats")

    def __init__(self, stage: Stage, name: str) -> None:
        self.stage = stage
        self.name = name  # "gen.out": what Burst.input reads
        self.stats = stage.stats
        self.process = stage.process

    def deliver(self, burst: Burst) -> None:
        """Run the stage on ``burst`` now."""
        # _arrive, inlined: this runs for every burst at every stage.
        nbytes = burst.nbytes
        if nbytes < 0:
            nbytes = burst.nbytes = _count_bytes(burst)  # first: it raises for a bad burst
        stats, n, stage = self.stats, burst.n, self.stage
        stats.packets_in += n
        stats.bursts += 1
        stats.bytes_in += nbytes
        burst.input = self.name
        burst._holder = stage
        stage._takes_used = 0
        before = stats.handed
        try:
            self.process(burst)
        except _PASS_THROUGH:
            self._release(burst, before)
            raise
        except Exception as exc:
            raise self._failed(burst, before, exc) from exc

    def _arrive(self, burst: Burst) -> int:
        """Count the burst in and make the stage its holder; what the stage had handed on."""
        nbytes = burst.nbytes
        if nbytes < 0:
            nbytes = burst.nbytes = _count_bytes(burst)  # first: it raises for a bad burst
        stats = self.stats
        stats.packets_in += burst.n
        stats.bursts += 1
        stats.bytes_in += nbytes
        burst.input = self.name
        burst._holder = self.stage
        self.stage._takes_used = 0
        return stats.handed

    def _release(self, burst: Burst, before: int) -> None:
        """Free what the stage still held of ``burst`` when it failed."""
        _release_unsent(self.stage, burst, self.stats.handed - before)

    def _failed(self, burst: Burst, before: int, exc: Exception) -> StageFailed:
        """Free what the stage still held; the failure to unwind the walk with."""
        self._release(burst, before)
        return StageFailed(self.stage, exc)


class AsyncInlet(Inlet):
    """The input edge of a stage whose ``process`` is ``async def``: bursts wait
    in the walk's queue (copied) until the walk awaits them."""

    __slots__ = ("queue",)

    def __init__(self, stage: Stage, name: str, pending: Pending) -> None:
        super().__init__(stage, name)
        self.queue = _AsyncQueue(stage.ctx.burst_size, pending)

    def deliver(self, burst: Burst) -> None:
        """Queue a copy of ``burst`` for ``deliver_async``."""
        self.queue.put(self, burst)

    async def deliver_async(self, burst: Burst) -> None:
        """Run the stage on a queued burst: awaits its ``process``."""
        before = self._arrive(burst)
        try:
            await self.process(burst)
        except _PASS_THROUGH:
            self._release(burst, before)
            raise
        except Exception as exc:
            raise self._failed(burst, before, exc) from exc


def make_inlet(stage: Stage, name: str, pending: Pending) -> Inlet:
    """The inlet of one input edge of ``stage``: async or not, decided once, here."""
    if inspect.iscoroutinefunction(stage.process):
        return AsyncInlet(stage, name, pending)
    return Inlet(stage, name)


class _AsyncQueue:
    """Copies of bursts bound for one async stage, and a free list of buffers."""

    def __init__(self, capacity: int, pending: Pending) -> None:
        self.capacity = capacity
        self.pending = pending
        self.spare: list[Burst] = []

    def put(self, inlet: AsyncInlet, burst: Burst) -> None:
        copy = (
            self.spare.pop()
            if self.spare
            else Burst(np.empty(self.capacity, np.uint32), burst.pool)
        )
        if copy.capacity < burst.n:
            copy = Burst(np.empty(burst.n, np.uint32), burst.pool)
        copy.array[: burst.n] = burst.array[: burst.n]
        copy.n, copy.pool, copy.nbytes = burst.n, burst.pool, burst.nbytes
        self.pending.append((inlet, copy))


async def _run_async_pending(pending: Pending) -> None:
    """Await every queued async delivery (they may queue more)."""
    while pending:
        inlet, burst = pending.popleft()
        await inlet.deliver_async(burst)
        inlet.queue.spare.append(burst)


def unconsumed(stage: Stage) -> Callable[[Burst], None]:
    """The outlet of an output nothing consumes: free and count as drops."""
    stats = stage.stats

    def drop_unconsumed(burst: Burst) -> None:
        stats.drops += burst.n  # handed already counts them (emit)
        burst.pool.free_bulk(burst.array, burst.n)

    return drop_unconsumed


class FanOut:
    """An output several stages consume: one reference per consumer."""

    __slots__ = ("copies", "inlets")

    def __init__(self, inlets: Sequence[Inlet], capacity: int, pool: PktmbufPool) -> None:
        self.inlets = list(inlets)
        self.copies = [Burst(np.empty(capacity, np.uint32), pool) for _ in self.inlets[1:]]

    def __call__(self, burst: Burst) -> None:
        n, pool = burst.n, burst.pool
        extra = len(self.copies)
        if self.copies[0].capacity < n:
            self.copies = [Burst(np.empty(n, np.uint32), pool) for _ in range(extra)]
        if refcnt_add_bulk(pool._header_words, burst.array, n, extra) < 0:
            raise foreign_burst(burst)
        for copy in self.copies:
            copy.array[:n] = burst.array[:n]
            copy.n, copy.pool, copy.nbytes = n, pool, burst.nbytes
        self.inlets[0].deliver(burst)
        for i, copy in enumerate(self.copies):
            try:
                self.inlets[i + 1].deliver(copy)
            except BaseException:
                # The consumers not reached yet still hold a reference each.
                for rest in self.copies[i + 1 :]:
                    pool.free_bulk(rest.array, rest.n)
                raise


class RingOutlet:
    """The producer side of a ring link: the outlet that enqueues a stage's bursts.

    What does not fit waits in the backlog (``full: block``; the sources
    feeding it pause until it is empty) or is freed and counted
    (``full: drop``). Once its stage is finished and the backlog empty, the
    outlet sets its finished flag in the control block (after its last
    enqueue: the consumer reads the flag before the ring's count).
    """

    def __init__(
        self,
        name: str,
        ring: Ring,
        pool: PktmbufPool,
        *,
        full: str,
        burst_size: int,
        producer: str,
        control: Control,
        flag: int,
    ) -> None:
        self.name = name  # "a.out->b"
        self.ring = ring
        self.pool = pool
        self.block = full == "block"
        self.drops = 0
        self.backlog = np.empty(max(4 * burst_size, 64), np.uint32)
        self.backlog_n = 0
        self.producer = producer  # the stage whose instance here feeds it
        self.control = control
        self.flag = flag
        self.finished = False
        # Wakes the consumer when it sleeps on an empty ring: one compiled call
        # per enqueue, a system call only when it is armed.
        self.wake = ring.notifier(WAIT_DATA)
        self.waiter = -1  # our index as a sleeper for room (full: block), see Walk

    def __call__(self, burst: Burst) -> None:
        """Enqueue the burst; what does not fit waits (block) or is dropped."""
        if burst.pool is not self.pool:
            raise PipelineError(
                f"edge {self.name} carries mbufs of pool {self.pool.name!r}, "
                f"not of {getattr(burst.pool, 'name', None)!r}"
            )
        n = burst.n
        sent = 0 if self.backlog_n else self.ring.enqueue_burst(burst.array, n)
        if sent:
            self.wake()
        if sent == n:
            return
        if not self.block:
            self.drops += n - sent
            self.pool.free_bulk(burst.array[sent:n])
            return
        rest = n - sent
        if self.backlog_n + rest > self.backlog.shape[0]:
            grown = np.empty(2 * (self.backlog_n + rest), np.uint32)
            grown[: self.backlog_n] = self.backlog[: self.backlog_n]
            self.backlog = grown
        self.backlog[self.backlog_n : self.backlog_n + rest] = burst.array[sent:n]
        self.backlog_n += rest

    def flush(self) -> int:
        """Move backlog into the ring; how many moved."""
        k = self.ring.enqueue_burst(self.backlog, self.backlog_n)
        if k:
            self.wake()
            left = self.backlog_n - k
            self.backlog[:left] = self.backlog[k : self.backlog_n]
            self.backlog_n = left
        return k

    def discard_backlog(self) -> None:
        """Free the backlog (an aborted pipeline: its consumer may be gone)."""
        if self.backlog_n:
            self.pool.free_bulk(self.backlog, self.backlog_n)
            self.backlog_n = 0

    def finish(self) -> None:
        """Tell the consumer that nothing more comes (once, after the last enqueue)."""
        if not self.finished:
            self.finished = True
            self.control.mark_finished(self.flag)
            self.wake()  # a consumer asleep on the empty ring looks at the flag

    def publish(self) -> None:
        self.control.publish_edge(self.flag, self.drops, self.backlog_n)


class RingInlet:
    """The consumer side of a ring link: polled by the walk like a source."""

    def __init__(
        self,
        name: str,
        ring: Ring,
        inlet: Inlet,
        pool: PktmbufPool,
        *,
        burst_size: int,
        control: Control,
        flags: Sequence[int],
        block: bool,
    ) -> None:
        self.name = name
        self.ring = ring
        self.inlet = inlet
        self.rx = Burst(np.empty(burst_size, np.uint32), pool)
        self.control = control
        self.flags = list(flags)  # one per producer instance
        # full: block producers may sleep for room: wake them after each dequeue.
        self.wake = ring.notifier(WAIT_ROOM) if block else None
        self.waiter = -1  # our index as a sleeper for handles, see Walk

    def poll(self) -> int:
        """Deliver one burst from the ring to the consumer; how many handles."""
        rx = self.rx
        k = self.ring.dequeue_burst(rx.array, rx.capacity)
        if k:
            if self.wake is not None:
                self.wake()
            rx.n, rx.nbytes = k, -1
            self.inlet.deliver(rx)
        return k

    def drained(self, aborted: bool) -> bool:
        """Every producer finished (flags first, then the count) and the ring is empty."""
        if not aborted and not all(self.control.finished(flag) for flag in self.flags):
            return False
        return self.ring.count() == 0


class SourceRun:
    """A source on this lcore: its burst, its poll, the ring outlets it feeds."""

    def __init__(self, stage: Source, burst: Burst, rings: Sequence[RingOutlet]) -> None:
        self.stage = stage
        self.burst = burst
        self.poll = stage.poll
        self.is_async = inspect.iscoroutinefunction(stage.poll)
        self.rings = list(rings)  # ring outlets reachable through direct edges: back-pressure
        self.done = False
        self.stats = stage.stats
        self.capacity = burst.capacity
        # Where a burst goes when the walk may do what Stage.emit does itself
        # (the stage did not override emit); None: call emit. Wired already.
        self.outlet = stage._outlets.get("out") if type(stage).emit is Stage.emit else None
        self.keeps_lengths = stage.keeps_lengths
        # Optional: a descriptor readable when poll() would find something
        # (a socket): an idle walk then sleeps on it instead of polling.
        self._wait_fd: Callable[[], int | None] | None = getattr(stage, "wait_fd", None)

    def run(self, polls: int, budget: int) -> tuple[int, int]:
        """Poll a sync source up to ``polls`` times, emitting each burst, until it
        makes nothing or ``budget`` handles: (handles, bursts). Sets ``done`` at its end."""
        # Runs for every burst: the attributes are read once, into locals.
        burst, stage, poll, stats, outlet = (
            self.burst,
            self.stage,
            self.poll,
            self.stats,
            self.outlet,
        )
        capacity, keeps_lengths = self.capacity, self.keeps_lengths
        made = bursts = 0
        try:
            while bursts < polls and made < budget:
                burst._holder, burst.nbytes = stage, -1  # a source may count its bytes
                k = poll(burst)
                if not k:
                    if k is None:
                        self.done = True
                    break
                if type(k) is not int or not 0 < k <= capacity:
                    raise _bad_poll(k, capacity)
                burst.n = k
                made += k
                bursts += 1
                stats.bursts += 1
                if outlet is None:
                    stage.emit(burst)
                    continue
                # Stage.emit, inlined (k > 0; a source's emit not overridden).
                burst._sent = True
                stats.handed += k
                if not keeps_lengths:
                    burst.nbytes = -1
                outlet(burst)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise StageFailed(stage, exc) from exc
        return made, bursts

    def blocked(self) -> bool:
        return any(edge.backlog_n for edge in self.rings)

    def wait_fd(self) -> int | None:
        return self._wait_fd() if self._wait_fd is not None else None


class Finish(NamedTuple):
    """When one stage instance on this lcore can receive nothing more."""

    name: str
    source: SourceRun | None
    upstream: tuple[str, ...]  # stages handing over directly, on this lcore
    rings: tuple[RingInlet, ...]  # its ring inputs


class Walk:
    """One lcore's walk: sources and ring inputs, round after round, until the end.

    The end: every stage instance here is finished — a source when it is
    exhausted or stopped, any other stage when the stages handing to it
    directly are finished and each of its ring inputs is drained (all its
    producers set their finished flag and the ring is empty) — and every
    ring outlet here has flushed its backlog and set its own flag. So the
    lcores of a pipeline end in the order of the data, each after its
    upstream, whatever process they run in.
    """

    def __init__(self, lcore: int, runtime: RuntimeSpec, control: Control) -> None:
        self.lcore = lcore
        self.control = control
        self.sources: list[SourceRun] = []
        self.inputs: list[RingInlet] = []
        self.outlets: list[RingOutlet] = []
        self.order: list[Finish] = []
        self.stages: list[Stage] = []
        self.poll_mode = runtime.poll
        self.longest_pause = _LONGEST_PAUSE_S[runtime.poll]
        self.yield_every = runtime.yield_every
        self.stopping = False
        self.aborted = False
        self.failure: PipelineError | None = None
        # Told of the first failure at once, so other lcores stop too.
        self.on_failure: Callable[[PipelineError], None] | None = None
        # Deliveries queued for async stages (``Inlet``s built with it).
        self.pending: Pending = collections.deque()
        self.has_async = False
        self.packets = 0  # handles the sources made
        self.started = self.ended = 0.0
        # What an idle walk sleeps on when it waits for rings (made in run()).
        self.waker: Waker | None = None
        self._woken: asyncio.Future[None] | None = None
        self.sleeps = 0  # times it slept on the waker (idle figures)
        self._source_ended = False  # a round saw a source end: drop it from the active ones

    def request_stop(self) -> None:
        """Stop polling sources; the walk drains its inputs and ends."""
        self.stopping = True
        self.wake()

    def abort(self) -> None:
        """End soon without waiting for other lcores (one of them died)."""
        self.stopping = self.aborted = True
        self.wake()

    async def run(self, count: int | None = None) -> None:
        """Walk until every stage here is finished (``count``: stop the sources after it)."""
        self.started = time.perf_counter()
        loop = asyncio.get_running_loop()
        if self.waker is not None:
            loop.add_reader(self.waker.fd, self.wake)
        try:
            await self._rounds(count)
        finally:
            self.ended = time.perf_counter()
            if self.waker is not None:
                loop.remove_reader(self.waker.fd)
            self.stop_sleeping()

    def publish(self) -> None:
        """Copy this lcore's counters into the control block (other processes read them)."""
        control, lcore = self.control, self.lcore
        for stage in self.stages:
            control.publish_stage(stage.ctx.name, lcore, stage.stats)
        for outlet in self.outlets:
            outlet.publish()
        control.publish_lcore(lcore, signals_sent(), self.sleeps)

    async def _rounds(self, count: int | None) -> None:
        idle_since, pause = 0.0, _FIRST_PAUSE_S
        awake_since, spin = time.perf_counter(), _SPIN_S  # since the last sleep
        since_yield = 0
        active = list(self.sources)
        # The common lcore (sync sources, direct edges only) polls in a tighter loop.
        direct = not (self.inputs or self.outlets or self.has_async) and not any(
            source.is_async for source in active
        )
        while True:
            try:
                if direct:
                    moved, bursts = self._direct_rounds(active, count)
                else:
                    moved, bursts = await self._round(active, count)
                since_yield += bursts
                if self._source_ended:
                    self._source_ended = False
                    active = [s for s in active if not s.done]
            except StageFailed as failed:
                self._fail(failed)
                moved = 1  # go on draining
            if moved:
                idle_since, pause = 0.0, _FIRST_PAUSE_S
                if since_yield >= self.yield_every:
                    since_yield = 0
                    await asyncio.sleep(0)
                continue
            if self._finished():
                return
            now = time.perf_counter()
            if not idle_since:
                idle_since = now
                spin = min(_LONGEST_SPIN_S, max(_SPIN_S, (now - awake_since) * _SPIN_SHARE))
            since_yield = 0
            if self.poll_mode == "busy" or (
                self.poll_mode == "adaptive" and now - idle_since < spin
            ):
                await asyncio.sleep(0)
            else:
                polled = [s for s in active if not s.blocked()] if not self.stopping else []
                fds = [fd for s in polled if (fd := s.wait_fd()) is not None]
                if len(fds) == len(polled) and (fds or self.waker is not None):
                    # Every source to poll has a descriptor: they and the rings wake us.
                    await self._sleep(_LONGEST_RING_SLEEP_S, fds)
                elif fds or self.waker is not None:
                    await self._sleep(pause, fds)  # poll the others again after the pause
                    pause = min(pause * 2, self.longest_pause)
                else:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, self.longest_pause)
                awake_since = time.perf_counter()

    def _direct_rounds(self, active: list[SourceRun], count: int | None) -> tuple[int, int]:
        """Rounds over sync sources whose outputs are direct edges, up to
        ``yield_every`` bursts, until a round makes nothing: (handles moved, bursts).

        Sources take turns a burst each, as DPDK's rx loops poll their ports;
        a lone source is polled in a row.
        """
        moved = bursts = 0
        limit = self.yield_every
        polls = limit if len(active) == 1 else 1
        while not self.stopping and bursts < limit:
            round_made = 0
            for source in active:
                made, polled = source.run(polls, self._budget(count))
                round_made += made
                bursts += polled
                self._count(made, count)
                if source.done:
                    self._source_ended = True
            moved += round_made
            if not round_made or self._source_ended:
                break
        return moved, bursts

    async def _round(self, active: list[SourceRun], count: int | None) -> tuple[int, int]:
        """One round: the rings, then each source that has room: (handles moved, bursts)."""
        moved = bursts = 0
        if self.inputs or self.outlets:
            from_rings = self._poll_rings()
            moved += from_rings
            bursts += from_rings > 0
        for source in active if not self.stopping else ():
            if source.rings and source.blocked():
                continue
            if source.is_async:
                made = await self._poll_source(source)
            else:
                made, _ = source.run(1, self._budget(count))
            if source.done:
                self._source_ended = True
                break
            if made:
                moved += made
                bursts += 1
                self._count(made, count)
            if self.has_async:
                await _run_async_pending(self.pending)
        if self.has_async and self.pending:
            await _run_async_pending(self.pending)
        return moved, bursts

    def _budget(self, count: int | None) -> int:
        """How many handles the sources may still make (``count``: in all)."""
        return _UNLIMITED if count is None else count - self.packets

    def _count(self, made: int, count: int | None) -> None:
        """Add what a source made; stop the sources once ``count`` is reached."""
        self.packets += made
        if count is not None and self.packets >= count:
            self.stopping = True

    # -- sleeping until a ring has handles (or room) --------------------------------

    def prepare_sleep(self) -> None:
        """Register one waker on every input ring and every blocking outlet's ring.

        Done when the lcore is built, before it says ready: the first waker of
        a process loads its kernels (milliseconds), which a timed run must not pay.
        """
        outlets = [outlet for outlet in self.outlets if outlet.block]
        if not self.inputs and not outlets:
            return
        self.waker = waker = Waker()
        for edge in self.inputs:
            edge.waiter = edge.ring.add_waiter(WAIT_DATA, waker)
        for outlet in outlets:
            outlet.waiter = outlet.ring.add_waiter(WAIT_ROOM, waker)
        if any(e.waiter < 0 for e in self.inputs) or any(o.waiter < 0 for o in outlets):
            self.stop_sleeping()  # a backend that cannot wake us: poll

    def stop_sleeping(self) -> None:
        """Take the waker off the rings and close it (idempotent; before the rings close)."""
        waker, self.waker = self.waker, None
        if waker is None:
            return
        for edge in self.inputs:
            if edge.waiter >= 0 and not edge.ring.closed:
                edge.ring.remove_waiter(WAIT_DATA, edge.waiter)
            edge.waiter = -1
        for outlet in self.outlets:
            if outlet.waiter >= 0 and not outlet.ring.closed:
                outlet.ring.remove_waiter(WAIT_ROOM, outlet.waiter)
            outlet.waiter = -1
        waker.close()

    def wake(self) -> None:
        """End a sleep now (a ring, a source's descriptor, a stop, or a change
        from outside that a source's ``wait_fd`` does not show)."""
        if self.waker is not None:
            self.waker.drain()
        woken = self._woken
        if woken is not None and not woken.done():
            woken.set_result(None)

    async def _sleep(self, timeout: float, fds: Sequence[int] = ()) -> None:
        """Sleep until a ring we armed on is signalled, a source's fd is readable,
        a stop, or ``timeout``.

        Arming sets our need-wakeup bit, fences and looks at the ring again;
        a ring that changed meanwhile means no sleep. Then the finished flags
        are read once more: a producer that finished before we armed did not
        see our bit, and its flag store happened before its notifier's fence.
        """
        armed: list[tuple[Ring, int, int]] = []
        loop = asyncio.get_running_loop()
        watched: list[int] = []
        try:
            for edge in self.inputs:
                if not edge.ring.arm(WAIT_DATA, edge.waiter):
                    return
                armed.append((edge.ring, WAIT_DATA, edge.waiter))
            for outlet in self.outlets:
                if outlet.waiter >= 0 and outlet.backlog_n:
                    if not outlet.ring.arm(WAIT_ROOM, outlet.waiter):
                        return
                    armed.append((outlet.ring, WAIT_ROOM, outlet.waiter))
            if self.stopping or self._finished():
                return
            for fd in fds:  # only while asleep: a busy source's fd would fire every turn
                loop.add_reader(fd, self.wake)
                watched.append(fd)
            self._woken = loop.create_future()
            self.sleeps += 1
            await asyncio.wait({self._woken}, timeout=timeout)
        finally:
            self._woken = None
            for fd in watched:
                loop.remove_reader(fd)
            for ring, side, index in armed:
                ring.disarm(side, index)

    async def _poll_source(self, source: SourceRun) -> int:
        """Poll a source whose ``poll`` is ``async def`` once and emit what it
        made: how many handles (0 at its end, which sets ``done``)."""
        burst = source.burst
        burst._holder, burst.nbytes = source.stage, -1
        try:
            k = await source.poll(burst)
            if not k:
                source.done = k is None
                return 0
            if type(k) is not int or not 0 < k <= source.capacity:
                raise _bad_poll(k, source.capacity)
            burst.n = k
            source.stats.bursts += 1
            source.stage.emit(burst)
            return k
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise StageFailed(source.stage, exc) from exc

    def _poll_rings(self) -> int:
        moved = 0
        if not self.aborted:
            for outlet in self.outlets:
                if outlet.backlog_n:
                    moved += outlet.flush()
        for edge in self.inputs:
            moved += edge.poll()
        return moved

    def _finished(self) -> bool:
        """Whether every stage instance here is finished; sets the outlets' flags on the way."""
        done: set[str] = set()
        for rule in self.order:
            if rule.source is not None:
                finished = rule.source.done or self.stopping
            else:
                finished = all(name in done for name in rule.upstream) and all(
                    edge.drained(self.aborted) for edge in rule.rings
                )
            if finished:
                done.add(rule.name)
        everything = len(done) == len(self.order) and not self.pending
        for outlet in self.outlets:
            if outlet.producer not in done:
                everything = False
                continue
            if self.aborted:
                outlet.discard_backlog()
            if outlet.backlog_n:
                everything = False
            else:
                outlet.finish()
        return everything

    def _fail(self, failed: StageFailed) -> None:
        """Record the first failure and stop the sources; later ones are chained by it."""
        self.stopping = True
        if self.failure is None:
            name = failed.stage.ctx.name
            error = PipelineError(
                f"stage {name!r} (lcore {self.lcore}) failed: "
                f"{type(failed.cause).__name__}: {failed.cause}",
                stage=name,
                lcore=self.lcore,
            )
            error.__cause__ = failed.cause
            self.failure = error
            if self.on_failure is not None:
                self.on_failure(error)
