"""Memory zones: named fixed-size regions, private or shared, on huge pages when free.

A shared zone is a file other processes attach to by name: on hugetlbfs
when 2 MiB pages are free, else in ``/dev/shm`` (with ``MADV_HUGEPAGE``).
It starts with a header (magic, layout version, sizes, creator pid and
start time, kind, a ready flag) that ``attach`` checks. The payload after
the header is 64-byte aligned.

Zone files are built where nobody can see them (``O_TMPFILE``), their
memory reserved (``posix_fallocate``: a full ``/dev/shm`` is an error at
creation, not a SIGBUS later) and their header written, then linked under
their name in one step: an attacher finds no file or a whole one. Every
pktflow file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with
``fstat`` (a regular file of this user, mode 0600), so a symlink, FIFO or
directory under a pktflow name is an error, never a hang or an overwrite.
Zones a process still holds are unlinked when it exits, multiprocessing
children included; those of dead creators that no live process maps are
removed by ``cleanup_zones`` and, when pktflow next creates a zone, on the
way.

Usage::

    zone = Zone.create("rx0", 1 << 20, shared=True, hugepages="auto")
    words = zone.array(np.uint32, 1024)      # a numpy view of the payload
    zone.publish()                           # attachers may now use it
    other = Zone.attach("rx0")               # in another process
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import logging
import mmap
import os
import re
import stat
import struct
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._errors import (
    BackendError,
    ExistsError,
    NotFoundError,
    PktflowError,
    PktflowValueError,
)

__all__ = [
    "CACHE_LINE",
    "HugePageInfo",
    "Zone",
    "ZoneInfo",
    "cleanup_zones",
    "hugepage_info",
    "list_zones",
]

log = logging.getLogger("pktflow")

HugePages = Literal["auto", "require", "never"]

CACHE_LINE = 64
SMALL_PAGE = mmap.PAGESIZE
MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)  # missing from Python 3.11's mmap
SHM_DIR = Path("/dev/shm")
DEFAULT_HUGETLBFS_MOUNT = Path("/dev/hugepages")
FILE_PREFIX = "pktflow."
RESERVE_HINT = "sysctl -w vm.nr_hugepages=64"

ZONE_MAGIC = b"PKTFZONE"
ZONE_LAYOUT_VERSION = 1
# magic, version, header size, payload size, mapped size, creator pid,
# ready flag, page size, creator start time (clock ticks), kind.
_HEADER = struct.Struct("<8sIIQQIIQQ8s")
HEADER_SIZE = CACHE_LINE
_READY_OFFSET = 8 + 4 + 4 + 8 + 8 + 4
assert _HEADER.size <= HEADER_SIZE
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_ATTACH_WAIT_S = 5.0
FILE_MODE = 0o600
# Opening a pktflow file never follows a symlink, never waits on a FIFO's
# other end, and never leaks into an exec'd child.
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Zones of dead creators younger than this are left to `pktflow cleanup`
# when another zone is created (a name collision reaps at any age): a run
# that just crashed keeps its zones a while for whoever inspects them.
REAP_GRACE_S = 30.0
SHM_SIZE_HINT = "docker run --shm-size=1g, or `mount -o remount,size=1G /dev/shm` as root"


class ZoneSpaceError(BackendError, PktflowValueError):
    """A zone does not fit in the memory left (``/dev/shm``, huge pages, RAM).

    Both a ``BackendError`` (the machine cannot give it) and a ``ValueError``
    (the size asked for is too large here).
    """


@dataclass(frozen=True)
class HugePageInfo:
    """What the system offers in default-size huge pages."""

    page_size: int
    total: int
    free: int
    mount: str | None

    @property
    def reserve_command(self) -> str:
        return RESERVE_HINT


@dataclass(frozen=True)
class ZoneInfo:
    """A shared zone file found on this machine."""

    name: str
    path: str
    kind: str
    size: int
    page_size: int
    creator_pid: int
    creator_alive: bool
    # Live processes that map the zone; looked up only for dead creators'
    # zones (cleanup leaves a zone alone while anyone maps it).
    mapped_by: tuple[int, ...] = ()


def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            fields = rest.split()
            if fields:
                values[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    except OSError:
        pass
    return values


def _hugetlbfs_mounts() -> list[Path]:
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    return [Path(line.split()[1]) for line in lines if line.split()[2:3] == ["hugetlbfs"]]


_mount_lock = threading.Lock()
_mount_tried = False


def _hugetlbfs_mount(may_mount: bool) -> Path | None:
    """A writable hugetlbfs mount, mounting one at /dev/hugepages if we are root."""
    global _mount_tried
    for mount in _hugetlbfs_mounts():
        if os.access(mount, os.W_OK):
            return mount
    if not may_mount or os.geteuid() != 0:
        return None
    with _mount_lock:
        if _mount_tried:
            return None
        _mount_tried = True
        try:
            DEFAULT_HUGETLBFS_MOUNT.mkdir(parents=True, exist_ok=True)
            libc = ctypes.CDLL(None, use_errno=True)
            rc = libc.mount(
                b"nodev", str(DEFAULT_HUGETLBFS_MOUNT).encode(), b"hugetlbfs", 0, b"mode=1770"
            )
        except OSError:
            return None
        if rc != 0:
            log.info("could not mount hugetlbfs: %s", os.strerror(ctypes.get_errno()))
            return None
        return DEFAULT_HUGETLBFS_MOUNT


def hugepage_info() -> HugePageInfo:
    """Default huge page size, how many are reserved and free, and the mount.

    Usage: ``info = pktflow.hugepage_info(); print(info.free, info.mount)``
    """
    values = _meminfo()
    mounts = _hugetlbfs_mounts()
    return HugePageInfo(
        page_size=values.get("Hugepagesize", 2 << 20),
        total=values.get("HugePages_Total", 0),
        free=values.get("HugePages_Free", 0),
        mount=str(mounts[0]) if mounts else None,
    )


def _page_text(page_size: int) -> str:
    return f"{page_size >> 20} MiB" if page_size >= 1 << 20 else f"{page_size >> 10} KiB"


def _round_up(value: int, unit: int) -> int:
    return (value + unit - 1) // unit * unit


def _check_name(name: str) -> str:
    if not is_zone_name(name):
        raise PktflowValueError(
            f"zone name {name!r} must be 1-200 characters of letters, digits, '_', '.', '-'"
        )
    return name


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks (tells a live creator from a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces; fields resume after its closing paren.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _alive(pid: int, start_time: int) -> bool:
    return process_start_time(pid) == start_time


def zone_exists(name: str) -> bool:
    """Whether a shared zone file of that name exists (a valid name, on any mount).

    Usage: ``if zone_exists("rx0"): ...``
    """
    return is_zone_name(name) and any(os.path.lexists(p) for p in _candidate_paths(name))


def is_zone_name(name: object) -> bool:
    """Whether ``name`` may name a shared zone."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def _candidate_paths(name: str) -> list[Path]:
    dirs = [*_hugetlbfs_mounts(), SHM_DIR]
    return [d / f"{FILE_PREFIX}{name}" for d in dirs]


