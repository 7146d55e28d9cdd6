"""Zones against hostile and unlucky conditions (issue 7, parts 3, 4 and 6).

A full /dev/shm, a FIFO, directory or symlink under a pktflow name, a
lookup racing its creator, multiprocessing children that return normally,
cleanup of zones still in use, and the error classes of bad sizes and files.
"""

from __future__ import annotations

import logging
import mmap
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _zone_workers
import numpy as np
import pytest

import pktflow
import pktflow._info
import pktflow._lcore
import pktflow._memory
from pktflow import Zone
from pktflow._memory import ZoneSpaceError
from pktflow.testing import unique_name

SHM = Path("/dev/shm")
NOBODY = 65534


@pytest.fixture
def stray() -> Iterator[Callable[[str], Path]]:
    """``stray(name)``: the /dev/shm path of zone ``name``, removed after the test."""
    paths: list[Path] = []

    def make(name: str) -> Path:
        path = SHM / f"pktflow.{name}"
        paths.append(path)
        return path

    yield make
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def run_child(target: Callable[..., None], *args: Any, method: str = "spawn") -> int | None:
    child = multiprocessing.get_context(method).Process(target=target, args=args)
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
    return child.exitcode


def zone_files(name: str) -> list[Path]:
    return [d / f"pktflow.{name}" for d in (SHM, Path("/dev/hugepages"))]


def gone(name: str) -> bool:
    return not any(os.path.lexists(p) for p in zone_files(name))


# -- part 3: a full /dev/shm fails at creation -----------------------------------

SMALL_SHM_SCRIPT = textwrap.dedent(
    """
    import os
    import numpy as np
    import pktflow

    def attempt(name, size):
        try:
            zone = pktflow.Zone.create(name, size, shared=True, hugepages="never")
        except pktflow.PktflowError as exc:
            print("ERROR", type(exc).__name__, isinstance(exc, ValueError), exc, flush=True)
            return None
        print("CREATED", name, flush=True)
        return zone

    attempt("big", 8 << 20)
    print("LEFT", sorted(os.listdir("/dev/shm")), flush=True)
    fits = attempt("fits", 2 << 20)
    fits.array(np.uint8, 2 << 20)[:] = 1  # every page: no SIGBUS
    attempt("more", 3 << 20)
    print("LEFT", sorted(os.listdir("/dev/shm")), flush=True)
    print("DONE", flush=True)
    """
)


def test_a_zone_larger_than_a_small_dev_shm_fails_at_creation(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a small tmpfs in a private namespace")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4m tmpfs /dev/shm"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}")
    script = tmp_path / "small_shm.py"
    script.write_text(SMALL_SHM_SCRIPT)
    command = f"mount -t tmpfs -o size=4m tmpfs /dev/shm && exec {sys.executable} {script}"
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", command],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, (out, result.stderr)  # a SIGBUS would be -7
    lines = out.splitlines()
    big = next(line for line in lines if "big" in line and line.split()[0] in {"ERROR", "CREATED"})
    assert big.startswith("ERROR ZoneSpaceError True"), out
    for text in ("8 MiB", "/dev/shm", "free", "--shm-size", "nr_hugepages"):
        assert text in big, f"{text!r} missing from: {big}"
    assert lines[lines.index(big) + 1] == "LEFT []", "a failed zone left its file behind"
    assert "CREATED fits" in lines
    more = next(line for line in lines if "'more'" in line)
    assert more.startswith("ERROR ZoneSpaceError"), out
    assert "3 MiB" in more and "free" in more
    assert lines[-2] == "LEFT ['pktflow.fits']" and lines[-1] == "DONE"


# -- part 3: FIFOs, directories and symlinks under pktflow names -------------------


@pytest.mark.timeout(60)
def test_a_fifo_under_a_zone_name_is_an_error_not_a_hang(stray: Callable[[str], Path]) -> None:
    name = unique_name("fifo")
    os.mkfifo(stray(name), 0o600)
    with pytest.raises(pktflow.PktflowValueError, match="FIFO"):
        Zone.attach(name)
    with pytest.raises(pktflow.ExistsError, match="FIFO"):
        Zone.create(name, 4096, shared=True, hugepages="never")
    with pytest.raises(pktflow.ExistsError, match="FIFO"):
        pktflow.Ring(name, 1024, backend="hugepage")
    with pytest.raises(pktflow.PktflowError):
        pktflow.Ring.lookup(name)
    assert name not in {z.name for z in pktflow.list_zones()}
    assert name not in {z.name for z in pktflow.cleanup_zones(dry_run=True)}
    pktflow._info.collect_info()  # pktflow info reads every pktflow file
    assert stray(name).exists()


