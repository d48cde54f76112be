"""The way one message travels: size → duplicate? → scan → parse → classify → extract → comment → record.

Sources (ingest, IMAP, LMTP) hand an `Arrival` to `Intake.process`, which returns only when the
record is durable. The stages are plain functions over `Work` (daemon/stages/); the I/O they need
(clamd) is passed in; the database and raw store are touched here only, before and after them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from daemon import metrics
from daemon.budget import PARSE_FACTOR, MemoryBudget
from daemon.config import Config
from daemon.logs import get_logger
from daemon.model import (
    ACCEPTED,
    DUPLICATE,
    DUPLICATE_TEXT,
    HELD,
    PROCESSING_FAILED,
    REJECTED,
    Arrival,
    Outcome,
    Work,
    decide_status,
)
from daemon.rules import Rules
from daemon.scanner import Scanner
from daemon.stages.classify import ContainerLimits
from daemon.stages.comment import CommentRules, comment_stage
from daemon.stages.identity import content_identity
from daemon.stages.parse import parse_message
from daemon.stages.received import determine_received
from daemon.stages.scan import ScannerLike, scan_attachments, scan_message
from daemon.stages.size import check_size
from daemon.stages.texts import extract_texts
from daemon.stages.verdicts import classify_attachments
from daemon.store import records
from daemon.store.db import Message, make_engine, make_sessionmaker
from daemon.store.raw import RawStore, RawStoreError

log = get_logger("pipeline")


class KeyedLocks:
    """One lock per key, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class StorageError(RuntimeError):
    """The database or the raw store failed: an infrastructure failure, never the message's fault.
    str() is a short code-like text without message data."""


class MessageFailure(Exception):
    """A stage crashed on this message's content (parser crash, extraction timeout …)."""


