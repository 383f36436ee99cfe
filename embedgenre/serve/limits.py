"""Bounds on the work of requests: a cancel token per request, and a memory budget for decoding.

The :class:`Guard` gives every request a :class:`RequestWork`, reachable from any thread that
works for it through :func:`current_work` (a context variable: Starlette's worker threads copy
the request's context). It is cancelled when the request runs out of time or its client goes
away; decoding checks it between posters, and the micro-batchers drop the inputs of a cancelled
request before encoding a batch. :class:`DecodeBudget` bounds the bytes of pixels being decoded
at once across all requests, whatever the number of threads.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Cancelled(Exception):
    """The request this work was for timed out or its client went away."""


class RequestWork:
    """One request's cancel flag and the threads still working for it.

    ``on_late(seconds)`` is told, when the last worker of a request that was already answered
    finishes, how long it worked after the answer.
    """

    def __init__(self, on_late: Callable[[float], None] | None = None):
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._running = 0
        self.reason: str | None = None
        self.answered_at: float | None = None
        self._on_late = on_late

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, reason: str) -> None:
        if not self._cancelled.is_set():
            self.reason = reason
            self._cancelled.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the request was cancelled."""
        if self._cancelled.is_set():
            raise Cancelled(f"the request was cancelled ({self.reason})")

    def answered(self) -> None:
        if self.answered_at is None:
            self.answered_at = time.perf_counter()

    @contextmanager
    def running(self) -> Iterator[RequestWork]:
        """Count the calling thread as working for this request while inside."""
        with self._lock:
            self._running += 1
            self._idle.clear()
        try:
            yield self
        finally:
            with self._lock:
                self._running -= 1
                done = self._running == 0
                if done:
                    self._idle.set()
            if done and self.answered_at is not None and self._on_late is not None:
                self._on_late(time.perf_counter() - self.answered_at)

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Wait until the request is cancelled; False if ``timeout`` passed first."""
        return self._cancelled.wait(timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no thread works for this request; False if ``timeout`` passed first."""
        return self._idle.wait(timeout)


_CURRENT: contextvars.ContextVar[RequestWork | None] = contextvars.ContextVar(
    "embedgenre_request_work", default=None
)


def current_work() -> RequestWork | None:
    """The work of the request being served in this context (None outside a request)."""
    return _CURRENT.get()


def set_current_work(work: RequestWork | None) -> contextvars.Token:
    return _CURRENT.set(work)


def reset_current_work(token: contextvars.Token) -> None:
    _CURRENT.reset(token)


class DecodeBudget:
    """At most ``capacity`` bytes of decoded pixels held at once by all requests together.

    ``hold(n)`` waits until ``n`` more bytes fit (an image larger than the whole budget waits
    until it is alone), and gives up with :class:`Cancelled` if the request is cancelled
    meanwhile. ``in_use`` and ``peak`` are in bytes; ``waiting`` counts the threads waiting.
    """

    def __init__(self, capacity: int, on_change: Callable[[int], None] | None = None):
        if capacity < 1:
            raise ValueError("capacity must be at least 1 byte")
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self.waiting = 0
        self._cond = threading.Condition()
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.in_use)

    def acquire(self, n: int, work: RequestWork | None = None) -> None:
        with self._cond:
            self.waiting += 1
            try:
                while self.in_use and self.in_use + n > self.capacity:
                    if work is not None:
                        work.check()
                    # woken by a release; a cancel is noticed within this interval
                    self._cond.wait(0.05)
                if work is not None:
                    work.check()
            finally:
                self.waiting -= 1
            self.in_use += n
            self.peak = max(self.peak, self.in_use)
            self._changed()

    def release(self, n: int) -> None:
        with self._cond:
            self.in_use -= n
            self._changed()
            self._cond.notify_all()

    @contextmanager
    def hold(self, n: int, work: RequestWork | None = None) -> Iterator[None]:
        self.acquire(n, work)
        try:
            yield
        finally:
            self.release(n)
