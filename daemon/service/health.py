"""The service's health row (`service_health`, read by `intake status`) and the age of clamd's signatures."""

from __future__ import annotations

import datetime as dt
from typing import Any

from daemon.sources.imap import Progress
from daemon.store.db import ServiceHealth, now_utc


def write_health(sessions: Any, owner: str, progress: Progress, mailbox: str | None,
                 clamd: tuple[bool | None, str | None]) -> None:
    host, pid = owner.split(":")[0], int(owner.split(":")[1])
    with sessions.begin() as session:
        row = session.get(ServiceHealth, owner)
        if row is None:
            row = ServiceHealth(owner=owner, host=host, pid=pid, started_at=now_utc(), in_flight=0, state="starting")
            session.add(row)
        row.updated_at = now_utc()
        row.state = progress.state
        row.status_line = progress.status_line
        row.mailbox = mailbox
        row.last_poll_at = progress.last_poll_at
        row.backlog = progress.backlog
        row.in_flight = progress.in_flight
        row.last_error = progress.last_error
        row.last_error_at = progress.last_error_at
        if clamd[0] is not None:
            row.clamd_ok, row.clamd_version = clamd


def signature_age(version: str | None, now: dt.datetime | None = None) -> dt.timedelta | None:
    """'ClamAV 1.4.6/27000/Tue Nov 24 09:20:00 2026' → how old the signatures are."""
    if not version or version.count("/") < 2:
        return None
    stamp = version.rsplit("/", 1)[1].strip()
    try:
        when = dt.datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return (now or dt.datetime.now(dt.UTC)) - when
