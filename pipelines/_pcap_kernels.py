"""pcap and pcapng, jitted: an index of a file's records, and records to and from mbufs.

A jitted reader over an ``mmap`` of the file rather than a Python library:
dpkt and python-pcapng make a Python object per packet (about 1 µs each),
while replay must reach millions of packets per second. The file is
indexed once (one pass, one call); a burst is then one call that
allocates nothing and copies each record straight into mbuf data.

Index rows (``RECORD_*`` columns, int64): where the record's bytes start
in the file, the captured and original lengths, the timestamp in ns.
Indexing stops at the first record that is truncated or malformed and
reports its byte offset, so what came before it can still be delivered.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._byte_kernels import put_u32_le
from pktflow._mbuf_layout import (
    H_BUF,
    H_DATA,
    H_DIRECT,
    H_DIRECT_POOL,
    H_NEXT,
    H_PKT_LEN,
    H_TIMESTAMP,
    NO_NEXT,
    P_POOL_ID,
)

RECORD_DATA, RECORD_CAPLEN, RECORD_ORIGLEN, RECORD_TS = range(4)
RECORD_COLUMNS = 4

# Index errors (the offset says where).
OK = 0
TRUNCATED = 1  # the file ends inside a record
MALFORMED = 2  # a length or block type that cannot be

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
PCAPNG_IDB = 1
PCAPNG_SPB = 3
PCAPNG_EPB = 6
LINKTYPE_ETHERNET = 1
_MAX_INTERFACES = 256

_JIT = {"cache": True, "nogil": True}


@njit(inline="always")
def _u16(buf, p, big):
    if big:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
    return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)


@njit(inline="always")
def _u32(buf, p, big):
    if big:
        return (
            (np.int64(buf[p]) << 24)
            | (np.int64(buf[p + 1]) << 16)
            | (np.int64(buf[p + 2]) << 8)
            | np.int64(buf[p + 3])
        )
    return (
        np.int64(buf[p])
        | (np.int64(buf[p + 1]) << 8)
        | (np.int64(buf[p + 2]) << 16)
        | (np.int64(buf[p + 3]) << 24)
    )


@njit(inline="always")
def _grow(records, k):
    if k < records.shape[0]:
        return records
    bigger = np.empty((2 * records.shape[0] + 16, RECORD_COLUMNS), np.int64)
    bigger[:k] = records[:k]
    return bigger


@njit(**_JIT)
def index_pcap(buf, big, nanos):
    """Index a classic pcap file (its 24-byte header already checked).

    Returns (records, count, error, error_offset).
    """
    size = np.int64(buf.shape[0])
    records = np.empty((1024, RECORD_COLUMNS), np.int64)
    k = 0
    p = np.int64(24)
    while p < size:
        if p + 16 > size:
            return records, k, TRUNCATED, p
        seconds = _u32(buf, p, big)
        fraction = _u32(buf, p + 4, big)
        caplen = _u32(buf, p + 8, big)
        origlen = _u32(buf, p + 12, big)
        if caplen > 0x40000 or (nanos and fraction >= 1_000_000_000):
            return records, k, MALFORMED, p
        if p + 16 + caplen > size:
            return records, k, TRUNCATED, p
        records = _grow(records, k)
        records[k, RECORD_DATA] = p + 16
        records[k, RECORD_CAPLEN] = caplen
        records[k, RECORD_ORIGLEN] = max(origlen, caplen)
        records[k, RECORD_TS] = seconds * 1_000_000_000 + (fraction if nanos else fraction * 1000)
        k += 1
        p += 16 + caplen
    return records, k, OK, p


@njit(inline="always")
def _to_ns(units, resolution):
    """``units`` of an interface's if_tsresol (DPDK/pcapng encoding) as ns."""
    if resolution & 0x80:  # 2^-v seconds
        return np.int64(units / (2.0 ** (resolution & 0x7F)) * 1e9)
    if resolution <= 9:
        return units * np.int64(10 ** (9 - resolution))
    return units // np.int64(10 ** (resolution - 9))


