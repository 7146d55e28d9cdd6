"""Bodies of the child processes tests/test_zone_hardening.py starts (importable by spawn)."""

from __future__ import annotations

import os
import time

import pktflow

_keep: list[pktflow.Zone] = []


def create_and_return(name: str) -> None:
    """Create and publish a shared zone, then return without closing it."""
    zone = pktflow.Zone.create(name, 4096, shared=True, hugepages="never")
    zone.publish()
    _keep.append(zone)


def abandon(name: str) -> None:
    """Create and publish a shared zone, then exit as a crash would (no cleanup)."""
    zone = pktflow.Zone.create(name, 4096, shared=True, hugepages="never")
    zone.publish()
    _keep.append(zone)
    os._exit(0)


def churn(name: str, seconds: float, hugepages: str, tmpfile: bool = True) -> None:
    """Create, publish and close a zone named ``name`` again and again for ``seconds``.

    ``tmpfile=False`` makes the files in place (O_EXCL), as where O_TMPFILE is missing.
    """
    if not tmpfile:
        pktflow._memory._tmpfile_ok = False  # type: ignore[attr-defined]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        zone = pktflow.Zone.create(name, 1 << 16, shared=True, hugepages=hugepages)  # type: ignore[arg-type]
        zone.publish()
        zone.close()
