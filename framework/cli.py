"""The ``pktflow`` command line: ``run``, ``validate``, ``info``, ``cleanup``, ``bench ...``.

Commands hang off the ``main`` group; each benchmark is a command of the
``bench`` group.

Usage::

    pktflow run pipelines/examples/quickstart.yaml
    pktflow run quick.yaml --duration 10 --json
    pktflow validate quick.yaml
    pktflow info            # versions, CPUs, huge pages, backends, zones
    pktflow info --json
    pktflow cleanup --dry-run
    pktflow bench ring --quick
    pktflow bench mempool --quick
    pktflow bench pipeline --quick
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from . import PktflowError, __version__, cleanup_zones, list_zones
from ._info import NOT_INSTALLED, collect_info
from ._lcore import release_dead_claims

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["main"]


class _Group(click.Group):
    """A group that shows a ``PktflowError`` as one ``error: ...`` line, exit code 1.

    These errors are written for users (they name the fix), so a traceback
    would only bury the message.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PktflowError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="pktflow")
def main() -> None:
    """pktflow: DPDK's memory model for Python (zones, rings, mempools, mbufs).

    \f
    Usage: ``pktflow info``
    """


# -- pipelines ----------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--duration", type=click.FloatRange(min=0), metavar="S", help="Stop after S seconds.")
@click.option(
    "--count", type=click.IntRange(min=0), metavar="N",
    help="Stop after N packets left the sources (whole bursts).",
)  # fmt: skip
@click.option(
    "--json", "as_json", is_flag=True,
    help="Print one Stats JSON object per second, the last one final.",
)  # fmt: skip
@click.option(
    "--cluster", metavar="ADDRESS",
    help="Run on a Ray cluster: local, auto or host:port (overrides the YAML's cluster.address).",
)  # fmt: skip
def run(
    file: str, duration: float | None, count: int | None, as_json: bool, cluster: str | None
) -> None:
    """Run the pipeline in FILE (YAML) until its sources end, --count or --duration.

    A live per-stage table shows rates while it runs (on a terminal); Ctrl-C
    or SIGTERM drains and stops it, then prints the summary; a second
    Ctrl-C stops at once. Loading a pipeline may import the modules its
    stage types name.

    \f
    Usage: ``pktflow run pipelines/examples/quickstart.yaml --duration 5``
    """
    from ._terminal import run_pipeline_file

    sys.exit(
        run_pipeline_file(file, duration=duration, count=count, as_json=as_json, cluster=cluster)
    )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check the pipeline in FILE and show its graph; exit 1 with the error if it is wrong.

    \f
    Usage: ``pktflow validate quick.yaml``
    """
    from ._spec import load_spec_file
    from ._terminal import graph_table

    spec = load_spec_file(file)
    if spec.cluster is not None:  # its layout over nodes: the checks a run makes first
        from ._cluster_plan import ClusterPlan

        ClusterPlan(spec)
    Console().print(graph_table(spec))


# -- info -------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def info(as_json: bool) -> None:
    """Show versions, CPUs, huge pages, ring backends and shared zones.

    \f
    Usage: ``pktflow info --json``
    """
    facts = collect_info()
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    console = Console()
    console.print(_environment_table(facts))
    console.print(_memory_table(facts))
    console.print(_backends_table(facts))
    _print_zones(console, facts["zones"])
    _print_lcores(console, facts["lcores"])


def _environment_table(facts: dict[str, Any]) -> Table:
    table = Table(title="Environment", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    python = facts["python"]
    table.add_row("pktflow", facts["pktflow"])
    table.add_row(
        "python", f"{python['version']} ({python['implementation']}, {python['executable']})"
    )
    for name, found in facts["packages"].items():
        table.add_row(name, f"[dim]{found}[/dim]" if found == NOT_INSTALLED else found)
    cpus = facts["cpus"]
    affinity = cpus["affinity"]
    table.add_row(
        "cpus",
        f"{cpus['count']}, this process may run on "
        + (_ranges(affinity) if affinity is not None else "all"),
    )
    return table


def _memory_table(facts: dict[str, Any]) -> Table:
    table = Table(title="Huge pages", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    pages = facts["hugepages"]
    table.add_row("page size", _size(pages["page_size"]))
    free = f"{pages['free']} free of {pages['total']} reserved"
    if pages["reserve_command"]:
        free += f" [yellow](reserve some: {pages['reserve_command']})[/yellow]"
    table.add_row("pages", free)
    table.add_row("hugetlbfs", pages["mount"] or "[yellow]not mounted[/yellow]")
    thp = facts["transparent_hugepages"]
    mode = thp["shmem_enabled"] or "unknown"
    if thp["fix"]:
        mode += f" [yellow](/dev/shm zones get 4 KiB pages; to change: {thp['fix']})[/yellow]"
    table.add_row("THP for shmem", mode)
    return table


def _backends_table(facts: dict[str, Any]) -> Table:
    table = Table(title="Ring backends", title_justify="left")
    for column in ("backend", "status", "shared", "description"):
        table.add_column(column)
    for name, entry in facts["backends"].items():
        label = f"{name} [bold](default)[/bold]" if entry["default"] else name
        if entry["available"]:
            shared = "across processes" if entry["shared"] else "one process"
            table.add_row(label, "[green]available[/green]", shared, entry["description"] or "")
        else:
            table.add_row(label, "[red]unavailable[/red]", "-", entry["reason"])
    return table


def _print_zones(console: Console, zones: dict[str, Any]) -> None:
    if zones["left_behind"]:
        console.print(
            _zones_table("Zones left behind (creator gone)", zones["left_behind"]),
        )
        console.print(f"[yellow]remove them with `{zones['cleanup_command']}`[/yellow]")
    else:
        console.print("No zones left behind.")
    if zones["alive"]:
        console.print(_zones_table("Zones in use", zones["alive"]))


def _print_lcores(console: Console, lcores: dict[str, Any]) -> None:
    for key, title in (("alive", "Lcores held"), ("left_behind", "Lcores left behind (pid gone)")):
        if lcores[key]:
            table = Table(title=f"{title} in {lcores['table']}", title_justify="left")
            for column in ("lcore", "pid", "thread"):
                table.add_column(column)
            for claim in lcores[key]:
                table.add_row(str(claim["lcore"]), str(claim["pid"]), str(claim["thread"]))
            console.print(table)
    if not lcores["left_behind"]:
        console.print("No lcores left behind.")


def _zones_table(title: str, zones: Iterable[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    # Names and paths are what users copy into commands: never break them.
    table.add_column("name", no_wrap=True)
    for column in ("kind", "size", "pages", "pid"):
        table.add_column(column)
    table.add_column("path", no_wrap=True)
    for zone in zones:
        table.add_row(
            zone["name"],
            zone["kind"],
            _size(zone["size"]),
            _size(zone["page_size"]),
            str(zone["creator_pid"]),
            zone["path"],
        )
    return table


def _ranges(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``, as taskset and cpusets write CPU lists."""
    spans: list[list[int]] = []
    for cpu in cpus:
        if spans and cpu == spans[-1][1] + 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in spans)


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


