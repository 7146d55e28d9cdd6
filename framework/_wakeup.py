"""Wakers: how a sleeping lcore is woken, in its own process or from another one.

A ``Waker`` is what a consumer (or a producer waiting for room) sleeps on:
its ``fd`` becomes readable when someone signals it. It owns an eventfd
(the fast path: a signal is one 8-byte ``write``) and an abstract-namespace
UNIX datagram socket named ``\\0pktflow-wake-<pid>-<eventfd>`` (the fallback:
nothing on disk, gone with the process), both watched by one epoll fd, which
is what ``fd`` is, so the sleeper waits on one descriptor whichever path a
signal took.

A ring records a sleeper as (pid, start time, eventfd number, token) in
shared memory; a producer in another process signals it with
``signal_waiter``: the first time it duplicates the eventfd into itself with
``pidfd_open`` + ``pidfd_getfd`` and caches the copy per (pid, start time,
fd, token), so every later signal is one ``write()``. When the kernel refuses
``pidfd_getfd`` (EPERM under Yama's ptrace scope, ENOSYS before Linux 5.6),
it sends one datagram to the socket instead. A waiter whose process died
(or whose pid now names another process) is reported, so the ring can
reclaim its entry.

``signals_sent()`` counts the signals this process made (one system call
each): the bench reports wake-up system calls per 1,000 bursts from it.

Usage::

    with pktflow.Waker() as waker:
        index = ring.add_waiter(pktflow.WAIT_DATA, waker)
        if ring.arm(pktflow.WAIT_DATA, index):
            select.select([waker.fd], [], [], 0.1)
            waker.drain()
        ring.disarm(pktflow.WAIT_DATA, index)
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import secrets
import select
import socket
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Waker", "signal_waiter", "signals_sent", "start_time"]

log = logging.getLogger("pktflow")

_ONE = (1).to_bytes(8, "little")
# pidfd_getfd(2): the same number on x86_64 and aarch64 (the generic table).
_SYS_PIDFD_GETFD = 438
# Duplicated eventfds of other processes' wakers kept open; past this the
# oldest is closed (a waker that went away keeps only its copy alive).
_CACHE_MAX = 256

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_signals = 0
# (pid, start time, fd, token) -> our copy of the eventfd, or -1: send to its socket.
_remote: OrderedDict[tuple[int, int, int, int], int] = OrderedDict()
_sender: socket.socket | None = None
# This process's live wakers by eventfd number: a signal to ourselves needs no copy.
_local: weakref.WeakValueDictionary[int, Waker] = weakref.WeakValueDictionary()


def signals_sent() -> int:
    """Signals this process has sent so far (each one system call), all wakers together.

    Usage: ``before = signals_sent(); ...; calls = signals_sent() - before``
    """
    return _signals


def _count_signal() -> None:
    global _signals
    _signals += 1  # under the GIL: callers never race on it in CPython


def start_time(pid: int) -> int:
    """The low 32 bits of a process's start time (clock ticks), 0 if it is gone.

    With the pid, it names one process for good: a recycled pid has another.

    Usage: ``stime = start_time(os.getpid())``
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # a zombie or dead: it will never read a signal
        return 0
    return int(fields[19]) & 0xFFFFFFFF


def _socket_name(pid: int, fd: int) -> bytes:
    return b"\0pktflow-wake-%d-%d" % (pid, fd)


