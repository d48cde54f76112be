"""`intake purge`: delete raw mail by the retention classes of the config ([retention]).

    [retention]
    accepted_raw_years = 5     # raw mail of accepted (and released) comments
    quarantine_days = 30       # quarantined samples (everything in the quarantine area)
    rejected_days = 90         # raw mail of rejected messages

A class that is not set is kept. A duplicate's raw mail follows the class of the record it duplicates; held
mail is never purged (it still has to be decided). The age counts from the record's last status change (its
newest event), so a release or a rescan restarts the clock. Only raw files are deleted: the record, its events
and its extracted text stay (the text is kept with its record); `raw_area` becomes `purged` and a `purge` event
says which class. A file that several records share is deleted only when every one of them is due.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from daemon.config import Config, ConfigError
from daemon.logs import get_logger
from daemon.model import ACCEPTED, DUPLICATE, HELD, QUARANTINED, REJECTED
from daemon.store.db import Event, Message, now_utc
from daemon.store.raw import RawStore

log = get_logger("retention")

CLASSES = ("accepted", "quarantine", "rejected")
_KEYS = {"accepted_raw_years": "accepted", "quarantine_days": "quarantine", "rejected_days": "rejected"}
PURGED = "purged"


@dataclass(frozen=True)
class Retention:
    accepted_raw_years: int | None = None
    quarantine_days: int | None = None
    rejected_days: int | None = None

    def describe(self, klass: str) -> str:
        value = {"accepted": self.accepted_raw_years, "quarantine": self.quarantine_days,
                 "rejected": self.rejected_days}[klass]
        if value is None:
            return "not set: kept"
        return f"{value} year(s)" if klass == "accepted" else f"{value} day(s)"

    def due_at(self, klass: str, since: dt.datetime) -> dt.datetime | None:
        if klass == "accepted" and self.accepted_raw_years is not None:
            return add_years(since, self.accepted_raw_years)
        if klass == "quarantine" and self.quarantine_days is not None:
            return since + dt.timedelta(days=self.quarantine_days)
        if klass == "rejected" and self.rejected_days is not None:
            return since + dt.timedelta(days=self.rejected_days)
        return None


def add_years(when: dt.datetime, years: int) -> dt.datetime:
    year = when.year + years
    day = min(when.day, calendar.monthrange(year, when.month)[1])  # 29 February → 28 February
    return when.replace(year=year, day=day)


def retention_from_config(config: Config) -> Retention:
    table = config.raw.get("retention", {})
    if not isinstance(table, dict):
        raise ConfigError("[retention]: must be a table")
    values: dict[str, int] = {}
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(f"retention.{key}: unknown key (known: {', '.join(_KEYS)})")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"retention.{key}: must be a whole number of at least 0")
        values[key] = value
    return Retention(**values)


@dataclass
class Due:
    record_id: int
    status: str
    klass: str
    sha256: str
    area: str  # raw | quarantine
    since: dt.datetime
    due_at: dt.datetime


def _class_of(msg: Message, original_status: str | None) -> str | None:
    if msg.raw_area == "quarantine":
        return "quarantine"
    status = original_status if msg.status == DUPLICATE else msg.status
    if status == ACCEPTED:
        return "accepted"
    if status == REJECTED:
        return "rejected"
    if status == QUARANTINED:
        return "quarantine"
    return None  # held (or an unknown status): kept


def plan(session: Session, retention: Retention, now: dt.datetime) -> list[Due]:
    """The raw files that are due for deletion at `now`, one entry per record that refers to them."""
    last_event = dict(session.execute(
        select(Event.message_pk, func.max(Event.at)).where(Event.action != "purge").group_by(Event.message_pk)
    ).all())
    msgs = list(session.scalars(
        select(Message).where(Message.sha256.is_not(None), Message.raw_area.in_(("raw", "quarantine")))
        .order_by(Message.id)
    ))
    status_of = dict(session.execute(select(Message.id, Message.status)).all())
    by_file: dict[tuple[str, str], list[tuple[Message, str | None, dt.datetime | None]]] = defaultdict(list)
    for m in msgs:
        klass = _class_of(m, status_of.get(m.duplicate_of) if m.duplicate_of else None)
        since = last_event.get(m.id) or m.received_at
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)  # SQLite's aggregate bypasses the column type
        assert m.sha256 is not None and m.raw_area is not None
        by_file[(m.sha256, m.raw_area)].append((m, klass, since))
    out: list[Due] = []
    for (sha, area), refs in by_file.items():
        dues: list[Due] = []
        for m, klass, since in refs:
            at = retention.due_at(klass, since) if klass and since and m.status != HELD else None
            if at is None or at > now:
                dues = []
                break
            dues.append(Due(m.id, m.status, klass or "", sha, area, since, at))  # type: ignore[arg-type]
        out.extend(dues)
    return sorted(out, key=lambda d: d.record_id)


def apply(sessions: sessionmaker[Session], store: RawStore, dues: list[Due], by: str = "retention") -> Counter[str]:
    """Delete the due raw files, then mark their records `purged` with an event. Idempotent."""
    files = {(d.sha256, d.area) for d in dues}
    for sha, area in sorted(files):
        path = store.path_for(sha, quarantined=area == "quarantine")
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        else:
            fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    counts: Counter[str] = Counter()
    with sessions.begin() as session:
        for d in dues:
            msg = session.get(Message, d.record_id)
            if msg is None or msg.raw_area == PURGED:
                continue
            msg.raw_area = PURGED
            session.add(Event(message_pk=msg.id, at=now_utc(), action="purge", status=msg.status,
                              reasons=list(msg.reasons or []), actor=by,
                              note=f"raw mail deleted: retention class {d.klass}"))
            counts[d.klass] += 1
    log.info("purge", action="apply", count=len(files), counts=dict(counts))
    return counts
