"""A memory budget for the parse stage, shared by every source's worker threads.

Parsing a message costs about three times its size at the peak (the bytes decoded to a str, split into
lines, joined and base64-decoded; daemon/stages/parse.py, tests/test_parse_memory.py). Eight worker
threads each parsing a 20 MB message would need half a gigabyte, so parses run side by side only while
their estimated peaks fit the budget. A message whose estimate alone exceeds the budget
still runs, but on its own: nothing is ever refused for memory, it only waits.
"""

from __future__ import annotations

import contextlib
import threading
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
