"""Backends by name: built-ins, entry points, third-party registration, errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

import numpy as np
import pytest

import pktflow
from pktflow import _registry
from pktflow.abc import Backend, Ring, U32Array
from pktflow.testing import RingConformance, unique_name

BUILTIN = {"pure", "numba", "hugepage"}


@pytest.fixture
def registry() -> Iterator[None]:
    """Registrations made by the test vanish afterwards (other tests list backends)."""
    before = set(pktflow.backend_names())
    yield
    for name in set(pktflow.backend_names()) - before:
        _registry.BACKENDS.unregister(name)
        _registry._instances.pop(name, None)


# -- a third party's backend: wraps the pure ring and counts what it makes ---------


class WrappedRing(Ring):
    """A ring that delegates to another backend's ring (here: pure's)."""

    def __init__(self, inner: Ring) -> None:
        self._inner = inner
        self.name, self.size, self.capacity, self.flags = (
            inner.name, inner.size, inner.capacity, inner.flags,
        )  # fmt: skip

    def enqueue_bulk(self, objs: U32Array, n: int) -> int:
        return self._inner.enqueue_bulk(objs, n)

    def enqueue_burst(self, objs: U32Array, n: int) -> int:
        return self._inner.enqueue_burst(objs, n)

    def dequeue_bulk(self, out: U32Array, n: int) -> int:
        return self._inner.dequeue_bulk(out, n)

    def dequeue_burst(self, out: U32Array, n: int) -> int:
        return self._inner.dequeue_burst(out, n)

    def enqueue(self, handle: int) -> bool:
        return self._inner.enqueue(handle)

    def dequeue(self) -> int | None:
        return self._inner.dequeue()

    def count(self) -> int:
        return self._inner.count()

    def reset(self, counter_start: int = 0) -> None:
        self._inner.reset(counter_start)

    def close(self, unlink: bool) -> None:
        MineBackend.closed.append((self.name, unlink))
        self._inner.close(unlink)


class MineBackend(Backend):
    name: ClassVar[str] = "mine"
    description: ClassVar[str] = "a test backend wrapping pure"
    created: ClassVar[list[tuple[str, int, int, int]]] = []
    closed: ClassVar[list[tuple[str, bool]]] = []

    def create_ring(self, name: str, size: int, capacity: int, flags: int) -> Ring:
        MineBackend.created.append((name, size, capacity, flags))
        return WrappedRing(pktflow.get_backend("pure").create_ring(name, size, capacity, flags))


class TestThirdPartyBackendPassesTheSuite(RingConformance):
    """A third party reuses the public suite exactly as the built-ins do."""

    backend = "mine"

    @pytest.fixture(autouse=True)
    def _register_mine(self, registry: None) -> None:
        pktflow.register_backend("mine", MineBackend)


# -- lookups -----------------------------------------------------------------------------


def test_unknown_backend_lists_the_available_ones() -> None:
    for attempt in (
        lambda: pktflow.get_backend("nope"),
        lambda: pktflow.Ring(unique_name("r"), 16, backend="nope"),
    ):
        with pytest.raises(pktflow.BackendError, match="nope") as info:
            attempt()
        message = str(info.value)
        for name in pktflow.available_backends():
            assert name in message


def test_a_failed_backend_lookup_leaves_the_name_free() -> None:
    name = unique_name("r")
    with pytest.raises(pktflow.BackendError):
        pktflow.Ring(name, 16, backend="nope")
    pktflow.Ring(name, 16, backend="pure").close()


def test_builtins_are_declared_and_available() -> None:
    assert set(pktflow.backend_names()) >= BUILTIN
    assert pktflow.backend_unavailable_reason("pure") is None
    assert "pure" in pktflow.available_backends()
    for name in BUILTIN:
        reason = pktflow.backend_unavailable_reason(name)
        assert (name in pktflow.available_backends()) is (reason is None)
        if reason is None:
            backend = pktflow.get_backend(name)
            assert backend.name == name
            assert backend is pktflow.get_backend(name), "one instance per name"
            assert backend.describe()["shared"] is backend.shared
    reason = pktflow.backend_unavailable_reason("nope")
    assert reason is not None and reason.startswith('unknown ring backend "nope"')


def test_only_hugepage_rings_are_shared() -> None:
    shared = {name: pktflow.get_backend(name).shared for name in pktflow.available_backends()}
    assert shared["pure"] is False
    if "numba" in shared:
        assert shared["numba"] is False
    if "hugepage" in shared:
        assert shared["hugepage"] is True


def test_entry_points_declare_the_builtins() -> None:
    declared = {ep.name: ep for ep in entry_points(group="pktflow.backends")}
    assert declared.keys() >= BUILTIN
    for name in BUILTIN:
        cls = declared[name].load()
        assert isinstance(cls, type) and issubclass(cls, Backend)
        assert cls.name == name


def test_default_backend_is_numba() -> None:
    if pktflow.backend_unavailable_reason("numba") is not None:
        pytest.skip("numba is unavailable here; the default is then pure")
    assert pktflow.default_backend_name() == "numba"
    assert pktflow.get_backend() is pktflow.get_backend("numba")
    with pktflow.Ring(unique_name("r"), 16) as ring:
        assert ring.backend == "numba"


def test_default_backend_is_pure_without_numba(
    registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _registry.unavailable_reason
    monkeypatch.setattr(
        _registry,
        "unavailable_reason",
        lambda name: "numba is not installed" if name == "numba" else real(name),
    )
    assert pktflow.default_backend_name() == "pure"
    with pktflow.Ring(unique_name("r"), 16) as ring:
        assert ring.backend == "pure"


# -- registration -------------------------------------------------------------------------


def test_registered_class_backs_the_ring_facade(registry: None) -> None:
    pktflow.register_backend("mine", MineBackend)
    assert "mine" in pktflow.backend_names()
    assert "mine" in pktflow.available_backends()
    before = len(MineBackend.created)
    name = unique_name("mine")
    with pktflow.Ring(name, 64, pktflow.RING_F_SC_DEQ, backend="mine") as ring:
        assert ring.backend == "mine"
        assert isinstance(ring.impl, WrappedRing)
        assert MineBackend.created[before:] == [(name, 64, 63, pktflow.RING_F_SC_DEQ)]
        assert ring.enqueue_burst(np.arange(5, dtype=np.uint32)) == 5
        with pktflow.Ring.lookup(name) as attached:
            assert attached.backend == "mine" and attached.count() == 5
    assert MineBackend.closed[-1] == (name, True), "the creator's close reached the backend"


def test_registered_path_is_loaded_lazily(registry: None) -> None:
    pktflow.register_backend("pure2", "pktflow.backends._pure:PureBackend")
    assert pktflow.backend_unavailable_reason("pure2") is None
    backend = pktflow.get_backend("pure2")
    assert type(backend).__module__ == "pktflow.backends._pure"
    assert backend is not pktflow.get_backend("pure"), "one instance per registered name"
    with pktflow.Ring(unique_name("p2"), 8, backend="pure2") as ring:
        assert type(ring.impl).__module__ == "pktflow.backends._pure"
        assert ring.enqueue(1) and ring.dequeue() == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("pktflow_no_such_module:Thing", "cannot be imported"),
        ("pktflow.backends._pure:NoSuchClass", "has no attribute 'NoSuchClass'"),
        ("pktflow.backends._pure:PureRing", "not a pktflow.abc.Backend subclass"),
    ],
    ids=["module", "attribute", "not-a-backend"],
)
def test_bad_registered_path_raises_backend_error(
    registry: None, target: str, message: str
) -> None:
    pktflow.register_backend("broken", target)
    with pytest.raises(pktflow.BackendError, match=message):
        pktflow.get_backend("broken")
    reason = pktflow.backend_unavailable_reason("broken")
    assert reason is not None and message in reason
    assert "broken" not in pktflow.available_backends()
    assert "broken" in pktflow.backend_names()


@pytest.mark.parametrize("name", ["", None, 3])
def test_register_needs_a_name(registry: None, name: Any) -> None:
    with pytest.raises(pktflow.BackendError):
        pktflow.register_backend(name, MineBackend)


def test_unavailable_backend_says_why(registry: None) -> None:
    class Unready(MineBackend):
        name: ClassVar[str] = "unready"

        @classmethod
        def unavailable_reason(cls) -> str | None:
            return "needs a frobnicator: pip install frob"

    pktflow.register_backend("unready", Unready)
    assert "unready" not in pktflow.available_backends()
    with pytest.raises(pktflow.BackendError, match="pip install frob"):
        pktflow.Ring(unique_name("u"), 16, backend="unready")


def test_backend_missing_abstract_methods_fails_at_construction(registry: None) -> None:
    class NoFactory(Backend):
        name: ClassVar[str] = "half"

    with pytest.raises(TypeError, match="create_ring"):
        NoFactory()
    pktflow.register_backend("half", NoFactory)
    with pytest.raises(TypeError, match="create_ring"):
        pktflow.get_backend("half")


def test_ring_missing_abstract_methods_fails_at_construction() -> None:
    # Every abstract method but one, as a careless backend author might write.
    methods = {m: (lambda self, *args: 0) for m in Ring.__abstractmethods__ - {"dequeue_burst"}}
    no_burst = type("NoBurst", (Ring,), methods)
    with pytest.raises(TypeError, match="dequeue_burst"):
        no_burst()
    complete = type("Complete", (Ring,), {**methods, "dequeue_burst": lambda self, *a: 0})
    assert isinstance(complete(), Ring)


def test_non_shared_backend_has_no_lookup() -> None:
    with pytest.raises(pktflow.NotFoundError, match="no shared rings"):
        pktflow.get_backend("pure").lookup_ring(unique_name("r"))


def test_a_ring_reports_the_name_it_was_made_with(registry: None) -> None:
    pktflow.register_backend("pure-alias", "pktflow.backends._pure:PureBackend")
    with pktflow.Ring(unique_name(), 8, backend="pure-alias") as ring:
        assert ring.backend == "pure-alias"


def test_the_shared_backend_knows_its_names() -> None:
    backend = pktflow.get_backend("hugepage")
    name = unique_name()
    assert not backend.exists(name)
    with pktflow.Ring(name, 8, backend="hugepage"):
        assert backend.exists(name)
    assert not backend.exists(name)
    assert not backend.exists("no such\nname")


def test_lookup_of_a_name_no_zone_can_have_is_not_found() -> None:
    # Valid for private rings, impossible as a shared file name.
    with pytest.raises(pktflow.NotFoundError):
        pktflow.Ring.lookup("missing ring")


# -- the table is read once; the machinery is reusable ------------------------------------


class CountingEntryPoints:
    """Stands in for importlib.metadata.entry_points, counting the reads of metadata."""

    def __init__(self, extra: dict[str, list[EntryPoint]] | None = None) -> None:
        self.calls = 0
        self.extra = extra or {}

    def __call__(self, *, group: str) -> list[EntryPoint]:
        self.calls += 1
        return [*entry_points(group=group), *self.extra.get(group, [])]


def test_default_backend_reads_package_metadata_once(
    registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingEntryPoints()
    monkeypatch.setattr(_registry, "entry_points", counting)
    pktflow.register_backend("fresh", MineBackend)  # drops the cached table
    assert "fresh" in pktflow.backend_names()
    assert counting.calls == 1
    start = time.perf_counter()
    for _ in range(20):
        pktflow.Ring(unique_name("r"), 64).close()
        pktflow.default_backend_name()
        pktflow.available_backends()
    assert counting.calls == 1, "the table was rebuilt from package metadata"
    assert (time.perf_counter() - start) / 20 < 0.05
    pktflow.register_backend("fresher", MineBackend)
    assert "fresher" in pktflow.backend_names() and counting.calls == 2


def _is_int_type(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, int)


class KindError(Exception):
    """The error class a registry's owner chose."""


