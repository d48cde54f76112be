"""R3: the raw message as delivered may be at most rules.limits.max_message_bytes (20 MiB)."""

from __future__ import annotations

from daemon.model import TOO_LARGE, Work
from daemon.rules import Rules


def check_size(work: Work, rules: Rules) -> None:
    if work.size - work.arrival.trace_bytes > rules.max_message_bytes:
        work.add_reason(TOO_LARGE)
        work.done = True  # never scanned or opened: the size alone decides (R3)