class Waker:
    """Something to sleep on: ``fd`` turns readable when the waker is signalled.

    Level-triggered: it stays readable until ``drain()``. Spurious wake-ups
    can happen (a signal racing a re-check): after waking, drain and look again.

    Usage::

        waker = pktflow.Waker()
        loop.add_reader(waker.fd, on_wake)      # or select/poll on waker.fd
        waker.signal()                          # from any thread of this process
        waker.drain()
        waker.close()
    """

    def __init__(self) -> None:
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            self._sock = socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
            )
            self._sock.bind(_socket_name(os.getpid(), self._efd))
            self._epoll = select.epoll(2)
            self._epoll.register(self._efd, select.EPOLLIN)
            self._epoll.register(self._sock.fileno(), select.EPOLLIN)
        except BaseException:
            os.close(self._efd)
            raise
        self.pid = os.getpid()
        # Tells this waker from a later one that reuses the same fd number.
        self.token = secrets.randbits(32) | 1
        self.fd: int = self._epoll.fileno()
        self._unregister: list[Callable[[], None]] = []
        _local[self._efd] = self

    @property
    def eventfd(self) -> int:
        """The eventfd number rings record (other processes copy it by this number)."""
        return self._efd

    @property
    def closed(self) -> bool:
        return self._efd < 0

    def signal(self) -> None:
        """Make ``fd`` readable (one ``write``); a no-op once closed.

        Usage: ``waker.signal()``
        """
        if self._efd >= 0:
            try:
                os.write(self._efd, _ONE)
            except BlockingIOError:
                pass  # the counter is saturated: it is readable already
            _count_signal()

    def drain(self) -> int:
        """Clear every pending signal; returns how many there were (0: a spurious wake).

        Usage: ``waker.drain()``
        """
        if self._efd < 0:
            return 0
        got = 0
        try:
            got += int.from_bytes(os.read(self._efd, 8), "little")
        except BlockingIOError:
            pass
        while True:
            try:
                self._sock.recv(16)
            except BlockingIOError:
                return got
            got += 1

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when this waker closes (rings use it to drop its entries).

        Usage: ``waker.on_close(lambda: ring.remove_waiter(side, index))``
        """
        self._unregister.append(callback)

    def close(self) -> None:
        """Remove this waker from every ring it was added to and close its descriptors.

        Idempotent. Usage: ``waker.close()``
        """
        if self._efd < 0:
            return
        callbacks, self._unregister = self._unregister, []
        for callback in reversed(callbacks):
            try:
                callback()
            except Exception:  # a ring closed first: nothing left to remove
                pass
        _local.pop(self._efd, None)
        self._epoll.close()
        self._sock.close()
        os.close(self._efd)
        self._efd = -1
        self.fd = -1

    def __enter__(self) -> Waker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Forgotten without close(): release the descriptors quietly (the
        # rings' entries go when their handles close or the process exits).
        if getattr(self, "_efd", -1) >= 0:
            self._epoll.close()
            self._sock.close()
            os.close(self._efd)
            self._efd = -1

    def __repr__(self) -> str:
        return f"<Waker fd={self.fd} eventfd={self._efd} pid={self.pid}>"


def _pidfd_getfd(pid: int, fd: int) -> int:
    """A copy of process ``pid``'s ``fd`` in this process; raises OSError."""
    pidfd = os.pidfd_open(pid)
    try:
        copy = int(_libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
        if copy < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return copy
    finally:
        os.close(pidfd)


def _send_datagram(pid: int, fd: int) -> bool:
    global _sender
    if _sender is None:
        _sender = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
    try:
        _sender.sendto(b"\1", _socket_name(pid, fd))
    except BlockingIOError:
        return True  # its queue is full of signals: it is readable already
    except OSError:
        return False  # nobody bound the name: the waker is gone
    _count_signal()
    return True


def _open_copy(key: tuple[int, int, int, int]) -> int | None:
    """Our copy of a remote eventfd (-1: use its socket), or None if the waiter is gone."""
    pid, stime, fd, _ = key
    if start_time(pid) != stime:
        return None  # dead, or the pid names another process now
    try:
        copy = _pidfd_getfd(pid, fd)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.ENOSYS, errno.EACCES):
            return -1  # the kernel will not lend it: the datagram socket it bound
        return None  # ESRCH / EBADF: the process or its waker is gone
    # The number may have been reused by something that is not a waker.
    try:
        is_eventfd = os.readlink(f"/proc/self/fd/{copy}") == "anon_inode:[eventfd]"
    except OSError:
        is_eventfd = False
    if not is_eventfd:
        os.close(copy)
        return None
    with _lock:
        _remote[key] = copy
        while len(_remote) > _CACHE_MAX:
            _, old = _remote.popitem(last=False)
            if old >= 0:
                os.close(old)
    return copy


def forget(pid: int, stime: int, fd: int, token: int) -> None:
    """Drop the cached copy for a waiter (its entry was removed or reclaimed).

    Usage: ``forget(pid, stime, fd, token)``
    """
    with _lock:
        copy = _remote.pop((pid, stime, fd, token), None)
    if copy is not None and copy >= 0:
        os.close(copy)


def signal_waiter(pid: int, stime: int, fd: int, token: int) -> bool:
    """Signal a waiter a ring recorded; False when it is gone (reclaim its entry).

    One ``write()`` once the waiter's eventfd is cached; the first signal to
    a process opens the copy (three system calls). A waiter of this process
    is signalled directly.

    Usage: ``if not signal_waiter(pid, stime, fd, token): reclaim(index)``
    """
    if pid == os.getpid():
        waker = _local.get(fd)
        if waker is None or waker.token != token:
            return False  # closed without removing its entry
        waker.signal()
        return True
    key = (pid, stime, fd, token)
    copy = _remote.get(key)
    if copy is None:
        copy = _open_copy(key)
        if copy is None:
            forget(*key)
            return False
        if copy < 0:
            with _lock:
                _remote[key] = -1
    if copy < 0:
        return _send_datagram(pid, fd)
    try:
        os.write(copy, _ONE)
    except BlockingIOError:
        return True  # saturated counter: readable already
    except OSError:
        forget(*key)
        return False
    _count_signal()
    return True
