"""CPU atomics for numba, emitted as LLVM instructions.

Numba has no public CPU atomics, so each operation here is an
``numba.extending.intrinsic`` over a (uint32 array, index) pair that emits
the LLVM atomic instruction directly. Every function names its memory
order; the kernels name which access each one pairs with.

Only this module and the ``*_kernels.py`` modules hold jitted code.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable

import llvmlite.binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_IS_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


def _is_u32_array(arr: types.Type) -> bool:
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.uint32


def _element_pointer(context, builder, arr_type, arr, idx_type, idx):  # type: ignore[no-untyped-def]
    """Pointer to ``arr[idx]``, honouring strides, without bounds checks."""
    array = context.make_array(arr_type)(context, builder, arr)
    index = context.cast(builder, idx, idx_type, types.intp)
    return cgutils.get_item_pointer(context, builder, arr_type, array, [index])


def _u32(context, builder, value, value_type):  # type: ignore[no-untyped-def]
    return context.cast(builder, value, value_type, types.uint32)


def _make_load(ordering: str):  # type: ignore[no-untyped-def]
    @intrinsic
    def load(typingctx, arr, idx):  # type: ignore[no-untyped-def]
        if not (_is_u32_array(arr) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            ptr = _element_pointer(context, builder, arr, args[0], idx, args[1])
            return builder.load_atomic(ptr, ordering, 4)

        return types.uint32(arr, idx), codegen

    return load


def _make_store(ordering: str):  # type: ignore[no-untyped-def]
    @intrinsic
    def store(typingctx, arr, idx, value):  # type: ignore[no-untyped-def]
        if not (_is_u32_array(arr) and isinstance(idx, types.Integer)):
            return None
        if not isinstance(value, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            ptr = _element_pointer(context, builder, arr, args[0], idx, args[1])
            builder.store_atomic(_u32(context, builder, args[2], value), ptr, ordering, 4)
            return context.get_dummy_value()

        return types.void(arr, idx, value), codegen

    return store


# Relaxed ("monotonic" in LLVM): atomic, no ordering. Used for the caller's own
# head, which only a CAS (or a single owner) changes.
load_relaxed = _make_load("monotonic")
# Acquire: later loads and stores stay after it. Pairs with a store_release.
load_acquire = _make_load("acquire")
store_relaxed = _make_store("monotonic")
# Release: earlier loads and stores stay before it. Pairs with a load_acquire.
store_release = _make_store("release")


@intrinsic
def cas_relaxed(typingctx, arr, idx, expected, desired):  # type: ignore[no-untyped-def]
    """``arr[idx] == expected`` ? store ``desired``, True : False; relaxed on both paths.

    The ring orders around it with a fence and acquire loads, as DPDK's C11
    ring does, so the exchange itself needs no ordering.
    """
    if not (_is_u32_array(arr) and isinstance(idx, types.Integer)):
        return None
    if not (isinstance(expected, types.Integer) and isinstance(desired, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ptr = _element_pointer(context, builder, arr, args[0], idx, args[1])
        old = _u32(context, builder, args[2], expected)
        new = _u32(context, builder, args[3], desired)
        result = builder.cmpxchg(ptr, old, new, "monotonic", "monotonic")
        return builder.extract_value(result, 1)

    return types.boolean(arr, idx, expected, desired), codegen


@intrinsic
def fetch_add(typingctx, arr, idx, delta):  # type: ignore[no-untyped-def]
    """Atomically add ``delta`` to ``arr[idx]`` (sequentially consistent); returns the old value."""
    if not (_is_u32_array(arr) and isinstance(idx, types.Integer)):
        return None
    if not isinstance(delta, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ptr = _element_pointer(context, builder, arr, args[0], idx, args[1])
        value = _u32(context, builder, args[2], delta)
        return builder.atomic_rmw("add", ptr, value, "seq_cst")

    return types.uint32(arr, idx, delta), codegen


def _make_fence(ordering: str):  # type: ignore[no-untyped-def]
    @intrinsic
    def fence(typingctx):  # type: ignore[no-untyped-def]
        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return fence


# Keeps an earlier load (the caller's head) before later loads (the other
# side's tail): DPDK's __atomic_thread_fence(__ATOMIC_ACQUIRE) in move_head.
fence_acquire = _make_fence("acquire")


@intrinsic
def cpu_relax(typingctx):  # type: ignore[no-untyped-def]
    """A spin-wait hint (x86 ``pause``); a no-op elsewhere."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        if _IS_X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def sched_yield(typingctx):  # type: ignore[no-untyped-def]
    """Give the CPU away: a spinner preempted holder must be allowed to run.

    Declared as an external symbol (not a ctypes pointer) so ``cache=True`` works.
    """

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield"
        )
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


