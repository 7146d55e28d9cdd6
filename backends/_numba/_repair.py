"""The slow path of a stalled MP/MC transfer: finish it, repair a dead owner, or say who blocks.

A kernel's wait for an earlier reservation of its side is bounded (a few
ms); it then returns ``ERR_STALLED`` with its own handles already moved.
``complete`` finishes that operation: it looks at the reservation at the
side's tail (the one everybody waits for), reads its record (layout:
``_layout``), and when the owner is dead (its pid gone, a zombie, or a
different start time) publishes past it with the ``repair`` kernel — the
dead producer's handles are delivered when it had finished copying them,
else its slots become holes that consumers drop; a dead consumer's
reserved handles are discarded. Then it waits again. A live owner that
does not move for ``STALL_TIMEOUT_S``, or the ring's abort word, ends the
wait with ``RingStalledError`` naming the ring and the owner.

Pure Python: this runs only after a stall, never per burst.
"""

from __future__ import annotations

import time

from pktflow._errors import RingError, RingStalledError
from pktflow.abc import ERR_CORRUPT, ERR_STALLED, U32Array

from ._layout import (
    HOLE,
    R_COPIED,
    R_LEN,
    R_PID,
    R_START,
    R_STIME,
    RECORD_WORDS,
    W_ABORT,
    W_CONS_HEAD,
    W_CONS_REC,
    W_CONS_TAIL,
    W_PROD_HEAD,
    W_PROD_REC,
    W_PROD_TAIL,
    W_REPAIR,
    W_SIZE,
    W_SLOTS,
)

__all__ = ["STALL_TIMEOUT_S", "complete", "decode", "owner_alive", "repair_side"]

# How long a live owner may hold the reservation everybody waits for before
# the waiters are told (it may be preempted: MP/MC rings are not
# preemption-safe, and a loaded 2-CPU machine preempts for whole time slices).
# The kernels give control back every few ms meanwhile: Ctrl-C works, a dead
# owner is repaired at once, the abort word ends the wait at once.
STALL_TIMEOUT_S = 5.0
# How long a reservation at the tail may go without a record before it is
# taken for one whose owner died between its head CAS and its record (a
# window of a few instructions).
UNRECORDED_GRACE_S = 0.2


def decode(code: int) -> tuple[bool, int]:
    """(is_producer, old_head) of an ERR_STALLED code."""
    value = ERR_STALLED - code
    return bool(value & 1), value >> 1


def owner_alive(pid: int, start_low: int) -> bool:
    """Whether the process that recorded (pid, low 32 bits of its start time) still runs.

    A zombie (killed, not yet reaped) counts as dead: it will never publish.
    """
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return False
    return (int(fields[19]) & 0xFFFFFFFF) == start_low


def _side(is_prod: bool) -> tuple[int, int, int]:
    if is_prod:
        return W_PROD_HEAD, W_PROD_TAIL, W_PROD_REC
    return W_CONS_HEAD, W_CONS_TAIL, W_CONS_REC


def _blocker(state: U32Array, is_prod: bool) -> tuple[int, int, int, bool, int, int] | None:
    """The reservation at this side's tail: (tail, head, k, copied, pid, start), or None."""
    head_word, tail_word, rec_word = _side(is_prod)
    tail, head = int(state[tail_word]), int(state[head_word])
    if tail == head:
        return None  # nothing reserved and unpublished
    size = int(state[W_SIZE])
    rec = int(state[rec_word]) + (tail & (size - 1)) * RECORD_WORDS
    if int(state[rec + R_START]) != tail:
        return tail, head, 0, False, 0, 0  # no record (yet)
    length = int(state[rec + R_LEN])
    return (tail, head, length & (R_COPIED - 1), bool(length & R_COPIED),
            int(state[rec + R_PID]), int(state[rec + R_STIME]))  # fmt: skip


def _unrecorded_length(state: U32Array, is_prod: bool, tail: int, head: int) -> int:
    """Length of a reservation at ``tail`` that has no record: up to the next recorded start."""
    _, _, rec_word = _side(is_prod)
    size = int(state[W_SIZE])
    base = int(state[rec_word])
    for step in range(1, (head - tail) & 0xFFFFFFFF):
        at = (tail + step) & 0xFFFFFFFF
        if int(state[base + (at & (size - 1)) * RECORD_WORDS + R_START]) == at:
            return step
    return (head - tail) & 0xFFFFFFFF


