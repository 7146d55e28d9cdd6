"""Checks on the arrays, counts and integers callers pass: one place, one wording.

The hot paths call these once per burst; they cost a few attribute reads
when the arguments are right and build a clear message when they are not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import PktflowTypeError, PktflowValueError
from .abc import U32Array

U32 = _U32 = np.dtype(np.uint32)
# Hot paths test ``type(a) is ndarray and a.dtype is U32 and a.ndim == 1 and
# type(n) is int and 0 <= n <= a.shape[0]`` inline (a few attribute reads;
# ``is`` works because numpy keeps one instance of each builtin dtype) and
# call the functions here only when that fails, to raise or to fill in n.
ndarray = np.ndarray


def _array_error(array: Any, role: str) -> Exception:
    if not isinstance(array, np.ndarray):
        return PktflowTypeError(f"{role} must be a numpy uint32 array, not {type(array).__name__}")
    if array.dtype != _U32:
        return PktflowTypeError(
            f"{role} must have dtype uint32, not {array.dtype} (it is never cast silently)"
        )
    return PktflowValueError(f"{role} must be 1-dimensional, not {array.ndim}-dimensional")


def checked_count(array: Any, n: int | None, role: str) -> int:
    """``n`` (default: the whole array) after checking the array and the count."""
    try:
        # The common case costs two attribute reads; `is` is safe because
        # numpy keeps one instance of each builtin dtype.
        ok = array.dtype is _U32 and array.ndim == 1
    except AttributeError:
        ok = False
    if not ok and not _is_u32_vector(array):
        raise _array_error(array, role)
    length: int = array.shape[0]
    if n is None:
        return length
    if type(n) is int and 0 <= n <= length:
        return n
    return _checked_slow_n(n, length, role)


def _is_u32_vector(array: Any) -> bool:
    # Admits dtypes equal to uint32 but built apart from the canonical one.
    return isinstance(array, np.ndarray) and array.dtype == _U32 and array.ndim == 1


def _checked_slow_n(n: Any, length: int, role: str) -> int:
    return checked_int(n, f"n (for the {length} items of {role})", 0, length)


def checked_int(
    value: Any,
    name: str,
    low: int,
    high: int | None = None,
    error: type[Exception] = PktflowValueError,
) -> int:
    """``value`` as an int after checking it is one (numpy integers too, never bool).

    Raises ``PktflowTypeError`` naming ``name`` for another type, and
    ``error`` for a value outside ``low..high`` (no upper bound when None).
    Every size, count and id pktflow takes goes through here.

    Usage: ``n = checked_int(n, "n", 1, RING_SZ_MAX - 1)``
    """
    number: int = value
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise PktflowTypeError(f"{name} must be an int, not {type(value).__name__}")
        number = int(value)
    if number < low or (high is not None and number > high):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise error(f"{name} must be {bounds}, not {number}")
    return number


def checked_out(out: Any, n: int | None) -> int:
    """Like ``checked_count`` for an array that will be written."""
    count = checked_count(out, n, "out")
    if not out.flags.writeable:
        raise PktflowValueError("out must be a writable array")
    return count


def checked_handle(handle: Any, limit: int, error: type[Exception] = PktflowValueError) -> int:
    """``handle`` as an int after checking ``0 <= handle < limit``."""
    return checked_int(handle, "a handle", 0, limit - 1, error)


def one_handle(handle: int) -> U32Array:
    """A fresh one-element uint32 array holding ``handle`` (half the cost of np.array)."""
    one = np.empty(1, dtype=np.uint32)
    one[0] = handle
    return one


def descriptor(*parts: np.ndarray[Any, Any] | int) -> npt.NDArray[np.uint64]:
    """What a kernel called with one address reads its arguments from (see
    ``backends/_numba/_address_kernels.py``): each array as (address, rows),
    each int as itself. The caller keeps the arrays alive while it is used.

    Usage: ``d = descriptor(state, words, row, array); call(int(d.ctypes.data), n)``
    """
    words: list[int] = []
    for part in parts:
        if isinstance(part, np.ndarray):
            if not part.flags.c_contiguous:
                raise PktflowValueError("a kernel descriptor takes C-contiguous arrays only")
            words += [part.ctypes.data, part.shape[0]]
        else:
            words.append(int(part))
    return np.array(words, np.uint64)
