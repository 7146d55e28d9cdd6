"""Public test suites that backend authors run against their own code.

``RingConformance`` is the rte_ring contract as pytest tests (see
``pktflow.testing.ring_conformance``). It is imported lazily, so spawned
test children that import ``pktflow.testing._workers`` never load pytest.

Usage::

    from pktflow.testing import RingConformance

    class TestMyBackend(RingConformance):
        backend = "mine"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ring_conformance import RingConformance, RingModel, assert_same_behaviour, unique_name

__all__ = ["RingConformance", "RingModel", "assert_same_behaviour", "unique_name"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import ring_conformance

        return getattr(ring_conformance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