class Zone:
    """A named, fixed-size region; see the module docstring."""

    name: str
    size: int
    shared: bool
    page_size: int
    kind: str
    path: str | None
    owner: bool
    _mm: mmap.mmap
    _closed: bool
    _finalizer: weakref.finalize[Any, Zone]
    _unlink: tuple[str, int, tuple[int, int] | None]  # path, creator pid, (dev, inode)

    def __init__(self) -> None:
        raise TypeError("use Zone.create(...) or Zone.attach(name)")

    @classmethod
    def _new(
        cls,
        *,
        name: str,
        size: int,
        mm: mmap.mmap,
        shared: bool,
        page_size: int,
        kind: str,
        path: Path | None,
        owner: bool,
        ident: tuple[int, int] | None = None,
    ) -> Zone:
        zone = object.__new__(cls)
        zone.name, zone.size, zone.shared = name, size, shared
        zone.page_size, zone.kind = page_size, kind
        zone.path = str(path) if path is not None else None
        zone.owner = owner
        zone._mm = mm
        zone._closed = False
        unlink_path = str(path) if (owner and path is not None) else None
        zone._finalizer = weakref.finalize(zone, _release, mm, unlink_path, os.getpid(), ident)
        if unlink_path is not None:
            zone._unlink = (unlink_path, os.getpid(), ident)
            _owned.add(zone)
            _hook_child_exit()
        return zone

    # -- creation -----------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        size: int,
        *,
        shared: bool = True,
        hugepages: HugePages = "auto",
        kind: str = "zone",
    ) -> Zone:
        """Create a zone with ``size`` payload bytes (zero-filled).

        ``hugepages``: "auto" uses 2 MiB pages when free (and logs which it
        got), "require" raises ``BackendError`` naming the fix, "never" uses
        4 KiB pages. Shared zones raise ``ExistsError`` for a taken name. A
        zone that does not fit in the memory left raises ``ZoneSpaceError``
        (a ``BackendError`` and a ``ValueError``) naming the size, the free
        space and the fix; ``/dev/shm`` zones reserve their memory here, so
        a full ``/dev/shm`` never shows up later as a SIGBUS.

        Usage: ``zone = Zone.create("pool", 1 << 20, hugepages="auto")``
        """
        _check_name(name)
        if hugepages not in ("auto", "require", "never"):
            raise PktflowValueError(
                f"hugepages must be 'auto', 'require' or 'never', not {hugepages!r}"
            )
        if not isinstance(size, int) or size <= 0:
            raise PktflowValueError(f"zone size must be a positive int, not {size!r}")
        if len(kind.encode()) > 8:
            raise PktflowValueError(f"zone kind {kind!r} is longer than 8 bytes")
        total = HEADER_SIZE + size
        if shared:
            zone = cls._create_shared(name, size, total, hugepages, kind)
        else:
            zone = cls._create_private(name, size, total, hugepages, kind)
        log.info(
            "zone %r: %d bytes on %s pages%s", name, size, _page_text(zone.page_size),
            f" ({zone.path})" if zone.path else " (private)",
        )  # fmt: skip
        return zone

    @classmethod
    def _create_private(
        cls, name: str, size: int, total: int, hugepages: HugePages, kind: str
    ) -> Zone:
        info = hugepage_info()
        anon = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        page_size = SMALL_PAGE
        mm: mmap.mmap | None = None
        if hugepages != "never" and info.free * info.page_size >= total:
            try:
                mm = mmap.mmap(-1, _round_up(total, info.page_size), flags=anon | MAP_HUGETLB)
                page_size = info.page_size
            except OSError:
                pass
        if mm is None:
            if hugepages == "require":
                raise _no_hugepages(name, total, info)
            mapped = _round_up(total, SMALL_PAGE)
            try:
                mm = mmap.mmap(-1, mapped, flags=anon)
            except (OSError, OverflowError) as exc:
                raise _space_error(name, mapped, None, exc) from exc
            _advise_hugepage(mm)
        _pack_header(mm, size, page_size, kind)
        return cls._new(
            name=name, size=size, mm=mm, shared=False, page_size=page_size,
            kind=kind, path=None, owner=True,
        )  # fmt: skip

    @classmethod
    def _create_shared(
        cls, name: str, size: int, total: int, hugepages: HugePages, kind: str
    ) -> Zone:
        for path in _candidate_paths(name):
            if os.path.lexists(path) and not _reap_one(path, why="its name is wanted again"):
                raise ExistsError(_exists_message(name, path))
        reap_dead_zones()
        info = hugepage_info()
        mount = None
        if hugepages != "never" and info.free * info.page_size >= total:
            mount = _hugetlbfs_mount(may_mount=True)
            if mount is not None:
                zone = cls._try_create_file(
                    name, size, mount, _round_up(total, info.page_size), info.page_size, kind
                )
                if zone is not None:
                    return zone
        if hugepages == "require":
            raise _no_hugepages(name, total, info)
        if hugepages == "auto":
            _notice_small_pages(name, total, info, mount)
        zone = cls._try_create_file(
            name, size, SHM_DIR, _round_up(total, SMALL_PAGE), SMALL_PAGE, kind
        )
        assert zone is not None  # /dev/shm failures raise
        _advise_hugepage(zone._mm)
        return zone

    @classmethod
    def _try_create_file(
        cls, name: str, size: int, directory: Path, mapped: int, page_size: int, kind: str
    ) -> Zone | None:
        """Build the zone file and link it under its name; None if huge pages ran out.

        The file is built unnamed (``O_TMPFILE``) where the filesystem allows:
        sized, its memory reserved, its header written, then linked in one
        step, so an attacher never sees a half-made file and a failure
        leaves nothing behind. Elsewhere it is made in place with
        ``O_EXCL`` and attachers wait out the empty header.
        """
        path = directory / f"{FILE_PREFIX}{name}"
        huge = page_size != SMALL_PAGE
        fd, at_path = _new_zone_file(name, directory, path)
        mm: mmap.mmap | None = None
        try:
            try:
                _reserve(fd, mapped, huge)
                mm = mmap.mmap(fd, mapped, flags=mmap.MAP_SHARED)
            except (OSError, OverflowError) as exc:
                if huge and getattr(exc, "errno", None) in _HUGE_RAN_OUT:
                    return None  # the finally below unlinks an in-place file
                raise _space_error(name, mapped, directory, exc) from exc
            _pack_header(mm, size, page_size, kind)
            if not at_path:
                _link(fd, directory, path, name)
                at_path = True
            st = os.fstat(fd)
            zone = cls._new(
                name=name, size=size, mm=mm, shared=True, page_size=page_size,
                kind=kind, path=path, owner=True, ident=(st.st_dev, st.st_ino),
            )  # fmt: skip
            at_path = False  # the zone owns the file now
            return zone
        except _LinkUnsupported:
            assert mm is not None
            mm.close()
            os.close(fd)
            fd = -1
            return cls._try_create_file(name, size, directory, mapped, page_size, kind)
        except BaseException:
            if mm is not None:
                mm.close()
            raise
        finally:
            if at_path:
                _unlink_if(path, fd)
            if fd >= 0:
                os.close(fd)

    def publish(self) -> None:
        """Mark the zone initialised: ``attach`` waits for this before it returns.

        Usage: ``zone.publish()``
        """
        struct.pack_into("<I", self._mm, _READY_OFFSET, 1)

    # -- attaching ----------------------------------------------------------

    @classmethod
    def attach(cls, name: str, *, kind: str | None = None) -> Zone:
        """Map a shared zone another process created; checks its header.

        Raises ``NotFoundError`` when no such zone exists (or it is still
        being made and does not become whole in time) and
        ``PktflowValueError`` when the file is not a zone of ``kind``: not a
        regular file of this user with mode 0600, truncated, or another
        layout.

        Usage: ``zone = Zone.attach("rx0", kind="ring")``
        """
        _check_name(name)
        for path in _candidate_paths(name):
            try:
                fd = open_private_file(path, os.O_RDWR, what="pktflow zone")
            except FileNotFoundError:
                continue
            try:
                zone = cls._attach_fd(name, path, fd, kind)
            finally:
                os.close(fd)
            zone._wait_ready()
            return zone
        raise NotFoundError(f"no shared zone named {name!r} (looked in {_dirs_text()})")

    @classmethod
    def _attach_fd(cls, name: str, path: Path, fd: int, kind: str | None) -> Zone:
        # A file made in place (no O_TMPFILE) is empty, then zero, until its
        # creator writes the header: wait that out like an unpublished zone.
        deadline = time.monotonic() + _ATTACH_WAIT_S
        while True:
            st = os.fstat(fd)
            if st.st_nlink == 0:
                raise NotFoundError(f"zone {name!r} was removed while being attached")
            if st.st_size >= HEADER_SIZE:
                head = os.pread(fd, _HEADER.size, 0)
                # The creator writes the magic last; a header of this layout
                # with no mapped size yet is read again (never 0 in a whole one).
                magic, version, _, _, mapped = _HEADER.unpack(head)[:5]
                if magic != bytes(8) and (
                    (magic, version) != (ZONE_MAGIC, ZONE_LAYOUT_VERSION) or mapped != 0
                ):
                    break
            elif st.st_size > 0:
                raise PktflowValueError(f"{path} is too small to be a pktflow zone")
            if time.monotonic() > deadline:
                raise NotFoundError(f"zone {name!r} exists but was never initialised")
            time.sleep(0.001)
        header = _parse_header(head, path)
        if kind is not None and header["kind"] != kind:
            raise PktflowValueError(f"zone {name!r} holds a {header['kind']}, not a {kind}")
        if header["mapped"] != st.st_size or header["size"] + HEADER_SIZE > st.st_size:
            raise PktflowValueError(
                f"{path} is truncated or damaged: its header says {header['mapped']} bytes "
                f"({header['size']} of payload), the file has {st.st_size}"
            )
        try:
            mm = mmap.mmap(fd, st.st_size, flags=mmap.MAP_SHARED)
        except OSError as exc:
            raise BackendError(f"cannot map zone {name!r} ({path}): {exc.strerror}") from exc
        return cls._new(
            name=name, size=header["size"], mm=mm, shared=True,
            page_size=header["page_size"], kind=header["kind"], path=path, owner=False,
        )  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _ATTACH_WAIT_S
        while struct.unpack_from("<I", self._mm, _READY_OFFSET)[0] != 1:
            if time.monotonic() > deadline:
                self.close()
                raise NotFoundError(f"zone {self.name!r} exists but was never published")
            time.sleep(0.001)

    # -- access -------------------------------------------------------------

    @property
    def creator_pid(self) -> int:
        return int(_HEADER.unpack_from(self._mm, 0)[5])

    @property
    def closed(self) -> bool:
        return self._closed

    def array(self, dtype: npt.DTypeLike, count: int, offset: int = 0) -> np.ndarray[Any, Any]:
        """A numpy view of ``count`` items of ``dtype`` at payload ``offset``.

        Usage: ``slots = zone.array(np.uint32, 1024, offset=512)``
        """
        dt = np.dtype(dtype)
        if offset % max(dt.alignment, 1) or offset < 0 or offset + dt.itemsize * count > self.size:
            raise PktflowValueError(
                f"view of {count} x {dt} at offset {offset} does not fit zone {self.name!r} "
                f"({self.size} bytes) or is misaligned"
            )
        return np.frombuffer(self._mm, dtype=dt, count=count, offset=HEADER_SIZE + offset)

    def close(self) -> None:
        """Unmap (and, for the creator of a shared zone, unlink). Idempotent.

        Views handed out earlier keep the memory mapped until they are gone,
        so closing never raises ``BufferError``.

        Usage: ``zone.close()``
        """
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Zone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "private"
        return f"<Zone {self.name!r} {self.size} bytes, {self.page_size >> 10} KiB pages, {where}>"


