"""Staff decisions on one record: release, reject, retry, rescan. Each writes an `Event` with who (`--by`),
when and why (`--note`). No decision deletes the raw mail; rescan moves an infected one into quarantine.

- release: a rejected message is accepted after review. Attachments refused only for their type (not allowed,
  name/content mismatch, macros) whose content is a format we read are extracted now, and the comment is read
  again; anything else (a PDF) is accepted as it stands, the note saying what staff agreed. The record keeps its
  reasons (what was found stays true) and gets the flag `released`.
- reject: e.g. spam; reason `staff_rejected` is added.
- retry: the pipeline runs again on the stored raw mail (`Intake.retry`), for held (or rejected) records.
- rescan: stored accepted mail is scanned again with today's signatures; a message now found infected becomes
  `quarantined` (reason `virus`, the signature), its raw mail moves to the quarantine area, and the event and
  the alert are written in one transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from daemon.alerts.outbox import enqueue_for_record
from daemon.logs import get_logger
from daemon.model import ACCEPTED, DUPLICATE, HELD, QUARANTINED, REJECTED, VIRUS, Arrival, Work
from daemon.pipeline import Intake
from daemon.scanner import ScanUnavailable, for_one_message
from daemon.stages.comment import comment_stage
from daemon.stages.parse import parse_message
from daemon.stages.scan_policy import finding_reason
from daemon.stages.texts import extract_texts
from daemon.stages.verdicts import classify_attachments
from daemon.store import records
from daemon.store.db import CommentKey, Event, Message, now_utc
from daemon.store.raw import RawStoreError

log = get_logger("staff")

RELEASED = "released"  # flag: accepted by staff after a rejection
STAFF_REJECTED = "staff_rejected"  # reason: rejected by staff (spam …)
# Verdicts given for the type only: after review the file may be read, when it is a format we read.
_TYPE_VERDICTS = {"not_allowed", "type_mismatch", "macro"}
_KEEP_FLAGS = ("early", "late", "received_at_uncertain")


class DecisionError(Exception):
    """The decision cannot be made on this record; str() is one line for the user."""


@dataclass
class Outcome:
    record_id: int
    before: str
    after: str
    detail: str = ""
    extracted: list[str] = field(default_factory=list)


def _need(by: str, note: str) -> None:
    if not by or not by.strip():
        raise DecisionError("--by: say who decides")
    if not note or not note.strip():
        raise DecisionError("--note: say why (it goes into the record's event log)")


def _event(session: Session, msg: Message, action: str, by: str, note: str) -> None:
    session.add(Event(message_pk=msg.id, at=now_utc(), action=action, status=msg.status,
                      reasons=list(msg.reasons or []), actor=by, note=note))


def _load(session: Session, record_id: int) -> Message:
    msg = session.get(Message, record_id, options=[selectinload(Message.attachments)], with_for_update=True)
    if msg is None:
        raise DecisionError(f"no record {record_id}")
    return msg


# -- release ---------------------------------------------------------------------------------------
def _reread(intake: Intake, msg: Message) -> tuple[Work | None, list[str], str]:
    """Read the stored mail again with the type-only refusals lifted. (work, extracted names, why-not)."""
    if msg.sha256 is None or msg.raw_area not in ("raw", "quarantine"):
        return None, [], "no stored raw mail"
    raw = intake.raw_store.get(msg.sha256)
    work = Work(arrival=records.arrival_from_record(msg, raw), sha256=msg.sha256, content_id=msg.content_id,
                size=len(raw))
    work.received_at = msg.received_at
    parse_message(work)
    if work.done:
        return None, [], "not readable as a mail"
    classify_attachments(work, intake.rules, intake.limits)
    lifted: list[str] = []
    others: list[str] = []
    for part in work.attachments:
        if part.verdict in _TYPE_VERDICTS and part.kind in intake.rules.allowed_kinds:
            part.verdict = "allowed"
            lifted.append(part.filename or f"attachment-{part.position}")
        elif part.verdict != "allowed":
            others.append(part.mime)
    extract_texts(work)
    comment_stage(work, intake.rules.comment)
    failed = {t["source"] for t in work.result.get("texts", []) if t.get("error")}
    extracted = [n for n in lifted if n not in failed]
    why = "" if not others else "not a format we read: " + ", ".join(sorted(set(others)))
    return work, extracted, why


def release(intake: Intake, record_id: int, by: str, note: str) -> Outcome:
    _need(by, note)
    with intake.sessions() as session:
        msg = session.get(Message, record_id)
        if msg is None:
            raise DecisionError(f"no record {record_id}")
        if msg.status != REJECTED:
            raise DecisionError(f"record {record_id} is {msg.status}: only a rejected record can be released")
        session.expunge(msg)
    try:
        work, extracted, why = _reread(intake, msg)
    except RawStoreError as exc:
        raise DecisionError(str(exc)) from None
    except Exception as exc:  # a stage crashed on this content again: accept as it stands
        work, extracted, why = None, [], f"re-reading failed ({exc.__class__.__name__})"
    with intake.sessions.begin() as session:
        msg = _load(session, record_id)
        if msg.status != REJECTED:
            raise DecisionError(f"record {record_id} is {msg.status}: only a rejected record can be released")
        before = msg.status
        flags = [f for f in msg.flags or [] if f != RELEASED]
        if work is not None and extracted:
            result = dict(work.result)
            msg.result = result
            keys = work.comment_keys
            flags = [f for f in flags if f in _KEEP_FLAGS] + [f for f in work.flags if f not in _KEEP_FLAGS]
            session.execute(delete(CommentKey).where(CommentKey.message_pk == msg.id))
            session.add_all(CommentKey(message_pk=msg.id, key=k) for k in keys)
            session.flush()
            msg.duplicate_text_of = records.find_duplicate_text(session, keys, msg.id) if keys else None
            flags = [f for f in flags if f != "duplicate_text"]
            if msg.duplicate_text_of is not None:
                flags.append("duplicate_text")
        msg.status = ACCEPTED
        msg.flags = [*flags, RELEASED]
        _event(session, msg, "release", by, note)
    log.info("staff_decision", action="release", record=record_id, status=ACCEPTED, count=len(extracted))
    detail = (f"text extracted from {len(extracted)} attachment(s)" if extracted
              else "accepted as it stands" + (f" ({why})" if why else ""))
    return Outcome(record_id, before, ACCEPTED, detail, extracted)


# -- reject ----------------------------------------------------------------------------------------
def reject(intake: Intake, record_id: int, by: str, note: str) -> Outcome:
    _need(by, note)
    with intake.sessions.begin() as session:
        msg = _load(session, record_id)
        if msg.status in (QUARANTINED, DUPLICATE):
            raise DecisionError(f"record {record_id} is {msg.status}: it cannot be rejected")
        before = msg.status
        msg.status = REJECTED
        msg.reasons = [*[r for r in msg.reasons or [] if r != STAFF_REJECTED], STAFF_REJECTED]
        msg.flags = [f for f in msg.flags or [] if f != RELEASED]
        _event(session, msg, "reject", by, note)
    log.info("staff_decision", action="reject", record=record_id, status=REJECTED)
    return Outcome(record_id, before, REJECTED)


# -- retry -----------------------------------------------------------------------------------------
def retry(intake: Intake, record_id: int, by: str, note: str) -> Outcome:
    """Run the pipeline again on a held (or rejected) record now. The pipeline writes its own `retry` event
    (actor intake); this adds the staff's, with the outcome."""
    _need(by, note)
    with intake.sessions() as session:
        msg = session.get(Message, record_id)
        if msg is None:
            raise DecisionError(f"no record {record_id}")
        if msg.status not in (HELD, REJECTED):
            raise DecisionError(f"record {record_id} is {msg.status}: only held or rejected records are retried")
        before = msg.status
    try:
        intake.retry(record_id)
    except LookupError as exc:
        raise DecisionError(str(exc)) from None
    with intake.sessions.begin() as session:
        msg = _load(session, record_id)
        _event(session, msg, "retry", by, note)
        after = msg.status
        reasons = list(msg.reasons or [])
    log.info("staff_decision", action="retry", record=record_id, status=after, reasons=reasons)
    return Outcome(record_id, before, after, ", ".join(reasons))


