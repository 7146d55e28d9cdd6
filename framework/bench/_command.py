"""What a ``pktflow bench`` command does around its measurements.

It picks the backends that can run here, shows a status line while it
measures, and writes the notes that tell a reader how far to trust the
figures (other work on the machine, too few runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from rich.console import Console

import pktflow

from ._measure import MIN_RUNS, allowed_cpus

QUIET_SHARE = 0.05  # other work above this share of the CPUs lowers and spreads the figures


def usable_backends(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The backends that can run here, and a note for each one skipped, with its reason.

    Usage: ``usable, notes = usable_backends(["pure", "numba", "hugepage"])``
    """
    usable, notes = [], []
    for name in names:
        reason = pktflow.backend_unavailable_reason(name)
        if reason is None:
            usable.append(name)
        else:
            notes.append(f"backend {name!r} skipped: {reason}")
    return usable, notes


@contextmanager
def progress_line(console: Console, title: str, show: bool) -> Iterator[Callable[[str], None]]:
    """A status line on ``console`` while the block runs; yields the function that updates it.

    With ``show`` false (JSON goes to stdout) nothing is drawn and updates do nothing.

    Usage: ``with progress_line(console, "pktflow bench mempool", True) as progress: ...``
    """
    if not show:
        yield lambda text: None
        return
    with console.status(title) as status:
        yield lambda text: status.update(f"{title}: {text}")


def trust_notes(audit: Mapping[str, float], repeats: int) -> list[str]:
    """Notes on how far to trust the figures: other work's share of the CPUs, too few runs.

    ``audit`` is what ``cpu_audit`` measured over the run.

    Usage: ``notes += trust_notes(audit, settings.repeats)``
    """
    notes = []
    share = audit.get("others_share")
    if share is not None:
        warning = (
            ": figures are low and spread; rerun on a quiet machine" if share > QUIET_SHARE else ""
        )
        cpus = len(allowed_cpus())
        notes.append(f"other work used {share:.0%} of the {cpus} CPUs during the run{warning}")
    if repeats < MIN_RUNS:
        notes.append(f"{repeats} runs per row: medians of fewer than {MIN_RUNS} say little")
    return notes
