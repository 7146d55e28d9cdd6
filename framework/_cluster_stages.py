"""The stages the cluster driver inserts into each node's pipeline.

- ``RemoteSend`` (a sink, on the producer's node and lcores): packs the
  bursts of one turn of the walk (up to ``COALESCE`` bursts or
  ``MESSAGE_BYTES``) into one message (``_cluster_kernels.pack``, into a
  buffer it reuses: the transport copies), sends it without blocking the
  lcore forever, frees the mbufs; what it could not send is dropped and
  counted. Its ``stop()`` sends the end-of-stream mark.
- ``RemoteReceive`` (a source, on lcore 0 of the consumer's node): takes a
  message, allocates local mbufs and copies the packets in (``unpack``);
  it ends once every sender said end (or its node was declared lost).
- ``NodeShare`` (a source): builds the real source with its replica
  counted across the cluster (``ctx.replica`` / ``ctx.replicas`` = nodes x
  lcores) and, for ``run(count=N)``, this instance's share of N.

So the node-local runtime runs remote edges as ordinary stages: nothing in
the walk knows about machines.

Usage (the driver's): node specs name these classes; see ``_cluster_plan``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import struct
import time
from typing import Any

import numpy as np

from pktflow.backends._numba._ring import _compiled

from ._cluster_kernels import HEADER_BYTES
from ._cluster_kernels import pack as _pack_dispatcher
from ._cluster_kernels import unpack as _unpack_dispatcher
from ._cluster_transport import Receiver, Sender, transport
from ._errors import PipelineError
from ._malloc import keep_freed_memory
from ._stage import Burst, Source, Stage, StageContext, _free, foreign_burst

# The compiled entry points: the arguments are typed by construction (runtime
# bursts, pool views, received blocks), so numba's per-call dispatch is skipped.
pack = _compiled(_pack_dispatcher)
unpack = _compiled(_unpack_dispatcher)

__all__ = ["NodeShare", "RemoteReceive", "RemoteSend", "offer_receiver"]

# The message header: magic, version, kind, sender node, sender replica, packets.
HEADER = struct.Struct("<IHHHHI")
assert HEADER.size == HEADER_BYTES
MAGIC = 0x504B4658  # "PKFX"
VERSION = 1
DATA, END = 0, 1
# Bursts a message carries at most, and its packets' bytes at most (unless one
# burst alone is more): a busy edge sends a message per this many bursts.
COALESCE = 8
MESSAGE_BYTES = 64 * 1024
# How long a sender's end mark waits for room at the end: a consumer that takes
# nothing for that long is gone. (A lost end mark costs the receiver QUIET_S: the
# driver tells it when the sending node ended, see RemoteReceive.upstream_ended.)
END_WAIT_S = 5.0
# A receiver whose senders' node ended without their end marks ends after this
# long with nothing arriving.
QUIET_S = 0.5

# Receivers bound by the shard before its pipeline is built, by edge key: the
# RemoteReceive on lcore 0 (the shard's own process) takes its socket here.
_RECEIVERS: dict[str, Receiver] = {}


def offer_receiver(key: str, receiver: Receiver) -> None:
    """Hand a bound receiver to the ``RemoteReceive`` stage built for edge ``key``."""
    _RECEIVERS[key] = receiver


def take_receiver(key: str) -> Receiver | None:
    """The receiver offered for ``key`` (once), or None."""
    return _RECEIVERS.pop(key, None)


# Sources that ended, and senders waiting for them, by (run tag, lcore): a sender
# fed only by sources on its own lcore, through direct hand-overs, sends its end
# mark as soon as they ended (data order holds: their last burst went through it
# synchronously), so nodes that send to each other both end.
_ENDED: dict[tuple[str, int], set[str]] = {}
_WAITING: dict[tuple[str, int], list[tuple[frozenset[str], Any]]] = {}


def _source_ended(tag: str, lcore: int, name: str) -> None:
    key = (tag, lcore)
    ended = _ENDED.setdefault(key, set())
    ended.add(name)
    for feeders, callback in list(_WAITING.get(key, ())):
        if feeders <= ended:
            _WAITING[key].remove((feeders, callback))
            callback()


def _when_ended(tag: str, lcore: int, feeders: frozenset[str], callback: Any) -> None:
    _WAITING.setdefault((tag, lcore), []).append((feeders, callback))


class RemoteSend(Stage):
    """The producer end of a remote edge: the bursts of one turn of the walk, one message.

    Bursts wait here (their mbufs kept) until ``coalesce`` of them, or
    ``MESSAGE_BYTES`` of packets, are waiting, or the walk yields to the
    event loop (it does when idle, and every ``yield_every`` bursts): then
    they go as one message. A busy edge sends few large messages (the
    transport's cost is per message); a quiet one sends each burst at the
    end of the walk's turn, without waiting for more.
    """

    outputs = ()

    def __init__(
        self,
        ctx: StageContext,
        *,
        endpoint: str,
        node: int,
        full: str = "block",
        hwm: int = 64,
        block_s: float = 1.0,
        transport_name: str = "zmq",
        tag: str = "",
        feeders: list[str] | None = None,
        to_node: int = -1,
        coalesce: int = COALESCE,
    ) -> None:
        super().__init__(ctx)
        keep_freed_memory()
        self.ended = False
        self.to_node = to_node
        self.peer_lost = False  # the driver said the consumer's node is gone
        if feeders:
            _when_ended(tag, ctx.lcore, frozenset(feeders), self._send_end)
        self.sender: Sender = transport(transport_name).connect(endpoint, hwm=hwm)
        self.block_s = block_s if full == "block" else 0.0
        self.node = node
        # The last send failed: the peer is gone or stalled. A block edge then
        # drops at once until a send gets through again (an lcore never waits
        # per burst forever).
        self.failing = False
        self.messages = 0  # messages sent
        # The handles waiting for the next message (this stage owns their mbufs).
        self._waiting = Burst(np.empty(max(coalesce, 1) * ctx.burst_size, np.uint32), ctx.pool)
        self._waiting_bytes = 0
        self._flush_scheduled = False
        self._failure: Exception | None = None  # of a flush on the event loop
        self._pool: Any = None
        self._arrays: tuple[Any, Any, int] | None = None
        # The message buffer, reused (the transport copies it); grown when a message
        # needs more. Its header is written once (pack sets the packet count).
        self._message = self._new_message(HEADER_BYTES + ctx.burst_size * 2048)

    def _new_message(self, size: int) -> np.ndarray:
        message = np.empty(size, np.uint8)
        HEADER.pack_into(message.data, 0, MAGIC, VERSION, DATA, self.node, self.ctx.replica, 0)
        return message

    def process(self, burst: Burst) -> None:
        if self._failure is not None:
            self._raise_failure()
        n, waiting = burst.n, self._waiting
        if waiting.n and (
            burst.pool is not waiting.pool
            or waiting.n + n > waiting.capacity
            or self._waiting_bytes + burst.nbytes > MESSAGE_BYTES
        ):
            self.flush()
        waiting.pool = burst.pool
        # Kept here until their message goes: counted as consumed now (as a sink's
        # free), so a failure later in this walk does not free them again.
        waiting.array[waiting.n : waiting.n + n] = burst.array[:n]
        waiting.n += n
        self._waiting_bytes += burst.nbytes
        burst._sent = True
        self.stats.handed += n
        self.stats.freed += n
        if waiting.n + self.ctx.burst_size > waiting.capacity:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_on_yield)

    def _flush_on_yield(self) -> None:
        self._flush_scheduled = False
        try:
            self.flush()
        except Exception as exc:  # raised to the walk by the next process() or stop()
            self._failure = exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def flush(self) -> None:
        """Send the waiting bursts as one message (or drop them: the peer is stalled)."""
        waiting = self._waiting
        n = waiting.n
        if not n:
            return
        pool = waiting.pool
        if pool is not self._pool:
            data = np.frombuffer(pool._object_bytes, np.uint8)
            self._pool, self._arrays = pool, (pool.header_words, data, pool._stride)
        words, data, stride = self._arrays  # type: ignore[misc]
        message = self._message
        length = pack(words, data, stride, waiting.array, n, message)
        if length > message.shape[0]:
            message = self._message = self._new_message(2 * length)
            length = pack(words, data, stride, waiting.array, n, message)
        if length < 0:  # a handle not of this pool: give back the others, drop them all
            error = foreign_burst(waiting)
            handles = waiting.array[:n]
            mine = handles[handles < words.shape[0] - 1]
            waiting.array[: mine.shape[0]] = mine
            waiting.n = mine.shape[0]
            self._release_waiting(n, sent=False)
            raise error
        sent = False
        try:
            sent = self.sender.send(message[:length], 0.0 if self.failing else self.block_s)
        finally:  # sent or not (or the transport raised), the mbufs go back
            self.failing = not sent
            self._release_waiting(n, sent)

    def _release_waiting(self, n: int, sent: bool) -> None:
        """Free the waiting mbufs; ``n`` packets were counted consumed on arrival:
        dropped instead when their message did not go."""
        if sent:
            self.messages += 1
        else:
            self.stats.freed -= n
            self.stats.drops += n
        _free(self._waiting)
        self._waiting.n = self._waiting_bytes = 0

    def _send_end(self, timeout: float = 0.0) -> bool:
        """Queue the end mark (behind every burst sent); whether it is queued."""
        if not self.ended:
            self.flush()
            end = HEADER.pack(MAGIC, VERSION, END, self.node, self.ctx.replica, 0)
            self.ended = self.sender.send(end, timeout)
        return self.ended

    async def stop(self) -> None:
        try:
            self._raise_failure()
            self.flush()  # here, on the walk's loop: a scheduled flush may run meanwhile
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self._close)

    def _close(self) -> None:
        # The receiver ends on the end mark: give a slow consumer time to make room
        # for it. A peer that takes nothing for END_WAIT_S is gone (or stuck): what
        # is queued for it is given up. Else close delivers what is queued, the
        # end mark last, for at most LINGER_S.
        queued = False
        try:
            queued = self._send_end(0.0 if self.peer_lost else END_WAIT_S)
        finally:
            self.sender.close(linger=None if queued else 0.0)


class RemoteReceive(Source):
    """The consumer end of a remote edge: messages into fresh local mbufs."""

    def __init__(self, ctx: StageContext, *, edge: str, senders: list[list[int]]) -> None:
        super().__init__(ctx)
        keep_freed_memory()
        receiver = take_receiver(edge)
        if receiver is None:
            raise PipelineError(
                f"remote edge {edge}: no receiver bound for it in this process "
                "(a RemoteReceive runs on lcore 0 of its node's shard)"
            )
        self.receiver = receiver
        self.expected = {(node, replica) for node, replica in senders}
        self.lost: set[int] = set()
        self.upstream_done: set[int] = set()  # nodes whose pipeline ended (the driver says)
        self._quiet_since: float | None = None
        self.received = 0  # packets
        self.messages = 0
        self._message: tuple[Any, int] | None = None
        self._first = 0
        self._offset = 0
        pool = ctx.pool
        data = np.frombuffer(pool._object_bytes, np.uint8)
        self._words, self._data, self._stride = pool.header_words, data, pool._stride
        self._bound_array: np.ndarray | None = None
        self._alloc: Any = None  # the pool's alloc_bulk bound to _bound_array

    @property
    def ended(self) -> bool:
        """Every sender said end (or its node is lost) and nothing is left to deliver."""
        return not self.expected and self._message is None

    def upstream_ended(self, node: int) -> None:
        """Node ``node``'s pipeline ended: its senders closed (what they queued was
        delivered or given up), so once nothing is waiting here, expect no end mark
        from it (one that found no room was lost)."""
        self.upstream_done.add(node)

    def forget(self, node: int) -> None:
        """Node ``node`` is lost: expect no end mark from it."""
        self.lost.add(node)
        self.expected = {s for s in self.expected if s[0] != node}

    def wait_fd(self) -> int | None:
        """The receiver's descriptor, for the walk to sleep on; None (poll) while a
        message waits here or the quiet after the senders' end is being timed."""
        if self._message is not None or self._quiet_since is not None:
            return None
        return self.receiver.wait_fd()

    def poll(self, burst: Burst) -> int | None:
        while self._message is None:
            message = self.receiver.receive()
            if message is None:
                if self.expected and all(n in self.upstream_done for n, _ in self.expected):
                    # Their end marks were lost (no room for them): what they sent is
                    # here or on its way through the kernel; quiet for a while = all in.
                    now = time.monotonic()
                    if self._quiet_since is None:
                        self._quiet_since = now
                    elif now - self._quiet_since >= QUIET_S:
                        self.expected.clear()
                return None if not self.expected else 0
            self._quiet_since = None
            if len(message) < HEADER_BYTES:
                raise PipelineError(f"a message of {len(message)} bytes is not a pktflow burst")
            magic, version, kind, node, replica, n = HEADER.unpack_from(message)
            if magic != MAGIC or version != VERSION:
                raise PipelineError(f"a message that is not a pktflow burst (magic {magic:#x})")
            if kind == END:
                self.expected.discard((node, replica))
                continue
            if node in self.lost or n == 0:
                continue
            self._message = (np.frombuffer(message, np.uint8), n)
            self._first = self._offset = 0
            self.messages += 1
        block, n = self._message
        k = min(burst.capacity, n - self._first)
        if burst.array is not self._bound_array:
            self._bound_array = burst.array
            self._alloc = self.ctx.pool.bind(burst.array).alloc_bulk
        got = self._alloc(k)
        if got < 0:
            got = self.ctx.pool._settle(got, k, burst.array)  # a pending publish, or raise
        if got != k:
            return 0  # the pool is empty now: the message waits (back-pressure)
        offset = unpack(
            self._words, self._data, self._stride, burst.array, k,
            block, n, self._first, self._offset,
        )  # fmt: skip
        if offset < 0:
            self.ctx.pool.free_bulk(burst.array, k)
            raise PipelineError(f"a message of {block.shape[0]} bytes is shorter than it says")
        self._offset = offset
        self._first += k
        if self._first == n:
            self._message = None
        self.received += k
        return k

    async def stop(self) -> None:
        self.receiver.close()


