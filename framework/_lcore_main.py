"""A worker lcore: the process (or thread) that runs one lcore's part of a pipeline.

It is started with an ``LcoreJob`` — the checked spec with each stage class
named by import path (no pickled stage objects), its lcore and CPU, and the
shared names of the pools, rings and control block — and then:

1. pins itself to its CPU, imports the stage classes, registers as an lcore
   (its mempool caches), attaches to the zones by name, builds its stage
   instances and runs their ``start()``; a failure in any of that is one
   message naming the lcore and the stage;
2. says ready, waits for "go", and runs its walk on its own event loop
   (uvloop when installed), copying its counters into the control block
   about twice a second;
3. on "stop" stops its sources and drains; on "abort" (another lcore died)
   ends at once; when its walk ends it runs the stages' ``stop()``,
   publishes its final counters and reports "done" with its failure, if
   any; then it detaches and exits once the main lcore says so (or is gone).

Usage (the runtime's)::

    Worker(lcore_main, (job,), name="quick lcore 1")
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pickle
import traceback
from dataclasses import dataclass, replace
from typing import Any

from ._affinity import pin
from ._control import Control
from ._errors import PipelineError
from ._lcore import register_lcore, unregister_lcore
from ._lcore_graph import LcoreGraph, release
from ._mbuf import PktmbufPool
from ._placement import Placement
from ._ring import Ring
from ._spec import PipelineSpec
from ._stage import Stage
from ._worker import Parent

__all__ = ["GO", "LcoreJob", "lcore_main", "run_event_loop"]

GO, STOP, ABORT = "go", "stop", "abort"
_PUBLISH_EVERY_S = 0.5
# How long a worker waits, after reporting done, for the main lcore's word to exit.
_CLOSE_WAIT_S = 60.0


@dataclass(frozen=True)
class LcoreJob:
    """What a worker lcore needs, all of it picklable and none of it a live object."""

    spec: PipelineSpec  # stage classes replaced by ``Stage``: see ``classes``
    classes: dict[str, str]  # stage name -> "module:qualname"
    lcore: int
    cpu: int | None
    pools: dict[str, str]  # pool name -> its shared name
    tag: str  # ring names: Link.ring_name(tag)
    control: str  # the control block's shared name
    count: int | None  # this lcore's share of run(count=...)

    @classmethod
    def portable(cls, spec: PipelineSpec, **fields: Any) -> LcoreJob:
        """A job for ``spec``, its stage classes turned into import paths."""
        classes = {n: f"{s.cls.__module__}:{s.cls.__qualname__}" for n, s in spec.stages.items()}
        stages = {name: replace(s, cls=Stage) for name, s in spec.stages.items()}
        return cls(spec=replace(spec, stages=stages), classes=classes, **fields)


class _SetupError(Exception):
    """Why this lcore could not start, naming the stage when one is to blame."""

    def __init__(self, message: str, stage: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage


def _import_class(path: str, stage: str) -> type[Stage]:
    module_name, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception as exc:
        raise _SetupError(
            f"cannot import the class of stage {stage!r} ({path}): {type(exc).__name__}: {exc}",
            stage,
        ) from exc
    return found  # type: ignore[no-any-return]


def _resolve(job: LcoreJob) -> PipelineSpec:
    # Only the classes of this lcore's stages: the placement needs none.
    stages = {
        name: replace(s, cls=_import_class(job.classes[name], name)) if job.lcore in s.lcores else s
        for name, s in job.spec.stages.items()
    }
    return replace(job.spec, stages=stages)


def portable_error(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError with its text (and traceback)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        text = "".join(traceback.format_exception(exc))
        return RuntimeError(f"{type(exc).__name__}: {exc}\n{text}")
    return exc


def lcore_main(parent: Parent, job: LcoreJob) -> None:
    """The body of a worker lcore (see the module docstring)."""
    try:
        if job.cpu is not None:
            pin(job.cpu)
        spec = _resolve(job)
    except _SetupError as exc:
        parent.send(("failed", exc.stage, str(exc), portable_error(exc.__cause__ or exc)))
        raise SystemExit(1) from None
    except Exception as exc:
        parent.send(("failed", None, f"{type(exc).__name__}: {exc}", portable_error(exc)))
        raise SystemExit(1) from None
    run_event_loop(_serve(parent, job, spec))


def run_event_loop(main: Any) -> None:
    """Run a coroutine on a new event loop: uvloop's when installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