# The calling process's identity, read by the ring kernels when they record a
# reservation (so that a survivor can tell a dead owner's reservation from a
# slow one): pid in the low 32 bits, the low 32 bits of its start time (clock
# ticks, /proc/<pid>/stat field 22) in the high ones. One process-wide word,
# reached from jitted code as an external global symbol: a plain load, no
# argument and no system call per burst, and ``cache=True`` keeps working (the
# symbol is resolved again in every process that loads the cached kernels).
_OWNER_SYMBOL = "pktflow_ring_owner_token_v1"
_owner_word = ctypes.c_uint64(0)
llvm_binding.add_symbol(_OWNER_SYMBOL, ctypes.addressof(_owner_word))


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def set_owner_token() -> None:
    """Stamp this process's identity into the word the kernels record (again after fork)."""
    pid = os.getpid()
    _owner_word.value = (pid & 0xFFFFFFFF) | ((_start_time(pid) & 0xFFFFFFFF) << 32)


def owner_token_value() -> int:
    """This process's token as the kernels see it (for tests and the repair path)."""
    return int(_owner_word.value)


set_owner_token()
os.register_at_fork(after_in_child=set_owner_token)


@intrinsic
def owner_token(typingctx):  # type: ignore[no-untyped-def]
    """This process's (pid, start time) token: a plain load of a process-private word.

    No ordering: the word changes only in a fresh child, before any kernel runs there.
    """

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        module = builder.module
        try:
            word = module.get_global(_OWNER_SYMBOL)
        except KeyError:
            word = ir.GlobalVariable(module, ir.IntType(64), _OWNER_SYMBOL)
            word.linkage = "external"
        return builder.load(word)

    return types.uint64(), codegen


def _make_clock_ns(clock_id: int):  # type: ignore[no-untyped-def]
    @intrinsic
    def clock_ns(typingctx):  # type: ignore[no-untyped-def]
        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            i64 = ir.IntType(64)
            timespec = ir.LiteralStructType([i64, i64])
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.IntType(32), [ir.IntType(32), timespec.as_pointer()]),
                "clock_gettime",
            )
            slot = cgutils.alloca_once(builder, timespec)
            builder.call(fn, [ir.Constant(ir.IntType(32), clock_id), slot])
            zero = ir.Constant(ir.IntType(32), 0)
            seconds = builder.load(builder.gep(slot, [zero, zero]))
            nanos = builder.load(builder.gep(slot, [zero, ir.Constant(ir.IntType(32), 1)]))
            return builder.add(builder.mul(seconds, ir.Constant(i64, 1_000_000_000)), nanos)

        return types.int64(), codegen

    return clock_ns


# libc's clock_gettime (the vDSO, no system call), declared as an external
# symbol, as sched_yield is, so ``cache=True`` works.
# CLOCK_MONOTONIC: bounds the kernels' waits in time, whatever sched_yield costs.
monotonic_ns = _make_clock_ns(1)
# CLOCK_REALTIME: time.time_ns() inside a kernel (mbuf timestamps).
realtime_ns = _make_clock_ns(0)


# -- the need-wakeup handshake ------------------------------------------------


