"""What a ``pktflow bench`` command does around its measurements.

It picks the backends that can run here, shows a status line while it
measures, audits the CPU other work took, writes the notes that tell a
reader how far to trust the figures (other work on the machine, too few
runs), then builds, prints and returns the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console

import pktflow
from pktflow._affinity import cpu_list

from ._measure import MIN_RUNS, Row, cpu_audit
from ._report import Comparison, Target, build_result, render

QUIET_SHARE = 0.05  # other work above this share of the CPUs lowers and spreads the figures

Progress = Callable[[str], None]
# Measures the rows of a command on the usable backends, reporting progress.
MeasureAll = Callable[[list[str], Progress], list[Row]]


def run_bench(
    benchmark: str,
    backends: Sequence[str],
    measure_all: MeasureAll,
    *,
    repeats: int,
    comparisons: Sequence[Comparison],
    targets: Sequence[Target],
    settings: Mapping[str, Any],
    notes: Sequence[str],
    as_json: bool,
    console: Console | None,
    unit: str | None = None,
) -> dict[str, Any]:
    """Measure on the usable ``backends``; print the result (tables or JSON) and return it.

    ``measure_all(usable, progress)`` gives the rows, whose rates count
    ``unit`` per second (default: handles/s). The result's settings
    are ``settings`` plus the backends used, the seconds taken and the CPU
    audit; its notes are the backends skipped, how far to trust the
    figures, then ``notes`` (what the rows mean).

    Usage: ``return run_bench("ring", backends, measure_all, repeats=7, ..., console=None)``
    """
    usable, skipped = _usable_backends(backends)
    console = console or Console()
    title = f"pktflow bench {benchmark}"
    started = time.perf_counter()
    # Other work on this machine lowers and spreads every figure: say how much ran.
    with cpu_audit() as audit, _progress_line(console, title, not as_json) as progress:
        rows = measure_all(usable, progress)
    result = build_result(
        benchmark,
        rows,
        comparisons,
        targets,
        {
            **settings,
            "backends": usable,
            "seconds": round(time.perf_counter() - started, 1),
            **audit,
        },
        [*skipped, *_trust_notes(audit, repeats), *notes],
        unit=unit,
    )
    render(result, as_json=as_json, console=console)
    return result


def _usable_backends(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The backends that can run here, and a note for each one skipped, with its reason."""
    usable, notes = [], []
    for name in names:
        reason = pktflow.backend_unavailable_reason(name)
        if reason is None:
            usable.append(name)
        else:
            notes.append(f"backend {name!r} skipped: {reason}")
    return usable, notes


@contextmanager
def _progress_line(console: Console, title: str, show: bool) -> Iterator[Progress]:
    """A status line on ``console`` while the block runs; yields the function that updates it.

    With ``show`` false (JSON goes to stdout) nothing is drawn and updates do nothing.
    """
    if not show:
        yield lambda text: None
        return
    with console.status(title) as status:
        yield lambda text: status.update(f"{title}: {text}")


def _trust_notes(audit: Mapping[str, float], repeats: int) -> list[str]:
    """Notes on how far to trust the figures: other work's share of the CPUs, too few runs."""
    notes = []
    share = audit.get("others_share")
    if share is not None:
        warning = (
            ": figures are low and spread; rerun on a quiet machine" if share > QUIET_SHARE else ""
        )
        cpus = len(cpu_list())
        notes.append(f"other work used {share:.0%} of the {cpus} CPUs during the run{warning}")
    if repeats < MIN_RUNS:
        notes.append(f"{repeats} runs per row: medians of fewer than {MIN_RUNS} say little")
    return notes
