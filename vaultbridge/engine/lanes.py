"""Ordered background work on shared threads: what each rotation's journal runs beside it.

A rotation's status writes must land in order, and so must its Vault label writes; neither may
wait for the other. Creating two threads and a timer per rotation cost more than the writes'
own CPU in a busy process, so every rotation shares one pool (``Lane``: one ordered queue on
it) and one timer thread (``Timers``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class Lane:
    """Runs submitted calls one at a time, in submission order, on a shared pool."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._running = False

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self._queue.append((future, call))
            if self._running:
                return future
            self._running = True
        self._pool.submit(self._drain)
        return future

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                future, call = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # delivered to whoever waits on the future
                future.set_exception(exc)


class Timer:
    """A call scheduled on :class:`Timers`; ``cancel`` before it is due skips it."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """One daemon thread that runs short calls when they fall due."""

    def __init__(self, name: str = "vaultbridge-timers") -> None:
        self._name = name
        self._wake = threading.Condition()
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, call: Callable[[], Any]) -> Timer:
        timer = Timer(call)
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return timer

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _due, _order, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                try:
                    timer.call()
                except Exception:
                    log.exception("timer call %r failed", timer.call)