@pytest.fixture
def kinds(monkeypatch: pytest.MonkeyPatch) -> _registry.Registry[type[int]]:
    """A registry of a made-up kind, with one built-in and one entry point."""
    extra = {"test.kinds": [EntryPoint("flag", "enum:IntFlag", "test.kinds")]}
    monkeypatch.setattr(_registry, "entry_points", CountingEntryPoints(extra))
    return _registry.Registry(
        kind="number kind",
        group="test.kinds",
        builtins={"bool": "builtins:bool", "broken": "pktflow_no_such_module:X"},
        validate=_is_int_type,
        hints={"broken": "pip install broken-numbers"},
        error=KindError,
    )


def test_a_registry_loads_builtins_entry_points_registrations_and_paths(
    kinds: _registry.Registry[type[int]],
) -> None:
    import enum

    assert kinds.names() == ["bool", "broken", "flag"]
    assert kinds.load("bool") is bool
    assert kinds.load("flag") is enum.IntFlag
    assert kinds.load("enum:IntEnum") is enum.IntEnum, "a path works as a name"
    assert "enum:IntEnum" in kinds and "bool" in kinds and "nope" not in kinds
    kinds.register("mine", int)
    assert kinds.load("mine") is int and "mine" in kinds.names()
    kinds.register("bool", "enum:IntEnum")  # code overrides a built-in
    assert kinds.load("bool") is enum.IntEnum
    kinds.unregister("bool")
    assert kinds.load("bool") is bool
    kinds.unregister("mine")
    assert "mine" not in kinds.names()


