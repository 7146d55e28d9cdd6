"""``tap``: call a user's Python function on every burst, then pass the burst on.

Custom logic without writing a stage class: ``function: "package.module:name"``
(``name`` may be dotted: ``module:Class.method``) is imported when the
pipeline starts (so loading a pipeline may import code) and called once per
burst as ``function(handles, headers, data)``:

- ``handles``: the burst's mbuf handles, a read-only uint32 view (valid
  only during the call: copy what you keep);
- ``headers``: the pool's ``headers``, the numpy structured array of every
  mbuf header (``headers[handles]["pkt_len"]``; writable: a tap may set
  ``port``, ``hash``, ``timestamp``, ...);
- ``data``: the pool's buffers as a (n, stride) uint8 array; mbuf h's frame
  is ``data[h, data_off : data_off + data_len]`` (of its ``direct`` mbuf for
  a clone).

Its return value is ignored; an exception stops the pipeline (``PipelineError``
naming the stage). Every handle is then emitted to ``out``. The function runs
on the lcore's thread between bursts, so it costs what it costs per burst:
keep it to numpy calls over the whole burst.

Usage (YAML)::

    look: {type: tap, inputs: [parse], function: "mytools:count_ports"}
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

import pktflow

__all__ = ["Tap", "TapFunction", "load_callable"]


class TapFunction(Protocol):
    """What ``tap`` calls per burst: ``function(handles, headers, data)``."""

    def __call__(
        self,
        handles: npt.NDArray[np.uint32],
        headers: npt.NDArray[np.void],
        data: npt.NDArray[np.uint8],
        /,
    ) -> object: ...


def load_callable(path: str) -> Any:
    """The object ``"package.module:name"`` names (``name`` may be dotted).

    Usage: ``fn = load_callable("mytools:count_ports")``
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise pktflow.ConfigError(f"function is 'package.module:name', not {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise pktflow.ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise pktflow.ConfigError(f"{module_name!r} has no {attr!r}") from None
    return obj


class Tap(pktflow.Stage):
    """Calls ``function(handles, headers, data)`` per burst and emits the burst to ``out``.

    Options:
        function: "package.module:name" of the callable (imports that module).
    """

    keeps_lengths = True

    def __init__(self, ctx: pktflow.StageContext, *, function: str) -> None:
        super().__init__(ctx)
        fn = load_callable(function)
        if not callable(fn):
            raise pktflow.ConfigError(f"{function!r} is not callable")
        self.function: TapFunction = fn
        self._pool: pktflow.PktmbufPool | None = None
        self._headers: npt.NDArray[np.void] | None = None
        self._data: npt.NDArray[np.uint8] | None = None

    def _views(
        self, pool: pktflow.PktmbufPool
    ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.uint8]]:
        if pool is not self._pool or self._headers is None or self._data is None:
            flat = np.frombuffer(pool._object_bytes, np.uint8)
            self._data = flat.reshape(-1, pool._stride)
            self._headers = pool.headers
            self._pool = pool
        return self._headers, self._data

    def process(self, burst: pktflow.Burst) -> None:
        headers, data = self._views(burst.pool)
        handles = burst.array[: burst.n]
        handles.flags.writeable = False  # a view: the burst's array stays writable
        self.function(handles, headers, data)
        self.emit(burst)
