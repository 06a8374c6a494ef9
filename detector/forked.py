"""Work handed to a forked child process, its result sent back pickled through a pipe.

`watchkeeper replay` is CPU-bound Python and numpy on a batch of a million rows or more that
is already in memory. A forked child sees that memory without copying it (pages are shared
until written), so handing it a part of the work costs a fork and a pickle of the result,
not a copy of the data, and uses a second core where threads would wait on the GIL. Only on
Linux: on macOS and Windows forking a process that has threads (Arrow's, BLAS's) is not safe.

`Forked(make)` starts the child at once; `result()` waits for it and gives `make()`'s value,
or raises `ForkFailed` if the child failed (its traceback is on stderr), so that the caller
can do the work itself.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Generic, NoReturn, TypeVar

__all__ = ["ForkFailed", "Forked", "can_fork", "cpus"]

_T = TypeVar("_T")


class ForkFailed(RuntimeError):
    """The child raised, was killed or sent nothing back."""


def can_fork() -> bool:
    """Whether work may be handed to forked children here (Linux only, see the module doc)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def cpus(limit: int = 4) -> int:
    """The CPUs this process may run on, at most `limit`."""
    try:
        return max(1, min(limit, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on Linux
        return 1


class Forked(Generic[_T]):
    """`make()` computed in a forked child. The caller must hold no lock another thread
    may be using (join its threads first): the child has only the forking thread."""

    def __init__(self, make: Callable[[], _T]) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # else the child's copy of a buffer could be written twice
        self._pid: int | None = None
        self._read_end = -1
        try:
            read_end, write_end = os.pipe()
        except OSError:
            return  # `result` raises ForkFailed: the caller does the work itself
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:
            os.close(read_end)
            _child(make, write_end)
        os.close(write_end)
        self._pid = pid
        self._read_end = read_end

    def result(self) -> _T:
        """Wait for the child's value; `ForkFailed` if it sent none."""
        pid = self._pid
        if pid is None:
            raise ForkFailed("no forked worker (the fork failed, was cancelled or was used)")
        self._pid = None
        with os.fdopen(self._read_end, "rb") as pipe:
            data = pipe.read()
        try:
            value: _T = pickle.loads(data)
        except Exception:
            _, status = os.waitpid(pid, 0)
            raise ForkFailed(f"forked worker failed (wait status {status})") from None
        # The child closed the pipe after writing, just before exiting; tearing down its
        # mappings of the parent's memory takes a while, which need not be waited for.
        _reap(pid)
        return value

    def cancel(self) -> None:
        """Stop the child if it is still running and reap it."""
        if self._pid is None:
            return
        os.close(self._read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)
        self._pid = None


_exiting: list[int] = []
"""Children whose value was received but which had not exited yet."""


def _reap(pid: int) -> None:
    """Reap `pid` if it has exited, and any earlier child that has since; the rest are
    reaped on a later call or, at the latest, by init once this process ends."""
    _exiting.append(pid)
    for waiting in list(_exiting):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(waiting, os.WNOHANG)[0] == 0:
                continue
        _exiting.remove(waiting)


def _child(make: Callable[[], object], write_end: int) -> NoReturn:
    """In the child: compute, send, and leave without running the parent's exit handlers
    or flushing its inherited buffers (`os._exit`)."""
    status = 1
    try:
        gc.disable()  # a collection would write to the parent's objects: pages stay shared
        data = pickle.dumps(make(), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)