def test_a_registry_raises_its_owners_error_with_the_known_names(
    kinds: _registry.Registry[type[int]],
) -> None:
    with pytest.raises(KindError) as info:
        kinds.load("flga")
    message = str(info.value)
    assert message.startswith('unknown number kind "flga" (did you mean "flag"?)')
    assert "known: bool, broken, flag" in message
    with pytest.raises(KindError, match="pip install broken-numbers"):
        kinds.load("broken")
    with pytest.raises(
        KindError, match=r"'enum:Enum' is <enum 'Enum'>, which is not a number kind"
    ):
        kinds.load("enum:Enum")
    with pytest.raises(KindError, match="has no attribute 'Nope'"):
        kinds.load("enum:Nope")
    with pytest.raises(KindError, match="is not a number kind"):
        kinds.register("text", str)  # an object is checked when registered
    for bad in ("", "a:b", None):
        with pytest.raises(KindError, match="non-empty string"):
            kinds.register(bad, int)  # type: ignore[arg-type]


def test_did_you_mean() -> None:
    assert _registry.did_you_mean("gne", ["gen", "parse"]) == ' (did you mean "gen"?)'
    assert _registry.did_you_mean("zzz", ["gen", "parse"]) == ""


def test_a_backend_path_works_as_a_name() -> None:
    backend = pktflow.get_backend("pktflow.backends._pure:PureBackend")
    assert type(backend).__module__ == "pktflow.backends._pure"
    with pytest.raises(pktflow.BackendError, match='did you mean "numba"'):
        pktflow.get_backend("numbaa")
