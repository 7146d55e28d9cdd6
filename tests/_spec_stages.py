"""Stage classes tests/test_spec.py names as "_spec_stages:Class" (tests/ is on sys.path).

Only their constructors matter: the spec checks YAML options against them.
Nothing here is ever run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pktflow

if TYPE_CHECKING:
    from decimal import Decimal


class Tag(pktflow.Stage):
    """One optional int option."""

    def __init__(self, ctx: pktflow.StageContext, *, mark: int = 7) -> None:
        super().__init__(ctx)
        self.mark = mark


class Needs(pktflow.Stage):
    """A required keyword-only option."""

    def __init__(self, ctx: pktflow.StageContext, *, label: str, weight: float = 1.0) -> None:
        super().__init__(ctx)
        self.label, self.weight = label, weight


class Split(pktflow.Stage):
    """Two outputs of its own."""

    outputs = ("left", "right")


class Loose(pktflow.Stage):
    """Takes ``**options``: any option is accepted as is."""

    def __init__(self, ctx: pktflow.StageContext, **options: Any) -> None:
        super().__init__(ctx)
        self.options = options


class HalfHinted(pktflow.Stage):
    """``mark`` has a checkable hint; ``helper``'s names a type only a type checker sees."""

    def __init__(
        self, ctx: pktflow.StageContext, *, mark: int = 7, helper: Decimal | None = None
    ) -> None:
        super().__init__(ctx)
        self.mark, self.helper = mark, helper


class Ticker(pktflow.Source):
    """A custom source."""

    def __init__(self, ctx: pktflow.StageContext, *, total: int = 10) -> None:
        super().__init__(ctx)
        self.left = total


class NotAStage:
    """A class, but no pktflow.Stage."""


NOT_A_CLASS = 42
