"""UDP sockets, jitted: a burst of datagrams in one ``recvmmsg``, out in one ``sendmmsg``.

Both kernels fill arrays of ``struct mmsghdr`` (and their ``iovec`` and
``sockaddr_in``) that the stage made once, pointing each message at an
mbuf's data by its handle, then make one system call for the burst: no
``bytes`` object, no Python call per datagram. libc's ``recvmmsg``,
``sendmmsg`` and ``__errno_location`` are called from jitted code under
symbols of our own (``pktflow_*``), which this module binds to libc's
addresses when it is imported: the compiled code names the symbol, not an
address, so ``cache=True`` keeps working (a ctypes function pointer would
be a constant of the compiled code and stop the cache).

Layouts (x86-64 and arm64 Linux, LP64):

- ``struct mmsghdr`` (64 bytes, eight uint64 words): ``msg_name`` (0),
  ``msg_namelen`` (1, low half), ``msg_iov`` (2), ``msg_iovlen`` (3),
  ``msg_control`` (4), ``msg_controllen`` (5), ``msg_flags`` (6, low half),
  ``msg_len`` (7, low half: the bytes received or sent).
- ``struct iovec`` (two words): base address, length.
- ``struct sockaddr_in`` (16 bytes): family (u16), port (u16, network
  order), IPv4 address (network order), 8 bytes of zeros.

The sender kept in an mbuf's private area (8 bytes, ``udp.py``'s
``SENDER``): its IPv4 address (network order), its port (little-endian),
and the local port the datagram arrived on (little-endian), by which
``udp_sink`` with ``reply`` finds the socket to answer from.
"""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from pktflow._mbuf_layout import H_BUF, H_DATA, H_DIRECT, H_NEXT, H_PKT_LEN, NO_NEXT

_libc = ctypes.CDLL(None, use_errno=True)
_SYMBOLS = {
    "pktflow_recvmmsg": "recvmmsg",
    "pktflow_sendmmsg": "sendmmsg",
    "pktflow_errno_location": "__errno_location",
}
for _ours, _theirs in _SYMBOLS.items():
    llvm_binding.add_symbol(_ours, ctypes.cast(getattr(_libc, _theirs), ctypes.c_void_p).value)

# mmsghdr words
M_NAME, M_NAMELEN, M_IOV, M_IOVLEN, M_CONTROL, M_CONTROLLEN, M_FLAGS, M_LEN = range(8)
MMSG_WORDS = 8
SOCKADDR = 16  # bytes of a sockaddr_in
MAX_SEGS = 8  # iovecs per message: the segments of a chain a sink can send
# Private area bytes (SENDER)
P_ADDR, P_PORT, P_LOCAL = 0, 4, 6

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
EINTR = 4
EIO = 5
EAGAIN = 11
EINVAL = 22
EMSGSIZE = 90
ENOBUFS = 105

# UDP generic segmentation offload (Linux 4.18+): one message, cut into datagrams by the kernel
SOL_UDP = 17
UDP_SEGMENT = 103
CONTROL_WORDS = 3  # a cmsghdr (len, level, type) and the uint16 segment size, padded
GSO_SEGMENTS = 64  # datagrams a message at most (the kernel's UDP_MAX_SEGMENTS, or less)
GSO_BYTES = 65000  # bytes a message at most: under an IPv4 datagram's 65,507
# The longest datagram a message may carry segmented: one that fits an Ethernet
# MTU (1,500 - 20 - 8). The kernel refuses segments longer than the route's MTU
# allows (EINVAL): longer datagrams go on their own, as before GSO.
GSO_LONGEST = 1472
# batches columns
B_DATAGRAMS, B_FIRST, B_BYTES = range(3)

# Counter slots
C_DATAGRAMS, C_BYTES, C_TRUNCATED, C_FAILED, C_CALLS, C_SEGMENTED = range(6)
COUNTERS = 6

_JIT = {"cache": True, "nogil": True}


def _libc_call(name: str, argc: int):  # type: ignore[no-untyped-def]
    """An intrinsic ``f(fd, address, count, flags) -> int64`` calling ``name``.

    ``recvmmsg`` and ``sendmmsg`` take (int, struct mmsghdr *, unsigned int,
    int[, struct timespec *]): the address arrives as an int64 and is cast.
    """

    @intrinsic
    def call(typingctx, fd, address, count, flags):
        sig = types.int64(types.int64, types.int64, types.int64, types.int64)

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            ptr = ir.IntType(8).as_pointer()
            params = [i32, ptr, i32, i32] + [ptr] * (argc - 4)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, params), name)
            values = [
                builder.trunc(args[0], i32),
                builder.inttoptr(args[1], ptr),
                builder.trunc(args[2], i32),
                builder.trunc(args[3], i32),
            ] + [ir.Constant(ptr, None)] * (argc - 4)
            return builder.sext(builder.call(fn, values), ir.IntType(64))

        return sig, codegen

    return call


