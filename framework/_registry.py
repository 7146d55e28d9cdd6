"""Implementations by name: built-in lazy paths, entry points, code, ``"module:Attr"``.

``Registry`` is the machinery; ring backends (group ``pktflow.backends``)
and stage types (group ``pktflow.stages``) each have one instance, so a
third party's implementation is found exactly as the built-in ones are.
The framework reaches backends only through the functions below.

Usage::

    stages = Registry(kind="stage type", group="pktflow.stages",
                      builtins={"drop": "pktflow.pipelines.sinks:Drop"},
                      validate=lambda obj: isinstance(obj, type), error=ConfigError)
    stages.load("drop")                      # imports pktflow.pipelines.sinks once
    stages.load("mypkg.stages:Tag")          # a path works as a name
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar, cast

from ._errors import BackendError
from .abc import Backend

__all__ = [
    "ENTRY_POINT_GROUP",
    "Registry",
    "available_backends",
    "backend_names",
    "default_backend_name",
    "did_you_mean",
    "get_backend",
    "register_backend",
    "unavailable_reason",
]

T = TypeVar("T")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``' (did you mean "x"?)'`` for the closest of ``choices``, or ``""`` when none is close.

    Usage: ``f"no stage named {name!r}{did_you_mean(name, stages)}"``
    """
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _is_path(name: object) -> bool:
    if not isinstance(name, str):
        return False
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr)


class Registry(Generic[T]):
    """Objects of one kind by name, loaded lazily and cached.

    A name resolves, in this order of precedence, to a registration made in
    code (``register``), an entry point of ``group``, or a built-in; each
    target is an object or a lazy ``"package.module:Attr"`` path, imported
    on first ``load``. A name that is itself such a path loads directly.
    The table of names is read from package metadata once and kept until
    the next ``register``/``unregister``; loaded objects are kept by name.

    ``validate`` checks a loaded object (a predicate: False makes ``load``
    fail with "is not ``expected``"); ``hints`` maps a name to an install
    hint shown when its import fails; ``error`` is the exception class
    raised for unknown names and failed loads (called with one message).

    Usage::

        backends = Registry(kind="ring backend", group="pktflow.backends",
                            builtins={"pure": "pktflow.backends._pure:PureBackend"},
                            validate=lambda obj: isinstance(obj, type), error=BackendError)
        cls = backends.load("pure")
    """

    def __init__(
        self,
        kind: str,
        group: str,
        builtins: Mapping[str, str] | None = None,
        *,
        validate: Callable[[object], bool] | None = None,
        expected: str | None = None,
        hints: Mapping[str, str] | None = None,
        error: type[Exception] = BackendError,
    ) -> None:
        self.kind = kind
        self.group = group
        self.error = error
        self._builtins: dict[str, str] = dict(builtins or {})
        self._validate = validate
        self._expected = expected or f"a {kind}"
        self._hints: dict[str, str] = dict(hints or {})
        self._lock = threading.Lock()
        self._registered: dict[str, T | str] = {}
        self._table: dict[str, T | str] | None = None  # None: read again on next use
        self._loaded: dict[str, T] = {}

    # -- the table --------------------------------------------------------------

    def register(self, name: str, target: T | str) -> None:
        """Declare ``name`` as ``target`` (an object or a ``"module:Attr"`` path).

        Overrides an entry point or built-in of that name. An object is
        validated now; a path when it is first loaded.

        Usage: ``registry.register("mine", MyBackend)``
        """
        if not isinstance(name, str) or not name or ":" in name:
            raise self.error(
                f"a {self.kind} name must be a non-empty string without ':', not {name!r}"
            )
        if not isinstance(target, str):
            self._checked(name, target)
        with self._lock:
            self._registered[name] = target
            self._table = None
            self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        """Forget a registration made with ``register`` (built-ins and entry points stay).

        Usage: ``registry.unregister("mine")``
        """
        with self._lock:
            self._registered.pop(name, None)
            self._table = None
            self._loaded.pop(name, None)

    def _declared(self) -> dict[str, T | str]:
        table = self._table
        if table is None:
            # Built-ins, then entry points (which may override them), then code.
            fresh: dict[str, T | str] = dict(self._builtins)
            for ep in entry_points(group=self.group):
                fresh[ep.name] = ep.value
            with self._lock:
                fresh.update(self._registered)
                self._table = table = fresh
        return table

    def names(self) -> list[str]:
        """Every declared name, sorted, whether it loads here or not.

        Usage: ``registry.names()  # ['hugepage', 'numba', 'pure']``
        """
        return sorted(self._declared())

    def __contains__(self, name: object) -> bool:
        return name in self._declared() or _is_path(name)

    # -- loading ----------------------------------------------------------------

    def load(self, name: str) -> T:
        """The object ``name`` stands for, imported and validated on first use.

        Raises ``error`` for an unknown name (listing the known ones, with a
        "did you mean"), an import that fails (with the install hint), a
        path naming nothing, or an object the validator refuses.

        Usage: ``cls = registry.load("numba")``
        """
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        table = self._declared()
        if name in table:
            target = table[name]
        elif _is_path(name):
            target = name
        else:
            raise self.error(self.unknown_message(name))
        obj = self._checked(name, self._import(name, target) if isinstance(target, str) else target)
        with self._lock:
            if self._table is table:  # else a register() came meanwhile: do not cache
                self._loaded[name] = obj
        return obj

    def unknown_message(self, name: object) -> str:
        """The message for a name nothing declares: the known names and the closest one.

        Usage: ``raise ConfigError(registry.unknown_message(name), line=3)``
        """
        known = self.names()
        hint = did_you_mean(name, known) if isinstance(name, str) else ""
        return (
            f'unknown {self.kind} "{name}"{hint}; known: {", ".join(known) or "none"}'
            ' (or "package.module:Name")'
        )

    def _import(self, name: str, path: str) -> object:
        module_name, _, attr = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = self._hints.get(name, "check that the package providing it is installed")
            raise self.error(f"{self.kind} {name!r} cannot be imported ({exc}); {hint}") from exc
        except Exception as exc:  # the module itself failed while importing
            raise self.error(
                f"{self.kind} {name!r}: importing {module_name!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise self.error(
                f"{self.kind} {name!r}: module {module_name!r} has no attribute {attr!r}"
            ) from exc

    def _checked(self, name: str, obj: object) -> T:
        if self._validate is not None and not self._validate(obj):
            raise self.error(f"{self.kind} {name!r} is {obj!r}, which is not {self._expected}")
        return cast(T, obj)