class _Attached:
    """This lcore's lcore id and mappings, released in reverse order."""

    def __init__(self, job: LcoreJob, plan: Placement) -> None:
        self.pools: dict[str, PktmbufPool] = {}
        self.rings: dict[int, Ring] = {}
        self.control: Control | None = None
        self.registered = False
        register_lcore()
        self.registered = True
        for name, shared in job.pools.items():
            pool = PktmbufPool.lookup(shared)
            assert isinstance(pool, PktmbufPool)  # lookup is typed as the base class's
            self.pools[name] = pool
        for link in plan.ring_links:
            if link.consumer_lcore == job.lcore or job.lcore in link.producer_lcores:
                self.rings[link.index] = Ring.lookup(link.ring_name(job.tag))
        self.control = Control.attach(job.control, plan)

    def close(self) -> None:
        release(self.rings, self.pools, self.control)
        if self.registered:
            unregister_lcore()  # flushes this lcore's mempool caches
            self.registered = False


async def _serve(parent: Parent, job: LcoreJob, spec: PipelineSpec) -> None:
    loop = asyncio.get_running_loop()
    plan = Placement(spec)
    attached: _Attached | None = None
    graph: LcoreGraph | None = None
    messages: asyncio.Queue[Any] = asyncio.Queue()

    def on_message() -> None:
        ended = False  # the main lcore's None ("exit"), or its end of the pipe closed
        try:
            while not ended and parent.poll():
                message = parent.receive()
                messages.put_nowait(message)
                ended = message is None
        except (EOFError, OSError):
            messages.put_nowait(None)
            ended = True
        if ended:  # nothing more will come: stop watching the pipe
            loop.remove_reader(parent.fileno())

    try:
        attached = _Attached(job, plan)
        assert attached.control is not None
        graph = LcoreGraph(plan, job.lcore, attached.pools, attached.rings, attached.control)
        await graph.start_stages()
    except BaseException as exc:
        stage = exc.stage if isinstance(exc, PipelineError) else None
        key = getattr(exc, "key", None)
        if stage is None and isinstance(key, str) and key.startswith("stages."):
            stage = key.split(".")[1]
        with contextlib.suppress(OSError):
            parent.send(("failed", stage, f"{type(exc).__name__}: {exc}", portable_error(exc)))
        if graph is not None:
            await graph.stop_stages()
            graph.walk.stop_sleeping()
        if attached is not None:
            attached.close()
        raise SystemExit(1) from None
    loop.add_reader(parent.fileno(), on_message)
    walk = graph.walk
    # The main lcore hears of a failure at once and stops every lcore.
    walk.on_failure = lambda error: _tell(parent, ("failure", _report(error)))
    try:
        parent.ready()
        message = await messages.get()
        if message == GO:
            publisher = loop.create_task(_publish_now_and_then(graph))
            walk_task = loop.create_task(walk.run(job.count))
            while not walk_task.done():
                getter = loop.create_task(messages.get())
                await asyncio.wait({walk_task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                message = getter.result()
                if message == STOP:
                    walk.request_stop()
                elif message == ABORT or message is None:
                    walk.abort()
            publisher.cancel()
            await walk_task
        stop_error = await graph.stop_stages()
        walk.publish()
        failure = walk.failure or stop_error
        _tell(parent, ("done", None if failure is None else _report(failure)))
        # Detach only when the main lcore has read the counters and says so
        # (None), unless it already did or is gone.
        with contextlib.suppress(asyncio.TimeoutError):
            while message is not None:
                message = await asyncio.wait_for(messages.get(), _CLOSE_WAIT_S)
    finally:
        loop.remove_reader(parent.fileno())
        if graph.started:
            await graph.stop_stages()
        walk.stop_sleeping()
        attached.close()


def _tell(parent: Parent, message: Any) -> None:
    """Send to the main lcore; if it is gone there is nobody to tell (we end anyway)."""
    with contextlib.suppress(OSError):
        parent.send(message)


def _report(failure: PipelineError) -> tuple[str | None, str, BaseException]:
    return failure.stage, str(failure), portable_error(failure.__cause__ or failure)


async def _publish_now_and_then(graph: LcoreGraph) -> None:
    while True:
        await asyncio.sleep(_PUBLISH_EVERY_S)
        graph.walk.publish()
