"""Arrays rebuilt inside a kernel from raw addresses: calls that pass ints, not arrays.

Every array a compiled entry point takes from Python costs a NRT meminfo
(a malloc, a free and a GIL round trip to drop the reference): on this
machine about half of a short kernel call. The per-burst entry points of
the runtime therefore take the address of a small uint64 *descriptor*
instead, filled once when the call is bound, and rebuild their views from
it here, which costs nothing measurable.

A descriptor holds (address, length) pairs. Whoever binds a call keeps
every array it points into alive for as long as the call can run (see
``pktflow._bound.BoundCalls.bind``'s ``keep``) and disarms it before that
memory goes away.

Usage (in a kernel)::

    d = descriptor(address, 8)
    ring = u32_at(d[0], d[1])
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic


def _pointer_intrinsic(dtype: types.Type):  # type: ignore[no-untyped-def]
    @intrinsic
    def pointer(typingctx, address):  # type: ignore[no-untyped-def]
        if not isinstance(address, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

        return types.CPointer(dtype)(address), codegen

    return pointer


_u8_pointer = _pointer_intrinsic(types.uint8)
_u32_pointer = _pointer_intrinsic(types.uint32)
_u64_pointer = _pointer_intrinsic(types.uint64)


@njit(inline="always")
def descriptor(address, length):
    """The uint64 descriptor at ``address``, ``length`` words."""
    return carray(_u64_pointer(np.int64(address)), length)


@njit(inline="always")
def u8_at(address, length):
    """The uint8 array of ``length`` bytes at ``address``."""
    return carray(_u8_pointer(np.int64(address)), np.int64(length))


@njit(inline="always")
def u32_at(address, length):
    """The uint32 array of ``length`` words at ``address``."""
    return carray(_u32_pointer(np.int64(address)), np.int64(length))


@njit(inline="always")
def u64_at(address, length):
    """The uint64 array of ``length`` words at ``address``."""
    return carray(_u64_pointer(np.int64(address)), np.int64(length))


@njit(inline="always")
def u32_rows_at(address, rows, width):
    """The (rows, width) uint32 array at ``address`` (C order)."""
    return carray(_u32_pointer(np.int64(address)), (np.int64(rows), np.int64(width)))


@njit(inline="always")
def u64_rows_at(address, rows, width):
    """The (rows, width) uint64 array at ``address`` (C order)."""
    return carray(_u64_pointer(np.int64(address)), (np.int64(rows), np.int64(width)))
