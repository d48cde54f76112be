"""Where the IMAP watcher stands, for the service's systemd STATUS= line, `intake status` and the health row.

The watcher writes it, the service reads it; `changed` wakes the service's health loop at once instead of at
its next tick.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field


@dataclass
class Progress:
    """What the service shows in STATUS= and `intake status`."""

    state: str = "starting"
    status_line: str = "starting"
    connected: bool = False
    ready: bool = False
    last_poll_at: dt.datetime | None = None
    backlog: int | None = None
    held_in_mailbox: int = 0
    in_flight: int = 0
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    # Why the mailbox is down, for the mailbox_down alert: "auth_failed" (a refused login or token, no token
    # to be had) or "unreachable"; None while connected.
    problem: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, state: str, line: str) -> None:
        self.state, self.status_line = state, line
        self.changed.set()

    def error(self, text: str) -> None:
        self.last_error, self.last_error_at = text, dt.datetime.now(dt.UTC)
        self.changed.set()
