"""What a Python user would pick instead of a ring, measured the same way.

Each peer moves integers: one per call ("items") or a list of 32 per call
("lists of 32", the batching idiom that makes Python queues fast). Handles
are counted as integers that arrived, so a list of 32 counts 32. Queues
that take a bound are sized like the ring, so producer and consumer
alternate as they would in a pipeline instead of one running ahead.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import repeat
from typing import Any

from ._measure import Span, run_threads

FASTER_FIFO_HINT = "install pktflow[bench] to compare with faster-fifo"


def faster_fifo_missing() -> str | None:
    """Why faster-fifo cannot be compared here (with the fix), or None."""
    try:
        import faster_fifo  # noqa: F401
    except ImportError:
        return FASTER_FIFO_HINT
    return None


def faster_fifo_queue() -> Any:
    """A faster_fifo.Queue with its default buffer (200 kB); needs faster-fifo."""
    import faster_fifo

    return faster_fifo.Queue()


def _batch(per_put: int) -> Any:
    """What one put carries: an int, or a list of ``per_put`` ints."""
    return 0 if per_put == 1 else list(range(per_put))


# -- one thread ---------------------------------------------------------------


def deque_pairs(burst: int, iterations: int) -> int:
    """collections.deque, one thread: extend by a list of ``burst``, popleft each; the
    fastest bulk idiom measured here (faster than append, a comprehension or map).

    Usage: ``deque_pairs(32, 1000)``
    """
    batch = list(range(burst))
    d: deque[int] = deque()
    extend, popleft = d.extend, d.popleft
    each = range(burst)
    for _ in repeat(None, iterations):
        extend(batch)
        for _ in each:
            popleft()
    return burst * iterations


# -- two threads, or two tasks of one event loop --------------------------------


def queue_threads(handles: int, maxsize: int) -> Span:
    """queue.Queue, one producer thread to one consumer thread, one item per call.

    Usage: ``span = queue_threads(100_000, 4096)``
    """
    q: queue.Queue[int] = queue.Queue(maxsize)

    def produce() -> int:
        put = q.put
        for h in range(handles):
            put(h)
        return 0

    def consume() -> int:
        get = q.get
        for _ in repeat(None, handles):
            get()
        return handles

    return run_threads([produce, consume])


async def asyncio_transfer(per_put: int, handles: int, maxsize: int) -> Span:
    """asyncio.Queue, a producer task to a consumer task on the running loop.

    Usage: ``runner.run(asyncio_transfer(32, 1 << 20, 128))`` (an asyncio.Runner on uvloop)
    """
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize)
    batch = _batch(per_put)
    puts = handles // per_put

    async def produce() -> None:
        put = q.put
        for _ in repeat(None, puts):
            await put(batch)

    async def consume() -> None:
        get = q.get
        for _ in repeat(None, puts):
            await get()

    start = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return Span(start, time.perf_counter(), puts * per_put)


# -- two processes: one side, set up in a spawned worker -------------------------


def _put_all(put: Callable[[Any], Any], batch: Any, puts: int) -> int:
    for _ in repeat(None, puts):
        put(batch)
    return 0


def _get_all(get: Callable[[], Any], per_put: int, puts: int) -> int:
    for _ in repeat(None, puts):
        get()
    return per_put * puts


@contextmanager
def queue_producer(
    shared: tuple[Any, ...], which: int, per_put: int, handles: int
) -> Iterator[Callable[[], int]]:
    """Put ``handles`` integers on the inherited queue ``shared[which]``, ``per_put`` a call.

    Works for multiprocessing.Queue and faster_fifo.Queue: both have put/get.
    """
    yield partial(_put_all, shared[which].put, _batch(per_put), handles // per_put)


@contextmanager
def queue_consumer(
    shared: tuple[Any, ...], which: int, per_put: int, handles: int
) -> Iterator[Callable[[], int]]:
    """Get ``handles`` integers from the inherited queue ``shared[which]``."""
    yield partial(_get_all, shared[which].get, per_put, handles // per_put)
