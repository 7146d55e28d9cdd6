"""The ``filter`` stage's kernel: one generic evaluator of a compiled expression.

An expression is compiled (``pipelines/filter.py``) into a postfix program:
rows of ``(op, field, cmp, const)`` in an int64 array, with the constants
(values and masks) in a uint64 array. This one kernel runs any program, so
a new expression never compiles new machine code: the kernel is compiled
once, with an explicit signature, and cached on disk (``cache=True``).
The fields are read from what ``parse`` wrote (packet type, l2/l3 lengths)
and the frame bytes, bounds-checked; a field of a layer the packet lacks is
"absent", and a comparison on an absent field is false whatever its
operator (Wireshark's rule): ``udp.dport != 53`` is false for TCP.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow._burst_checks import check_burst
from pktflow._mbuf_layout import (
    H_BUF,
    H_DATA,
    H_DIRECT,
    H_DIRECT_POOL,
    H_PACKET_TYPE,
    H_PKT_LEN,
    H_TX_OFFLOAD,
    P_POOL_ID,
)
from pktflow.abc import ERR_COUNT

__all__ = ["filter_burst"]

# Opcodes (column 0 of a program row).
OP_TEST = 0  # push field <cmp> consts[const...]; false when the field is absent
OP_PRESENT = 1  # push whether the field (a layer) is present
OP_AND = 2
OP_OR = 3
OP_NOT = 4

# Comparisons (column 2 of an OP_TEST row). Consts at column 3: value (and,
# for an IPv6 field, value_hi, value_lo, mask_hi, mask_lo; MASKEQ: value, mask).
CMP_EQ = 0
CMP_NE = 1
CMP_LT = 2
CMP_LE = 3
CMP_GT = 4
CMP_GE = 5
CMP_MASKEQ = 6  # (field & mask) == value: CIDR

# Fields (column 1). Presence fields first.
F_VLAN = 0
F_IP = 1
F_IPV4 = 2
F_IPV6 = 3
F_TCP = 4
F_UDP = 5
F_ICMP = 6
F_SCTP = 7
F_FRAG = 8
F_ETH_DST = 16
F_ETH_SRC = 17
F_ETH_TYPE = 18
F_VLAN_ID = 19
F_IPV4_SRC = 20
F_IPV4_DST = 21
F_IP_PROTO = 22
F_IP_TTL = 23
F_TCP_SPORT = 24
F_TCP_DPORT = 25
F_TCP_FLAGS = 26
F_UDP_SPORT = 27
F_UDP_DPORT = 28
F_PKT_LEN = 29
F_IPV6_SRC = 30  # 128 bits: the four-constant comparisons
F_IPV6_DST = 31

# parse's packet types (pipelines/_parse_kernels.py).
_L2_MASK = 0xF
_L2_VLAN = 0x6
_L2_QINQ = 0x7
_L3_MASK = 0xF0
_L4_MASK = 0xF00
_L4_TCP = 0x100
_L4_UDP = 0x200
_L4_FRAG = 0x300
_L4_SCTP = 0x400
_L4_ICMP = 0x500


@njit
def _u8(data, p):
    return np.uint64(data[np.uint64(p)])


@njit
def _be(data, p, size):
    v = np.uint64(0)
    for j in range(size):
        v = (v << np.uint64(8)) | np.uint64(data[np.uint64(p + j)])
    return v


@njit(
    "int64(uint32[:, ::1], uint8[::1], int64, uint32[::1], int64, int64[:, ::1], uint64[::1],"
    " uint32[::1], int64[::1])",
    cache=True,
    nogil=True,
)
def filter_burst(words, data, stride, handles, n, prog, consts, scratch, nbytes):
    """Run ``prog`` on ``handles[:n]``; those it accepts first, then the rest (both in order).

    Returns how many it accepted, ``ERR_COUNT`` (n outside 0..len(handles),
    scratch shorter than n, nbytes shorter than 2) or ``ERR_FOREIGN`` (a
    handle not below pool_n). ``nbytes[0]``/``nbytes[1]``: the bytes (sum of
    pkt_len) accepted and rejected, so the runtime need not count them again.
    A clone of another pool's buffer has only its header fields (pkt_len).
    """
    checked = check_burst(words, handles, n)
    if checked:
        return checked
    if scratch.shape[0] < n or nbytes.shape[0] < 2:
        return ERR_COUNT
    pool_n = np.int64(words.shape[0]) - 1
    pool_id = words[pool_n, P_POOL_ID]
    data_size = np.int64(data.shape[0])
    steps = prog.shape[0]
    stack = np.zeros(steps + 1, np.bool_)
    accepted = np.int64(0)
    rejected = np.int64(0)
    nbytes[0] = 0
    nbytes[1] = 0
    for i in range(n):
        h = handles[i]
        m = np.uint64(h)
        ptype = np.int64(words[m, H_PACKET_TYPE])
        lens = np.int64(words[m, H_TX_OFFLOAD])
        l2 = lens & 0xFF
        l3 = lens >> 16
        direct = np.int64(words[m, H_DIRECT])
        b = direct * stride + (np.int64(words[m, H_BUF]) >> 16)
        limit = np.int64(0)  # frame bytes that may be read
        if words[m, H_DIRECT_POOL] == pool_id and direct < pool_n:
            limit = min(np.int64(words[m, H_DATA]) & 0xFFFF, data_size - b)
        l2type = ptype & _L2_MASK
        l3type = ptype & _L3_MASK
        l4type = ptype & _L4_MASK
        is4 = l3type == 0x10 or l3type == 0x30 or l3type == 0x90
        is6 = l3type == 0x40 or l3type == 0xC0 or l3type == 0xE0
        at4 = l2 + l3  # L4 header
        sp = 0
        for s in range(steps):
            r = np.uint64(s)  # unsigned indices: numba skips the wraparound
            op = prog[r, 0]
            if op == OP_AND:
                sp -= 1
                stack[np.uint64(sp - 1)] = stack[np.uint64(sp - 1)] and stack[np.uint64(sp)]
                continue
            if op == OP_OR:
                sp -= 1
                stack[np.uint64(sp - 1)] = stack[np.uint64(sp - 1)] or stack[np.uint64(sp)]
                continue
            if op == OP_NOT:
                stack[np.uint64(sp - 1)] = not stack[np.uint64(sp - 1)]
                continue
            field = prog[r, 1]
            present = False
            hi = np.uint64(0)
            v = np.uint64(0)
            # Where the field's bytes are (off, size) when it is in the frame.
            off = np.int64(-1)
            size = np.int64(0)
            # Grouped by layer, so a field costs a few comparisons, not one per field.
            if field < F_ETH_DST:  # presence
                if field == F_VLAN:
                    present = l2type in (_L2_VLAN, _L2_QINQ)
                elif field == F_IP:
                    present = is4 or is6
                elif field == F_IPV4:
                    present = is4
                elif field == F_IPV6:
                    present = is6
                elif field == F_TCP:
                    present = l4type == _L4_TCP
                elif field == F_UDP:
                    present = l4type == _L4_UDP
                elif field == F_ICMP:
                    present = l4type == _L4_ICMP
                elif field == F_SCTP:
                    present = l4type == _L4_SCTP
                else:
                    present = l4type == _L4_FRAG
            elif field < F_IPV4_SRC:  # L2
                if field == F_ETH_DST:
                    off, size = np.int64(0), np.int64(6)
                elif field == F_ETH_SRC:
                    off, size = np.int64(6), np.int64(6)
                elif field == F_ETH_TYPE:
                    if l2type != 0 and l2 >= 14:
                        off, size = l2 - 2, np.int64(2)
                elif l2type in (_L2_VLAN, _L2_QINQ):  # F_VLAN_ID
                    off, size = np.int64(14), np.int64(2)
            elif field < F_TCP_SPORT:  # L3
                if field == F_IPV4_SRC:
                    if is4:
                        off, size = l2 + 12, np.int64(4)
                elif field == F_IPV4_DST:
                    if is4:
                        off, size = l2 + 16, np.int64(4)
                elif field == F_IP_PROTO:
                    if is4:
                        off, size = l2 + 9, np.int64(1)
                    elif is6:
                        if l4type == _L4_TCP:
                            present, v = True, np.uint64(6)
                        elif l4type == _L4_UDP:
                            present, v = True, np.uint64(17)
                        elif l4type == _L4_SCTP:
                            present, v = True, np.uint64(132)
                        elif l4type == _L4_ICMP:
                            present, v = True, np.uint64(58)
                        elif l4type == _L4_FRAG:
                            present, v = True, np.uint64(44)
                        else:
                            off, size = l2 + 6, np.int64(1)
                elif is4:  # F_IP_TTL
                    off, size = l2 + 8, np.int64(1)
                elif is6:
                    off, size = l2 + 7, np.int64(1)
            elif field < F_PKT_LEN:  # L4
                if field <= F_TCP_FLAGS:
                    if l4type == _L4_TCP:
                        if field == F_TCP_FLAGS:
                            off, size = at4 + 13, np.int64(1)
                        else:
                            off, size = at4 + 2 * (field - F_TCP_SPORT), np.int64(2)
                elif l4type == _L4_UDP:
                    off, size = at4 + 2 * (field - F_UDP_SPORT), np.int64(2)
            elif field == F_PKT_LEN:
                present, v = True, np.uint64(words[m, H_PKT_LEN])
            elif is6:  # F_IPV6_SRC, F_IPV6_DST
                at6 = l2 + 8 + 16 * (field - F_IPV6_SRC)
                if at6 + 16 <= limit:
                    present = True
                    hi = _be(data, b + at6, 8)
                    v = _be(data, b + at6 + 8, 8)
            if off >= 0 and off + size <= limit:
                present = True
                v = _be(data, b + off, size)
            if field == F_VLAN_ID:
                v &= np.uint64(0xFFF)
            result = present
            if op == OP_TEST and present:
                cmp = prog[r, 2]
                c = np.uint64(prog[r, 3])
                if field >= F_IPV6_SRC:
                    if cmp == CMP_MASKEQ:
                        result = (hi & consts[c + np.uint64(2)]) == consts[c] and (
                            v & consts[c + np.uint64(3)]
                        ) == consts[c + np.uint64(1)]
                    else:
                        result = hi == consts[c] and v == consts[c + np.uint64(1)]
                        if cmp == CMP_NE:
                            result = not result
                elif cmp == CMP_EQ:
                    result = v == consts[c]
                elif cmp == CMP_NE:
                    result = v != consts[c]
                elif cmp == CMP_LT:
                    result = v < consts[c]
                elif cmp == CMP_LE:
                    result = v <= consts[c]
                elif cmp == CMP_GT:
                    result = v > consts[c]
                elif cmp == CMP_GE:
                    result = v >= consts[c]
                else:
                    result = (v & consts[c + np.uint64(1)]) == consts[c]
            stack[np.uint64(sp)] = result
            sp += 1
        if stack[0]:
            handles[accepted] = h
            accepted += 1
            nbytes[0] += np.int64(words[m, H_PKT_LEN])
        else:
            scratch[rejected] = h
            rejected += 1
            nbytes[1] += np.int64(words[m, H_PKT_LEN])
    for j in range(rejected):
        handles[accepted + j] = scratch[j]
    return accepted