def held_ids(intake: Intake) -> list[int]:
    with intake.sessions() as session:
        return list(session.scalars(select(Message.id).where(Message.status == HELD).order_by(Message.id)))


# -- rescan ----------------------------------------------------------------------------------------
@dataclass
class RescanReport:
    scanned: int = 0
    clean: int = 0
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (record id, signature)
    findings: list[tuple[int, str]] = field(default_factory=list)  # non-virus findings, left for staff
    missing: list[int] = field(default_factory=list)  # raw mail not in the store
    error: str | None = None  # clamd failed: the scan stopped here


def _find_virus(intake: Intake, raw: bytes) -> tuple[str | None, str | None, list[str]]:
    """(signature, attachment sha256 or None, other findings). Scans the whole message, then each attachment."""
    other: list[str] = []
    scanner = for_one_message(intake.scanner)  # the attachments on the clamd that unpacked them (its cache)
    res = scanner.scan(raw)
    if res.infected and res.signature:
        if finding_reason(res.signature) == VIRUS:
            return res.signature, None, other
        other.append(res.signature)
    work = Work(arrival=Arrival(raw=raw, source="rescan"), sha256=None, content_id=None, size=len(raw))
    parse_message(work)
    for part in work.attachments:
        res = scanner.scan(part.data)
        if res.infected and res.signature:
            if finding_reason(res.signature) == VIRUS:
                return res.signature, hashlib.sha256(part.data).hexdigest(), other
            other.append(res.signature)
    return None, None, other


