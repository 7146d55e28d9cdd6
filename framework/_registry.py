"""Backends by name: a built-in table of lazy paths, entry points, and code.

The framework reaches backends only through here, so a third party's
backend is found exactly as the built-in ones are.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points

from ._errors import BackendError
from .abc import Backend

ENTRY_POINT_GROUP = "pktflow.backends"

# The built-in backends, also declared as entry points in pyproject.toml; the
# table keeps them reachable from a source tree that was never installed.
_BUILTIN: dict[str, str] = {
    "pure": "pktflow.backends._pure:PureBackend",
    "numba": "pktflow.backends._numba:NumbaBackend",
    "hugepage": "pktflow.backends._hugepage:HugepageBackend",
}

_INSTALL_HINTS: dict[str, str] = {
    "numba": "pip install numba",
    "hugepage": "pip install numba; reserve huge pages with `sysctl -w vm.nr_hugepages=64`",
}

_lock = threading.Lock()
_registered: dict[str, type[Backend] | str] = {}
_instances: dict[str, Backend] = {}


def register_backend(name: str, backend: type[Backend] | str) -> None:
    """Make a backend available under ``name`` (a class or a "module:Class" path).

    Usage: ``pktflow.register_backend("mine", MyBackend)``
    """
    if not name or not isinstance(name, str):
        raise BackendError(f"a backend name must be a non-empty string, not {name!r}")
    with _lock:
        _registered[name] = backend
        _instances.pop(name, None)


def _declared() -> dict[str, type[Backend] | str]:
    """Every known name: built-ins, then entry points, then code registrations."""
    table: dict[str, type[Backend] | str] = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        table.setdefault(ep.name, ep.value)
    table.update(_registered)
    return table


def backend_names() -> list[str]:
    """Names of every declared backend, available here or not.

    Usage: ``pktflow.backend_names()  # ['hugepage', 'numba', 'pure', ...]``
    """
    return sorted(_declared())


def _load_class(name: str, target: type[Backend] | str) -> type[Backend]:
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise BackendError(f"backend {name!r} cannot be imported ({exc}); {_hint(name)}") from exc
    except AttributeError as exc:
        raise BackendError(f"backend {name!r}: {target!r} names no class") from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(f"backend {name!r}: {target!r} is not a pktflow.abc.Backend")
    return cls


def _hint(name: str) -> str:
    return _INSTALL_HINTS.get(name, "check that the package providing it is installed")


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot be used here, or None when it can.

    Usage: ``pktflow.backend_unavailable_reason("hugepage")``
    """
    table = _declared()
    if name not in table:
        return f"no backend named {name!r}"
    try:
        cls = _load_class(name, table[name])
    except BackendError as exc:
        return str(exc)
    return cls.unavailable_reason()


def available_backends() -> list[str]:
    """Names of the backends usable on this machine now.

    Usage: ``pktflow.available_backends()  # ['hugepage', 'numba', 'pure']``
    """
    return [name for name in backend_names() if unavailable_reason(name) is None]


def default_backend_name() -> str:
    """``numba`` when it can run here, else ``pure``."""
    return "numba" if unavailable_reason("numba") is None else "pure"


def get_backend(name: str | None = None) -> Backend:
    """The backend instance registered as ``name`` (default: numba, else pure).

    Raises ``BackendError`` naming the available backends for an unknown
    or unavailable name. Usage: ``pktflow.get_backend("hugepage")``
    """
    if name is None:
        name = default_backend_name()
    with _lock:
        instance = _instances.get(name)
    if instance is not None:
        return instance
    table = _declared()
    if name not in table:
        raise BackendError(
            f"unknown ring backend {name!r}; available: {', '.join(available_backends())}"
            f" (declared: {', '.join(sorted(table))})"
        )
    cls = _load_class(name, table[name])
    reason = cls.unavailable_reason()
    if reason is not None:
        raise BackendError(
            f"ring backend {name!r} is unavailable here: {reason}; "
            f"available: {', '.join(available_backends())}"
        )
    instance = cls()
    with _lock:
        return _instances.setdefault(name, instance)
