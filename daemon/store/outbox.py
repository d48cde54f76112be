"""Alert rows, written by the store in the caller's transaction.

The store never decides which alert a change raises (that is `daemon.alerts.events`, called by the pipeline
and the staff operations); it only writes the draft it is handed beside the change that caused it, so both
commit together or not at all. A draft is any object with `category`, `kind`, `payload`, `record_id` and
`dedup_key` (daemon.alerts.events.AlertDraft); the store imports nothing from daemon.alerts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from sqlalchemy.orm import Session

from daemon.store.db import Alert


class Draft(Protocol):
    category: str
    kind: str
    payload: dict[str, Any]
    record_id: int | None
    dedup_key: str | None

    def for_record(self, record_id: int) -> Draft: ...


def add_alert(session: Session, draft: Draft, when: dt.datetime | None = None) -> Alert:
    """Add one alert to the outbox in the caller's transaction."""
    alert = Alert(category=draft.category, kind=draft.kind, record_id=draft.record_id,
                  created_at=when or dt.datetime.now(dt.UTC), payload=dict(draft.payload),
                  dedup_key=draft.dedup_key, routed=False)
    session.add(alert)
    return alert
