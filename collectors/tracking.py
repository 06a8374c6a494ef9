"""`Monitor.track()`: a context manager and decorator that times a prediction and counts it.

The block's exception (if any) marks the prediction failed and propagates unchanged. A
`log_prediction` of the same Monitor inside the block is absorbed: it is counted once, by the
block, with the block's latency and error filled in.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, cast

__all__ = ["ACTIVE", "Finisher", "Tracking"]

F = TypeVar("F", bound=Callable[..., Any])

TrackedRecord = tuple[Any, ...]
"""`(prediction_id, timestamp, features, output, latency_s, error)` of an absorbed prediction."""


class Finisher(Protocol):
    """What a tracked block reports to when it ends (the Monitor)."""

    def _finish_tracked(
        self,
        elapsed: float,
        raised: bool,
        wall: float,
        record: TrackedRecord | None,
        absorbed: bool,
    ) -> None: ...

    def _reject_record(self, what: str, exc: Exception) -> None: ...


ACTIVE: contextvars.ContextVar[Tracking | None] = contextvars.ContextVar(
    "watchkeeper_tracking", default=None
)
"""The innermost tracked block of the current thread or task."""


class Tracking:
    """Context manager and decorator returned by `Monitor.track()`."""

    def __init__(self, monitor: Finisher) -> None:
        self._monitor = monitor
        self._start = 0.0
        self._wall = 0.0
        self._token: contextvars.Token[Tracking | None] | None = None
        self._absorbed = False
        self.record: TrackedRecord | None = None

    def absorb(self, monitor: object) -> bool:
        """Claim the first `log_prediction` of the same Monitor inside this block."""
        if monitor is not self._monitor or self._absorbed:
            return False
        self._absorbed = True
        return True

    def __enter__(self) -> Tracking:
        self._absorbed = False
        self.record = None
        self._wall = time.time()
        self._token = ACTIVE.set(self)
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        elapsed = time.perf_counter() - self._start
        try:
            if self._token is not None:
                ACTIVE.reset(self._token)
                self._token = None
            self._monitor._finish_tracked(
                elapsed, exc_type is not None, self._wall, self.record, self._absorbed
            )
        except Exception as err:
            self._monitor._reject_record("tracked prediction", err)
        return False

    def __call__(self, fn: F) -> F:
        monitor = self._monitor
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with Tracking(monitor):
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Tracking(monitor):
                return fn(*args, **kwargs)

        return cast(F, wrapper)
