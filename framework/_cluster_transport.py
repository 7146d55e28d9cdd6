"""How a remote edge's messages travel: a small interface, ZeroMQ PUSH/PULL first.

A remote edge is one receiver (bound on the consumer's node) and one
sender per producer instance (connected to it). A message is one buffer
(anything with the buffer protocol); ``send`` copies it, so the sender may
reuse it at once. Neither side ever blocks forever: ``send`` takes a
timeout (0: try once) and says whether the message left, ``receive``
returns None when nothing is there.

ZeroMQ: PUSH/PULL, single-frame messages (a remote edge's: up to 8
bursts each), the high-water marks counted in messages. The receiving side binds
and the sending side connects (FIELD-NOTES: probing then rebinding a port
races); ``linger`` bounds how long a closing sender still delivers.

Other transports (Ray channels, a kernel-bypass one) implement
``Transport`` and register in ``TRANSPORTS``.

Usage::

    rx = transport("zmq").listen("127.0.0.1", hwm=1024)   # rx.endpoint: "tcp://127.0.0.1:40123"
    tx = transport("zmq").connect(rx.endpoint, hwm=1024)
    tx.send(message, timeout=0.0)
    message = rx.receive()                                # bytes, or None
"""

from __future__ import annotations

import abc
from typing import Any

from ._errors import ConfigError

__all__ = ["Receiver", "Sender", "Transport", "ZmqTransport", "transport"]

# How long a closing sender keeps delivering what it queued (its end mark last):
# at most this; a consumer that keeps reading gets everything.
LINGER_S = 10.0


class Sender(abc.ABC):
    """The producer end of a remote edge."""

    @abc.abstractmethod
    def send(self, message: Any, timeout: float) -> bool:
        """Queue a copy of ``message``; False when it could not within ``timeout`` s (0: at once).

        Usage: ``if not tx.send(message, 0.0): count_drop()``
        """

    @abc.abstractmethod
    def close(self, linger: float | None = None) -> None:
        """Deliver what is queued (at most ``linger`` s, default ``LINGER_S``), then release."""


class Receiver(abc.ABC):
    """The consumer end of a remote edge: bound, so senders connect to ``endpoint``."""

    endpoint: str

    @abc.abstractmethod
    def receive(self) -> bytes | None:
        """The next message, or None when none is waiting (never blocks).

        Usage: ``message = rx.receive()``
        """

    def wait_fd(self) -> int | None:
        """A descriptor that becomes readable when a message may have arrived since
        ``receive()`` last returned None (the walk sleeps on it); None: poll.

        Usage: ``loop.add_reader(rx.wait_fd(), wake)``
        """
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Drop what is queued and release everything."""


class Transport(abc.ABC):
    """Makes the two ends of remote edges."""

    name: str

    @abc.abstractmethod
    def listen(self, host: str, *, hwm: int) -> Receiver:
        """A receiver bound on ``host`` (a free port), queueing up to ``hwm`` messages."""

    @abc.abstractmethod
    def connect(self, endpoint: str, *, hwm: int) -> Sender:
        """A sender to ``endpoint``, queueing up to ``hwm`` messages."""


def _zmq() -> Any:
    try:
        import zmq
    except ImportError:
        raise ConfigError(
            "remote edges need pyzmq: install pktflow[cluster]", key="cluster"
        ) from None
    return zmq


class _ZmqSender(Sender):
    def __init__(self, endpoint: str, hwm: int) -> None:
        zmq = self._zmq = _zmq()
        self._context = zmq.Context(io_threads=1)
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, int(LINGER_S * 1000))
        self._socket.connect(endpoint)
        self._again = zmq.Again
        self._noblock = zmq.NOBLOCK
        self._pollout = zmq.POLLOUT

    def send(self, message: Any, timeout: float) -> bool:
        socket = self._socket
        try:
            # copy=True: the caller reuses its buffer (and below 64 KiB pyzmq
            # copies anyway: cheaper than tracking when ZeroMQ is done with it).
            socket.send(message, flags=self._noblock, copy=True)
            return True
        except self._again:
            if timeout <= 0:
                return False
        # Room may come: wait in the kernel for at most ``timeout``, then try once more.
        if not socket.poll(int(timeout * 1000), self._pollout):
            return False
        try:
            socket.send(message, flags=self._noblock, copy=True)
            return True
        except self._again:
            return False

    def close(self, linger: float | None = None) -> None:
        if not self._socket.closed:
            # With a linger, what is queued still goes, for a bounded time.
            wait = LINGER_S if linger is None else linger
            self._socket.close(linger=int(wait * 1000))
            self._context.term()


class _ZmqReceiver(Receiver):
    def __init__(self, host: str, hwm: int) -> None:
        zmq = _zmq()
        self._context = zmq.Context(io_threads=1)
        self._socket = self._context.socket(zmq.PULL)
        self._socket.setsockopt(zmq.RCVHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(f"tcp://{host}:*")
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._fd: int = self._socket.getsockopt(zmq.FD)
        self._again = zmq.Again
        self._noblock = zmq.NOBLOCK
        self._events, self._pollin = zmq.EVENTS, zmq.POLLIN

    def receive(self) -> bytes | None:
        # Asking for the events first: an empty receive raises zmq.Again, which
        # costs a few microseconds, and an idle walk asks often.
        socket = self._socket
        if not socket.getsockopt(self._events) & self._pollin:
            return None
        try:
            # copy=True: a burst's few kilobytes cost less to copy than a Frame
            # object each (measured: copy=False was slower up to 32 x 1,500 B).
            message: bytes = socket.recv(flags=self._noblock, copy=True)
        except self._again:
            return None
        return message

    def wait_fd(self) -> int | None:
        # ZeroMQ's descriptor signals state changes, not messages: it is readable
        # after a message arrived unless the events were read since, and receive()
        # returns None only after reading them and finding no message.
        return self._fd

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)
            self._context.term()


class ZmqTransport(Transport):
    """ZeroMQ PUSH/PULL over TCP (loopback or between machines)."""

    name = "zmq"

    def listen(self, host: str, *, hwm: int) -> Receiver:
        return _ZmqReceiver(host, hwm)

    def connect(self, endpoint: str, *, hwm: int) -> Sender:
        return _ZmqSender(endpoint, hwm)


TRANSPORTS: dict[str, type[Transport]] = {"zmq": ZmqTransport}


def transport(name: str) -> Transport:
    """The transport registered as ``name``.

    Usage: ``rx = transport("zmq").listen("127.0.0.1", hwm=1024)``
    """
    try:
        return TRANSPORTS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown transport {name!r}; known: {', '.join(TRANSPORTS)}", key="transport"
        ) from None