@dataclass
class Intake:
    config: Config
    rules: Rules
    scanner: ScannerLike
    raw_store: RawStore
    sessions: sessionmaker[Session]
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    _locks: KeyedLocks = field(default_factory=lambda: KeyedLocks(), repr=False)
    parse_budget: MemoryBudget | None = None  # from config.parse_memory_bytes unless given
    # Called (in the worker thread) with the exception when the database or raw store fails: alerts.
    on_storage_error: list[Callable[[BaseException], None]] = field(default_factory=list, repr=False)

    @classmethod
    def from_config(cls, config: Config, rules: Rules) -> Intake:
        engine = make_engine(config.database_url)
        raw_store = RawStore(config.raw_dir, config.quarantine_dir, config.staff_group)
        return cls(config, rules, Scanner(config.scan.clamd, config.scan.timeout), raw_store, make_sessionmaker(engine))

    def __post_init__(self) -> None:
        if self.parse_budget is None:
            self.parse_budget = MemoryBudget(self.config.parse_memory_bytes)

    # -- the stages, in order ----------------------------------------------------------------------
    def stages(self) -> list[tuple[str, Callable[[Work], None]]]:
        # Size runs first, on its own, before the duplicate check: see _process.
        return [
            ("scan", lambda w: scan_message(w, self.scanner)),
            ("parse", self._parse),
            ("scan_attachments", lambda w: scan_attachments(w, self.scanner)),
            ("classify", lambda w: classify_attachments(w, self.rules, self.limits)),
            ("extract", extract_texts),
            ("comment", lambda w: comment_stage(w, self.comment_rules)),
        ]

    def _parse(self, work: Work) -> None:
        # The parse is the memory peak of a message (~3x its size): big ones take turns (daemon/budget.py).
        assert self.parse_budget is not None
        with self.parse_budget.hold(PARSE_FACTOR * len(work.arrival.raw)):
            parse_message(work)

    @functools.cached_property
    def comment_rules(self) -> CommentRules:
        return CommentRules.from_rules(self.rules.raw)

    def _run_stages(self, work: Work) -> None:
        for name, stage in self.stages():
            if work.done:
                break
            started = time.perf_counter()
            try:
                stage(work)
            except Exception as exc:  # a crash on this message's content, not on our infrastructure
                raise MessageFailure(f"{name}:{exc.__class__.__name__}") from exc
            work.timings[name] = time.perf_counter() - started
            log.info("stage", stage=name, sha=(work.sha256 or "")[:12], size=work.size,
                     reasons=list(work.reasons), duration_ms=round(work.timings[name] * 1000, 2))

    # -- one arrival -------------------------------------------------------------------------------
    def process(self, arrival: Arrival, existing_id: int | None = None) -> Outcome:
        """Take one arrival through every rule into a durable record; return its outcome."""
        # Two copies of the same content in flight at once (an MTA retry racing the first delivery)
        # must not both become first records: one content identity is processed at a time.
        cid = content_identity(arrival.raw) if arrival.size is None else None
        with self._locks.hold(cid or f"imap:{arrival.imap}"):
            return self._process_guarded(arrival, existing_id, cid)

    def _process_guarded(self, arrival: Arrival, existing_id: int | None, cid: str | None) -> Outcome:
        try:
            return self._process(arrival, existing_id, cid)
        except (SQLAlchemyError, RawStoreError, OSError) as exc:
            log.error("storage_failed", error=exc.__class__.__name__, source=arrival.source)
            for listener in self.on_storage_error:
                with contextlib.suppress(Exception):
                    listener(exc)
            raise StorageError(f"storage_failed:{exc.__class__.__name__}") from exc

    def _process(self, arrival: Arrival, existing_id: int | None, cid: str | None) -> Outcome:
        downloaded = arrival.size is None  # IMAP too_large gives only headers and the declared size
        sha = hashlib.sha256(arrival.raw).hexdigest() if downloaded else None
        work = Work(arrival=arrival, sha256=sha, content_id=cid,
                    size=len(arrival.raw) if downloaded else int(arrival.size or 0))
        determine_received(work, self.rules)

        attempts = 0
        with self.sessions() as session:
            existing = session.get(Message, existing_id) if existing_id is not None else None
            if existing is None:
                existing = records.find_by_source_key(session, arrival.imap)
                if existing is not None and existing.status != HELD:
                    # this arrival is already recorded and settled: idempotent
                    return Outcome(existing.id, existing.status, tuple(existing.reasons or ()), arrival.imap)
            prior = records.find_first_by_content(session, cid) if (existing is None and cid) else None
            if prior is not None and prior.status == HELD:
                existing, prior = prior, None  # the same content, still held: retry that record
            if existing is not None:
                attempts = existing.attempts
                # Keep the original arrival's time: a retry is not a new arrival.
                work.received_at, work.received_source = existing.received_at, existing.received_source
                work.flags = [f for f in existing.flags if f in ("early", "late", "received_at_uncertain")]
            prior_id, prior_status = (prior.id, prior.status) if prior is not None else (None, None)
        existing_pk = existing.id if existing is not None else None

        check_size(work, self.rules)
        if not work.done and prior_id is not None:
            # The same content was recorded before: a new row, pointing at the first, not opened again.
            work.done = True
            rid = records.commit_outcome(self.sessions, self.raw_store, work, DUPLICATE, existing_pk,
                                         action="duplicate", duplicate_of=prior_id,
                                         quarantine_raw=prior_status == "quarantined")
            log.info("recorded", record=rid, sha=(sha or "")[:12], size=work.size, status=DUPLICATE,
                     source=arrival.source)
            return Outcome(rid, DUPLICATE, tuple(work.reasons), arrival.imap)

        action = "retry" if existing_pk is not None else "ingest"
        try:
            self._run_stages(work)
        except MessageFailure as failure:
            attempts += 1
            status = REJECTED if attempts >= self.config.max_attempts else HELD
            work.reasons = [PROCESSING_FAILED]
            work.comment_keys = []
            work.attachments = []
            work.result = {"comments": [], "submitter": {}, "texts": []}
            rid = records.commit_outcome(self.sessions, self.raw_store, work, status, existing_pk,
                                         action=action, attempts=attempts, last_error=str(failure))
            log.warning("processing_failed", record=rid, sha=(sha or "")[:12], attempts=attempts,
                        status=status, error=str(failure))
            return Outcome(rid, status, tuple(work.reasons), arrival.imap)

        metrics.observe_stages(work.timings)
        status = decide_status(work.reasons)
        if work.comment_keys and status in (ACCEPTED, REJECTED):
            with self.sessions() as session:
                work.duplicate_text_of = records.find_duplicate_text(session, work.comment_keys, existing_pk)
            if work.duplicate_text_of is not None:
                work.add_flag(DUPLICATE_TEXT)
        rid = records.commit_outcome(self.sessions, self.raw_store, work, status, existing_pk,
                                     action=action, attempts=attempts)
        log.info("recorded", record=rid, sha=(sha or "")[:12], size=work.size, status=status,
                 reasons=list(work.reasons), flags=list(work.flags), source=arrival.source,
                 duration_ms=round(sum(work.timings.values()) * 1000, 2))
        return Outcome(rid, status, tuple(work.reasons), arrival.imap)

    # -- retries -----------------------------------------------------------------------------------
    def retry(self, record_id: int) -> Outcome:
        """Run a held record through the pipeline again, from the raw store."""
        with self.sessions() as session:
            msg = session.get(Message, record_id)
            if msg is None:
                raise LookupError(f"no record {record_id}")
            if msg.sha256 is None:
                raise LookupError(f"record {record_id} has no stored raw message")
            arrival = Arrival(
                raw=self.raw_store.get(msg.sha256),
                source=msg.source,
                received_at=msg.received_at,
                received_source=msg.received_source,
                imap=({"account": msg.imap_account, "mailbox": msg.imap_mailbox,
                       "uidvalidity": msg.imap_uidvalidity, "uid": msg.imap_uid}
                      if msg.imap_uid is not None else None),
            )
        return self.process(arrival, existing_id=record_id)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