@njit(**_JIT)
def index_pcapng(buf):
    """Index a pcapng file: enhanced and simple packet blocks of every section.

    Returns (records, count, error, error_offset).
    """
    size = np.int64(buf.shape[0])
    records = np.empty((1024, RECORD_COLUMNS), np.int64)
    resolution = np.full(_MAX_INTERFACES, 6, np.int64)  # default: microseconds
    snaplen = np.zeros(_MAX_INTERFACES, np.int64)
    interfaces = 0
    big = False
    k = 0
    p = np.int64(0)
    while p < size:
        if p + 12 > size:
            return records, k, TRUNCATED, p
        block_type = _u32(buf, p, big)
        if block_type == PCAPNG_SHB:
            bom = _u32(buf, p + 8, False)
            if bom == PCAPNG_BOM:
                big = False
            elif bom == 0x4D3C2B1A:
                big = True
            else:
                return records, k, MALFORMED, p
            interfaces = 0  # a new section numbers its interfaces anew
        length = _u32(buf, p + 4, big)
        if length < 12 or length % 4:
            return records, k, MALFORMED, p
        if p + length > size:
            return records, k, TRUNCATED, p
        if _u32(buf, p + length - 4, big) != length:
            return records, k, MALFORMED, p
        body = p + 8
        end = p + length - 4
        if block_type == PCAPNG_IDB:
            if interfaces == _MAX_INTERFACES or body + 8 > end:
                return records, k, MALFORMED, p
            snaplen[interfaces] = _u32(buf, body + 4, big)
            resolution[interfaces] = 6
            o = body + 8
            while o + 4 <= end:
                code = _u16(buf, o, big)
                olen = _u16(buf, o + 2, big)
                if code == 0:
                    break
                if code == 9 and olen >= 1 and o + 5 <= end:
                    resolution[interfaces] = np.int64(buf[o + 4])
                o += 4 + ((olen + 3) & ~3)
            interfaces += 1
        elif block_type == PCAPNG_EPB:
            if body + 20 > end:
                return records, k, MALFORMED, p
            interface = _u32(buf, body, big)
            if interface >= interfaces:
                return records, k, MALFORMED, p
            units = (_u32(buf, body + 4, big) << 32) | _u32(buf, body + 8, big)
            caplen = _u32(buf, body + 12, big)
            if body + 20 + caplen > end:
                return records, k, MALFORMED, p
            records = _grow(records, k)
            records[k, RECORD_DATA] = body + 20
            records[k, RECORD_CAPLEN] = caplen
            records[k, RECORD_ORIGLEN] = max(_u32(buf, body + 16, big), caplen)
            records[k, RECORD_TS] = _to_ns(units, resolution[interface])
            k += 1
        elif block_type == PCAPNG_SPB:
            if interfaces == 0 or body + 4 > end:
                return records, k, MALFORMED, p
            origlen = _u32(buf, body, big)
            caplen = min(origlen, end - body - 4)
            if snaplen[0]:
                caplen = min(caplen, snaplen[0])
            records = _grow(records, k)
            records[k, RECORD_DATA] = body + 4
            records[k, RECORD_CAPLEN] = caplen
            records[k, RECORD_ORIGLEN] = origlen
            records[k, RECORD_TS] = 0  # a simple packet block has no timestamp
            k += 1
        p += length
    return records, k, OK, p


@njit(
    "void(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, uint8[::1], int64[:, ::1],"
    " int64, int64)",
    **_JIT,
)
def records_to_mbufs(words, data, stride, out, n, file, records, first, ts_shift):
    """Copy records ``first .. first + n - 1`` into the fresh mbufs ``out[:n]``.

    Sets data_len and pkt_len to the captured length and the timestamp to
    the record's plus ``ts_shift`` (ns; later loops of a replay).
    """
    for i in range(n):
        h = np.int64(out[i])
        r = first + i
        start = h * stride + np.int64(words[h, H_BUF] >> 16)
        source = records[r, RECORD_DATA]
        length = records[r, RECORD_CAPLEN]
        data[start : start + length] = file[source : source + length]
        words[h, H_DATA] = (words[h, H_DATA] & np.uint32(0xFFFF0000)) | np.uint32(length)
        words[h, H_PKT_LEN] = length
        ts = records[r, RECORD_TS] + ts_shift
        words[h, H_TIMESTAMP] = np.uint32(ts & 0xFFFFFFFF)
        words[h, H_TIMESTAMP + 1] = np.uint32(ts >> 32)


@njit(
    "UniTuple(int64, 2)(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, uint8[::1],"
    " int64, boolean)",
    **_JIT,
)
def mbufs_to_records(words, data, stride, handles, n, out, snaplen, pcapng):
    """Write each packet of ``handles[:n]`` as a little-endian record into ``out``.

    pcap: a 16-byte record header (ns timestamps); pcapng: an enhanced
    packet block on interface 0 (ns resolution). Walks every segment of a
    chain. Stops before a packet with a segment in another pool's buffer
    (a clone it cannot reach). Returns (bytes written, packets written).
    """
    p = np.int64(0)
    pool_id = words[words.shape[0] - 1, P_POOL_ID]
    for i in range(n):
        h = np.int64(handles[i])
        pkt_len = np.int64(words[h, H_PKT_LEN])
        caplen = min(pkt_len, snaplen)
        m = h
        while m != NO_NEXT:  # every segment's buffer must be in this pool
            if words[m, H_DIRECT_POOL] != pool_id:
                return p, i
            m = np.int64(words[m, H_NEXT])
        ts = np.int64(words[h, H_TIMESTAMP]) | (np.int64(words[h, H_TIMESTAMP + 1]) << 32)
        if pcapng:
            padded = (caplen + 3) & ~3
            total = 32 + padded
            put_u32_le(out, p, 6)
            put_u32_le(out, p + 4, total)
            put_u32_le(out, p + 8, 0)
            put_u32_le(out, p + 12, ts >> 32)
            put_u32_le(out, p + 16, ts & 0xFFFFFFFF)
            put_u32_le(out, p + 20, caplen)
            put_u32_le(out, p + 24, pkt_len)
            at = p + 28
            out[at + caplen : at + padded] = 0
            put_u32_le(out, p + total - 4, total)
            p_next = p + total
        else:
            put_u32_le(out, p, ts // 1_000_000_000)
            put_u32_le(out, p + 4, ts % 1_000_000_000)
            put_u32_le(out, p + 8, caplen)
            put_u32_le(out, p + 12, pkt_len)
            at = p + 16
            p_next = at + caplen
        left = caplen
        m = h
        while left > 0 and m != NO_NEXT:
            seg_len = min(np.int64(words[m, H_DATA] & 0xFFFF), left)
            start = np.int64(words[m, H_DIRECT]) * stride + np.int64(words[m, H_BUF] >> 16)
            out[at : at + seg_len] = data[start : start + seg_len]
            at += seg_len
            left -= seg_len
            m = np.int64(words[m, H_NEXT])
        p = p_next
    return p, n