@pytest.mark.timeout(60)
def test_info_names_what_blocks_a_zone_name(stray: Callable[[str], Path]) -> None:
    fifo, directory, junk = unique_name("fifo"), unique_name("dir"), unique_name("junk")
    os.mkfifo(stray(fifo), 0o600)
    stray(directory).mkdir()
    stray(junk).write_bytes(b"x" * 4096)
    found = {
        Path(entry["path"]).name: entry["problem"]
        for entry in pktflow._info.collect_info()["zones"]["not_zones"]
    }
    assert "FIFO" in found[f"pktflow.{fifo}"]
    assert "directory" in found[f"pktflow.{directory}"]
    assert "not a pktflow zone" in found[f"pktflow.{junk}"]


@pytest.mark.timeout(60)
def test_a_directory_under_a_zone_name_is_a_pktflow_error(stray: Callable[[str], Path]) -> None:
    name = unique_name("dir")
    stray(name).mkdir()
    with pytest.raises(pktflow.PktflowValueError, match="directory"):
        Zone.attach(name)
    with pytest.raises(pktflow.ExistsError, match="directory"):
        Zone.create(name, 4096, shared=True, hugepages="never")
    assert name not in {z.name for z in pktflow.list_zones()}


def test_a_symlink_under_a_zone_name_is_never_followed(
    stray: Callable[[str], Path], tmp_path: Path
) -> None:
    name = unique_name("link")
    with Zone.create(unique_name("target"), 4096, shared=True, hugepages="never") as target:
        target.publish()
        before = Path(str(target.path)).read_bytes()
        stray(name).symlink_to(str(target.path))
        with pytest.raises(pktflow.PktflowValueError, match="symbolic link"):
            Zone.attach(name)
        with pytest.raises(pktflow.ExistsError, match="symbolic link"):
            Zone.create(name, 4096, shared=True, hugepages="never")
        assert Path(str(target.path)).read_bytes() == before
    dangling = unique_name("dangling")
    stray(dangling).symlink_to(tmp_path / "nowhere")
    with pytest.raises(pktflow.ExistsError, match="symbolic link"):
        Zone.create(dangling, 4096, shared=True, hugepages="never")
    assert not (tmp_path / "nowhere").exists(), "create wrote through a dangling symlink"


@pytest.mark.parametrize("change", ["mode", "owner"])
def test_attach_refuses_a_zone_file_not_private_to_this_user(make_change: Any, change: str) -> None:
    make_change(change)


@pytest.fixture
def make_change() -> Iterator[Callable[[str], None]]:
    zones: list[Zone] = []

    def run(change: str) -> None:
        zone = Zone.create(unique_name("perm"), 4096, shared=True, hugepages="never")
        zones.append(zone)
        zone.publish()
        path = str(zone.path)
        if change == "mode":
            os.chmod(path, 0o666)
            match = "mode 0666"
        else:
            if os.geteuid() != 0:
                pytest.skip("only root can give a file away")
            os.chown(path, NOBODY, -1)
            match = f"uid {NOBODY}"
        with pytest.raises(pktflow.PktflowValueError, match=match):
            Zone.attach(zone.name)

    yield run
    for zone in zones:
        zone.close()


# -- part 3: the lcore table ----------------------------------------------------------


