"""Zones: named regions, shared by name across processes, on huge pages when free."""

from __future__ import annotations

import gc
import logging
import mmap
import multiprocessing
import os
import re
import stat
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pktflow
import pktflow._memory
from pktflow import Zone
from pktflow._memory import HugePageInfo
from pktflow.testing import _workers, unique_name

SHM = Path("/dev/shm")
SMALL_PAGE = mmap.PAGESIZE
MakeZone = Callable[..., Zone]


@pytest.fixture
def make_zone() -> Iterator[MakeZone]:
    """``make_zone(size=4096, **kwargs)``: a uniquely named zone, closed after the test."""
    made: list[Zone] = []

    def make(size: int = 4096, **kwargs: Any) -> Zone:
        zone = Zone.create(unique_name("zone"), size, **kwargs)
        made.append(zone)
        return zone

    yield make
    for zone in made:
        zone.close()


@pytest.fixture
def stray_files() -> Iterator[list[Path]]:
    """Paths a test writes by hand; removed afterwards whatever happens."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)


def huge_mount() -> Path | None:
    mount = pktflow.hugepage_info().mount
    return Path(mount) if mount else None


def huge_pages_free(at_least: int = 8) -> bool:
    """Whether shared zones can get huge pages now (a margin for other users)."""
    info = pktflow.hugepage_info()
    return info.free >= at_least and info.mount is not None and os.access(info.mount, os.W_OK)


def no_huge_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pktflow see a machine with no free huge pages and no hugetlbfs mount."""
    empty = HugePageInfo(page_size=2 << 20, total=0, free=0, mount=None)
    monkeypatch.setattr(pktflow._memory, "hugepage_info", lambda: empty)


def spawn(target: Callable[..., None], *args: Any) -> int | None:
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        child.join()
    return child.exitcode


# -- create and attach -----------------------------------------------------------


@pytest.mark.parametrize("hugepages", ["never", "auto"])
def test_create_then_attach_in_the_same_process(make_zone: MakeZone, hugepages: str) -> None:
    zone = make_zone(8192, shared=True, hugepages=hugepages, kind="demo")
    assert (zone.size, zone.kind, zone.shared, zone.owner) == (8192, "demo", True, True)
    assert zone.creator_pid == os.getpid()
    words = zone.array(np.uint32, 2048)
    assert not words.any(), "a new zone is zero-filled"
    words[:] = np.arange(2048, dtype=np.uint32)
    zone.publish()
    with Zone.attach(zone.name) as other:
        assert (other.size, other.kind, other.page_size) == (8192, "demo", zone.page_size)
        assert (other.path, other.owner, other.shared) == (zone.path, False, True)
        seen = other.array(np.uint32, 2048)
        assert np.array_equal(seen, words)
        seen[7] = 0xFFFFFFFF  # writes go both ways: one memory, two mappings
        assert words[7] == 0xFFFFFFFF
        del seen
    assert Path(str(zone.path)).exists(), "the attacher's close unlinked the zone"
    words[0] = 5  # the creator's mapping is untouched by the attacher's close
    del words


def test_attach_from_a_spawned_process(make_zone: MakeZone) -> None:
    zone = make_zone(4096, shared=True, hugepages="auto")
    words = zone.array(np.uint32, 512)
    words[:256] = np.arange(256, dtype=np.uint32)
    zone.publish()
    assert spawn(_workers.zone_echo, zone.name, 256) == 0, "the child failed (stderr above)"
    assert np.array_equal(words[256:], ~np.arange(256, dtype=np.uint32))
    del words


def test_attach_of_an_unknown_name_raises_not_found() -> None:
    with pytest.raises(pktflow.NotFoundError, match="no shared zone") as info:
        Zone.attach(unique_name("missing"))
    assert isinstance(info.value, LookupError)


