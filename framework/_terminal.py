"""Running a pipeline from a terminal: the live rate table, JSON lines, signals.

``pktflow run`` builds the pipeline, runs it on uvloop (when installed)
and, while it runs, redraws a per-stage table about once a second (on a
terminal) or prints one ``Stats.as_dict()`` JSON object per second
(``--json``), the last one final. The first Ctrl-C or SIGTERM drains and
stops the pipeline (exit 0, final summary); a second Ctrl-C stops at once.

Usage: ``exit_code = run_pipeline_file("quick.yaml", duration=None, count=None, as_json=False)``
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ._pipeline import Pipeline, Stats
from ._spec import PipelineSpec, load_spec_file

__all__ = ["graph_table", "run_pipeline_file"]

REFRESH_S = 1.0
_COMPILE_NOTICE_AFTER_S = 1.0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class _CompileNotice:
    """Says on stderr that kernels are compiling when building takes a while.

    numba compiles a kernel the first time a machine uses it (then loads it
    from its cache in milliseconds), which can take seconds: say so rather
    than sit silent.
    """

    def __init__(self, console: Console) -> None:
        self._timer = threading.Timer(_COMPILE_NOTICE_AFTER_S, self._say)
        self._timer.daemon = True
        self._console = console

    def _say(self) -> None:
        self._console.print(
            "[dim]compiling jitted kernels (first run on this machine only; "
            "later runs load them from numba's cache)...[/dim]"
        )

    def __enter__(self) -> _CompileNotice:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def run_pipeline_file(
    path: str | Path,
    *,
    duration: float | None,
    count: int | None,
    as_json: bool,
    cluster: str | None = None,
) -> int:
    """Run the pipeline in ``path`` in the foreground; the process exit code.

    Usage: ``sys.exit(run_pipeline_file("quick.yaml", duration=5, count=None, as_json=True))``
    """
    err = Console(stderr=True)
    with _CompileNotice(err):
        from . import _walk  # noqa: F401  (the runtime's kernels: compiled or loaded here)

        if cluster is None:
            pipeline = Pipeline.from_file(path)
        else:  # --cluster ADDRESS: the YAML's cluster: with this address (or a new one)
            from ._cluster import with_address

            pipeline = Pipeline(with_address(load_spec_file(path), cluster))
    out = Console()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            stats = runner.run(_run(pipeline, duration, count, as_json, out, err))
    except KeyboardInterrupt:  # the second Ctrl-C: nothing drained, nothing more printed
        err.print("stopped at once")
        return 130
    if as_json:
        print(json.dumps(stats.as_dict()), flush=True)
    else:
        out.print(summary_table(pipeline, stats))
    return 0


async def _run(
    pipeline: Pipeline,
    duration: float | None,
    count: int | None,
    as_json: bool,
    out: Console,
    err: Console,
) -> Stats:
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            err.print("[dim]stopping: draining the pipeline (Ctrl-C again to stop at once)[/dim]")
            pipeline.request_stop()
        else:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, nothing drained

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await pipeline.start(count=count)
        deadline = None if duration is None else time.monotonic() + duration
        live = None if as_json or not out.is_terminal else Live(console=out, auto_refresh=False)
        previous = pipeline.stats()
        if live is not None:
            live.start()
        try:
            while pipeline.running:
                wait = REFRESH_S
                if deadline is not None:
                    wait = min(wait, max(deadline - time.monotonic(), 0.0))
                await pipeline.wait(wait)
                if deadline is not None and time.monotonic() >= deadline:
                    pipeline.request_stop()
                now = pipeline.stats()
                if as_json and pipeline.running:
                    print(json.dumps(now.as_dict()), flush=True)
                elif live is not None:
                    live.update(rate_table(pipeline, previous, now), refresh=True)
                previous = now
        finally:
            if live is not None:
                live.stop()
        return await pipeline.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _rate(now: int, before: int, seconds: float) -> float:
    return (now - before) / seconds if seconds > 0 else 0.0


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def rate_table(pipeline: Pipeline, before: Stats, now: Stats) -> Table:
    """Per-stage packets/s and bits/s between two stats, for the live view."""
    seconds = now.elapsed_s - before.elapsed_s
    table = Table(
        title=f"{pipeline.name}: {now.elapsed_s:.1f} s", title_justify="left", box=box.SIMPLE
    )
    for column in ("stage", "lcore", "packets", "pkt/s", "bit/s", "drops"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, row in now.stages.items():
        old = before.stages.get(name, row)
        moved, moved_before = _moved(row), _moved(old)
        bits = 8 * _rate(row["bytes_in"], old["bytes_in"], seconds)
        table.add_row(
            name, str(row["lcore"]), f"{moved:,}", _si(_rate(moved, moved_before, seconds), "pps"),
            _si(bits, "bps") if row["bytes_in"] else "", f"{row['drops']:,}",
        )  # fmt: skip
    for node, info in getattr(now, "nodes", {}).items():  # a cluster pipeline's shards
        moved = sum(_moved(r) for r in info.get("stages", {}).values())
        old_info = getattr(before, "nodes", {}).get(node, info)
        moved_before = sum(_moved(r) for r in old_info.get("stages", {}).values())
        table.add_row(
            f"node {node} ({info.get('ip')}, {info.get('state')})", "", f"{moved:,}",
            _si(_rate(moved, moved_before, seconds), "pps"), "", "",
        )  # fmt: skip
    return table


def _moved(row: dict[str, int]) -> int:
    """Packets a stage handled: what came in, or for a source what it made."""
    return row["packets_in"] or row["packets_out"]


def summary_table(pipeline: Pipeline, stats: Stats) -> Table:
    """The final per-stage totals and average rates."""
    seconds = stats.elapsed_s
    table = Table(
        title=f"{pipeline.name}: done in {seconds:.2f} s", title_justify="left", box=box.SIMPLE
    )
    for column in ("stage", "lcore", "in", "out", "drops", "bytes in", "avg pkt/s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, row in stats.stages.items():
        table.add_row(
            name, str(row["lcore"]), f"{row['packets_in']:,}", f"{row['packets_out']:,}",
            f"{row['drops']:,}", f"{row['bytes_in']:,}", _si(_rate(_moved(row), 0, seconds), "pps"),
        )  # fmt: skip
    for name, pool in stats.mempools.items():
        table.caption = f"mempool {name}: n={pool['n']} in use={pool['in_use']}"
    return table


def graph_table(spec: PipelineSpec) -> Table:
    """A one-screen view of a checked pipeline: stages, types, lcores, inputs, outputs."""
    table = Table(
        title=f"pipeline {spec.name!r}: {len(spec.stages)} stages, {len(spec.mempools)} mempool(s)",
        title_justify="left",
        box=box.SIMPLE,
    )
    for column in ("stage", "type", "lcore", "inputs", "outputs -> consumers"):
        table.add_column(column)
    for name, stage in spec.stages.items():
        consumers = spec.consumers(name)
        outputs = "; ".join(
            f"{out} -> {', '.join(takers) or '(dropped)'}" for out, takers in consumers.items()
        )
        table.add_row(
            name, stage.type, ",".join(map(str, stage.lcores)),
            ", ".join(map(str, stage.inputs)) or "(source)", outputs or "(sink)",
        )  # fmt: skip
    pools = ", ".join(
        f"{name} (n={p.n}, cache {p.cache_size}, data_room {p.data_room})"
        for name, p in spec.mempools.items()
    )
    table.caption = (
        f"runtime: burst {spec.runtime.burst}, poll {spec.runtime.poll}; mempools: {pools}"
    )
    return table