def _release(
    mm: mmap.mmap, unlink_path: str | None, creator_pid: int, ident: tuple[int, int] | None
) -> None:
    # A forked child inherits this finalizer; only the creating process unlinks,
    # and only its own file (cleanup may have replaced it with another zone's).
    if unlink_path is not None and os.getpid() == creator_pid:
        _unlink_ident(unlink_path, ident)
    try:
        mm.close()
    except BufferError:
        pass  # numpy views still export it: the mapping goes with the last of them


def _unlink_ident(path: str, ident: tuple[int, int] | None) -> None:
    try:
        if ident is not None:
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) != ident:
                return
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- exits of multiprocessing children --------------------------------------

# The shared zones this process created and still holds. Their finalizers
# run at interpreter exit (weakref.finalize's atexit hook), but a fork or
# forkserver child of multiprocessing leaves by os._exit after running only
# multiprocessing's own exit hooks: one of those unlinks them there.
_owned: weakref.WeakSet[Zone] = weakref.WeakSet()
_hooked_pid = 0


def _hook_child_exit() -> None:
    global _hooked_pid
    if _hooked_pid == os.getpid():
        return
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return  # not a multiprocessing child: atexit suffices
    _hooked_pid = os.getpid()
    util.Finalize(None, _unlink_owned, exitpriority=0)