class NodeShare(Source):
    """A real source, built with its cluster-wide replica and its share of ``count``."""

    def __init__(
        self,
        ctx: StageContext,
        *,
        stage: str,
        options: dict[str, Any],
        base: int,
        replicas: int,
        limits: list[int | None] | None = None,
        tag: str = "",
    ) -> None:
        cls = _import(stage)
        self.tag = tag
        self.outputs = tuple(cls.outputs_for(options))
        super().__init__(ctx)
        inner_ctx = StageContext(
            ctx.name, lcore=ctx.lcore, pool=ctx.pool, pools=ctx.pools,
            burst_size=ctx.burst_size, options=options,
            replica=base + ctx.replica, replicas=replicas,
        )  # fmt: skip
        inner_ctx.stats = ctx.stats  # one set of counters: the walk's
        self.inner: Source = cls(inner_ctx, **options)
        self.inner._outlets = self._outlets  # wired by the runtime, for both
        self.keeps_lengths = cls.keeps_lengths  # type: ignore[misc]
        limit = limits[ctx.replica] if limits else None
        self.left = -1 if limit is None else limit  # -1: no limit
        poll = self.inner.poll
        self.poll = (  # type: ignore[method-assign]
            self._poll_async if inspect.iscoroutinefunction(poll) else self._poll
        )

    def _poll(self, burst: Burst) -> int | None:
        if self.left == 0:
            self._end()
            return None
        k: int | None = self.inner.poll(burst)
        if k is None:
            self._end()
            return None
        if k and self.left > 0:
            self.left = max(self.left - k, 0)
        return k

    async def _poll_async(self, burst: Burst) -> int | None:
        if self.left == 0:
            self._end()
            return None
        k: int | None = await self.inner.poll(burst)
        if k is None:
            self._end()
            return None
        if k and self.left > 0:
            self.left = max(self.left - k, 0)
        return k

    def _end(self) -> None:  # returns None: the source ended
        _source_ended(self.tag, self.ctx.lcore, self.ctx.name)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()


def _import(path: str) -> type[Source]:
    module_name, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found  # type: ignore[no-any-return]
