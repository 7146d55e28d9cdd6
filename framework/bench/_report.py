"""Ratios, targets, and the table or JSON every ``pktflow bench`` command prints.

A command measures ``Row``s, names the comparisons that matter (a pktflow
row against a peer's) and the targets the project set, and hands all of
it to ``build_result``; ``render`` prints the result as rich tables or as
JSON. Rows are found by ``Row.key``; a comparison whose rows were not
measured (a backend missing, a burst not run) is kept with ratio None, so
the JSON always says what was asked.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from rich import box
from rich.console import Console
from rich.table import Table

from pktflow._affinity import cpu_list

from ._measure import Row

UNIT = "handles/s"


class Comparison(NamedTuple):
    """How many times faster the row ``row`` is than the row ``peer``; at least ``target``, if set.

    Usage: ``Comparison("numba 1 thread vs deque", numba_key, deque_key, None)``
    """

    label: str
    row: str
    peer: str
    target: float | None = None


class Target(NamedTuple):
    """A rate the row ``row`` must reach, in the result's unit (handles/s unless it says).

    Usage: ``Target("numba single thread, burst 32", key, 30e6)``
    """

    label: str
    row: str
    minimum: float


def compare_both(
    label: str, rows: tuple[str, str], peer_label: str, peer: str, target: float | None = None
) -> list[Comparison]:
    """Compare with the row ``peer`` a row called by methods, then its twin called by bound ones.

    ``rows`` are the two rows' keys (``twin_keys``).

    Usage: ``compare_both("numba 1 thread, burst 32", twins, "deque, burst 32", deque_key)``
    """
    row, bound_row = rows
    return [
        Comparison(f"{label} vs {peer_label}", row, peer, target),
        Comparison(f"{label}, bound calls vs {peer_label}", bound_row, peer, target),
    ]


def target_both(label: str, rows: tuple[str, str], minimum: float) -> list[Target]:
    """The same target for a row called by methods and for its twin called by bound operations.

    Usage: ``target_both("numba 1 thread, burst 32", twin_keys("numba", ...), 30e6)``
    """
    row, bound_row = rows
    return [Target(label, row, minimum), Target(f"{label}, bound calls", bound_row, minimum)]


def _met(value: float | None, bound: float | None) -> bool | None:
    return None if value is None or bound is None else value >= bound


def build_result(
    benchmark: str,
    rows: Sequence[Row],
    comparisons: Sequence[Comparison],
    targets: Sequence[Target],
    settings: dict[str, Any],
    notes: Sequence[str],
    unit: str | None = None,
) -> dict[str, Any]:
    """The machine-readable result of one command: rows, ratios, targets, notes.

    ``unit`` is what the rows' rates count per second (default ``UNIT``,
    handles/s).

    Usage: ``result = build_result("ring", rows, comparisons, targets, settings, notes)``
    """
    medians = {row.key: row.median for row in rows}
    ratios = []
    for c in comparisons:
        mine, theirs = medians.get(c.row), medians.get(c.peer)
        ratio = mine / theirs if mine is not None and theirs else None
        ratios.append(
            {
                "label": c.label,
                "row": c.row,
                "peer": c.peer,
                "ratio": ratio,
                "target": c.target,
                "met": _met(ratio, c.target),
            }
        )
    checked = []
    for t in targets:
        value = medians.get(t.row)
        checked.append(
            {
                "label": t.label,
                "row": t.row,
                "value": value,
                "minimum": t.minimum,
                "met": _met(value, t.minimum),
            }
        )
    return {
        "benchmark": benchmark,
        "unit": unit or UNIT,
        "machine": {
            "cpus": cpu_list(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": settings,
        "rows": [row.as_dict() for row in rows],
        "ratios": ratios,
        "targets": checked,
        "notes": list(notes),
    }


def _table(title: str, left: Sequence[str], right: Sequence[str], folds: str) -> Table:
    """A table of ``left``-justified columns, then right-justified ones, titled ``title``.

    On a console too narrow for it, only the column ``folds`` gives up width
    (its text wraps, or folds where it has no spaces): the others stay whole.
    """
    # No vertical rules, edges or double padding: the ring's rows fit 80 columns.
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in [*left, *right]:
        table.add_column(
            column,
            justify="left" if column in left else "right",
            no_wrap=column != folds,
            overflow="fold",
        )
    return table


def _mega(value: float | None) -> str:
    """Millions, to three significant digits (or whole millions from 100 up)."""
    if value is None:
        return "—"
    millions = value / 1e6
    return f"{millions:,.0f}" if millions >= 100 else f"{millions:.3g}"


def _verdict(met: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "—"}[met]


def render(
    result: dict[str, Any], *, as_json: bool = False, console: Console | None = None
) -> None:
    """Print ``result``: JSON on stdout, or tables on ``console`` (default: stdout).

    Usage: ``render(result, as_json=False)``
    """
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    console = console or Console()
    runs = sorted({row["runs"] for row in result["rows"]})
    title = (
        f"pktflow bench {result['benchmark']}: millions of {result.get('unit', UNIT)}, median of "
        f"{'/'.join(map(str, runs))} runs (min\N{EN DASH}max)"
    )
    table = _table(
        title,
        ["benchmark", "backend / peer", "mode"],
        ["burst", "median", "min\N{EN DASH}max"],
        folds="backend / peer",
    )
    previous_group = None
    for row in result["rows"]:
        if previous_group is not None and row["group"] != previous_group:
            table.add_section()
        previous_group = row["group"]
        table.add_row(
            row["name"],
            row["backend"] or "",
            row["mode"] or "",
            str(row["burst"]),
            _mega(row["median"]),
            f"{_mega(row['min'])}\N{EN DASH}{_mega(row['max'])}",
        )
    console.print(table)
    if result["ratios"]:
        ratios = _table(
            "ratios of medians", ["comparison"], ["ratio", "target", "met"], folds="comparison"
        )
        for r in result["ratios"]:
            ratios.add_row(
                r["label"],
                "not measured" if r["ratio"] is None else f"{r['ratio']:.1f}x",
                "" if r["target"] is None else f">= {r['target']:g}x",
                "" if r["target"] is None else _verdict(r["met"]),
            )
        console.print()
        console.print(ratios)
    if result["targets"]:
        targets = _table(
            "targets", ["target"], ["median M/s", "minimum M/s", "met"], folds="target"
        )
        for t in result["targets"]:
            targets.add_row(t["label"], _mega(t["value"]), _mega(t["minimum"]), _verdict(t["met"]))
        console.print()
        console.print(targets)
    if result["notes"]:
        console.print()
    for note in result["notes"]:
        console.print(f"note: {note}", highlight=False)
