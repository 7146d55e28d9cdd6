"""Bodies of the processes that tests/test_mempool.py and tests/test_lcore.py spawn.

They live in a module of their own because the ``spawn`` start method
imports a child's target by name: a test module would drag pytest and its
fixtures into every child. Each body reports through a ``Connection``:
``("ok", ...)`` with what the parent needs to check, or ``("error",
traceback)`` so that a failure in the child reads as one in the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

import pktflow
from pktflow._cache_layout import C_LEN


def pattern(handle: int, size: int) -> np.ndarray:
    """The bytes a test writes into object ``handle``: unlike any other object's."""
    return ((np.arange(size, dtype=np.uint32) * 7 + handle * 13 + 1) % 251).astype(np.uint8)


def _report(conn: Connection, body: Callable[..., tuple[Any, ...]], *args: Any) -> None:
    try:
        result = body(*args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    else:
        conn.send(("ok", *result))


def fill_objects(conn: Connection, pool_name: str, ring_name: str, count: int) -> None:
    """Take ``count`` objects as an lcore, write each one's pattern, pass the handles back.

    Sends (lcore id, the lcore's cache length after the get).
    """

    def body() -> tuple[Any, ...]:
        pool = pktflow.Mempool.lookup(pool_name)
        ring = pktflow.Ring.lookup(ring_name)
        lcore = pktflow.register_lcore()
        out = np.empty(count, dtype=np.uint32)
        if pool.get_bulk(out, count) != count:
            raise AssertionError(f"the child could not get {count} objects")
        for h in out.tolist():
            pool.obj(h)[:] = pattern(h, pool.elt_size).tobytes()
        if ring.enqueue_bulk(out, count) != count:
            raise AssertionError("the handle ring had no room")
        cache_len = int(pool.cache_rows[lcore, C_LEN])
        ring.close()
        pool.close()
        return lcore, cache_len

    _report(conn, body)


def leave_objects_in_cache(conn: Connection, pool_name: str, get_n: int, put_n: int) -> None:
    """Take ``get_n`` objects as an lcore, put ``put_n`` back, and die holding the rest.

    Sends (lcore id, kept handles, the cache length); then ``os._exit``: no
    close, no cleanup, as if the process had crashed.
    """

    def body() -> tuple[Any, ...]:
        pool = pktflow.Mempool.lookup(pool_name)
        lcore = pktflow.register_lcore()
        out = np.empty(get_n, dtype=np.uint32)
        if pool.get_bulk(out, get_n) != get_n:
            raise AssertionError(f"the child could not get {get_n} objects")
        pool.put_bulk(out, put_n)
        return lcore, out[put_n:].tolist(), int(pool.cache_rows[lcore, C_LEN])

    _report(conn, body)
    os._exit(0)


def hold_lcore(conn: Connection, lcore_id: int) -> None:
    """Register ``lcore_id``, say so, and hold it until the parent sends anything."""

    def body() -> tuple[Any, ...]:
        return (pktflow.register_lcore(lcore_id),)

    _report(conn, body)
    conn.recv()
    pktflow.unregister_lcore()


def claim_lcore_and_die(conn: Connection, lcore_id: int) -> None:
    """Register ``lcore_id`` and exit at once: no unregister, no interpreter shutdown."""

    def body() -> tuple[Any, ...]:
        return pktflow.register_lcore(lcore_id), os.getpid()

    _report(conn, body)
    os._exit(0)


def spawn_child(
    target: Callable[..., None], *args: Any, timeout: float = 60.0
) -> tuple[BaseProcess, Connection, list[Any]]:
    """Start ``target(conn, *args)`` in a spawned process; its report once it sends one.

    Raises AssertionError with the child's traceback when it failed, and
    kills it when it says nothing within ``timeout`` (a hang fails the test
    instead of blocking the run).
    """
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child_end, *args))
    proc.start()
    child_end.close()
    if not parent_end.poll(timeout):
        proc.kill()
        proc.join()
        raise AssertionError(f"{target.__name__} said nothing within {timeout} s")
    status, *result = parent_end.recv()
    if status != "ok":
        proc.join(timeout)
        raise AssertionError(f"{target.__name__} failed in the child:\n{result[0]}")
    return proc, parent_end, result
