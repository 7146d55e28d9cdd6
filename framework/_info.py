"""The facts ``pktflow info`` reports, gathered as plain JSON-serialisable data.

Collecting is kept apart from rendering so that ``pktflow info --json``,
the rich tables and tests all read one dict.

Usage::

    from pktflow._info import collect_info
    facts = collect_info()
    facts["backends"]["numba"]["available"]
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import (
    __version__,
    backend_names,
    backend_unavailable_reason,
    default_backend_name,
    get_backend,
    hugepage_info,
    list_zones,
)
from ._lcore import lcore_claims, table_path
from ._memory import list_strays

__all__ = ["NOT_INSTALLED", "collect_info"]

NOT_INSTALLED = "not installed"
CLEANUP_COMMAND = "pktflow cleanup"
THP_SHMEM_PATH = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
# Shared zones that fall back to /dev/shm ask for THP with MADV_HUGEPAGE,
# which the kernel honours only when shmem_enabled is one of these.
_THP_SHMEM_HONOURS_ADVICE = ("always", "within_size", "advise", "force")
THP_SHMEM_FIX = f"echo advise > {THP_SHMEM_PATH}"

# Distribution names, as pip knows them; the keys are what the report shows.
_PACKAGES = {
    "numpy": "numpy",
    "numba": "numba",
    "llvmlite": "llvmlite",
    "uvloop": "uvloop",
    "pyyaml": "PyYAML",
}


def collect_info() -> dict[str, Any]:
    """Versions, CPUs, huge pages, backends and zones of this machine, as a dict.

    Every value is JSON-serialisable; nothing here changes the system.

    Usage: ``json.dumps(pktflow._info.collect_info())``
    """
    return {
        "pktflow": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": {key: _version(dist) for key, dist in _PACKAGES.items()},
        "cpus": _cpus(),
        "hugepages": _hugepages(),
        "transparent_hugepages": _thp_shmem(),
        "default_backend": default_backend_name(),
        "backends": _backends(),
        "zones": _zones(),
        "lcores": _lcores(),
    }


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return NOT_INSTALLED


def _cpus() -> dict[str, Any]:
    # sched_getaffinity is Linux-only; elsewhere every CPU is assumed usable.
    getaffinity = getattr(os, "sched_getaffinity", None)
    affinity = sorted(getaffinity(0)) if getaffinity is not None else None
    return {"count": os.cpu_count(), "affinity": affinity}


def _hugepages() -> dict[str, Any]:
    info = hugepage_info()
    return {
        "page_size": info.page_size,
        "total": info.total,
        "free": info.free,
        "mount": info.mount,
        "reserve_command": info.reserve_command if info.free == 0 else None,
    }


def _thp_shmem() -> dict[str, Any]:
    """The shmem THP mode: the kernel file lists every mode, the chosen one in brackets."""
    try:
        text = THP_SHMEM_PATH.read_text().split()
    except OSError:
        return {"shmem_enabled": None, "modes": [], "fix": None}
    modes = [word.strip("[]") for word in text]
    chosen = next((word.strip("[]") for word in text if word.startswith("[")), None)
    honours = chosen in _THP_SHMEM_HONOURS_ADVICE
    return {"shmem_enabled": chosen, "modes": modes, "fix": None if honours else THP_SHMEM_FIX}


def _backends() -> dict[str, dict[str, Any]]:
    default = default_backend_name()
    table: dict[str, dict[str, Any]] = {}
    for name in backend_names():
        reason = backend_unavailable_reason(name)
        entry: dict[str, Any] = {
            "available": reason is None,
            "reason": reason,
            "default": name == default,
            "shared": None,
            "description": None,
            "details": {},
        }
        if reason is None:
            # describe() is the backend's own free-form report; shared and
            # description are lifted out because every backend has them.
            details = dict(get_backend(name).describe())
            entry["shared"] = bool(details.pop("shared", get_backend(name).shared))
            entry["description"] = details.pop("description", "") or None
            entry["details"] = details
        table[name] = entry
    return table


def _lcores() -> dict[str, Any]:
    """The lcore table: ids held by live threads, and ids of processes that are gone."""
    claims = lcore_claims()
    return {
        "table": str(table_path()),
        "alive": [
            {"lcore": i, "pid": pid, "thread": tid} for i, pid, tid, alive in claims if alive
        ],
        "left_behind": [
            {"lcore": i, "pid": pid, "thread": tid} for i, pid, tid, alive in claims if not alive
        ],
    }


def _zones() -> dict[str, Any]:
    zones = list_zones()
    # A zone of a dead creator that a live process still maps (its mapped_by)
    # stays until that process lets go: cleanup leaves it alone.
    left_behind = [dataclasses.asdict(z) for z in zones if not z.creator_alive]
    return {
        "left_behind": left_behind,
        "alive": [dataclasses.asdict(z) for z in zones if z.creator_alive],
        "cleanup_command": CLEANUP_COMMAND if left_behind else None,
        # Files under pktflow names that are not zones (a FIFO, a directory, a
        # symlink, a damaged file): each makes its name unusable until removed.
        "not_zones": [{"path": path, "problem": problem} for path, problem in list_strays()],
    }