# -- cleanup ----------------------------------------------------------------


@main.command()
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def cleanup(dry_run: bool) -> None:
    """Remove shared zones left behind by processes that are gone.

    A crashed run cannot unlink its zones; this does, for any zone whose
    creator no longer exists and that no live process still maps.

    \f
    Usage: ``pktflow cleanup --dry-run``
    """
    removed = cleanup_zones(dry_run=dry_run)
    if not dry_run:
        for lcore in release_dead_claims():
            click.echo(f"Released lcore {lcore}: its process is gone.")
    for zone in list_zones():
        if not zone.creator_alive and zone.mapped_by:
            pids = ", ".join(map(str, zone.mapped_by))
            click.echo(f"Kept {zone.name} ({zone.path}): its creator is gone, pids {pids} map it.")
    if not removed:
        click.echo("Nothing to remove: no zone of a dead creator is unused.")
        return
    verb = "Would remove" if dry_run else "Removed"
    table = Table(title=f"{verb} {len(removed)} zone(s) left behind", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("path", no_wrap=True)
    table.add_column("dead creator pid")
    for zone in removed:
        table.add_row(zone.name, zone.path, str(zone.creator_pid))
    Console().print(table)


# -- bench ------------------------------------------------------------------


@main.group()
def bench() -> None:
    """Measure pktflow next to the usual Python peers.

    Each figure is shown next to what a Python user would pick instead
    (collections.deque, queue.Queue, ...), measured in the same run.

    \f
    Usage: ``pktflow bench ring --quick``
    """


def _bench_command(name: str, unit: str, burst_help: str, run: str, doc: str) -> click.Command:
    """A ``pktflow bench NAME`` command with the options every benchmark takes.

    ``run`` is "module:function" under ``pktflow.bench``, imported when the
    command runs: a benchmark pulls in its peers (and numba) only then.
    """

    def command(
        quick: bool, as_json: bool, backends: tuple[str, ...], bursts: tuple[int, ...],
        repeats: int | None,
    ) -> None:  # fmt: skip
        module, _, function = run.partition(":")
        runner = getattr(importlib.import_module(f"pktflow.bench.{module}"), function)
        runner(
            quick=quick, as_json=as_json, backends=list(backends) or None,
            bursts=list(bursts) or None, repeats=repeats,
        )  # fmt: skip

    command.__doc__ = doc
    options = [
        click.option("--quick", is_flag=True, help="Fewer sizes and shorter runs."),
        click.option("--json", "as_json", is_flag=True, help="Print results as JSON."),
        click.option(
            "--backend", "backends", multiple=True, metavar="NAME",
            help=f"{unit} backend to measure (repeatable; default: every available one).",
        ),
        click.option(
            "--burst", "bursts", multiple=True, type=click.IntRange(min=1), metavar="N",
            help=burst_help,
        ),
        click.option(
            "--repeats", type=click.IntRange(min=1), metavar="N", help="Runs per measurement."
        ),
    ]  # fmt: skip
    decorated: Callable[..., None] = command
    for option in reversed(options):
        decorated = option(decorated)
    return bench.command(name)(decorated)


_bench_command(
    "ring", "Ring", "Burst size in handles (repeatable).", "ring:run_ring_bench",
    """Ring throughput per backend and burst size, next to the peers.

    \f
    Usage: ``pktflow bench ring --backend numba --burst 32``
    """,
)  # fmt: skip
_bench_command(
    "mempool", "Mempool", "Objects per call (repeatable; 1 is get()/put()).",
    "mempool:run_mempool_bench",
    """Mempool and mbuf objects per second per backend and burst size, next to the peers.

    \f
    Usage: ``pktflow bench mempool --backend numba --burst 32``
    """,
)  # fmt: skip
_bench_command(
    "pipeline", "Mempool", "Packets per burst (runtime.burst; repeatable).",
    "pipeline:run_pipeline_bench",
    """The quickstart graph in packets/s: the walk, rings on every edge, asyncio.Queue tasks.

    \f
    Usage: ``pktflow bench pipeline --burst 32 --json``
    """,
)  # fmt: skip
_bench_command(
    "cluster", "Mempool", "Packets per burst (the first one; default 32).",
    "cluster:run_cluster_bench",
    """A remote edge between two local Ray nodes in packets/s and MB/s, beside raw pyzmq and
    Ray actor calls per burst (needs pktflow[cluster]).

    \f
    Usage: ``pktflow bench cluster --repeats 3``
    """,
)  # fmt: skip
_bench_command(
    "io", "Mempool", "Packets per burst of the pktflow rows (runtime.burst).",
    "io:run_io_bench",
    """pcap replay, AF_PACKET receive and UDP echo in packets/s, next to scapy and asyncio.

    \f
    Usage: ``pktflow bench io --quick``
    """,
)  # fmt: skip