def in_a_thread(body: Callable[[], object]) -> BaseException | None:
    """Run ``body`` in a fresh thread (lcore ids are per thread); its exception or None."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as exc:  # handed back to the test
            caught.append(exc)
        finally:
            pktflow.unregister_lcore()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return caught[0] if caught else None


def test_a_symlinked_lcore_table_is_refused_and_its_target_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"do not overwrite me")
    link = tmp_path / "lcores"
    link.symlink_to(target)
    monkeypatch.setenv(pktflow._lcore.TABLE_ENV, str(link))
    error = in_a_thread(pktflow.register_lcore)
    assert isinstance(error, pktflow.PktflowValueError), error
    assert "symbolic link" in str(error)
    assert target.read_bytes() == b"do not overwrite me"


@pytest.mark.timeout(60)
def test_a_fifo_lcore_table_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "lcores"
    os.mkfifo(table, 0o600)
    monkeypatch.setenv(pktflow._lcore.TABLE_ENV, str(table))
    error = in_a_thread(pktflow.register_lcore)
    assert isinstance(error, pktflow.PktflowValueError) and "FIFO" in str(error), error


def test_the_lcore_table_is_made_private_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "lcores"
    monkeypatch.setenv(pktflow._lcore.TABLE_ENV, str(table))
    old = os.umask(0)
    try:
        assert in_a_thread(pktflow.register_lcore) is None
    finally:
        os.umask(old)
    assert table.stat().st_mode & 0o777 == 0o600


def test_an_lcore_table_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    table = tmp_path / "lcores"
    monkeypatch.setenv(pktflow._lcore.TABLE_ENV, str(table))
    assert in_a_thread(pktflow.register_lcore) is None  # makes it
    os.chown(table, NOBODY, -1)
    error = in_a_thread(pktflow.register_lcore)
    assert isinstance(error, pktflow.PktflowValueError) and f"uid {NOBODY}" in str(error)


# -- part 3: a lookup racing its creator -------------------------------------------------


@pytest.mark.parametrize(
    ("hugepages", "tmpfile"),
    [("never", True), ("auto", True), ("never", False)],
    ids=["small-pages", "auto", "made-in-place"],
)
def test_a_lookup_racing_its_creator_finds_nothing_or_the_whole_zone(
    hugepages: str, tmpfile: bool
) -> None:
    name = unique_name("race")
    child = multiprocessing.get_context("spawn").Process(
        target=_zone_workers.churn, args=(name, 3.0, hugepages, tmpfile)
    )
    child.start()
    found = missing = 0
    try:
        while child.is_alive() or child.exitcode is None:
            try:
                zone = Zone.attach(name)
            except pktflow.NotFoundError:
                missing += 1
                continue
            found += 1
            zone.close()
            if not child.is_alive():
                break
    finally:
        child.join(60)
    assert child.exitcode == 0
    assert found + missing > 100
    assert gone(name)


def test_zones_made_in_place_where_o_tmpfile_is_missing(
    monkeypatch: pytest.MonkeyPatch, stray: Callable[[str], Path]
) -> None:
    monkeypatch.setattr(pktflow._memory, "_tmpfile_ok", False)
    with Zone.create(unique_name("inplace"), 4096, shared=True, hugepages="never") as zone:
        zone.array(np.uint8, 4)[:] = 7
        zone.publish()
        assert os.stat(str(zone.path)).st_mode & 0o777 == 0o600
        with Zone.attach(zone.name) as other:
            assert other.array(np.uint8, 4).tolist() == [7] * 4
    name = unique_name("inplace")
    with pytest.raises(ZoneSpaceError):
        Zone.create(name, 2**62, shared=True, hugepages="never")
    assert gone(name)
    empty = unique_name("empty")
    stray(empty).touch(mode=0o600)
    monkeypatch.setattr(pktflow._memory, "_ATTACH_WAIT_S", 0.05)
    with pytest.raises(pktflow.NotFoundError, match="never initialised"):
        Zone.attach(empty)


# -- part 4: children that return normally ---------------------------------------------


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_zones_of_a_child_that_returns_normally_are_unlinked(method: str) -> None:
    name = unique_name(f"child-{method}")
    assert run_child(_zone_workers.create_and_return, name, method=method) == 0
    assert gone(name), f"a {method} child left its zone behind"


def test_a_forked_child_does_not_unlink_its_parents_zones(make_zone_: Any) -> None:
    zone = make_zone_()
    assert run_child(_zone_workers.create_and_return, unique_name("c"), method="fork") == 0
    assert Path(str(zone.path)).exists()


@pytest.fixture
def make_zone_() -> Iterator[Callable[[], Zone]]:
    zones: list[Zone] = []

    def make() -> Zone:
        zone = Zone.create(unique_name("parent"), 4096, shared=True, hugepages="never")
        zone.publish()
        zones.append(zone)
        return zone

    yield make
    for zone in zones:
        zone.close()


# -- part 4: cleanup never removes a zone in use -------------------------------------------


@pytest.fixture
def dead_zone() -> Iterator[str]:
    """A zone whose creator died without cleaning up."""
    name = unique_name("dead")
    assert run_child(_zone_workers.abandon, name) == 0
    yield name
    for path in zone_files(name):
        path.unlink(missing_ok=True)


def test_cleanup_keeps_a_dead_creators_zone_that_a_live_process_maps(dead_zone: str) -> None:
    zone = Zone.attach(dead_zone)
    try:
        listed = {z.name: z for z in pktflow.list_zones()}[dead_zone]
        assert not listed.creator_alive and os.getpid() in listed.mapped_by
        facts = pktflow._info.collect_info()["zones"]["left_behind"]
        assert os.getpid() in next(z for z in facts if z["name"] == dead_zone)["mapped_by"]
        assert dead_zone not in {z.name for z in pktflow.cleanup_zones()}
        assert not gone(dead_zone), "cleanup unlinked a zone still in use"
        from click.testing import CliRunner

        from pktflow.cli import main

        result = CliRunner().invoke(main, ["cleanup"])
        assert result.exit_code == 0, result.output
        assert f"Kept {dead_zone}" in result.output and str(os.getpid()) in result.output
        assert not gone(dead_zone)
    finally:
        zone.close()
    assert dead_zone in {z.name for z in pktflow.cleanup_zones()}
    assert gone(dead_zone)


def test_cleanup_keeps_a_zone_mapped_without_pktflow(dead_zone: str) -> None:
    path = next(p for p in zone_files(dead_zone) if p.exists())
    with open(path, "r+b") as f:
        mapped = mmap.mmap(f.fileno(), 0)
    try:
        assert dead_zone not in {z.name for z in pktflow.cleanup_zones()}
        assert path.exists()
    finally:
        mapped.close()


def test_creating_a_zone_removes_dead_creators_unmapped_zones_with_a_log_line(
    dead_zone: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kept = unique_name("dead")
    assert run_child(_zone_workers.abandon, kept) == 0
    holder = Zone.attach(kept)
    try:
        monkeypatch.setattr(pktflow._memory, "REAP_GRACE_S", 0.0)
        with caplog.at_level(logging.INFO, logger="pktflow"):
            Zone.create(unique_name("new"), 4096, shared=True, hugepages="never").close()
        assert gone(dead_zone)
        assert any(
            dead_zone in r.getMessage() and "removed" in r.getMessage() for r in caplog.records
        )
        assert not gone(kept), "a zone still mapped was removed"
    finally:
        holder.close()
        for path in zone_files(kept):
            path.unlink(missing_ok=True)


def test_young_dead_zones_are_left_to_cleanup(dead_zone: str) -> None:
    Zone.create(unique_name("new"), 4096, shared=True, hugepages="never").close()
    assert not gone(dead_zone)


def test_a_dead_creators_zone_gives_its_name_to_a_new_zone(dead_zone: str) -> None:
    with Zone.create(dead_zone, 4096, shared=True, hugepages="never") as zone:
        assert zone.creator_pid == os.getpid()


def test_a_live_creators_zone_keeps_its_name(make_zone_: Any) -> None:
    zone = make_zone_()
    with pytest.raises(pktflow.ExistsError):
        Zone.create(zone.name, 4096, shared=True, hugepages="never")


# -- part 6: error classes ---------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("size", [2**62, 2**48])
def test_a_zone_too_large_is_a_value_error_not_a_bare_os_error(shared: bool, size: int) -> None:
    name = unique_name("huge")
    with pytest.raises(ZoneSpaceError) as info:
        Zone.create(name, size, shared=shared, hugepages="never")
    assert isinstance(info.value, pktflow.PktflowError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, pktflow.BackendError)
    assert name in str(info.value)
    assert gone(name)


def test_a_mempool_with_objects_of_four_gib_is_a_value_error() -> None:
    with pytest.raises(ValueError) as info:
        pktflow.Mempool(unique_name("mp"), 1023, 2**32, backend="hugepage")
    assert isinstance(info.value, pktflow.PktflowError)


def test_a_truncated_zone_file_is_a_pktflow_error(make_zone_: Any) -> None:
    zone = make_zone_()
    os.truncate(str(zone.path), 100)
    with pytest.raises(pktflow.PktflowValueError, match="truncated"):
        Zone.attach(zone.name)
    os.truncate(str(zone.path), 10)
    with pytest.raises(pktflow.PktflowValueError, match="too small"):
        Zone.attach(zone.name)


def test_a_zone_file_grown_behind_its_header_is_a_pktflow_error(make_zone_: Any) -> None:
    zone = make_zone_()
    os.truncate(str(zone.path), 1 << 20)
    with pytest.raises(pktflow.PktflowValueError, match="truncated or damaged"):
        Zone.attach(zone.name)


def test_an_attached_zone_reads_what_the_creator_wrote(make_zone_: Any) -> None:
    zone = make_zone_()
    zone.array(np.uint32, 4)[:] = [1, 2, 3, 4]
    with Zone.attach(zone.name) as other:
        assert other.array(np.uint32, 4).tolist() == [1, 2, 3, 4]