_recvmmsg = _libc_call("pktflow_recvmmsg", 5)  # the fifth: no timeout
_sendmmsg = _libc_call("pktflow_sendmmsg", 4)


@intrinsic
def _errno(typingctx):
    """This thread's ``errno`` after a failed call."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(i32.as_pointer(), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "pktflow_errno_location")
        return builder.sext(builder.load(builder.call(fn, [])), ir.IntType(64))

    return sig, codegen


def messages(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` mmsghdrs, ``MAX_SEGS`` iovecs each and a sockaddr_in each, linked once.

    Usage: ``msgs, iovs, names = messages(32)``
    """
    msgs = np.zeros((count, MMSG_WORDS), np.uint64)
    iovs = np.zeros((count * MAX_SEGS, 2), np.uint64)
    names = np.zeros(count * SOCKADDR, np.uint8)
    index = np.arange(count, dtype=np.uint64)
    msgs[:, M_NAME] = names.ctypes.data + index * SOCKADDR
    msgs[:, M_NAMELEN] = SOCKADDR
    msgs[:, M_IOV] = iovs.ctypes.data + index * (MAX_SEGS * 16)
    msgs[:, M_IOVLEN] = 1
    return msgs, iovs, names


@njit(
    "int64(int64, uint64[:, ::1], uint64[:, ::1], uint8[::1], uint32[:, ::1], uint8[::1], int64,"
    " uint8[:, :], uint32[::1], uint32[::1], int64, int64, int64[::1])",
    **_JIT,
)
def rx_burst(fd, msgs, iovs, names, words, data, stride, priv, out, rest, n, local_port, counts):
    """Receive up to ``n`` waiting datagrams into the fresh mbufs ``out[:n]``: one system call.

    Each mbuf gets its datagram's length and, in its private area, the
    sender and ``local_port``. A datagram longer than its mbuf's room
    (``MSG_TRUNC``) is dropped and counted (``C_TRUNCATED``). Returns how
    many mbufs hold a datagram (``out[:k]``); the others are copied to
    ``rest[:n - k]`` for the caller to free (from the start of an array, as
    a bound free takes them). Nothing waiting: 0, and ``out`` untouched.
    """
    base = np.uint64(data.ctypes.data)
    for i in range(n):
        h = np.int64(out[i])
        off = np.uint64(h * stride + np.int64(words[h, H_BUF] >> 16))
        iovs[i * MAX_SEGS, 0] = base + off
        iovs[i * MAX_SEGS, 1] = np.uint64(words[h, H_BUF] & 0xFFFF) - np.uint64(
            words[h, H_BUF] >> 16
        )
        msgs[i, M_NAMELEN] = SOCKADDR  # the kernel wrote the last sender's length here
        msgs[i, M_IOVLEN] = 1
    counts[C_CALLS] += 1
    got = _recvmmsg(fd, msgs.ctypes.data, n, MSG_DONTWAIT)
    if got <= 0:
        return 0  # EAGAIN (nothing waiting), or an error the next call reports again
    k = 0
    nbytes = 0
    for i in range(got):
        h = np.int64(out[i])
        length = np.int64(msgs[i, M_LEN] & 0xFFFFFFFF)
        if np.int64(msgs[i, M_FLAGS]) & MSG_TRUNC:
            counts[C_TRUNCATED] += 1
            continue
        words[h, H_DATA] = (words[h, H_DATA] & np.uint32(0xFFFF0000)) | np.uint32(length)
        words[h, H_PKT_LEN] = length
        a = i * SOCKADDR
        priv[h, P_ADDR] = names[a + 4]
        priv[h, P_ADDR + 1] = names[a + 5]
        priv[h, P_ADDR + 2] = names[a + 6]
        priv[h, P_ADDR + 3] = names[a + 7]
        priv[h, P_PORT] = names[a + 3]  # network order to little-endian
        priv[h, P_PORT + 1] = names[a + 2]
        priv[h, P_LOCAL] = local_port & 0xFF
        priv[h, P_LOCAL + 1] = (local_port >> 8) & 0xFF
        if k != i:
            out[k], out[i] = out[i], out[k]
        k += 1
        nbytes += length
    for i in range(k, n):
        rest[i - k] = out[i]
    counts[C_DATAGRAMS] += k
    counts[C_BYTES] += nbytes
    return k


