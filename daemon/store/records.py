"""Records: find the prior record of an arrival, write the outcome durably, and render the JSON contract.

`commit_outcome` is the one place where "raw bytes durable before the record, record committed
before the acknowledgement" is spelled out: the caller acknowledges (IMAP move, SMTP 250) only after
it returns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from daemon.jst import iso as jst_iso
from daemon.model import ACCEPTED, DUPLICATE, HELD, QUARANTINED, REJECTED, Arrival, Known, Work
from daemon.store.db import Attachment, CommentKey, Event, Message, now_utc
from daemon.store.outbox import Draft, add_alert
from daemon.store.raw import RawStore


def lookup(session: Session, arrival: Arrival, content_id: str | None, existing_id: int | None) -> Known:
    """What the database knows of this arrival before the stages run, in one read: the record it continues
    (a retry, or a held record of the same IMAP copy or the same content) and the first record of the same
    content (which makes this arrival a duplicate)."""
    existing = session.get(Message, existing_id) if existing_id is not None else None
    if existing is None:
        existing = find_by_source_key(session, arrival.imap)
        if existing is not None and existing.status != HELD:
            # This arrival is already recorded and settled: processing it again is a no-op (idempotent).
            return Known(settled=True, record_id=existing.id, status=existing.status,
                         reasons=tuple(existing.reasons or ()))
    first = find_first_by_content(session, content_id) if (existing is None and content_id) else None
    if first is not None and first.status == HELD:
        existing, first = first, None  # the same content, still held: retry that record
    if existing is None:
        return Known(first_id=first.id if first else None, first_status=first.status if first else None,
                     first_virus=first.virus if first else None)
    # A retry keeps the original arrival's time and window flags: it is not a new arrival.
    return Known(record_id=existing.id, attempts=existing.attempts, received_at=existing.received_at,
                 received_source=existing.received_source,
                 flags=tuple(f for f in existing.flags if f in ("early", "late", "received_at_uncertain")))


def arrival_from_record(msg: Message, raw: bytes) -> Arrival:
    """The arrival a record was made from, rebuilt with its stored raw bytes (retry, release, rescan)."""
    return Arrival(
        raw=raw,
        source=msg.source,
        received_at=msg.received_at,
        received_source=msg.received_source,
        imap=({"account": msg.imap_account, "mailbox": msg.imap_mailbox,
               "uidvalidity": msg.imap_uidvalidity, "uid": msg.imap_uid}
              if msg.imap_uid is not None else None),
    )


def find_by_source_key(session: Session, arrival_imap: dict[str, Any] | None) -> Message | None:
    if not arrival_imap:
        return None
    return session.scalars(
        select(Message).where(
            Message.imap_account == arrival_imap["account"],
            Message.imap_mailbox == arrival_imap["mailbox"],
            Message.imap_uidvalidity == arrival_imap["uidvalidity"],
            Message.imap_uid == arrival_imap["uid"],
        )
    ).first()


def find_first_by_content(session: Session, content_id: str) -> Message | None:
    """The first record of this content that is not itself a duplicate."""
    return session.scalars(
        select(Message)
        .where(Message.content_id == content_id, Message.status != DUPLICATE)
        .order_by(Message.id)
        .limit(1)
    ).first()


def find_duplicate_text(session: Session, keys: list[str], exclude_id: int | None) -> int | None:
    """The first other record holding a comment item with the same normalized text.

    One query per key, each an index probe on (key, message_pk). `key IN (…) ORDER BY message_pk LIMIT 1`
    let PostgreSQL walk message_pk and filter every row: a cost growing with the records (BENCHMARKS.md)."""
    found: list[int] = []
    for key in dict.fromkeys(keys):
        query = select(CommentKey.message_pk).where(CommentKey.key == key)
        if exclude_id is not None:
            query = query.where(CommentKey.message_pk != exclude_id)
        first = session.scalars(query.order_by(CommentKey.message_pk).limit(1)).first()
        if first is not None:
            found.append(first)
    return min(found, default=None)


def commit_outcome(
    sessions: sessionmaker[Session],
    raw_store: RawStore,
    work: Work,
    status: str,
    existing_id: int | None,
    action: str,
    duplicate_of: int | None = None,
    attempts: int | None = None,
    last_error: str | None = None,
    quarantine_raw: bool = False,
    alert: Draft | None = None,
) -> int:
    """Store the raw bytes (fsync'd), then insert or update the record, its event and its alert (decided by
    the caller) in one transaction."""
    quarantined = status == QUARANTINED or quarantine_raw
    raw_area: str | None = None
    written: Path | None = None  # a raw file this attempt created (not one an earlier record owns)
    if work.sha256 is not None:
        existed = raw_store.locate(work.sha256) is not None
        _digest, path = raw_store.put(work.arrival.raw, quarantined=quarantined)
        written = None if existed else path
        raw_area = "quarantine" if quarantined else "raw"
    try:
        record_id = _write_record(sessions, work, status, existing_id, action, duplicate_of, attempts, last_error,
                                  raw_area, alert)
    except BaseException:
        if written is not None and work.sha256 is not None:
            _discard_orphan(sessions, written, work.sha256)
        raise
    # A record that was held with its bytes in raw/ and is now quarantined: move the evidence apart.
    if quarantined and work.sha256 is not None:
        raw_store.move(work.sha256, quarantined=True)
    return record_id


def _discard_orphan(sessions: sessionmaker[Session], path: Path, sha256: str) -> None:
    """The transaction failed after this attempt wrote the raw file (issue 16.7): remove the file unless some
    record uses that SHA-256 (another daemon may have committed the same bytes meanwhile). When the database
    cannot even be asked, the file stays: an orphan is swept later, lost evidence is never recovered."""
    try:
        with sessions() as session:
            used = session.scalars(select(Message.id).where(Message.sha256 == sha256).limit(1)).first()
    except Exception:
        return
    if used is None:
        with contextlib.suppress(OSError):
            path.unlink()


def _write_record(sessions: sessionmaker[Session], work: Work, status: str, existing_id: int | None, action: str,
                  duplicate_of: int | None, attempts: int | None, last_error: str | None, raw_area: str | None,
                  alert: Draft | None) -> int:
    """The record, its attachments, comment keys, event and alert: one transaction."""
    with sessions.begin() as session:
        if existing_id is not None:
            msg = session.get(Message, existing_id, options=[selectinload(Message.attachments)])
            if msg is None:
                raise LookupError(f"record {existing_id} vanished")
            msg.attachments.clear()
            session.flush()
        else:
            msg = Message(source=work.arrival.source, attempts=0)
            session.add(msg)
        imap = work.arrival.imap or {}
        msg.status = status
        msg.duplicate_of = duplicate_of
        msg.duplicate_text_of = work.duplicate_text_of
        msg.reasons = list(work.reasons)
        msg.flags = list(work.flags)
        assert work.received_at is not None
        msg.received_at = work.received_at
        msg.received_source = work.received_source or "unknown"
        msg.size = work.size
        msg.sha256 = work.sha256
        msg.content_id = work.content_id
        msg.message_id = work.message_id
        msg.virus = work.virus
        msg.raw_area = raw_area
        msg.from_address = work.from_address
        msg.subject = work.subject
        msg.defects = list(work.defects)
        msg.result = {**work.result, "date": work.date_header} if work.date_header else dict(work.result)
        if imap:
            msg.imap_account = imap.get("account")
            msg.imap_mailbox = imap.get("mailbox")
            msg.imap_uidvalidity = imap.get("uidvalidity")
            msg.imap_uid = imap.get("uid")
        if attempts is not None:
            msg.attempts = attempts
        msg.last_error = last_error
        msg.lease_owner = None
        msg.lease_until = None
        if status != DUPLICATE:
            for part in work.attachments:
                msg.attachments.append(
                    Attachment(
                        position=part.position, filename=part.filename, size=len(part.data), sha256=part.sha256,
                        kind=part.kind, format=part.format, mime=part.mime, declared_mime=part.declared_mime,
                        verdict=part.verdict, signature=part.signature, detail=part.detail,
                    )
                )
        session.flush()
        session.execute(delete(CommentKey).where(CommentKey.message_pk == msg.id))
        if status in (ACCEPTED, REJECTED, HELD):
            session.add_all(CommentKey(message_pk=msg.id, key=k) for k in work.comment_keys)
        if alert is not None:  # rejected / quarantined: the alert commits with the record
            add_alert(session, alert.for_record(msg.id))
        session.add(Event(message_pk=msg.id, at=now_utc(), action=action, status=status,
                          reasons=list(work.reasons), actor="intake", note=last_error))
        record_id: int = msg.id
    return record_id


def load(session: Session, record_id: int) -> Message | None:
    return session.get(
        Message, record_id, options=[selectinload(Message.attachments), selectinload(Message.events)]
    )


def jst(value: dt.datetime | None) -> str | None:
    return jst_iso(value)


def to_contract(msg: Message) -> dict[str, Any]:
    """The stable JSON record contract (README, 'The JSON record contract')."""
    result = msg.result or {}
    return {
        "id": msg.id,
        "status": msg.status,
        "duplicate_of": msg.duplicate_of,
        "reasons": list(msg.reasons or []),
        "flags": list(msg.flags or []),
        "received_at": jst(msg.received_at),
        "size": msg.size,
        "sha256": msg.sha256,
        "message_id": msg.message_id,
        "subject": msg.subject,
        "from": msg.from_address,
        "virus": msg.virus,
        "attachments": [
            {
                "filename": a.filename,
                "size": a.size,
                "kind": a.kind,
                "mime": a.mime,
                "verdict": a.verdict,
                "signature": a.signature,
            }
            for a in msg.attachments
        ],
        "comments": result.get("comments", []),
        "submitter": result.get("submitter", {}),
        "texts": result.get("texts", []),
        "duplicate_text_of": msg.duplicate_text_of,
    }