def _unlink_owned() -> None:
    for zone in list(_owned):
        unlink_path, creator_pid, ident = zone._unlink
        if not zone._closed and creator_pid == os.getpid():
            # Only unlink: a kernel of another exit hook may still use the mapping.
            _unlink_ident(unlink_path, ident)


def _after_fork_in_child() -> None:
    _owned.clear()  # the parent's zones are the parent's to unlink


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- files ------------------------------------------------------------------

_HUGE_RAN_OUT = (errno.ENOMEM, errno.ENOSPC, errno.EINVAL)
_tmpfile_ok = hasattr(os, "O_TMPFILE")


class _LinkUnsupported(Exception):
    """linkat through /proc failed for a reason other than a taken name."""


def _new_zone_file(name: str, directory: Path, path: Path) -> tuple[int, bool]:
    """A new zone file's descriptor, and whether it is already under ``path``."""
    global _tmpfile_ok
    try:
        if _tmpfile_ok:
            try:
                fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, FILE_MODE)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                _tmpfile_ok = False
            else:
                os.fchmod(fd, FILE_MODE)  # whatever the umask took
                return fd, False
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, FILE_MODE)
        except FileExistsError as exc:
            raise ExistsError(_exists_message(name, path)) from exc
        os.fchmod(fd, FILE_MODE)
        return fd, True
    except OSError as exc:
        if isinstance(exc, PktflowError):
            raise
        raise BackendError(f"cannot create zone {name!r} in {directory}: {exc.strerror}") from exc


