"""The watchers: scanner, mailbox, held records, storage. Pure state machines, and a thin shell
(`AlertMonitor`) that the service loop feeds with what it observed and that writes the alerts.

An outage alerts once when it has lasted N minutes, and once more when it ends; a blip shorter than
N raises nothing. Signatures older than N days alert once until they are fresh again. A storage
failure alerts at once, then at most once per N minutes per kind, counting the repeats in between.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import exists, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from daemon.alerts import events
from daemon.alerts.events import AlertDraft
from daemon.alerts.outbox import enqueue_once
from daemon.alerts.settings import AlertSettings
from daemon.logs import get_logger
from daemon.store.db import Alert, Message

log = get_logger("alerts")

VOLATILE_MAX = 200


# -- pure state machines --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outage:
    since: dt.datetime | None = None  # the first failed observation of this outage
    alerted: bool = False
    problem: str | None = None


def step_outage(state: Outage, ok: bool, now: dt.datetime, threshold_s: float,
                problem: str | None = None) -> tuple[Outage, str | None]:
    """One observation → (new state, "down" | "recovered" | None)."""
    if ok:
        return Outage(), (events.KIND_RECOVERED if state.alerted else None)
    if state.since is None:
        state = Outage(since=now, problem=problem)
    elif problem is not None:
        state = replace(state, problem=problem)
    if not state.alerted and state.since is not None and (now - state.since).total_seconds() >= threshold_s:
        return replace(state, alerted=True), events.KIND_DOWN
    return state, None


def signatures_built(version: str | None) -> dt.datetime | None:
    """The signatures' date from clamd's VERSION ('ClamAV 1.4.6/27460/Tue Nov 25 08:30:00 2025'), in UTC;
    None when clamd does not say (no daily database)."""
    if not version or version.count("/") < 2:
        return None
    stamp = version.rsplit("/", 1)[1].strip()
    try:
        return dt.datetime.strptime(" ".join(stamp.split()), "%a %b %d %H:%M:%S %Y").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def step_signatures(alerted: bool, built: dt.datetime | None, now: dt.datetime, days: float) -> tuple[bool, bool]:
    """(new alerted, raise now?)"""
    if built is None or days <= 0:
        return alerted, False
    stale = (now - built).total_seconds() >= days * 86400
    if not stale:
        return False, False
    return True, not alerted


@dataclass(frozen=True)
class StorageState:
    last_alert: dt.datetime | None = None
    repeated: int = 0  # failures since the last alert


def step_storage(state: StorageState, now: dt.datetime, repeat_s: float) -> tuple[StorageState, int | None]:
    """A failure → (new state, the count of repeats to report when an alert is due, else None)."""
    if state.last_alert is None or (now - state.last_alert).total_seconds() >= repeat_s:
        return StorageState(last_alert=now), state.repeated
    return replace(state, repeated=state.repeated + 1), None


# -- the shell ------------------------------------------------------------------------------------------
class AlertMonitor:
    """Fed by the service loop; writes alerts to the outbox (or keeps them in memory while the database
    itself is down: the sender then sends them directly). Thread-safe; each method returns what it raised."""

    def __init__(self, sessions: sessionmaker[Session], settings: AlertSettings,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.on_alert: Callable[[], None] | None = None  # the sender's wake()
        self.scanner = Outage()
        self.mailbox = Outage()
        self.signatures_alerted = False
        self.storage: dict[str, StorageState] = {}
        self._volatile: list[tuple[AlertDraft, dt.datetime]] = []
        self._lock = threading.Lock()

    def _emit(self, draft: AlertDraft, now: dt.datetime) -> bool:
        try:
            added = enqueue_once(self.sessions, draft, now)
        except SQLAlchemyError as exc:
            log.error("alert_not_stored", category=draft.category, error=exc.__class__.__name__)
            with self._lock:
                self._volatile = [*self._volatile, (draft, now)][-VOLATILE_MAX:]
            added = True
        if added and self.on_alert is not None:
            self.on_alert()
        return added

    def observe_scanner(self, ok: bool, now: dt.datetime | None = None) -> str | None:
        """After each clamd PING (or scan): True when it answered."""
        now = now or self.clock()
        with self._lock:
            before = self.scanner
            self.scanner, kind = step_outage(before, ok, now, self.settings.minutes(events.SCANNER_DOWN) * 60)
        if kind is not None:
            since = before.since or now
            self._emit(events.outage_draft(events.SCANNER_DOWN, kind, since, now,
                                           self.settings.minutes(events.SCANNER_DOWN)), now)
            log.warning("scanner_" + kind, category=events.SCANNER_DOWN)
        return kind

    def observe_scanner_version(self, version: str | None, now: dt.datetime | None = None) -> bool:
        """After clamd's VERSION (e.g. hourly): alerts once when the signatures are older than N days."""
        now = now or self.clock()
        built = signatures_built(version)
        with self._lock:
            self.signatures_alerted, raise_now = step_signatures(
                self.signatures_alerted, built, now, self.settings.days(events.SCANNER_DOWN))
        if raise_now and built is not None and version is not None:
            self._emit(events.signatures_draft(version, built, now, self.settings.days(events.SCANNER_DOWN)), now)
        return raise_now

    def observe_mailbox(self, ok: bool, now: dt.datetime | None = None, problem: str = "unreachable") -> str | None:
        """After each connect / login / poll: problem is "unreachable", "login_refused" or "auth_failed" (a refused
        OAuth 2.0 token or login, or no token to be had: the alert then names authentication) when not ok."""
        now = now or self.clock()
        with self._lock:
            before = self.mailbox
            self.mailbox, kind = step_outage(before, ok, now, self.settings.minutes(events.MAILBOX_DOWN) * 60,
                                             None if ok else problem)
            state = self.mailbox if kind == events.KIND_DOWN else before
        if kind is not None:
            self._emit(events.outage_draft(events.MAILBOX_DOWN, kind, before.since or now, now,
                                           self.settings.minutes(events.MAILBOX_DOWN), state.problem), now)
            log.warning("mailbox_" + kind, category=events.MAILBOX_DOWN)
        return kind

    def check_held(self, now: dt.datetime | None = None, limit: int = 500) -> list[int]:
        """Records held longer than N minutes that have no held_too_long alert yet: raise one each."""
        now = now or self.clock()
        minutes = self.settings.minutes(events.HELD_TOO_LONG)
        cutoff = now - dt.timedelta(minutes=minutes)
        already = exists().where(Alert.category == events.HELD_TOO_LONG, Alert.record_id == Message.id)
        with self.sessions() as session:
            held = list(session.scalars(
                select(Message).options(selectinload(Message.attachments))
                .where(Message.status == "held", Message.created_at <= cutoff, ~already)
                .order_by(Message.id).limit(limit)
            ))
            drafts = [
                events.held_draft(events.record_payload(m.id, m.status, m.received_at, m.size, list(m.reasons or []),
                                                        m.virus, m.attachments, m.source), minutes, m.created_at)
                for m in held
            ]
        raised = [d.record_id for d in drafts if d.record_id is not None and self._emit(d, now)]
        return raised

    def storage_failed(self, kind: str, now: dt.datetime | None = None) -> bool:
        """The database ("database") or the raw store ("raw_store") failed. True when an alert was raised."""
        now = now or self.clock()
        with self._lock:
            state, repeated = step_storage(self.storage.get(kind, StorageState()), now,
                                           self.settings.minutes(events.STORAGE_ERROR) * 60)
            self.storage[kind] = state
        if repeated is None:
            return False
        self._emit(events.storage_draft(kind, now, repeated), now)
        return True

    def take_volatile(self) -> list[tuple[AlertDraft, dt.datetime]]:
        with self._lock:
            taken, self._volatile = self._volatile, []
        return taken

    def keep_volatile(self, items: list[tuple[AlertDraft, dt.datetime]]) -> None:
        with self._lock:
            self._volatile = [*items, *self._volatile][-VOLATILE_MAX:]


def storage_kind(exc: BaseException) -> str:
    """`database` or `raw_store` for a pipeline.StorageError, from its cause (`unknown` otherwise)."""
    from daemon.store.raw import RawStoreError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, SQLAlchemyError):
            return "database"
        if isinstance(cause, RawStoreError | OSError):
            return "raw_store"
        cause = cause.__cause__
    return "unknown"