def send_batches(count: int) -> tuple[np.ndarray, np.ndarray]:
    """What ``tx_burst`` needs beside ``messages(count)``: a ``UDP_SEGMENT`` cmsg per message
    (``cmsghdr`` + the segment size, ``CMSG_SPACE(2)`` = 24 bytes), and per message the
    datagrams it carries, the index of its first handle and its bytes.

    Usage: ``controls, batches = send_batches(32)``
    """
    controls = np.zeros((count, CONTROL_WORDS), np.uint64)
    controls[:, 0] = 16 + 2  # cmsg_len: CMSG_LEN(sizeof(uint16_t))
    controls[:, 1] = SOL_UDP | (UDP_SEGMENT << 32)  # cmsg_level, cmsg_type
    return controls, np.zeros((count, 3), np.int64)


@njit
def _send_all(fd, msgs, batches, start, count, counts):
    """``sendmmsg`` messages ``start .. start + count``, until done or the socket refuses.

    Returns -1, or the index of a segmented message the kernel cannot
    segment on this route (the caller sends its datagrams one by one).
    """
    sent = 0
    while sent < count:
        counts[C_CALLS] += 1
        r = _sendmmsg(fd, msgs.ctypes.data + (start + sent) * MMSG_WORDS * 8, count - sent,
                      MSG_DONTWAIT)  # fmt: skip
        if r > 0:
            for m in range(start + sent, start + sent + r):
                counts[C_DATAGRAMS] += batches[m, B_DATAGRAMS]
                counts[C_BYTES] += batches[m, B_BYTES]
                if batches[m, B_DATAGRAMS] > 1:
                    counts[C_SEGMENTED] += batches[m, B_DATAGRAMS]
            sent += r
            continue
        err = _errno()
        if err == EINTR:
            continue
        m = start + sent
        if err in (EAGAIN, ENOBUFS):  # the socket is full: the rest would be refused too
            for rest in range(m, start + count):
                counts[C_FAILED] += batches[rest, B_DATAGRAMS]
            return -1
        if batches[m, B_DATAGRAMS] > 1 and err in (EINVAL, EIO, EMSGSIZE):
            return m
        counts[C_FAILED] += batches[m, B_DATAGRAMS]  # refused (too long, no route, ...): skip it
        sent += 1
    return -1


@njit
def _same_sender(priv, a, b):
    for k in range(P_LOCAL):  # noqa: SIM110 (numba compiles no generator for all())
        if priv[a, k] != priv[b, k]:
            return False
    return True


