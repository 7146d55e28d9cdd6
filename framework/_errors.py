"""The exception hierarchy: one root, each class also the builtin users expect."""

from __future__ import annotations


class PktflowError(Exception):
    """Root of every error pktflow raises on purpose."""


class PktflowValueError(PktflowError, ValueError):
    """An argument has the right type but a wrong value (size, count, name)."""


class PktflowTypeError(PktflowError, TypeError):
    """An argument has the wrong type (e.g. an array that is not uint32)."""


class RingError(PktflowError):
    """A ring was misused or is inconsistent."""


class RingStalledError(RingError):
    """A transfer on a shared ring could not publish: a live process holds the way, or
    the ring was aborted. The handles have moved; publishing them is pending, and
    ``ring.complete(err.code)`` finishes it.
    """

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class MempoolError(PktflowError):
    """A mempool was misused: double put, a handle from another pool."""


class MbufError(PktflowError):
    """An mbuf operation was misused: chaining into itself, too many segments."""


class ConfigError(PktflowError, ValueError):
    """A pipeline definition is wrong; names the file, line and key.

    The message reads ``file:line: key: what is wrong``, each part present
    when known.

    Usage: ``raise ConfigError("unknown stage type 'foo'", file=p, line=3, key="stages.a.type")``
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.file, self.line, self.key, self.reason = file, line, key, message
        where = f"{file}:{line}" if file and line else (file or (f"line {line}" if line else ""))
        parts = [where, key, message]
        super().__init__(": ".join(part for part in parts if part))


class PipelineError(PktflowError):
    """A pipeline failed while running: a stage raised, or a worker died.

    Names the stage and its lcore; the original exception is chained.

    Usage: ``except pktflow.PipelineError as exc: print(exc.stage, exc.__cause__)``
    """

    def __init__(self, message: str, *, stage: str | None = None, lcore: int | None = None):
        self.stage, self.lcore = stage, lcore
        super().__init__(message)


class BackendError(PktflowError):
    """A backend is unknown or unavailable here (numba missing, no huge pages)."""


class ClosedError(PktflowError, ValueError):
    """The object was closed; like I/O on a closed file, a ValueError."""


class NotFoundError(PktflowError, LookupError):
    """No shared object of that name exists (or it was unlinked)."""


class ExistsError(PktflowError, FileExistsError):
    """An object of that name already exists."""
