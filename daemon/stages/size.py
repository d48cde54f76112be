"""R3: the raw message as delivered may be at most rules.limits.max_message_bytes (20 MiB).

The one place the size rule is decided. The pipeline runs `check_size` on every arrival; the sources ask
`too_large` before they fetch (IMAP: RFC822.SIZE) or while they receive (LMTP: SIZE= at MAIL FROM, the
bytes of DATA), and announce `size_limit` (the LMTP SIZE extension), so that they never compute the rule
themselves.
"""

from __future__ import annotations

from daemon.model import TOO_LARGE, Work
from daemon.rules import Rules


def size_limit(rules: Rules) -> int:
    """The largest lawful message in bytes."""
    return rules.max_message_bytes


def too_large(size: int, rules: Rules, trace_bytes: int = 0) -> bool:
    """Is a message of `size` bytes over the limit? `trace_bytes`: what the intake itself put on top (its
    own Received: field), which is not part of the message as delivered."""
    return size - trace_bytes > rules.max_message_bytes


def check_size(work: Work, rules: Rules) -> None:
    if too_large(work.size, rules, work.arrival.trace_bytes):
        work.add_reason(TOO_LARGE)
        work.done = True  # never scanned or opened: the size alone decides (R3)