@njit(
    "int64(int32[::1], uint64[:, ::1], uint64[:, ::1], uint8[::1], uint64[:, ::1],"
    " int64[:, ::1], uint32[:, ::1], uint8[::1], int64, uint8[:, :], uint32[::1], int64, boolean,"
    " int64, int64[::1])",
    **_JIT,
)
def tx_burst(
    fds, msgs, iovs, names, controls, batches, words, data, stride, priv, handles, n, reply,
    segments, counts,
):  # fmt: skip
    """Send the packets ``handles[:n]`` with one ``sendmmsg`` per run of one socket.

    ``reply``: each goes back to the sender in its private area, from the
    socket ``fds[local port]`` (the port it arrived on); otherwise all go
    from ``fds[0]`` to the address already in ``names`` (every slot). A
    chain's segments go as one datagram (at most ``MAX_SEGS``; longer ones
    are counted failed). Consecutive one-segment datagrams to one address,
    of one length (the last may be shorter) of at most ``GSO_LONGEST``
    bytes, go as one message the kernel cuts (UDP GSO), up to ``segments``
    a message (1: never). Bytes are counted as messages go.

    Returns how many handles were dealt with: ``n``, or fewer when
    ``handles[i]`` arrived on a local port with no socket in ``fds`` yet
    (-1): the caller fills that in and calls again from ``i``. ``-(i + 1)``:
    the kernel cannot segment on this route; call again from ``i`` with
    ``segments`` 1.
    """
    base = np.uint64(data.ctypes.data)
    iov_base = np.uint64(iovs.ctypes.data)
    control_base = np.uint64(controls.ctypes.data)
    run_fd = np.int64(-1)
    run_start = 0
    j = 0  # messages built
    cursor = 0  # iovecs used
    open_size = 0  # the segment size of message j - 1 while more may join it, else 0
    i = 0
    while i < n:
        h = np.int64(handles[i])
        fd = np.int64(fds[0])
        if reply:
            local = np.int64(priv[h, P_LOCAL]) | (np.int64(priv[h, P_LOCAL + 1]) << 8)
            fd = np.int64(fds[local])
            if fd == -1:
                break
        if fd != run_fd:
            if j > run_start:
                failed = _send_all(run_fd, msgs, batches, run_start, j - run_start, counts)
                if failed >= 0:
                    return -(batches[failed, B_FIRST] + 1)
            run_fd, run_start, open_size = fd, j, 0
        length = np.int64(words[h, H_PKT_LEN])
        single = words[h, H_NEXT] == NO_NEXT
        start = np.int64(words[h, H_DIRECT]) * stride + np.int64(words[h, H_BUF] >> 16)
        if (
            open_size > 0 and single and 0 < length <= open_size
            and batches[j - 1, B_BYTES] + length <= GSO_BYTES
            and (not reply or _same_sender(priv, h, np.int64(handles[batches[j - 1, B_FIRST]])))
        ):  # fmt: skip
            m = j - 1
            iovs[cursor, 0] = base + np.uint64(start)
            iovs[cursor, 1] = length
            cursor += 1
            msgs[m, M_IOVLEN] += 1
            batches[m, B_DATAGRAMS] += 1
            if batches[m, B_DATAGRAMS] == 2:
                controls[m, 2] = open_size
                msgs[m, M_CONTROL] = control_base + np.uint64(m * CONTROL_WORDS * 8)
                msgs[m, M_CONTROLLEN] = CONTROL_WORDS * 8
            batches[m, B_BYTES] += length
            if length < open_size or batches[m, B_DATAGRAMS] == segments:
                open_size = 0  # a shorter datagram ends a segmented message
            i += 1
            continue
        left = length
        m = h
        segs = 0
        msgs[j, M_IOV] = iov_base + np.uint64(cursor * 16)
        while left > 0 and segs < MAX_SEGS:
            seg = min(np.int64(words[m, H_DATA] & 0xFFFF), left)
            at = np.int64(words[m, H_DIRECT]) * stride + np.int64(words[m, H_BUF] >> 16)
            iovs[cursor + segs, 0] = base + np.uint64(at)
            iovs[cursor + segs, 1] = seg
            left -= seg
            segs += 1
            m = np.int64(words[m, H_NEXT])
            if m == NO_NEXT:
                break
        if left > 0:
            counts[C_FAILED] += 1  # a chain of more than MAX_SEGS segments
            i += 1
            continue
        cursor += segs
        msgs[j, M_IOVLEN] = segs
        msgs[j, M_CONTROL] = 0
        msgs[j, M_CONTROLLEN] = 0
        batches[j, B_DATAGRAMS] = 1
        batches[j, B_FIRST] = i
        batches[j, B_BYTES] = length
        open_size = length if single and segments > 1 and length <= GSO_LONGEST else 0
        if reply:
            a = j * SOCKADDR
            names[a] = 2  # AF_INET
            names[a + 1] = 0
            names[a + 2] = priv[h, P_PORT + 1]  # little-endian to network order
            names[a + 3] = priv[h, P_PORT]
            names[a + 4] = priv[h, P_ADDR]
            names[a + 5] = priv[h, P_ADDR + 1]
            names[a + 6] = priv[h, P_ADDR + 2]
            names[a + 7] = priv[h, P_ADDR + 3]
        j += 1
        i += 1
    if j > run_start:
        failed = _send_all(run_fd, msgs, batches, run_start, j - run_start, counts)
        if failed >= 0:
            return -(batches[failed, B_FIRST] + 1)
    return i


# -- raw calls, for a client that owns plain buffers (``pktflow bench io``) -------------


@njit("int64(int64, uint64[:, ::1], int64, int64)", **_JIT)
def recv_many(fd, msgs, n, flags):
    """``recvmmsg`` into the buffers ``msgs[:n]`` point at: how many, or -errno."""
    r = _recvmmsg(fd, msgs.ctypes.data, n, flags)
    return r if r >= 0 else -_errno()


@njit("int64(int64, uint64[:, ::1], int64, int64)", **_JIT)
def send_many(fd, msgs, n, flags):
    """``sendmmsg`` the messages ``msgs[:n]``: how many were sent, or -errno."""
    r = _sendmmsg(fd, msgs.ctypes.data, n, flags)
    return r if r >= 0 else -_errno()