@intrinsic
def exchange(typingctx, arr, idx, value):  # type: ignore[no-untyped-def]
    """Atomically replace ``arr[idx]`` with ``value`` (sequentially consistent); the old value.

    A notifier takes the armed waiters' mask with it (to 0), so each sleep is
    signalled once; seq_cst also makes it an acquire of the waiter entries
    that the waiters' ``fetch_or`` released.
    """
    if not (_is_u32_array(arr) and isinstance(idx, types.Integer)):
        return None
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ptr = _element_pointer(context, builder, arr, args[0], idx, args[1])
        return builder.atomic_rmw("xchg", ptr, _u32(context, builder, args[2], value), "seq_cst")

    return types.uint32(arr, idx, value), codegen


def _make_rmw(op: str):  # type: ignore[no-untyped-def]
    @intrinsic
    def rmw(typingctx, arr, idx, value):  # type: ignore[no-untyped-def]
        if not (_is_u32_array(arr) and isinstance(idx, types.Integer)):
            return None
        if not isinstance(value, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            ptr = _element_pointer(context, builder, arr, args[0], idx, args[1])
            return builder.atomic_rmw(op, ptr, _u32(context, builder, args[2], value), "seq_cst")

        return types.uint32(arr, idx, value), codegen

    return rmw


# Atomic OR / AND of a bit mask (sequentially consistent); return the old value.
# A waiter sets its need-wakeup bit with fetch_or (which also releases the
# entry words it wrote at registration) and clears it with fetch_and.
fetch_or = _make_rmw("or")
fetch_and = _make_rmw("and")

# A full fence (x86 mfence / a locked op; arm dmb ish). The need-wakeup
# handshake is a store-then-load on each side (the sleeper: its bit, then the
# other side's tail; the notifier's caller: its tail, then the bits), which
# release/acquire does not order: a seq_cst fence on each side does, so one of
# the two loads sees the other side's store and no wake-up is lost.
fence_seq_cst = _make_fence("seq_cst")


# The slow path of a notifier, when some waiter is armed: a Python function
# called from jitted code through a C callback reached as an external symbol
# (resolved again in every process, so ``cache=True`` keeps working, as for
# the owner token). It gets the state array's address, the side and the taken
# mask, signals the waiters and returns how many it signalled.
_WAKE_SYMBOL = "pktflow_ring_wake_v1"
_WAKE_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_int64, ctypes.c_uint64)
_wake_handler: list[Callable[[int, int, int], int]] = []


def _wake_trampoline(address: int, side: int, mask: int) -> int:
    try:
        if not _wake_handler:  # jitted code notified before any ring set up its waiters
            import pktflow.backends._numba._waiters  # noqa: F401  (installs the handler)
        return _wake_handler[0](address, side, mask)
    except BaseException:  # never unwind through jitted frames
        import logging

        logging.getLogger("pktflow").exception("waking the waiters of a ring failed")
        return 0


_wake_c = _WAKE_CALLBACK(_wake_trampoline)
llvm_binding.add_symbol(_WAKE_SYMBOL, ctypes.cast(_wake_c, ctypes.c_void_p).value)


def set_wake_handler(handler: Callable[[int, int, int], int]) -> None:
    """Install the Python function ``wake_waiters`` calls (``_waiters.wake``)."""
    _wake_handler[:] = [handler]


@intrinsic
def wake_waiters(typingctx, arr, side, mask):  # type: ignore[no-untyped-def]
    """Call the installed wake handler with (address of ``arr``, side, mask): the slow path.

    Takes the GIL (ctypes does) for as long as the signals take; only reached
    when some waiter was armed, so never on a burst with nobody asleep.
    """
    if not (_is_u32_array(arr) and isinstance(side, types.Integer)):
        return None
    if not isinstance(mask, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i64, i64, i64]), _WAKE_SYMBOL
        )
        array = context.make_array(arr)(context, builder, args[0])
        address = builder.ptrtoint(array.data, i64)
        side_v = context.cast(builder, args[1], side, types.int64)
        mask_v = context.cast(builder, args[2], mask, types.int64)
        return builder.call(fn, [address, side_v, mask_v])

    return types.int64(arr, side, mask), codegen
