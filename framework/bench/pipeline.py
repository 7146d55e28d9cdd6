"""``pktflow bench pipeline``: packets per second through the quickstart graph, next to asyncio.

The quickstart graph (``pipelines/examples/quickstart.yaml``: generator ->
parse -> counter, a drop sink on ``parse.invalid``; 64-byte UDP frames over
16 flows) runs on one lcore, the calling thread, at each burst size
(``runtime.burst``), in three shapes measured side by side in one run:

- ``run to completion``: the graph as shipped; the walk hands each burst
  a stage emits straight to the next stage (no ring, no task switch);
- ``ring on every edge``: the same graph with ``edge: {backend: numba}``
  on every stage's input, so each burst crosses an in-process ring between
  stages, the "one task per stage joined by rings" shape;
- the peer, ``asyncio.Queue (uvloop)``: the three stages as a Python user
  would write them without pktflow, three asyncio tasks joined by bounded
  ``asyncio.Queue``s passing lists of ``burst`` frames (``bytes``), headers
  unpacked with ``struct`` (``_asyncio_pipeline``).

and on two lcores (a worker process pinned to the second CPU, a shared
``hugepage`` mempool), the two shapes DESIGN §6 offers:

- ``2 lcores, sharded``: every stage on ``lcore: [0, 1]``, one copy of the
  whole graph per lcore, the generator's count and flows split between them;
- ``2 lcores, split``: the generator on lcore 0, the rest on lcore 1,
  joined by a hugepage ring whose consumer sleeps on its waker when idle;
- the peer, ``multiprocessing.Queue``: the same split written with two
  spawned processes passing lists of frames (``_mp_queue_pipeline``).

After the rows, the idle and wake-up figures: the CPU an lcore uses while
it waits on an empty edge (adaptive and interrupt, over 5 s), and the
wake-up latency of a sleeping consumer beside a pipe's floor
(``bench.wakeup``).

pktflow rows go through the public API (``Pipeline.from_dict``, ``start``,
``wait``, ``stop``) on an ``asyncio.Runner`` over uvloop; a rate is the
packets the counter counted over ``stats.elapsed_s``, the walk's own time
(building and teardown are not timed). ``await p.start()`` is timed
separately and reported as the graph's build time.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Sequence
from functools import partial
from time import perf_counter
from typing import Any, NamedTuple

import uvloop
from rich.console import Console

import pktflow
from pktflow._affinity import cpu_for, pinned
from pktflow._wakeup import signals_sent

from ._asyncio_pipeline import frames, run_peer
from ._command import Progress, run_bench
from ._idle import idle_cpu
from ._measure import MIN_RUNS, Case, Row, Span, measure, row_key
from ._mp_queue_pipeline import run_mp_queue_peer
from ._report import Comparison, Target
from .wakeup import measure_wakeup

__all__ = [
    "BACKENDS",
    "FULL",
    "HEADLINE_BURST",
    "QUICK",
    "Settings",
    "comparisons",
    "quickstart_spec",
    "run_pipeline_bench",
    "targets",
]

BACKENDS = ["numba"]  # the mempool's backend; the rings of "ring on every edge" are numba's
HEADLINE_BURST = 32
MAX_BURST = 512  # half the edge rings' size, as the ring bench bounds its bursts
FRAME_SIZE = 64
FLOWS = 16
POOL = {"n": 8191, "cache_size": 256, "data_room": 2048}  # the quickstart's mempool
EDGE_RING = {"backend": "numba"}  # an in-process ring on a stage's input edge
QUEUE_MAXSIZE = 64  # the peer's queues, in lists
PIPELINE_NAME = "pktflow-bench-quickstart"  # zones of a crashed run are recognisable

# Targets (issue 6): the walk at burst 32 against the peer, and absolute.
PEER_RATIO_TARGET = 4.0
WALK_TARGET = 8e6
# Targets (issue 8): two sharded lcores against one, and against multiprocessing.Queue.
SHARDED_RATIO_TARGET = 1.6
MP_PEER_RATIO_TARGET = 10.0
SHARED_BACKEND = "hugepage"  # the mempool of the 2-lcore rows: shared between processes
IDLE_S = {"quick": 1.0, "full": 5.0}  # how long the idle CPU of an lcore is measured
WAKEUP_ROUNDS = {"quick": 300, "full": 2000}

# Row names (the backend column holds the mempool backend, or the peer's queue).
WALK = "run to completion"
RINGS = "ring on every edge"
ONE_LCORE = "1 lcore"
PEER_NAME = "3 tasks, lists of frames"
PEER = "asyncio.Queue (uvloop)"
TWO_LCORES = "2 lcores"
SHARDED = "sharded"
SPLIT = "split"
MP_PEER_NAME = "2 processes, lists of frames"
MP_PEER = "multiprocessing.Queue"


class Settings(NamedTuple):
    """How much a run measures."""

    bursts: list[int]  # packets per burst (runtime.burst; frames per list for the peer)
    run_s: float  # about how long each timed run lasts
    repeats: int  # timed runs per row, after one warm-up run


QUICK = Settings(bursts=[32, 128], run_s=0.1, repeats=MIN_RUNS)
FULL = Settings(bursts=[32, 128], run_s=0.3, repeats=7)


def quickstart_spec(
    burst: int,
    count: int,
    *,
    backend: str,
    rings: bool = False,
    shape: str | None = None,
    cpus: list[int] | None = None,
) -> dict[str, Any]:
    """The quickstart graph as ``Pipeline.from_dict`` takes it, sending ``count`` packets.

    ``backend`` is the mempool's backend; with ``rings`` every stage's input
    edge is an in-process numba ring instead of a direct hand-over. ``shape``
    puts it on two lcores: ``"sharded"`` (every stage on lcores 0 and 1) or
    ``"split"`` (the generator on lcore 0, the rest on lcore 1); ``cpus`` is
    its ``runtime.cpus``.

    Usage: ``pktflow.Pipeline.from_dict(quickstart_spec(32, 10**6, backend="numba"))``
    """
    edge = {"edge": dict(EDGE_RING)} if rings else {}
    gen_lcore: dict[str, Any] = {}
    rest_lcore: dict[str, Any] = {}
    if shape == SHARDED:
        gen_lcore = rest_lcore = {"lcore": [0, 1]}
    elif shape == SPLIT:
        rest_lcore = {"lcore": 1}
    elif shape is not None:
        raise pktflow.PktflowValueError(f"shape is sharded, split or None, not {shape!r}")
    return {
        "name": PIPELINE_NAME,
        "runtime": {"burst": burst, "poll": "adaptive", **({"cpus": cpus} if cpus else {})},
        "mempools": {"pkts": {**POOL, "backend": backend}},
        "stages": {
            "gen": {
                "type": "generator",
                "count": count,
                "size": FRAME_SIZE,
                "flows": FLOWS,
                **gen_lcore,
            },
            "parse": {"type": "parse", "inputs": ["gen"], **edge, **rest_lcore},
            "count": {"type": "counter", "inputs": ["parse"], **edge, **rest_lcore},
            "bad": {"type": "drop", "inputs": ["parse.invalid"], **edge, **rest_lcore},
        },
    }


def _walk_key(backend: str, burst: int) -> str:
    return row_key(backend, ONE_LCORE, WALK, burst)


def _rings_key(backend: str, burst: int) -> str:
    return row_key(backend, ONE_LCORE, RINGS, burst)


def _peer_key(burst: int) -> str:
    return row_key(PEER, None, PEER_NAME, burst)


def _two_key(shape: str, burst: int) -> str:
    return row_key(SHARED_BACKEND, TWO_LCORES, shape, burst)


def _mp_peer_key(burst: int) -> str:
    return row_key(MP_PEER, None, MP_PEER_NAME, burst)


def comparisons(backends: Sequence[str], bursts: Sequence[int]) -> list[Comparison]:
    """The walk against the peer and against rings on every edge, at each burst and 32.

    Burst 32 is always asked (its ratio is None when it was not measured).

    Usage: ``comparisons(["numba"], [32, 128])``
    """
    return [
        c
        for backend in backends
        for b in sorted({HEADLINE_BURST, *bursts})
        for c in (
            Comparison(
                f"{backend} run to completion vs asyncio.Queue peer, burst {b}",
                _walk_key(backend, b),
                _peer_key(b),
                PEER_RATIO_TARGET if b == HEADLINE_BURST else None,
            ),
            Comparison(
                f"{backend} run to completion vs ring on every edge, burst {b}",
                _walk_key(backend, b),
                _rings_key(backend, b),
            ),
            Comparison(
                f"2 lcores sharded vs {backend} on 1 lcore, burst {b}",
                _two_key(SHARDED, b),
                _walk_key(backend, b),
                SHARDED_RATIO_TARGET if b == HEADLINE_BURST else None,
            ),
            Comparison(
                f"2 lcores split vs {backend} on 1 lcore, burst {b}",
                _two_key(SPLIT, b),
                _walk_key(backend, b),
            ),
        )
    ] + [
        Comparison(
            f"2 lcores sharded vs multiprocessing.Queue peer, burst {b}",
            _two_key(SHARDED, b),
            _mp_peer_key(b),
            MP_PEER_RATIO_TARGET if b == HEADLINE_BURST else None,
        )
        for b in sorted({HEADLINE_BURST, *bursts})
    ]


def targets(backends: Sequence[str]) -> list[Target]:
    """The walk at burst 32 must reach 8 M packets/s.

    Usage: ``targets(["numba"])``
    """
    return [
        Target(
            f"{backend} run to completion, burst {HEADLINE_BURST}",
            _walk_key(backend, HEADLINE_BURST),
            WALK_TARGET,
        )
        for backend in backends
    ]


# -- one run of each shape -----------------------------------------------------


class _Builds:
    """How long ``await p.start()`` took, per row (sizing and warm-up included, in order).

    Also the wake-up system calls per 1,000 bursts of each run of a 2-lcore row.
    """

    def __init__(self) -> None:
        self.first: float | None = None  # the first pipeline of the run: from_dict + start
        self.by_key: dict[str, list[float]] = {}
        self.signals: dict[str, list[float]] = {}

    def median(self, key: str, last: int) -> float | None:
        """The median of the row's last ``last`` builds (its timed runs)."""
        seconds = self.by_key.get(key, [])[-last:]
        return statistics.median(seconds) if seconds else None