def alert_quarantine(session: Session, msg: Message) -> None:
    """Enqueue the staff alert for a message found infected, in the caller's transaction (the outbox)."""
    enqueue_for_record(session, msg, list(msg.attachments))


def quarantine(intake: Intake, record_id: int, signature: str, part_sha: str | None, by: str, note: str) -> None:
    with intake.sessions() as session:
        msg = session.get(Message, record_id)
        assert msg is not None and msg.sha256 is not None
        dups = list(session.scalars(select(Message).where(Message.duplicate_of == record_id,
                                                          Message.raw_area == "raw")))
        shas = [msg.sha256, *[d.sha256 for d in dups if d.sha256]]
    # The evidence goes apart first: get() finds it in either area, and a failed commit is redone by rescan.
    for sha in shas:
        intake.raw_store.move(sha, quarantined=True)
    with intake.sessions.begin() as session:
        msg = _load(session, record_id)
        msg.status = QUARANTINED
        msg.reasons = [*[r for r in msg.reasons or [] if r != VIRUS], VIRUS]
        msg.virus = signature
        msg.raw_area = "quarantine"
        for a in msg.attachments:
            if part_sha is not None and a.sha256 == part_sha:
                a.verdict, a.signature = "infected", signature
        session.execute(delete(CommentKey).where(CommentKey.message_pk == msg.id))
        _event(session, msg, "rescan", by, note)
        for dup in session.scalars(select(Message).where(Message.duplicate_of == record_id,
                                                         Message.raw_area == "raw")):
            # A duplicate inherits the first record's verdict: quarantined too, with its raw bytes apart.
            dup.raw_area = "quarantine"
            dup.status = QUARANTINED
            dup.reasons = [VIRUS]
            dup.virus = signature
            _event(session, dup, "rescan", by, f"{note} (the mail it duplicates, #{record_id}, is infected)")
        session.flush()
        alert_quarantine(session, msg)
    log.warning("staff_decision", action="rescan", record=record_id, status=QUARANTINED, signature=signature)


def rescan(intake: Intake, by: str, note: str, since: dt.datetime | None = None,
           progress: Any = None) -> RescanReport:
    _need(by, note)
    query = select(Message.id, Message.sha256).where(
        Message.status == ACCEPTED, Message.sha256.is_not(None), Message.raw_area == "raw"
    ).order_by(Message.id)
    if since is not None:
        query = query.where(Message.received_at >= since)
    with intake.sessions() as session:
        todo = [(rid, sha) for rid, sha in session.execute(query)]
    report = RescanReport()
    for n, (rid, sha) in enumerate(todo, 1):
        try:
            raw = intake.raw_store.get(sha)
        except RawStoreError:
            report.missing.append(rid)
            continue
        try:
            signature, part_sha, other = _find_virus(intake, raw)
        except ScanUnavailable as exc:
            report.error = str(exc)
            break
        report.scanned += 1
        report.findings.extend((rid, s) for s in other)
        if signature is None:
            report.clean += 1
        else:
            quarantine(intake, rid, signature, part_sha, by, note)
            report.quarantined.append((rid, signature))
        if progress:
            progress(n)
    log.info("rescan", action="rescan", count=report.scanned,
             counts={"clean": report.clean, "quarantined": len(report.quarantined), "missing": len(report.missing)},
             error=report.error)
    return report