def test_attach_checks_the_kind(make_zone: MakeZone) -> None:
    zone = make_zone(shared=True, hugepages="never", kind="pool")
    zone.publish()
    with pytest.raises(pktflow.PktflowValueError, match="pool"):
        Zone.attach(zone.name, kind="ring")
    Zone.attach(zone.name, kind="pool").close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zone at all, just some bytes".ljust(4096, b"\0"), "not a pktflow zone"),
        (b"tiny", "too small"),
        (b"PKTFZONE" + struct.pack("<I", 99) + bytes(4084), "layout 99"),
    ],
    ids=["bad-magic", "too-small", "other-version"],
)
def test_attach_rejects_a_file_that_is_not_a_zone(
    stray_files: list[Path], content: bytes, message: str
) -> None:
    name = unique_name("fake")
    path = SHM / f"pktflow.{name}"
    stray_files.append(path)
    path.write_bytes(content)
    path.chmod(0o600)  # as a zone's: the content is what is wrong
    with pytest.raises(pktflow.PktflowValueError, match=message) as info:
        Zone.attach(name)
    assert isinstance(info.value, ValueError)
    assert path.read_bytes() == content, "attach modified a file it rejected"


def test_unpublished_zone_is_not_attachable(
    make_zone: MakeZone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pktflow._memory, "_ATTACH_WAIT_S", 0.05)  # don't wait 5 s
    zone = make_zone(shared=True, hugepages="never")
    with pytest.raises(pktflow.NotFoundError, match="never published"):
        Zone.attach(zone.name)
    zone.publish()
    Zone.attach(zone.name).close()


def test_duplicate_shared_name_raises_exists_error(make_zone: MakeZone) -> None:
    zone = make_zone(shared=True, hugepages="never")
    for pages in ("never", "auto"):
        with pytest.raises(pktflow.ExistsError, match=zone.name) as info:
            Zone.create(zone.name, 4096, shared=True, hugepages=pages)  # type: ignore[arg-type]
        assert isinstance(info.value, FileExistsError)
    assert Path(str(zone.path)).exists()


def test_zone_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError, match=r"Zone\.create"):
        Zone()


# -- files, pages and alignment ----------------------------------------------------


@pytest.mark.parametrize("hugepages", ["never", "auto"])
def test_zone_file_is_private_to_its_user(make_zone: MakeZone, hugepages: str) -> None:
    zone = make_zone(shared=True, hugepages=hugepages)
    mode = os.stat(str(zone.path)).st_mode
    assert stat.S_ISREG(mode)
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shared": True, "hugepages": "never"},
        {"shared": True, "hugepages": "auto"},
        {"shared": False, "hugepages": "never"},
        {"shared": False, "hugepages": "auto"},
    ],
    ids=["shared-never", "shared-auto", "private-never", "private-auto"],
)
def test_payload_is_cache_line_aligned(make_zone: MakeZone, kwargs: dict[str, Any]) -> None:
    for size in (1, 63, 4096, 100_000):
        zone = make_zone(size, **kwargs)
        assert zone.array(np.uint8, 1).ctypes.data % 64 == 0
        assert zone.array(np.uint8, size).nbytes == size
        if zone.shared:
            zone.publish()
            with Zone.attach(zone.name) as other:
                assert other.array(np.uint8, 1).ctypes.data % 64 == 0


def test_never_uses_small_pages_in_dev_shm(make_zone: MakeZone) -> None:
    zone = make_zone(10_000, shared=True, hugepages="never")
    assert zone.page_size == SMALL_PAGE == 4096
    assert zone.path == str(SHM / f"pktflow.{zone.name}")
    assert os.stat(zone.path).st_size % SMALL_PAGE == 0
    private = make_zone(10_000, shared=False, hugepages="never")
    assert (private.page_size, private.path, private.shared) == (SMALL_PAGE, None, False)


def test_auto_reports_the_page_size_it_got(make_zone: MakeZone) -> None:
    info = pktflow.hugepage_info()
    expect_huge = huge_pages_free()
    zone = make_zone(10_000, shared=True, hugepages="auto")
    mount = huge_mount()
    on_huge = mount is not None and Path(str(zone.path)).parent == mount
    if on_huge:
        assert zone.page_size == info.page_size
    else:
        assert zone.page_size == SMALL_PAGE
        assert Path(str(zone.path)).parent == SHM
    assert os.stat(str(zone.path)).st_size % zone.page_size == 0
    if expect_huge:
        assert on_huge, f"{info.free} huge pages were free, yet auto used {zone.path}"


