"""``pcap_source`` and ``pcap_sink``: replay capture files into mbufs, write mbufs to files.

Both formats, pcap (microsecond or nanosecond timestamps, either byte
order) and pcapng (enhanced and simple packet blocks, every interface's
``if_tsresol``), are read by jitted kernels over an ``mmap`` of the file
(``_pcap_kernels``): the file is indexed once when the stage is built,
then each burst is one allocation and one copy kernel. The sink writes
one record per packet (nanosecond timestamps from the mbuf's
``timestamp``), one ``write`` per burst.

Usage (YAML)::

    replay: {type: pcap_source, path: in.pcap, loop: 1, timing: fast}
    parse:  {type: parse, inputs: [replay]}
    save:   {type: pcap_sink, inputs: [parse], path: out.pcapng, format: pcapng}
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

import pktflow
from pktflow.backends._numba._ring import _compiled

from . import _pcap_kernels as kernels
from ._pool_data import PoolArraysCache

__all__ = ["PcapSink", "PcapSource", "PcapError"]

# Arguments typed by construction (pool views, runtime bursts): no dispatch.
_records_to_mbufs = _compiled(kernels.records_to_mbufs)
_mbufs_to_records = _compiled(kernels.mbufs_to_records)

_PCAP_MAGICS = {
    # magic as read little-endian -> (big-endian file, nanosecond timestamps)
    kernels.PCAP_MAGIC_US: (False, False),
    kernels.PCAP_MAGIC_NS: (False, True),
    0xD4C3B2A1: (True, False),
    0x4D3CB2A1: (True, True),
}
_ERRORS = {kernels.TRUNCATED: "truncated", kernels.MALFORMED: "malformed"}


class PcapError(pktflow.PktflowError, ValueError):
    """A capture file that is not pcap/pcapng, or is damaged at a byte offset."""


def open_capture(path: str | Path) -> tuple[mmap.mmap | None, np.ndarray, np.ndarray, str | None]:
    """Map and index a pcap or pcapng file: (map, bytes, records, error or None).

    ``records`` are the index rows (``_pcap_kernels.RECORD_*``) of every
    record before the first damaged one; the error names its byte offset.

    Usage: ``mm, data, records, error = open_capture("in.pcapng")``
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            size = path.stat().st_size
            mm = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
    except OSError as exc:
        raise PcapError(f"cannot open {path}: {exc.strerror}") from None
    data = np.frombuffer(mm, np.uint8) if mm is not None else np.zeros(0, np.uint8)
    if size < 4:
        raise PcapError(f"{path} is not a pcap or pcapng file (only {size} bytes)")
    magic = int.from_bytes(bytes(data[:4]), "little")
    if magic == kernels.PCAPNG_SHB:
        records, count, error, offset = kernels.index_pcapng(data)
    elif magic in _PCAP_MAGICS:
        big, nanos = _PCAP_MAGICS[magic]
        if size < 24:
            raise PcapError(f"{path}: the pcap file header is truncated ({size} bytes)")
        linktype = struct.unpack_from(">I" if big else "<I", bytes(data[20:24]))[0] & 0xFFFF
        if linktype != kernels.LINKTYPE_ETHERNET:
            raise PcapError(f"{path}: link type {linktype}, not Ethernet (1)")
        records, count, error, offset = kernels.index_pcap(data, big, nanos)
    else:
        raise PcapError(f"{path} is not a pcap or pcapng file (magic {magic:#010x})")
    problem = None
    if error != kernels.OK:
        problem = f"{path}: {_ERRORS[error]} record at byte {offset} (after {count} packets)"
    return mm, data, records[:count], problem


class PcapSource(pktflow.Source):
    """Replays a capture file: ``loop`` times (0: forever), ``fast`` or at ``recorded`` timing.

    Shards (replicas) take every ``replicas``-th record. Timestamps are the
    recorded ones (ns), shifted by the file's span on later loops. A
    damaged record ends the replay with an error naming its byte offset,
    after every packet before it was delivered.

    Options:
        path: The capture file, pcap or pcapng (read by mmap; indexed when built).
        loop: How many times to replay the file; 0: forever.
        timing: ``fast`` (as fast as the pipeline takes them) or ``recorded``
            (at the gaps between the recorded timestamps).
    """

    def __init__(
        self,
        ctx: pktflow.StageContext,
        *,
        path: str,
        loop: int = 1,
        timing: Literal["fast", "recorded"] = "fast",
    ) -> None:
        super().__init__(ctx)
        if loop < 0:
            raise PcapError(f"loop must be >= 0 (0: forever), not {loop}")
        self.path = path
        self.loop = loop
        self.recorded = timing == "recorded"
        self._map, self._file, records, self.problem = open_capture(path)
        self.records = np.ascontiguousarray(records[ctx.replica :: ctx.replicas])
        pool = ctx.pool
        room = pool.data_room_size - min(pktflow.PKTMBUF_HEADROOM, pool.data_room_size)
        longest = int(records[:, kernels.RECORD_CAPLEN].max()) if len(records) else 0
        if longest > room:
            raise PcapError(
                f"{path} holds a {longest}-byte packet; the pool's data room is {room} bytes "
                "(raise the mempool's data_room)"
            )
        times = self.records[:, kernels.RECORD_TS]
        self._first_ts = int(times[0]) if len(times) else 0
        self._relative = times - self._first_ts  # for recorded timing
        self._span = int(times[-1] - times[0]) + 1 if len(times) else 0
        self._words, self._data, self._stride = PoolArraysCache().of(pool)
        self.position = 0  # next record of the shard in this pass
        self.passes = 0
        self._pass_started = 0.0
        self._alloc: Any = None
        self._bound_array: np.ndarray | None = None

    async def start(self) -> None:
        self._pass_started = time.perf_counter()

    def poll(self, burst: pktflow.Burst) -> int | None:
        if self.position == len(self.records):
            if self.passes == 0 and self.problem is not None:
                raise PcapError(self.problem)
            self.passes += 1
            if (self.loop and self.passes >= self.loop) or not len(self.records):
                return None
            self.position = 0
            self._pass_started = time.perf_counter()
        k = min(burst.capacity, len(self.records) - self.position)
        if self.recorded:
            elapsed_ns = (time.perf_counter() - self._pass_started) * 1e9
            due = int(np.searchsorted(self._relative, elapsed_ns, side="right"))
            k = min(k, due - self.position)
            if k <= 0:
                return 0
        if burst.array is not self._bound_array:
            self._bound_array = burst.array
            self._alloc = self.ctx.pool.bind(burst.array).alloc_bulk
        if self._alloc(k) != k:
            return 0  # the pool is empty until downstream frees: try again
        _records_to_mbufs(
            self._words, self._data, self._stride, burst.array, k, self._file, self.records,
            self.position, self.passes * self._span,
        )  # fmt: skip
        self.position += k
        return k

    async def stop(self) -> None:
        self._file = np.zeros(0, np.uint8)  # the map must not be exported when it closes
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a view elsewhere: it goes with that
                self._map.close()
            self._map = None


