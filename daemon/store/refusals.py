"""Door refusals: messages refused at the LMTP/SMTP door (552, over the size limit) and never stored.

No record exists for such a message, so the count lives in its own table, `door_refusals` (time, size,
source, stage; no personal data), which `intake stats` and the metrics read. The row and the alert that
reports it (decided by the pipeline, `Intake.refuse_at_door`) commit together.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from daemon.model import TOO_LARGE
from daemon.store.db import DoorRefusal
from daemon.store.outbox import Draft, add_alert


def add_refusal(sessions: sessionmaker[Session], when: dt.datetime, size: int, source: str, stage: str,
                alert: Draft) -> None:
    """Append one row to `door_refusals` and its alert, in one transaction."""
    with sessions.begin() as session:
        session.add(DoorRefusal(at=when, size=size, source=source, reason=TOO_LARGE, stage=stage))
        add_alert(session, alert, when)


def door_refusal_count(session: Session, since: dt.datetime | None = None, until: dt.datetime | None = None) -> int:
    """How many messages were refused at the door (552) in [since, until); for `intake stats`."""
    query = select(func.count()).select_from(DoorRefusal)
    if since is not None:
        query = query.where(DoorRefusal.at >= since)
    if until is not None:
        query = query.where(DoorRefusal.at < until)
    return int(session.scalar(query) or 0)