def test_auto_falls_back_to_small_pages(
    make_zone: MakeZone, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_huge_pages(monkeypatch)
    shared = make_zone(10_000, shared=True, hugepages="auto")
    assert shared.page_size == SMALL_PAGE
    assert Path(str(shared.path)).parent == SHM
    private = make_zone(10_000, shared=False, hugepages="auto")
    assert private.page_size == SMALL_PAGE


@pytest.mark.parametrize(
    ("free", "mount", "says"),
    [
        (0, "/dev/hugepages", r"needs 1 huge pages of 2 MiB, 0 free.*vm\.nr_hugepages=1`"),
        (8, None, r"no writable hugetlbfs mount.*mount -t hugetlbfs"),
    ],
)
def test_the_fallback_notice_says_why_and_what_to_do(
    make_zone: MakeZone,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    free: int,
    mount: str | None,
    says: str,
) -> None:
    info = HugePageInfo(page_size=2 << 20, total=free, free=free, mount=mount)
    monkeypatch.setattr(pktflow._memory, "hugepage_info", lambda: info)
    monkeypatch.setattr(pktflow._memory, "_hugetlbfs_mount", lambda may_mount: None)
    monkeypatch.setattr(pktflow._memory, "_noticed", False)
    with caplog.at_level(logging.WARNING, logger="pktflow"):
        zone = make_zone(10_000, shared=True, hugepages="auto")
    assert zone.page_size == SMALL_PAGE
    assert re.search(says, caplog.text), caplog.text
    assert zone.name in caplog.text


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
def test_require_without_huge_pages_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, shared: bool
) -> None:
    no_huge_pages(monkeypatch)
    name = unique_name("req")
    with pytest.raises(pktflow.BackendError, match=r"sysctl -w vm\.nr_hugepages=") as info:
        Zone.create(name, 10_000, shared=shared, hugepages="require")
    assert name in str(info.value)
    assert not (SHM / f"pktflow.{name}").exists(), "a failed create left a file behind"
    assert name not in {z.name for z in pktflow.list_zones()}


@pytest.mark.skipif(not huge_pages_free(), reason="no free huge pages or no hugetlbfs mount")
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
def test_require_with_huge_pages_gets_them(make_zone: MakeZone, shared: bool) -> None:
    info = pktflow.hugepage_info()
    zone = make_zone(10_000, shared=shared, hugepages="require")
    assert zone.page_size == info.page_size > SMALL_PAGE
    if shared:
        assert Path(str(zone.path)).parent == huge_mount()
        assert os.stat(str(zone.path)).st_size == info.page_size


# -- lifecycle --------------------------------------------------------------------


@pytest.mark.parametrize("hugepages", ["never", "auto"])
def test_creator_close_unlinks_and_attacher_close_does_not(
    make_zone: MakeZone, hugepages: str
) -> None:
    zone = make_zone(shared=True, hugepages=hugepages)
    zone.publish()
    path = Path(str(zone.path))
    other = Zone.attach(zone.name)
    other.close()
    assert other.closed and not zone.closed
    assert path.exists()
    Zone.attach(zone.name).close()  # still attachable
    zone.close()
    assert zone.closed
    assert not path.exists()
    with pytest.raises(pktflow.NotFoundError):
        Zone.attach(zone.name)
    zone.close()  # idempotent


def test_context_manager_closes(make_zone: MakeZone) -> None:
    name = unique_name("ctx")
    with Zone.create(name, 4096, shared=True, hugepages="never") as zone:
        path = Path(str(zone.path))
        assert path.exists()
    assert zone.closed and not path.exists()


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
def test_close_with_live_views_raises_no_buffer_error(make_zone: MakeZone, shared: bool) -> None:
    zone = make_zone(4096, shared=shared, hugepages="never")
    view = zone.array(np.uint32, 16)
    view[:] = 7
    zone.close()  # a BufferError (or a warning, which is an error here) would fail this
    assert zone.closed
    assert np.all(view == 7), "the view's memory went away while the view lives"
    if shared:
        assert not Path(str(zone.path)).exists()