class PcapSink(pktflow.Stage):
    """Writes every packet it gets to ``path`` (pcap or pcapng, ns timestamps), then frees it.

    Options:
        path: The file to write (replaced if it exists).
        format: ``pcap`` (nanosecond magic) or ``pcapng`` (one interface, if_tsresol 9).
        snaplen: Bytes kept of each packet; the record still says its full length.
    """

    outputs = ()
    keeps_lengths = True

    def __init__(
        self,
        ctx: pktflow.StageContext,
        *,
        path: str,
        format: Literal["pcap", "pcapng"] = "pcap",
        snaplen: int = 65535,
    ) -> None:
        super().__init__(ctx)
        if not 1 <= snaplen <= 0x40000:
            raise PcapError(f"snaplen must be in 1..{0x40000}, not {snaplen}")
        self.path = Path(path)
        self.pcapng = format == "pcapng"
        self.snaplen = snaplen
        try:
            self._out = self.path.open("wb")
        except OSError as exc:
            raise PcapError(f"cannot write {self.path}: {exc.strerror}") from None
        self._out.write(_pcapng_header(snaplen) if self.pcapng else _pcap_header(snaplen))
        # Room for a burst's records: each at most a block header, snaplen and padding.
        self._buffer = np.empty(ctx.burst_size * (snaplen + 36), np.uint8)
        self._arrays = PoolArraysCache()
        self.written = 0

    def process(self, burst: pktflow.Burst) -> None:
        words, data, stride = self._arrays.of(burst.pool)
        done = 0
        while done < burst.n:
            handles = burst.array[done : burst.n]
            if len(handles) * (self.snaplen + 36) > len(self._buffer):
                self._buffer = np.empty(len(handles) * (self.snaplen + 36), np.uint8)
            size, count = _mbufs_to_records(
                words, data, stride, np.ascontiguousarray(handles), len(handles),
                self._buffer, self.snaplen, self.pcapng,
            )  # fmt: skip
            self._out.write(self._buffer[:size].data)
            done += count
            if done < burst.n:  # a clone of another pool's buffer: through Python
                self._out.write(self._record(burst.pool.mbuf(int(burst.array[done]))))
                done += 1
        self.written += burst.n
        self.free(burst)

    def _record(self, m: pktflow.Mbuf) -> bytes:
        caplen = min(m.pkt_len, self.snaplen)
        payload = bytes(m.read(0, caplen) or b"")
        ts = m.timestamp
        if not self.pcapng:
            seconds, nanos = divmod(ts, 1_000_000_000)
            return struct.pack("<IIII", seconds, nanos, caplen, m.pkt_len) + payload
        padded = payload + bytes(-caplen % 4)
        total = 32 + len(padded)
        head = struct.pack("<IIIIIII", 6, total, 0, ts >> 32, ts & 0xFFFFFFFF, caplen, m.pkt_len)
        return head + padded + struct.pack("<I", total)

    async def stop(self) -> None:
        self._out.close()


def _pcap_header(snaplen: int) -> bytes:
    return struct.pack(
        "<IHHiIII", kernels.PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, kernels.LINKTYPE_ETHERNET
    )


def _pcapng_header(snaplen: int) -> bytes:
    section = struct.pack("<IIIHHqI", kernels.PCAPNG_SHB, 28, kernels.PCAPNG_BOM, 1, 0, -1, 28)
    tsresol = struct.pack("<HHB3x", 9, 1, 9)  # if_tsresol: 10^-9 s
    end = struct.pack("<HH", 0, 0)
    total = 16 + len(tsresol) + len(end) + 4
    interface = struct.pack(
        "<IIHHI", kernels.PCAPNG_IDB, total, kernels.LINKTYPE_ETHERNET, 0, snaplen
    )
    return section + interface + tsresol + end + struct.pack("<I", total)
