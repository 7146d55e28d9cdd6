"""A throwaway network namespace holding a veth pair, for AF_PACKET tests and benchmarks.

Made with ``ip`` (iproute2) and removed on exit, even after a failure; a
machine where namespaces are not permitted (no root, a locked-down
container) gives ``NetnsUnavailable`` with the reason, for a skip.

Usage::

    with veth_netns() as ns:                     # ns.name, ns.a, ns.b
        subprocess.run(ns.exec(sys.executable, "-c", code), check=True)
        with ns.entered():                       # this thread inside the namespace
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Netns", "NetnsUnavailable", "veth_netns"]

_CLONE_NEWNET = 0x40000000


class NetnsUnavailable(RuntimeError):
    """Network namespaces or veth pairs cannot be made here; the message says why."""


@dataclass(frozen=True)
class Netns:
    """A network namespace ``name`` with the veth pair ``a`` <-> ``b`` up inside it."""

    name: str
    a: str
    b: str

    def exec(self, *argv: str) -> list[str]:
        """The command line that runs ``argv`` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread inside the namespace (sockets it opens belong there).

        setns(2) moves only the calling thread; it goes back on exit.
        """
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{self.name}") as there:
            if libc.setns(there.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.name}")
            try:
                yield
            finally:
                if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:  # pragma: no cover
                    raise OSError(ctypes.get_errno(), "setns back home")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def veth_netns(a: str = "veth0", b: str = "veth1", *, mtu: int = 1500) -> Iterator[Netns]:
    """A new namespace with veth ``a`` <-> ``b`` up, IPv6 off (no stray router solicitations).

    Raises ``NetnsUnavailable`` when it cannot be made; always removes it.
    """
    if shutil.which("ip") is None:
        raise NetnsUnavailable("the ip command (iproute2) is not installed")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (CAP_SYS_ADMIN)")
    name = f"pktflow-{os.getpid()}-{secrets.token_hex(3)}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        raise NetnsUnavailable(f"ip netns add failed: {made.stderr.strip()}")
    try:
        steps = [
            ("link", "add", a, "mtu", str(mtu), "type", "veth", "peer", "name", b, "mtu", str(mtu)),
            ("link", "set", "lo", "up"),
            ("link", "set", a, "up"),
            ("link", "set", b, "up"),
        ]
        for step in steps:
            done = _ip("-n", name, *step)
            if done.returncode != 0:
                raise NetnsUnavailable(f"ip {' '.join(step)} failed: {done.stderr.strip()}")
        for key in ("all", "default", a, b):  # quiet links: only the traffic a test sends
            setting = f"net.ipv6.conf.{key}.disable_ipv6=1"
            subprocess.run(
                ["ip", "netns", "exec", name, "sysctl", "-qw", setting],
                capture_output=True, timeout=30,
            )  # fmt: skip
        yield Netns(name, a, b)
    finally:
        _ip("netns", "del", name)