# -- ring backends --------------------------------------------------------------

ENTRY_POINT_GROUP = "pktflow.backends"


def _is_backend(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Backend)


# The built-in backends, also declared as entry points in pyproject.toml; the
# table keeps them reachable from a source tree that was never installed.
BACKENDS: Registry[type[Backend]] = Registry(
    kind="ring backend",
    group=ENTRY_POINT_GROUP,
    builtins={
        "pure": "pktflow.backends._pure:PureBackend",
        "numba": "pktflow.backends._numba:NumbaBackend",
        "hugepage": "pktflow.backends._hugepage:HugepageBackend",
    },
    validate=_is_backend,
    expected="a pktflow.abc.Backend subclass",
    hints={
        "numba": "pip install numba",
        "hugepage": "pip install numba; reserve huge pages with `sysctl -w vm.nr_hugepages=64`",
    },
    error=BackendError,
)

_instances_lock = threading.Lock()
_instances: dict[str, Backend] = {}


def register_backend(name: str, backend: type[Backend] | str) -> None:
    """Make a backend available under ``name`` (a class or a "module:Class" path).

    Usage: ``pktflow.register_backend("mine", MyBackend)``
    """
    BACKENDS.register(name, backend)
    with _instances_lock:
        _instances.pop(name, None)


def backend_names() -> list[str]:
    """Names of every declared backend, available here or not.

    Usage: ``pktflow.backend_names()  # ['hugepage', 'numba', 'pure', ...]``
    """
    return BACKENDS.names()


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot be used here, or None when it can.

    Usage: ``pktflow.backend_unavailable_reason("hugepage")``
    """
    try:
        cls = BACKENDS.load(name)
    except BackendError as exc:
        return str(exc)
    return cls.unavailable_reason()


def available_backends() -> list[str]:
    """Names of the backends usable on this machine now.

    Usage: ``pktflow.available_backends()  # ['hugepage', 'numba', 'pure']``
    """
    return [name for name in backend_names() if unavailable_reason(name) is None]


def default_backend_name() -> str:
    """``numba`` when it can run here, else ``pure``.

    Usage: ``pktflow.default_backend_name()``
    """
    return "numba" if unavailable_reason("numba") is None else "pure"


def get_backend(name: str | None = None) -> Backend:
    """The backend instance registered as ``name`` (default: numba, else pure).

    Raises ``BackendError`` naming the known backends for an unknown name,
    and why for an unavailable one. Usage: ``pktflow.get_backend("hugepage")``
    """
    if name is None:
        name = default_backend_name()
    instance = _instances.get(name)
    if instance is not None:
        return instance
    cls = BACKENDS.load(name)
    reason = cls.unavailable_reason()
    if reason is not None:
        raise BackendError(
            f"ring backend {name!r} is unavailable here: {reason}; "
            f"available: {', '.join(available_backends())}"
        )
    with _instances_lock:
        return _instances.setdefault(name, cls())