def test_attacher_close_with_live_views(make_zone: MakeZone) -> None:
    zone = make_zone(4096, shared=True, hugepages="never")
    zone.publish()
    other = Zone.attach(zone.name)
    view = other.array(np.uint64, 4)
    other.close()
    view[0] = 99
    assert zone.array(np.uint64, 1)[0] == 99


def test_zone_dropped_without_close_is_unlinked(make_zone: MakeZone) -> None:
    zone = Zone.create(unique_name("drop"), 4096, shared=True, hugepages="never")
    path = Path(str(zone.path))
    assert path.exists()
    del zone
    gc.collect()
    assert not path.exists(), "a garbage-collected zone left its file behind"


def test_zone_of_a_process_that_exits_normally_is_unlinked() -> None:
    name = unique_name("exit")
    assert spawn(_workers.zone_create_and_return, name) == 0
    assert name not in {z.name for z in pktflow.list_zones()}
    assert not (SHM / f"pktflow.{name}").exists()


def test_zone_left_by_a_dead_creator_is_listed_and_cleaned() -> None:
    names = [unique_name("dead"), unique_name("dead")]
    pages = ["never", "auto"]
    try:
        assert spawn(_workers.zone_abandon, names, pages) == 0
        found = {z.name: z for z in pktflow.list_zones()}
        for name in names:
            assert name in found, f"{name} is not listed"
            assert found[name].creator_alive is False
            assert Path(found[name].path).exists()
        assert found[names[0]].page_size == SMALL_PAGE
        with Zone.create(unique_name("alive"), 4096, shared=True, hugepages="never") as live:
            live.publish()
            listed = {z.name: z for z in pktflow.list_zones()}
            assert listed[live.name].creator_alive is True
            assert listed[live.name].creator_pid == os.getpid()

            would = {z.name for z in pktflow.cleanup_zones(dry_run=True)}
            assert set(names) <= would and live.name not in would
            assert all(Path(found[n].path).exists() for n in names), "dry run removed a file"

            removed = {z.name for z in pktflow.cleanup_zones()}
            assert set(names) <= removed and live.name not in removed
            assert not any(Path(found[n].path).exists() for n in names)
            assert Path(str(live.path)).exists()
        remaining = {z.name for z in pktflow.list_zones()}
        assert not set(names) & remaining
    finally:
        for zone in pktflow.list_zones():
            if zone.name in names:
                Path(zone.path).unlink(missing_ok=True)


# -- argument checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "a/b", "../etc", "a b", "x" * 201, "é", "zone\n", 5, None], ids=repr
)
def test_zone_names_are_validated(name: Any) -> None:
    with pytest.raises(pktflow.PktflowValueError, match="zone name"):
        Zone.create(name, 4096, shared=True, hugepages="never")
    with pytest.raises(pktflow.PktflowValueError, match="zone name"):
        Zone.attach(name)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": -1},
        {"size": 1.5},
        {"size": "4096"},
        {"hugepages": "sometimes"},
        {"kind": "much-too-long"},
    ],
    ids=["size0", "negative", "float", "str", "hugepages", "kind"],
)
def test_create_arguments_are_validated(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"size": 4096, "shared": True, "hugepages": "never", **kwargs}
    name = unique_name("args")
    with pytest.raises(pktflow.PktflowValueError):
        Zone.create(name, **args)
    assert not (SHM / f"pktflow.{name}").exists()


@pytest.mark.parametrize(
    ("dtype", "count", "offset"),
    [(np.uint8, 4097, 0), (np.uint32, 1024, 4), (np.uint32, 1, 2), (np.uint8, 1, -1)],
    ids=["too-long", "past-the-end", "misaligned", "negative"],
)
def test_array_views_stay_inside_the_zone(
    make_zone: MakeZone, dtype: Any, count: int, offset: int
) -> None:
    zone = make_zone(4096, shared=False, hugepages="never")
    with pytest.raises(pktflow.PktflowValueError):
        zone.array(dtype, count, offset)
    assert zone.array(np.uint8, 4096).size == 4096  # exactly the payload is fine