def repair_side(state: U32Array, is_prod: bool, unrecorded_since: float | None = None) -> int:
    """Publish past this side's blocking reservation if its owner is dead; returns k or 0.

    ``unrecorded_since``: when this caller first saw the tail blocked by a
    reservation without a record; past the grace, that one counts as dead too.
    """
    from . import _kernels as k

    found = _blocker(state, is_prod)
    if found is None:
        return 0
    tail, head, length, copied, pid, start = found
    if pid == 0:
        if unrecorded_since is None or time.monotonic() - unrecorded_since < UNRECORDED_GRACE_S:
            return 0
        length, copied = _unrecorded_length(state, is_prod, tail, head), False
    elif owner_alive(pid, start):
        return 0
    repairer = int(state[W_REPAIR])
    if repairer and not owner_alive(repairer, _start_low(repairer)):
        k.cas_word(state, W_REPAIR, repairer, 0)  # a repairer that died while repairing
    done = int(k.repair(state, is_prod, tail, length, is_prod and not copied))
    return max(done, 0)


def _start_low(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[19]) & 0xFFFFFFFF
    except (OSError, ValueError, IndexError):
        return -1


def blocker_text(state: U32Array, is_prod: bool) -> str:
    """Who holds the reservation this side waits for, in words."""
    found = _blocker(state, is_prod)
    if found is None:
        return "no reservation is pending"
    tail, _, length, copied, pid, _ = found
    if pid == 0:
        return f"a reservation at {tail} without a record"
    state_text = "copied, not published" if copied else "being copied"
    return f"{length} slots at {tail} reserved by live pid {pid} ({state_text})"


def complete(state: U32Array, code: int, name: str, timeout: float | None = None) -> int:
    """Finish the transfer that returned ``code`` (ERR_STALLED...); returns its count.

    Raises ``RingStalledError`` (the transfer stays pending: call again with
    ``err.code``) when the ring is aborted or a live owner blocks it past
    ``timeout`` (default ``STALL_TIMEOUT_S``).
    """
    from . import _kernels as k

    if code > ERR_STALLED:
        raise RingError(f"ring {name!r}: {code} is not a stalled transfer's code")
    is_prod, old_head = decode(code)
    side = "producer" if is_prod else "consumer"
    limit = STALL_TIMEOUT_S if timeout is None else timeout
    started = time.monotonic()
    unrecorded_since: float | None = None
    while True:
        result = int(k.finish(state, is_prod, old_head))
        if result >= 0:
            return result
        if result == ERR_CORRUPT:
            raise RingError(
                f"ring {name!r}: the {side} reservation at {old_head} is gone (corrupt)"
            )
        if int(state[W_ABORT]):
            raise RingStalledError(
                f"ring {name!r} was aborted while a {side} transfer waited to publish "
                f"({blocker_text(state, is_prod)}); it stays pending",
                code=code,
            )
        found = _blocker(state, is_prod)
        if found is not None and found[4] == 0 and unrecorded_since is None:
            unrecorded_since = time.monotonic()
        if repair_side(state, is_prod, unrecorded_since):
            unrecorded_since = None
            continue
        if time.monotonic() - started > limit:
            raise RingStalledError(
                f"ring {name!r} is stalled: a {side} transfer waited {limit:g} s behind "
                f"{blocker_text(state, is_prod)}; it stays pending (Ring.complete(err.code) "
                "finishes it)",
                code=code,
            )


def slot_value(state: U32Array, old_head: int) -> int:
    """The handle in the slot of ``old_head`` (a stalled single dequeue reads it back)."""
    size = int(state[W_SIZE])
    return int(state[W_SLOTS + (old_head & (size - 1))])


def count_kept(out: U32Array, k: int) -> int:
    """Handles in ``out[:k]`` after a stalled dequeue dropped holes (they sit at the end)."""
    kept = k
    while kept and int(out[kept - 1]) == HOLE:
        kept -= 1
    return kept


def aborted_error(name: str) -> RingError:
    return RingError(f"ring {name!r} is aborted (Ring.abort(False) clears it)")