def _link(fd: int, directory: Path, path: Path, name: str) -> None:
    global _tmpfile_ok
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # A destination dir fd makes os.link call linkat(AT_SYMLINK_FOLLOW),
        # which links the unnamed file itself rather than the /proc symlink.
        os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except FileExistsError as exc:
        raise ExistsError(_exists_message(name, path)) from exc
    except OSError as exc:
        log.debug("linking an O_TMPFILE zone failed (%s): zone files are made in place", exc)
        _tmpfile_ok = False
        raise _LinkUnsupported from exc
    finally:
        os.close(dir_fd)


def _unlink_if(path: Path, fd: int) -> None:
    """Unlink ``path`` if it is still the file open as ``fd``."""
    try:
        st = os.fstat(fd)
        _unlink_ident(str(path), (st.st_dev, st.st_ino))
    except OSError:
        pass


def _reserve(fd: int, mapped: int, huge: bool) -> None:
    # hugetlbfs reserves its pages at mmap; tmpfs would hand out pages on first
    # touch and SIGBUS when it has none left, so take them all now.
    if not huge:
        try:
            os.posix_fallocate(fd, 0, mapped)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise
    os.ftruncate(fd, mapped)


def _space_error(
    name: str, mapped: int, directory: Path | None, exc: BaseException
) -> PktflowError:
    """The error for a zone that could not get its memory (or file)."""
    err = getattr(exc, "errno", None)
    why = getattr(exc, "strerror", None) or str(exc)
    if not isinstance(exc, OverflowError) and err not in (
        errno.ENOMEM, errno.ENOSPC, errno.EFBIG, errno.EINVAL, errno.EOVERFLOW
    ):  # fmt: skip
        where = directory if directory is not None else "memory"
        return BackendError(f"cannot make zone {name!r} in {where}: {why}")
    info = hugepage_info()
    pages = info.total + -(-mapped // info.page_size)
    huge = f"reserve huge pages (`sysctl -w vm.nr_hugepages={pages}` as root)"
    if directory is None:
        return ZoneSpaceError(
            f"zone {name!r} needs {_size_text(mapped)} of memory and the system cannot give "
            f"it ({why}): use a smaller size, free some memory or {huge}"
        )
    try:
        vfs = os.statvfs(directory)
        avail, whole = vfs.f_bavail * vfs.f_frsize, vfs.f_blocks * vfs.f_frsize
        free = f"{_size_text(avail)} of {_size_text(whole)} free"
    except OSError:
        free = "free space unknown"
    fix = f"give it more room ({SHM_SIZE_HINT}) or {huge}" if directory == SHM_DIR else huge
    return ZoneSpaceError(
        f"zone {name!r} needs {_size_text(mapped)} in {directory}, which has {free} ({why}): "
        f"use a smaller size, {fix}"
    )


def _size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}".replace(".0 ", " ")
    return f"{n} B"


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _file_kind(mode: int) -> str:
    return next((text for test, text in _FILE_KINDS if test(mode)), "not a regular file")


