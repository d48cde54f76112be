"""The outbox: alerts are rows, written in the same transaction as the change that caused them.

The pipeline decides a record's alert (`events.alert_for_status`) and hands it to `records.commit_outcome`,
which writes it in the record's own transaction (daemon/store/outbox.py), so a rejected or quarantined
record and its alert commit together or not at all. The sender (daemon/alerts/sender.py)
reads the rows back, fans each out to its channels and marks each delivery sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon.alerts import events
from daemon.alerts.events import AlertDraft
from daemon.store.db import Alert, AlertDelivery, Message
from daemon.store.outbox import add_alert

ALERTING_STATUSES = events.ALERTING_STATUSES


def enqueue(session: Session, draft: AlertDraft, when: dt.datetime | None = None) -> Alert:
    """Add one alert to the outbox in the caller's transaction."""
    return add_alert(session, draft, when)


def enqueue_for_record(session: Session, msg: Message, attachments: Any) -> Alert | None:
    """The alert for a record's new status (rejected, quarantined), in the transaction that sets it.
    `msg` must have its id (flushed). Reads only ids, times, sizes, codes and detected kinds."""
    draft = events.alert_for_status(msg.status, msg.received_at, msg.size, list(msg.reasons or []), msg.virus,
                                    attachments or [], msg.source, record_id=msg.id)
    return enqueue(session, draft) if draft is not None else None


def enqueue_door_refusal(
    session_or_sessions: Session | sessionmaker[Session], size: int, when: dt.datetime, source: str = "lmtp",
    limit: int | None = None,
) -> None:
    """A `rejected` alert for a 552 at the LMTP/SMTP door (no record exists). Given a Session, it joins
    that transaction (e.g. the one adding the door_refusals row); given a sessionmaker, it commits its own."""
    draft = events.door_refusal_draft(size, when, source, limit)
    if isinstance(session_or_sessions, Session):
        enqueue(session_or_sessions, draft, when)
        return
    with session_or_sessions.begin() as session:
        enqueue(session, draft, when)


def enqueue_once(sessions: sessionmaker[Session], draft: AlertDraft, when: dt.datetime | None = None) -> bool:
    """Commit one alert in its own transaction; with a dedup_key, at most one such alert ever exists
    (two daemons racing: the unique key decides). True when this call added it."""
    if draft.dedup_key is not None:
        with sessions() as session:
            if session.scalar(select(Alert.id).where(Alert.dedup_key == draft.dedup_key)) is not None:
                return False
    try:
        with sessions.begin() as session:
            enqueue(session, draft, when)
    except IntegrityError:
        if draft.dedup_key is None:
            raise
        return False
    return True


def list_outbox(session: Session, state: str | None = None, category: str | None = None,
                limit: int = 50) -> list[dict[str, Any]]:
    """The newest alerts with each channel's delivery state, for `intake alerts list`."""
    query = select(Alert).order_by(Alert.id.desc())
    if category:
        query = query.where(Alert.category == category)
    if state == "pending":
        query = query.where(
            (Alert.routed.is_(False))
            | Alert.id.in_(select(AlertDelivery.alert_id).where(AlertDelivery.state == "pending"))
        )
    elif state == "sent":
        query = query.where(
            Alert.routed.is_(True),
            ~Alert.id.in_(select(AlertDelivery.alert_id).where(AlertDelivery.state == "pending")),
        )
    if limit:
        query = query.limit(limit)
    rows = []
    for alert in session.scalars(query):
        rows.append({
            "id": alert.id,
            "created_at": events.jst_iso(alert.created_at),
            "category": alert.category,
            "kind": alert.kind,
            "record": alert.record_id,
            "routed": alert.routed,
            "deliveries": [
                {"channel": d.channel, "state": d.state, "batch": d.batch, "mode": d.mode, "attempts": d.attempts,
                 "next_attempt_at": events.jst_iso(d.next_attempt_at), "sent_at": events.jst_iso(d.sent_at),
                 "last_error": d.last_error}
                for d in alert.deliveries
            ],
        })
    return rows
