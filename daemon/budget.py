"""What one message may cost: a memory budget for the parse stage, shared by every source's worker threads, and
the watchdog's clock (`MessageClock`, issue 16).

Parsing a message costs about three times its size at the peak (the bytes decoded to a str, split into
lines, joined and base64-decoded; daemon/stages/parse.py, tests/test_parse_memory.py). Eight worker
threads each parsing a 20 MB message would need half a gigabyte, so parses run side by side only while
their estimated peaks fit the budget. A message whose estimate alone exceeds the budget
still runs, but on its own: nothing is ever refused for memory, it only waits.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

PARSE_FACTOR = 4  # peak bytes of a parse per byte of message (tracemalloc: 2.8x on a 19.8 MB message)


class MemoryBudget:
    """A weighted semaphore in bytes. `hold(n)` waits until n more bytes fit (or nothing else is held)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.used = 0
        self.peak = 0  # the largest sum held at once, for tests and metrics
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, weight: int) -> Iterator[None]:
        weight = max(0, weight)
        with self._cond:
            # Not FIFO: small parses may pass a waiting big one, but they take little of the budget,
            # so the big one goes as soon as the other big ones are done.
            self._cond.wait_for(lambda: self.used == 0 or self.used + weight <= self.capacity)
            self.used += weight
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= weight
                self._cond.notify_all()


class MessageClock:
    """The watchdog's clock for one message: wall-clock seconds spent in the stages, with the time spent waiting
    for clamd left out (a slow scanner is infrastructure, not the message's fault: it holds, never rejects).

    The stage thread pauses it around the scans and reads `cancelled` between stages; the worker that waits
    for the stages reads `left()` and gives up on the message when it reaches zero."""

    def __init__(self, budget_seconds: float) -> None:
        self.budget = budget_seconds
        self._start = time.monotonic()
        self._paused = 0.0
        self._pause_start: float | None = None
        self.stage = ""  # the stage running now, for the record's last_error
        self.cancelled = False

    def used(self) -> float:
        now = time.monotonic()
        pausing = now - self._pause_start if self._pause_start is not None else 0.0
        return now - self._start - self._paused - pausing

    def left(self) -> float:
        return self.budget - self.used()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self._pause_start = time.monotonic()
        try:
            yield
        finally:
            self._paused += time.monotonic() - self._pause_start
            self._pause_start = None