async def _run_pipeline(spec: dict[str, Any], builds: _Builds, key: str) -> Span:
    """Build, run and tear down one pipeline; the span of its walk, in packets counted."""
    before = perf_counter()
    p = pktflow.Pipeline.from_dict(spec)
    signals_before = signals_sent()  # this process's count runs on; the workers' starts at 0
    started = perf_counter()
    await p.start()
    built = perf_counter()
    builds.by_key.setdefault(key, []).append(built - started)
    if builds.first is None:
        builds.first = built - before
    await p.wait()
    signals = p._wakeups()[0] - signals_before
    stats = await p.stop()
    packets = stats.stages["count"]["packets_in"]
    sent = spec["stages"]["gen"]["count"]
    bursts = max(1, sent // spec["runtime"]["burst"])
    builds.signals.setdefault(key, []).append(signals / bursts * 1000)
    if packets != sent:
        raise pktflow.PipelineError(f"{key}: the counter saw {packets} of {sent} packets")
    # The walk's own time: from its first poll to the end of its drain.
    return Span(0.0, max(stats.elapsed_s, 1e-6), packets)


def _pipeline_trial(
    runner: asyncio.Runner, builds: _Builds, backend: str, rings: bool, burst: int, count: int
) -> Span:
    """One run of the quickstart graph (with ``rings``: a ring on every edge), ``count`` packets."""
    key = row_key(backend, ONE_LCORE, RINGS if rings else WALK, burst)
    spec = quickstart_spec(burst, count, backend=backend, rings=rings)
    return runner.run(_run_pipeline(spec, builds, key))


def _two_lcores_trial(
    runner: asyncio.Runner, builds: _Builds, cpus: list[int], shape: str, burst: int, count: int
) -> Span:
    """One run of the quickstart graph on two lcores (``shape``: sharded or split)."""
    spec = quickstart_spec(burst, count, backend=SHARED_BACKEND, shape=shape, cpus=cpus)
    return runner.run(_run_pipeline(spec, builds, _two_key(shape, burst)))


def _mp_queue_trial(templates: list[bytes], cpus: list[int], burst: int, count: int) -> Span:
    return run_mp_queue_peer(templates, count, burst, QUEUE_MAXSIZE, cpus=cpus)


def _run_asyncio_peer(
    runner: asyncio.Runner, templates: list[bytes], burst: int, count: int
) -> Span:
    """One run of the asyncio.Queue peer, ``count`` frames in lists of ``burst``."""
    counts = runner.run(run_peer(templates, count, burst, QUEUE_MAXSIZE))
    if counts.packets != count:
        raise RuntimeError(f"the asyncio peer counted {counts.packets} of {count} packets")
    return Span(0.0, max(counts.elapsed_s, 1e-6), counts.packets)


def _count_for(trial: Callable[[int], Span], run_s: float, burst: int) -> int:
    """The packets (whole bursts) that make one run of ``trial`` last about ``run_s`` seconds.

    Trials grow until one lasts a tenth of ``run_s`` (shorter ones are mostly
    start-up and timer noise), then the count scales to ``run_s``.
    """
    count = burst * 64
    while True:
        span = trial(count)
        elapsed = span.end - span.start
        if elapsed >= run_s / 10:
            return max(burst, round(count * run_s / elapsed / burst) * burst)
        growth = min(100.0, run_s / 5 / elapsed)  # aim at a fifth of run_s, at most 100x
        count = max(count * 2, round(count * growth / burst) * burst)


def _cases(
    settings: Settings,
    backends: list[str],
    runner: asyncio.Runner,
    builds: _Builds,
    cpus: list[int],
    progress: Progress,
) -> list[Case]:
    """Every row's case, sized to ``run_s``: per burst, the walk, the rings, then the peer.

    ``cpus``: the two CPUs of the 2-lcore rows and their peer (taken before the
    calling thread was pinned to the first).
    """
    templates = frames(FLOWS, FRAME_SIZE)
    cases = []

    def case(
        name: str, group: str, backend: str, mode: str | None, burst: int, note: str,
        trial: Callable[[int], Span],
    ) -> Case:  # fmt: skip
        progress(f"sizing: {row_key(backend, mode, name, burst)}")
        count = _count_for(trial, settings.run_s, burst)
        return Case(name, group, backend, mode, burst, count, note, partial(trial, count))

    for burst in settings.bursts:
        for backend in backends:
            for name, rings in ((WALK, False), (RINGS, True)):
                trial = partial(_pipeline_trial, runner, builds, backend, rings, burst)
                note = "in-process numba rings between stages" if rings else "the walk"
                cases.append(case(name, "pktflow", backend, ONE_LCORE, burst, note, trial))
        peer = partial(_run_asyncio_peer, runner, templates, burst)
        note = f"lists of {burst} frames, queues of {QUEUE_MAXSIZE} lists"
        cases.append(case(PEER_NAME, "peer", PEER, None, burst, note, peer))
        if not backends:
            continue  # the 2-lcore rows compare with a 1-lcore row
        for shape, note in (
            (SHARDED, "the whole graph on each lcore"),
            (SPLIT, "generator | ring | parse, counter"),
        ):
            trial = partial(_two_lcores_trial, runner, builds, cpus, shape, burst)
            cases.append(case(shape, "pktflow", SHARED_BACKEND, TWO_LCORES, burst, note, trial))
        mp_peer = partial(_mp_queue_trial, templates, cpus, burst)
        note = f"2 spawned processes, a queue of {QUEUE_MAXSIZE} lists"
        cases.append(case(MP_PEER_NAME, "peer", MP_PEER, None, burst, note, mp_peer))
    return cases


def _measure_all(
    settings: Settings,
    results: dict[str, Any],
    notes: list[str],
    backends: list[str],
    progress: Progress,
) -> list[Row]:
    """Size and run every case in interleaved rounds on a uvloop runner, pinned to one CPU.

    The calling thread is an lcore meanwhile (so building a pipeline does not
    register one), given back afterwards unless it already was one. Fills
    ``results`` (settings) with the build times and ``notes`` with the costs
    per burst; ``run_bench`` reads both after this returns.
    """
    builds = _Builds()
    seconds = IDLE_S["quick" if settings.run_s < FULL.run_s else "full"]
    cpus = [cpu_for(0), cpu_for(1)]  # before pinning: a pinned thread sees one CPU
    was_lcore = pktflow.lcore_id() != pktflow.LCORE_ID_ANY
    pktflow.register_lcore()
    try:
        with (
            pinned(cpu_for(0)),
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        ):
            cases = _cases(settings, backends, runner, builds, cpus, progress)
            rows = measure(cases, settings.repeats, progress)
            idle = {}
            for poll in ("adaptive", "interrupt") if backends else ():
                progress(f"idle CPU of an lcore on an empty edge, poll {poll}")
                idle[poll] = runner.run(idle_cpu(poll, seconds, cpus))
    finally:
        if not was_lcore:
            pktflow.unregister_lcore()
    starts = {
        row.key: builds.median(row.key, settings.repeats) for row in rows if row.group == "pktflow"
    }
    results["start_s"] = starts
    results["first_start_s"] = builds.first
    notes.extend(_build_notes(starts, builds.first, backends))
    notes.extend(_cost_notes(rows))
    if not backends:
        return rows
    progress("wake-up latency of a sleeping consumer, beside a pipe's floor")
    wakeup = measure_wakeup(WAKEUP_ROUNDS["quick" if settings.run_s < FULL.run_s else "full"])
    signals = {
        key: statistics.median(values[-settings.repeats :])
        for key, values in builds.signals.items()
        if TWO_LCORES in key
    }
    results["idle_cpu_percent"] = idle
    results["idle_s"] = seconds
    results["wakeup"] = wakeup
    results["wakeup_syscalls_per_1000_bursts"] = signals
    notes.extend(_wake_notes(idle, seconds, wakeup, signals))
    return rows


def _wake_notes(
    idle: dict[str, float], seconds: float, wakeup: dict[str, Any], signals: dict[str, float]
) -> list[str]:
    """The idle and wake-up figures (issue 8's targets beside each)."""
    idle_text = ", ".join(f"{poll} {pct:.2f} %" for poll, pct in idle.items())
    floor = wakeup["pipe_floor"]["p50_us"]
    by_loop = wakeup["uvloop"]
    by_poll = wakeup["poll"]
    busy = ", ".join(f"{key}: {value:.2f}" for key, value in signals.items())
    return [
        f"idle: an lcore waiting on an empty edge used {idle_text} of a CPU over {seconds:g} s "
        "(target < 1 %; a udp_source on lcore 0 nobody sends to, a counter on lcore 1)",
        f"wake-up, producer -> sleeping consumer on another CPU ({wakeup['rounds']} rounds): "
        f"p50 {by_poll['p50_us']:.0f} µs, p99 {by_poll['p99_us']:.0f} µs blocking on the "
        f"waker's fd; p50 {by_loop['p50_us']:.0f} µs, p99 {by_loop['p99_us']:.0f} µs through "
        f"a uvloop reader (as the runtime sleeps); the floor, a blocking read() on a pipe "
        f"between the same CPUs: p50 {floor:.0f} µs, p99 {wakeup['pipe_floor']['p99_us']:.0f} "
        f"µs; p50 / floor = {by_poll['p50_us'] / floor:.2f} (target <= 2); lost wake-ups: "
        f"{wakeup['lost']}; a notifier with nobody asleep costs "
        f"{wakeup['notify_idle_ns']:.0f} ns",
        f"wake-up system calls per 1,000 bursts in busy 2-lcore pipelines (medians, target "
        f"< 1): {busy}; streaming over one ring to a consumer that sleeps as soon as it is "
        f"empty (interrupt mode, no spinning): {wakeup['signals_per_1000_bursts']:.2f}",
    ]


def _build_notes(
    starts: dict[str, float | None], first: float | None, backends: list[str]
) -> list[str]:
    """What building the quickstart graph cost: the median of ``await p.start()``."""
    if not backends or first is None:
        return []
    quickstart = starts.get(_walk_key(backends[0], HEADLINE_BURST))
    built = "" if quickstart is None else (
        f"await p.start() of the quickstart graph ({backends[0]}, burst {HEADLINE_BURST}) "
        f"took {quickstart * 1e3:.1f} ms (median of the timed runs; settings.start_s has "
        "every pktflow row); "
    )  # fmt: skip
    return [
        "start-up: the cold start (numba compiling the kernels, an empty cache) and the warm "
        "start cannot both be measured in one process, which compiles or loads each kernel "
        f"once, so the build time is reported instead: {built}the first pipeline of this "
        f"run took {first * 1e3:.1f} ms from from_dict to started (settings.first_start_s)"
    ]


def _cost_notes(rows: Sequence[Row]) -> list[str]:
    """The time per burst and per packet of each row (from its median)."""
    costs = [
        f"{row.key}: {row.burst / row.median * 1e6:.2f} µs per burst, "
        f"{1e9 / row.median:.0f} ns per packet"
        for row in rows
    ]
    return ["cost, from the medians: " + "; ".join(costs)] if costs else []


def run_pipeline_bench(
    *,
    quick: bool = False,
    as_json: bool = False,
    backends: list[str] | None = None,
    bursts: list[int] | None = None,
    repeats: int | None = None,
    run_s: float | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure the quickstart graph (walk, rings on every edge) next to asyncio.Queue tasks.

    Runs on the calling thread, which must not be running an event loop: each
    run goes through an ``asyncio.Runner`` on uvloop. The thread is made an
    lcore for the run and given back afterwards unless it already was one.

    Args:
        quick: shorter runs (about 0.1 s each, 5 per row).
        as_json: print the result as JSON on stdout instead of tables.
        backends: mempool backends to measure (default: numba); unavailable
            ones are skipped with a note.
        bursts: packets per burst, ``runtime.burst`` and the peer's list
            length (default 32 and 128; each in 1..512).
        repeats: timed runs per row, after one warm-up run (default 7; quick: 5).
        run_s: about how long each timed run lasts (default 0.3 s; quick: 0.1 s).
        console: where tables and progress go (default: stdout).

    Returns:
        The result: ``rows`` (name, group, backend, mode, burst, median, min,
        max, runs, rates, in packets/s), ``ratios``, ``targets``, ``notes``,
        ``settings`` (with ``start_s``, the median build time of each pktflow
        row) and ``machine``.

    Raises:
        PktflowValueError: a burst outside 1..512, repeats below 1, run_s not positive.

    Usage: ``result = run_pipeline_bench(quick=True)``
    """
    defaults = QUICK if quick else FULL
    settings = Settings(
        bursts=list(bursts or defaults.bursts),
        run_s=defaults.run_s if run_s is None else run_s,
        repeats=defaults.repeats if repeats is None else repeats,
    )
    if not all(isinstance(b, int) and 1 <= b <= MAX_BURST for b in settings.bursts):
        raise pktflow.PktflowValueError(
            f"burst sizes must be in 1..{MAX_BURST}, not {settings.bursts}"
        )
    if not isinstance(settings.repeats, int) or settings.repeats < 1:
        raise pktflow.PktflowValueError(f"repeats must be at least 1, not {settings.repeats}")
    if not settings.run_s > 0:
        raise pktflow.PktflowValueError(f"run_s must be positive, not {settings.run_s}")
    backends = list(backends or BACKENDS)
    notes = [
        "rows: the quickstart graph (generator -> parse -> counter, a drop sink on "
        f"parse.invalid; {FRAME_SIZE}-byte UDP frames over {FLOWS} flows, a pool of "
        f"{POOL['n']} mbufs with a cache of {POOL['cache_size']}, poll adaptive, yield every "
        "64 bursts) on one lcore, the calling thread, pinned to one CPU; run to completion: "
        "each burst goes straight to the next stage; ring on every edge: edge: {backend: "
        "numba} on parse, count and bad, so every burst crosses an in-process ring",
        "pktflow rates: packets the counter counted / stats.elapsed_s, the walk's own time "
        "from its first poll to the end of its drain; building (await p.start(): pools, "
        "stages, edges) and teardown (await p.stop(): stage stops, pools closed) are not timed",
        f"asyncio.Queue (uvloop): three tasks, generator -> parse -> counter, joined by "
        f"asyncio.Queue(maxsize={QUEUE_MAXSIZE}) passing lists of <burst> frames (bytes); parse "
        "unpacks ethertype, version/IHL, protocol and UDP ports with struct and passes the "
        "valid frames on, the counter counts packets and bytes; timed from the tasks' start "
        "to the counter's last list. Its frames are built once and reused (only the lists "
        "are new): generous to the peer",
        "each row: one warm-up run, then the timed runs, interleaved with the other rows' runs; "
        f"the generator's count was sized once per row for runs of about {settings.run_s:g} s",
    ]
    results: dict[str, Any] = {
        **settings._asdict(),
        "quick": quick,
        "frame_size": FRAME_SIZE,
        "flows": FLOWS,
        "mempool": dict(POOL),
        "edge_ring": dict(EDGE_RING),
        "queue_maxsize": QUEUE_MAXSIZE,
    }
    # run_bench reads ``results`` and ``notes`` after measuring: _measure_all adds to both.
    return run_bench(
        "pipeline",
        backends,
        partial(_measure_all, settings, results, notes),
        repeats=settings.repeats,
        comparisons=comparisons(backends, settings.bursts),
        targets=targets(backends),
        settings=results,
        notes=notes,
        as_json=as_json,
        console=console,
        unit="packets/s",
    )