def file_problem(st: os.stat_result, *, private: bool = True) -> str | None:
    """What is wrong with a pktflow file, or None: not regular, not ours, not 0600."""
    if not stat.S_ISREG(st.st_mode):
        return f"is {_file_kind(st.st_mode)}, not a regular file"
    if private and st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if private and stat.S_IMODE(st.st_mode) != FILE_MODE:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}, not {FILE_MODE:04o}"
    return None


def open_private_file(
    path: Path, flags: int, *, what: str, create: bool = False, private: bool = True
) -> int:
    """Open a pktflow file safely: no symlink followed, no FIFO waited on, checked.

    The file must be a regular file owned by this user with mode 0600
    (``private=False`` checks only that it is a regular file). With
    ``create`` a missing file is made, and one of this user's that an older
    pktflow made with a looser mode (the umask's) is set to 0600. Raises
    ``FileNotFoundError`` when it does not exist (and ``create`` is false),
    ``PktflowValueError`` naming the problem otherwise.

    Usage: ``fd = open_private_file(path, os.O_RDWR, what="lcore table", create=True)``
    """
    try:
        fd = os.open(path, flags | _OPEN_FLAGS | (os.O_CREAT if create else 0), FILE_MODE)
    except FileNotFoundError:
        raise
    except OSError as exc:
        try:
            problem = file_problem(os.lstat(path), private=private)
        except OSError:
            problem = None
        if problem is None:
            problem = f"cannot be opened ({exc.strerror})"
        raise PktflowValueError(f"{path} {problem}: not a {what}; remove it") from exc
    try:
        st = os.fstat(fd)
        mine = st.st_uid == os.geteuid() and stat.S_ISREG(st.st_mode)
        if create and mine and stat.S_IMODE(st.st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # new (the umask's mode) or made so by an older pktflow
            st = os.fstat(fd)
        problem = file_problem(st, private=private)
        if problem is not None:
            raise PktflowValueError(f"{path} {problem}: not a {what}; remove it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pack_header(mm: mmap.mmap, size: int, page_size: int, kind: str) -> None:
    start = process_start_time(os.getpid()) or 0
    # The magic goes last: an attacher of a file made in place reads a zero
    # magic as "still being made", so it must not see the magic before the rest.
    _HEADER.pack_into(
        mm, 0, bytes(8), ZONE_LAYOUT_VERSION, HEADER_SIZE, size,
        len(mm), os.getpid(), 0, page_size, start, kind.encode(),
    )  # fmt: skip
    mm[:8] = ZONE_MAGIC


def _parse_header(raw: bytes, path: Path) -> dict[str, Any]:
    fields = _HEADER.unpack_from(raw, 0)
    magic, version = fields[0], fields[1]
    if magic != ZONE_MAGIC:
        raise PktflowValueError(f"{path} is not a pktflow zone (bad magic)")
    if version != ZONE_LAYOUT_VERSION:
        raise PktflowValueError(
            f"{path} has zone layout {version}; this pktflow reads layout {ZONE_LAYOUT_VERSION}"
        )
    return {
        "size": fields[3],
        "mapped": fields[4],
        "pid": fields[5],
        "page_size": fields[7],
        "start_time": fields[8],
        "kind": fields[9].rstrip(b"\0").decode(errors="replace"),
    }


def _advise_hugepage(mm: mmap.mmap) -> None:
    try:
        mm.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):
        pass  # transparent huge pages off or unsupported: 4 KiB pages still work


def _no_hugepages(name: str, total: int, info: HugePageInfo) -> BackendError:
    need = -(-total // info.page_size)
    return BackendError(
        f"zone {name!r} requires huge pages: needs {need} x {info.page_size >> 20} MiB, "
        f"{info.free} free of {info.total} reserved. Reserve more with "
        f"`sysctl -w vm.nr_hugepages={info.total + need}` (as root), "
        f"or pass hugepages='auto'"
    )


_noticed = False


def _notice_small_pages(name: str, total: int, info: HugePageInfo, mount: Path | None) -> None:
    """Say once why shared zones fall back to 4 KiB pages, and what fixes it.

    ``mount``: the writable hugetlbfs mount tried (None: none found, or the
    pages were too few to look for one).
    """
    global _noticed
    if _noticed:
        return
    _noticed = True
    need = -(-total // info.page_size)
    if info.free < need:
        why = f"it needs {need} huge pages of {_page_text(info.page_size)}, {info.free} free"
        hint = f"reserve more with `sysctl -w vm.nr_hugepages={info.total + need - info.free}`"
    elif mount is None:
        why = "no writable hugetlbfs mount"
        hint = "mount one (`mount -t hugetlbfs none /dev/hugepages`, as root)"
    else:  # free, but promised to mappings not touched yet
        why = f"mapping its {need} huge pages in {mount} failed ({info.free} free)"
        hint = "see HugePages_Rsvd in /proc/meminfo"
    log.warning(
        "shared zone %r: %s; it and later zones that do not fit use 4 KiB pages in "
        "/dev/shm; %s",
        name, why, hint,
    )  # fmt: skip


def _exists_message(name: str, path: Path) -> str:
    try:
        problem = file_problem(os.lstat(path), private=False)
    except OSError:
        problem = None
    if problem is not None:
        return f"the name of zone {name!r} is taken: {path} {problem}; remove it"
    message = f"a shared zone named {name!r} already exists ({path})"
    info = _zone_info(path)
    if info is not None and not info.creator_alive:
        mappers = _mappers([info]).get(info.path, ())
        message += f"; its creator (pid {info.creator_pid}) is gone"
        if mappers:
            message += f" but pids {', '.join(map(str, mappers))} still map it"
        else:
            message += ": `pktflow cleanup` removes it"
    return message


def _dirs_text() -> str:
    return ", ".join(str(p.parent) for p in _candidate_paths("x"))


def _zone_info(path: Path) -> ZoneInfo | None:
    """The header of the zone file at ``path``; None for anything else (never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size < HEADER_SIZE:
            return None
        raw = os.pread(fd, _HEADER.size, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) < _HEADER.size:
        return None
    fields = _HEADER.unpack(raw)
    if fields[0] != ZONE_MAGIC:
        return None
    pid, start_time = int(fields[5]), int(fields[8])
    return ZoneInfo(
        name=path.name[len(FILE_PREFIX) :], path=str(path),
        kind=fields[9].rstrip(b"\0").decode(errors="replace"), size=int(fields[3]),
        page_size=int(fields[7]), creator_pid=pid, creator_alive=_alive(pid, start_time),
    )  # fmt: skip


def _zone_dirs() -> list[Path]:
    return [*_hugetlbfs_mounts(), SHM_DIR]


def _zone_entries() -> list[os.DirEntry[str]]:
    entries: list[os.DirEntry[str]] = []
    for directory in _zone_dirs():
        try:
            with os.scandir(directory) as it:
                entries += [e for e in it if e.name.startswith(FILE_PREFIX)]
        except OSError:
            continue
    return sorted(entries, key=lambda e: e.path)


def _mappers(zones: list[ZoneInfo]) -> dict[str, tuple[int, ...]]:
    """Which live processes map each zone's file, by path (read from /proc/*/maps).

    Processes whose maps this user may not read are skipped: those of other
    users cannot open a 0600 zone, and a container's root may be refused its
    own pid 1 (no CAP_SYS_PTRACE), which would otherwise keep every zone.
    """
    wanted: dict[str, str] = {}  # "major:minor inode" as maps prints it -> path
    for zone in zones:
        try:
            st = os.lstat(zone.path)
        except OSError:
            continue
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x} {st.st_ino}"
        wanted[key] = zone.path
    found: dict[str, set[int]] = {path: set() for path in wanted.values()}
    if not wanted:
        return {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                text = f.read()
        except OSError:
            continue  # exited meanwhile, or not ours to read
        if FILE_PREFIX not in text:
            continue
        for line in text.splitlines():
            if FILE_PREFIX in line:
                fields = line.split(None, 5)
                hit = wanted.get(" ".join(fields[3:5]))
                if hit is not None:
                    found[hit].add(pid)
    return {path: tuple(sorted(pids_)) for path, pids_ in found.items() if pids_}


def list_zones() -> list[ZoneInfo]:
    """Every pktflow shared zone on this machine, with whether its creator lives.

    For the zones of dead creators, ``mapped_by`` lists the live processes
    that still map them. Files under pktflow names that are not zones (a
    FIFO, a directory, a symlink, a damaged file) are not listed.

    Usage: ``[z.name for z in pktflow.list_zones() if not z.creator_alive]``
    """
    found = [info for e in _zone_entries() if (info := _zone_info(Path(e.path))) is not None]
    dead = [z for z in found if not z.creator_alive]
    if not dead:
        return found
    mappers = _mappers(dead)
    return [
        z if z.creator_alive else dataclasses.replace(z, mapped_by=mappers.get(z.path, ()))
        for z in found
    ]


def list_strays() -> list[tuple[str, str]]:
    """Files under pktflow zone names that are not zones: (path, what is wrong).

    A FIFO, directory, symlink or damaged file there makes that name
    unusable (creating or attaching it is an error); ``pktflow info`` lists
    them so a person can remove them. Nothing here opens more than a header.

    Usage: ``for path, problem in pktflow._memory.list_strays(): print(path, problem)``
    """
    strays = []
    for entry in _zone_entries():
        try:
            problem = file_problem(entry.stat(follow_symlinks=False), private=False)
        except OSError:
            continue
        if problem is None and _zone_info(Path(entry.path)) is None:
            problem = "is not a pktflow zone (no zone header)"
        if problem is not None:
            strays.append((entry.path, problem))
    return strays


def cleanup_zones(*, dry_run: bool = False) -> list[ZoneInfo]:
    """Unlink the zones whose creator is gone and that no live process maps.

    A zone a live process still maps (it attached before its creator died)
    is left alone: ``list_zones()`` shows who maps it. Returns what was
    (or, with ``dry_run``, would be) removed.

    Usage: ``removed = pktflow.cleanup_zones()``
    """
    removed = []
    for info in list_zones():
        if info.creator_alive or info.mapped_by:
            continue
        if not dry_run and not _unlink_zone(info):
            continue
        removed.append(info)
    return removed


def _unlink_zone(info: ZoneInfo) -> bool:
    """Unlink a dead creator's zone if the file is still that zone."""
    again = _zone_info(Path(info.path))
    if again is None or again.creator_pid != info.creator_pid or again.creator_alive:
        return False
    try:
        os.unlink(info.path)
    except FileNotFoundError:
        return False
    return True


def _reap_one(path: Path, *, why: str) -> bool:
    """Remove the zone at ``path`` if its creator is dead and nobody maps it."""
    info = _zone_info(path)
    if info is None or info.creator_alive or _mappers([info]):
        return False
    try:
        if os.lstat(path).st_uid != os.geteuid() or not _unlink_zone(info):
            return False
    except OSError:
        return False
    log.warning(
        "removed zone %r (%s) left behind by pid %d, which is gone and which no process "
        "maps (%s)", info.name, info.path, info.creator_pid, why,
    )  # fmt: skip
    return True


def reap_dead_zones(min_age: float | None = None) -> list[ZoneInfo]:
    """Remove this user's zones whose creator is gone and that no process maps.

    Run by ``Zone.create`` (iceoryx2's dead-node cleanup), so crashed runs
    do not pile up; it skips zones younger than ``min_age`` seconds (default
    ``REAP_GRACE_S``), which ``cleanup_zones`` takes at any age. Logs each
    removal; never raises.

    Usage: ``pktflow._memory.reap_dead_zones(min_age=0)``
    """
    cutoff = time.time() - (REAP_GRACE_S if min_age is None else min_age)
    me = os.geteuid()
    dead = []
    try:
        for entry in _zone_entries():
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid != me or not stat.S_ISREG(st.st_mode):
                continue
            if max(st.st_mtime, st.st_ctime) > cutoff:
                continue
            info = _zone_info(Path(entry.path))
            if info is not None and not info.creator_alive:
                dead.append(info)
        if not dead:
            return []
        mapped = _mappers(dead)
        removed = []
        for info in dead:
            if info.path not in mapped and _unlink_zone(info):
                log.warning(
                    "removed zone %r (%s) left behind by pid %d, which is gone and which no "
                    "process maps", info.name, info.path, info.creator_pid,
                )  # fmt: skip
                removed.append(info)
        return removed
    except OSError as exc:  # a sweep on the way never fails a creation
        log.debug("sweeping dead zones failed: %s", exc)
        return []
