"""Memory zones: named fixed-size regions, private or shared, on huge pages when free.

A shared zone is a file other processes attach to by name: on hugetlbfs
when 2 MiB pages are free, else in ``/dev/shm`` (with ``MADV_HUGEPAGE``).
It starts with a header (magic, layout version, sizes, creator pid and
start time, kind, a ready flag) that ``attach`` checks. The payload after
the header is 64-byte aligned.

Usage::

    zone = Zone.create("rx0", 1 << 20, shared=True, hugepages="auto")
    words = zone.array(np.uint32, 1024)      # a numpy view of the payload
    zone.publish()                           # attachers may now use it
    other = Zone.attach("rx0")               # in another process
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import re
import struct
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._errors import BackendError, ExistsError, NotFoundError, PktflowValueError

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
    return is_zone_name(name) and any(path.exists() for path in _candidate_paths(name))


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
    ) -> Zone:
        zone = object.__new__(cls)
        zone.name, zone.size, zone.shared = name, size, shared
        zone.page_size, zone.kind = page_size, kind
        zone.path = str(path) if path is not None else None
        zone.owner = owner
        zone._mm = mm
        zone._closed = False
        unlink_path = str(path) if (owner and path is not None) else None
        zone._finalizer = weakref.finalize(zone, _release, mm, unlink_path, os.getpid())
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
        4 KiB pages. Shared zones raise ``ExistsError`` for a taken name.

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
        zone._write_header()
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
        if hugepages != "never" and info.free * info.page_size >= total:
            try:
                mm = mmap.mmap(-1, _round_up(total, info.page_size), flags=anon | MAP_HUGETLB)
                return cls._new(
                    name=name, size=size, mm=mm, shared=False, page_size=info.page_size,
                    kind=kind, path=None, owner=True,
                )  # fmt: skip
            except OSError:
                pass
        if hugepages == "require":
            raise _no_hugepages(name, total, info)
        mm = mmap.mmap(-1, _round_up(total, SMALL_PAGE), flags=anon)
        _advise_hugepage(mm)
        return cls._new(
            name=name, size=size, mm=mm, shared=False, page_size=SMALL_PAGE,
            kind=kind, path=None, owner=True,
        )  # fmt: skip

    @classmethod
    def _create_shared(
        cls, name: str, size: int, total: int, hugepages: HugePages, kind: str
    ) -> Zone:
        for path in _candidate_paths(name):
            if path.exists():
                raise ExistsError(_exists_message(name, path))
        info = hugepage_info()
        if hugepages != "never" and info.free * info.page_size >= total:
            mount = _hugetlbfs_mount(may_mount=True)
            if mount is not None:
                zone = cls._try_create_file(
                    name, size, mount / f"{FILE_PREFIX}{name}",
                    _round_up(total, info.page_size), info.page_size, kind,
                )  # fmt: skip
                if zone is not None:
                    return zone
        if hugepages == "require":
            raise _no_hugepages(name, total, info)
        if hugepages == "auto":
            _notice_small_pages(name, info)
        zone = cls._try_create_file(
            name, size, SHM_DIR / f"{FILE_PREFIX}{name}",
            _round_up(total, SMALL_PAGE), SMALL_PAGE, kind,
        )  # fmt: skip
        assert zone is not None  # /dev/shm failures raise
        _advise_hugepage(zone._mm)
        return zone

    @classmethod
    def _try_create_file(
        cls, name: str, size: int, path: Path, mapped: int, page_size: int, kind: str
    ) -> Zone | None:
        """Create and map ``path``; None if huge pages ran out (the caller falls back)."""
        huge = page_size != SMALL_PAGE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise ExistsError(_exists_message(name, path)) from exc
        try:
            os.ftruncate(fd, mapped)
            mm = mmap.mmap(fd, mapped, flags=mmap.MAP_SHARED)
        except OSError as exc:
            os.unlink(path)
            if huge and exc.errno in (errno.ENOMEM, errno.ENOSPC, errno.EINVAL):
                return None
            raise
        finally:
            os.close(fd)
        return cls._new(
            name=name, size=size, mm=mm, shared=True, page_size=page_size,
            kind=kind, path=path, owner=True,
        )  # fmt: skip

    def _write_header(self) -> None:
        start = process_start_time(os.getpid()) or 0
        _HEADER.pack_into(
            self._mm, 0, ZONE_MAGIC, ZONE_LAYOUT_VERSION, HEADER_SIZE, self.size,
            len(self._mm), os.getpid(), 0, self.page_size, start, self.kind.encode(),
        )  # fmt: skip

    def publish(self) -> None:
        """Mark the zone initialised: ``attach`` waits for this before it returns.

        Usage: ``zone.publish()``
        """
        struct.pack_into("<I", self._mm, _READY_OFFSET, 1)

    # -- attaching ----------------------------------------------------------

    @classmethod
    def attach(cls, name: str, *, kind: str | None = None) -> Zone:
        """Map a shared zone another process created; checks its header.

        Raises ``NotFoundError`` when no such zone exists and
        ``PktflowValueError`` when the file is not a zone of ``kind``.

        Usage: ``zone = Zone.attach("rx0", kind="ring")``
        """
        _check_name(name)
        for path in _candidate_paths(name):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                mapped = os.fstat(fd).st_size
                if mapped < HEADER_SIZE:
                    raise PktflowValueError(f"{path} is too small to be a pktflow zone")
                mm = mmap.mmap(fd, mapped, flags=mmap.MAP_SHARED)
            finally:
                os.close(fd)
            header = _read_header(mm, path)
            if kind is not None and header["kind"] != kind:
                mm.close()
                raise PktflowValueError(f"zone {name!r} holds a {header['kind']}, not a {kind}")
            zone = cls._new(
                name=name, size=header["size"], mm=mm, shared=True,
                page_size=header["page_size"], kind=header["kind"], path=path, owner=False,
            )  # fmt: skip
            zone._wait_ready()
            return zone
        raise NotFoundError(f"no shared zone named {name!r} (looked in {_dirs_text()})")

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


def _release(mm: mmap.mmap, unlink_path: str | None, creator_pid: int) -> None:
    # A forked child inherits this finalizer; only the creating process unlinks.
    if unlink_path is not None and os.getpid() == creator_pid:
        try:
            os.unlink(unlink_path)
        except FileNotFoundError:
            pass
    try:
        mm.close()
    except BufferError:
        pass  # numpy views still export it: the mapping goes with the last of them


def _read_header(mm: mmap.mmap, path: Path) -> dict[str, Any]:
    fields = _HEADER.unpack_from(mm, 0)
    magic, version = fields[0], fields[1]
    if magic != ZONE_MAGIC:
        mm.close()
        raise PktflowValueError(f"{path} is not a pktflow zone (bad magic)")
    if version != ZONE_LAYOUT_VERSION:
        mm.close()
        raise PktflowValueError(
            f"{path} has zone layout {version}; this pktflow reads layout {ZONE_LAYOUT_VERSION}"
        )
    return {
        "size": fields[3],
        "pid": fields[5],
        "page_size": fields[7],
        "start_time": fields[8],
        "kind": fields[9].rstrip(b"\0").decode(),
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


def _notice_small_pages(name: str, info: HugePageInfo) -> None:
    global _noticed
    if not _noticed:
        _noticed = True
        log.warning(
            "no free huge pages (%d of %d free): shared zone %r and later ones use 4 KiB "
            "pages in /dev/shm; reserve some with `%s`",
            info.free, info.total, name, RESERVE_HINT,
        )  # fmt: skip


def _exists_message(name: str, path: Path) -> str:
    message = f"a shared zone named {name!r} already exists ({path})"
    info = _zone_info(path)
    if info is not None and not info.creator_alive:
        message += f"; its creator (pid {info.creator_pid}) is gone: `pktflow cleanup` removes it"
    return message


def _dirs_text() -> str:
    return ", ".join(str(p.parent) for p in _candidate_paths("x"))


def _zone_info(path: Path) -> ZoneInfo | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(_HEADER.size)
    except OSError:
        return None
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


def list_zones() -> list[ZoneInfo]:
    """Every pktflow shared zone on this machine, with whether its creator lives.

    Usage: ``[z.name for z in pktflow.list_zones() if not z.creator_alive]``
    """
    found = []
    for directory in [*_hugetlbfs_mounts(), SHM_DIR]:
        for path in sorted(directory.glob(f"{FILE_PREFIX}*")):
            info = _zone_info(path)
            if info is not None:
                found.append(info)
    return found


def cleanup_zones(*, dry_run: bool = False) -> list[ZoneInfo]:
    """Unlink the zones whose creating process no longer exists; returns them.

    Usage: ``removed = pktflow.cleanup_zones()``
    """
    removed = []
    for info in list_zones():
        if info.creator_alive:
            continue
        if not dry_run:
            try:
                os.unlink(info.path)
            except FileNotFoundError:
                continue
        removed.append(info)
    return removed
