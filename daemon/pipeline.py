"""The way one message travels, in the order the README draws:

    received → size → duplicate? → scan → parse → scan attachments → classify → extract → comment → record

A source (ingest, IMAP, LMTP) hands an `Arrival` to `Intake.process`, which returns an `Outcome` only when
the record is durable. The walk reads top to bottom in `_process`:
1. one read of what the store knows of this arrival (`records.lookup`: a retry, a duplicate);
2. the stages, plain functions over `Work` (daemon/stages/), built once per message from one `Rules`
   object (`stage_list`), so a rules reload takes effect between two messages, never inside one;
3. the decision: status, and the alert the status raises (daemon/alerts/events.py, pure);
4. one write (`records.commit_outcome`): raw bytes fsync'd, then the record, its event and its alert in
   one transaction.
The database and the raw store are touched here only, before and after the stages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from daemon import metrics
from daemon.alerts.events import AlertDraft, alert_for_status, door_refusal_draft
from daemon.budget import PARSE_FACTOR, MemoryBudget, MessageClock
from daemon.config import Config
from daemon.logs import get_logger
from daemon.model import (
    ACCEPTED,
    DUPLICATE,
    DUPLICATE_TEXT,
    HELD,
    PROCESSING_FAILED,
    QUARANTINED,
    REJECTED,
    TOO_LARGE,
    VIRUS,
    Arrival,
    Known,
    Outcome,
    Work,
    decide_status,
)
from daemon.rules import Rules
from daemon.scanner import Scanner, for_one_message
from daemon.stages.classify import ContainerLimits
from daemon.stages.comment import comment_stage
from daemon.stages.headers import read_headers
from daemon.stages.identity import content_identity, mark_duplicate
from daemon.stages.parse import parse_message
from daemon.stages.received import determine_received
from daemon.stages.scan import ScannerLike, scan_attachments, scan_message
from daemon.stages.size import check_size, size_limit
from daemon.stages.structure import StructureLimits
from daemon.stages.texts import extract_texts
from daemon.stages.verdicts import classify_attachments
from daemon.store import records, refusals
from daemon.store.db import Message, make_engine, make_sessionmaker
from daemon.store.raw import RawStore, RawStoreError

log = get_logger("pipeline")
Stage = Callable[[Work], None]


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


class WatchdogExpired(Exception):
    """The message spent its whole wall-clock budget in the stages (`[intake] message_budget_seconds`)."""


_SCANS = frozenset({"scan", "scan_attachments"})  # clamd's time: not the message's budget


def _fresh(work: Work) -> Work:
    """What the record of an abandoned walk is made from: the arrival and what the first stages found (time,
    window flags, the header fields), without the lists the abandoned stage thread may still be changing."""
    return dataclasses.replace(work, reasons=[], flags=[f for f in work.flags if f in _WINDOW_FLAGS],
                               attachments=[], body_parts=[], sources=[], comment_keys=[], defects=[],
                               result={"comments": [], "submitter": {}, "texts": []}, timings={}, virus=None)


_WINDOW_FLAGS = ("early", "late", "received_at_uncertain")
_walk = threading.local()  # the watchdog clock of the message this thread is walking


def _seconds_left() -> Callable[[], float] | None:
    clock: MessageClock | None = getattr(_walk, "clock", None)
    return clock.left if clock is not None else None


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
    def stage_list(self, rules: Rules) -> list[tuple[str, Stage]]:
        """Every stage of one message, in order, all judging by the same `rules`."""
        # One clamd for the whole message and its attachments (its cache makes the second scan nearly free).
        scanner = for_one_message(self.scanner)
        return [
            ("received", lambda w: determine_received(w, rules)),
            ("headers", read_headers),
            ("size", lambda w: check_size(w, rules)),
            ("duplicate", mark_duplicate),
            ("scan", lambda w: scan_message(w, scanner)),
            ("parse", lambda w: self._parse(w, rules)),
            ("scan_attachments", lambda w: scan_attachments(w, scanner)),
            ("classify", lambda w: classify_attachments(w, rules, self.limits)),
            ("extract", lambda w: extract_texts(w, rules.limits, _seconds_left())),
            ("comment", lambda w: comment_stage(w, rules.comment)),
        ]

    def _parse(self, work: Work, rules: Rules | None = None) -> None:
        # The parse is the memory peak of a message (~3x its size): big ones take turns (daemon/budget.py).
        assert self.parse_budget is not None
        with self.parse_budget.hold(PARSE_FACTOR * len(work.arrival.raw)):
            parse_message(work, StructureLimits.of((rules or self.rules).limits))

    def _run_stages(self, work: Work, rules: Rules, clock: MessageClock | None = None) -> None:
        _walk.clock = clock  # this thread walks this one message: the extraction's waits read its clock
        for name, stage in self.stage_list(rules):
            if work.done or (clock is not None and clock.cancelled):
                break
            started = time.perf_counter()
            try:
                if clock is not None:
                    clock.stage = name
                with clock.paused() if clock is not None and name in _SCANS else contextlib.nullcontext():
                    stage(work)
            except Exception as exc:  # a crash on this message's content, not on our infrastructure
                raise MessageFailure(f"{name}:{exc.__class__.__name__}") from exc
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a Rust parser's panic (pyo3 PanicException) is no Exception
                raise MessageFailure(f"{name}:{exc.__class__.__name__}") from exc
            work.timings[name] = time.perf_counter() - started
            if clock is not None and clock.left() <= 0 and not work.done:
                # The budget ran out inside this stage (an extraction cut short by it): the same verdict as
                # when the waiting worker gives up, never a record built on half-read content.
                raise WatchdogExpired(f"watchdog:{name}")
            log.info("stage", stage=name, sha=(work.sha256 or "")[:12], size=work.size,
                     reasons=list(work.reasons), duration_ms=round(work.timings[name] * 1000, 2))

    # -- one arrival -------------------------------------------------------------------------------
    def process(self, arrival: Arrival, existing_id: int | None = None) -> Outcome:
        """Take one arrival through every rule into a durable record; return its outcome."""
        # Two copies of the same content in flight at once (an MTA retry racing the first delivery)
        # must not both become first records: one content identity is processed at a time.
        cid = content_identity(arrival.raw) if arrival.size is None else None
        with self._locks.hold(cid or f"imap:{arrival.imap}"):
            try:
                return self._process(arrival, existing_id, cid)
            except (SQLAlchemyError, RawStoreError, OSError) as exc:
                log.error("storage_failed", error=exc.__class__.__name__, source=arrival.source)
                for listener in self.on_storage_error:
                    with contextlib.suppress(Exception):
                        listener(exc)
                raise StorageError(f"storage_failed:{exc.__class__.__name__}") from exc

    def _process(self, arrival: Arrival, existing_id: int | None, cid: str | None) -> Outcome:
        rules = self.rules  # one Rules object for the whole walk: a reload lands between two messages
        # 1. What the store knows of this arrival.
        with self.sessions() as session:
            known = records.lookup(session, arrival, cid, existing_id)
        if known.settled:
            assert known.record_id is not None and known.status is not None
            return Outcome(known.record_id, known.status, known.reasons, arrival.imap)

        # 2. The stages.
        downloaded = arrival.size is None  # IMAP too_large gives only headers and the declared size
        work = Work(arrival=arrival, sha256=hashlib.sha256(arrival.raw).hexdigest() if downloaded else None,
                    content_id=cid, size=len(arrival.raw) if downloaded else int(arrival.size or 0), known=known)
        action = "retry" if known.record_id is not None else "ingest"
        try:
            self._run_watched(work, rules)
        except MessageFailure as failure:
            return self._record_failure(work, action, str(failure))
        except WatchdogExpired as expired:
            return self._record_failure(_fresh(work), action, str(expired), final=True)

        # 3. The decision, and 4. the record.
        if known.first_id is not None and TOO_LARGE not in work.reasons:
            return self._record_duplicate(work, known)
        metrics.observe_stages(work.timings)
        status = decide_status(work.reasons)
        if work.comment_keys and status in (ACCEPTED, REJECTED):
            with self.sessions() as session:
                work.duplicate_text_of = records.find_duplicate_text(session, work.comment_keys, known.record_id)
            if work.duplicate_text_of is not None:
                work.add_flag(DUPLICATE_TEXT)
        rid = records.commit_outcome(self.sessions, self.raw_store, work, status, known.record_id,
                                     action=action, attempts=known.attempts, alert=self._alert(work, status))
        return self._recorded(work, rid, status)

    def _run_watched(self, work: Work, rules: Rules) -> None:
        """The stages under the watchdog: they run in a thread of their own while this worker waits at most
        `message_budget_seconds` (clamd's time not counted). Past it the message is given up at once; the stage
        thread is told to stop at its next stage boundary (the stages are pure: it can write nothing), and an
        extraction child it waits for is killed by the extraction's own wait, which the clock also caps."""
        clock = MessageClock(self.config.message_budget_seconds)
        failure: list[BaseException] = []

        def walk() -> None:
            try:
                self._run_stages(work, rules, clock)
            except BaseException as exc:  # handed to the waiting worker
                failure.append(exc)

        thread = threading.Thread(target=walk, name="intake-stages", daemon=True)
        thread.start()
        while True:
            thread.join(timeout=min(1.0, max(0.01, clock.left())))
            if not thread.is_alive():
                break
            if clock.left() <= 0:
                clock.cancelled = True
                log.error("watchdog", sha=(work.sha256 or "")[:12], size=work.size, stage=clock.stage,
                          budget_s=clock.budget)
                raise WatchdogExpired(f"watchdog:{clock.stage}")
        if failure:
            raise failure[0]

    def _record_duplicate(self, work: Work, known: Known) -> Outcome:
        """A duplicate is not scanned or opened again: it inherits the first record's scan verdict. A copy of
        quarantined mail is itself quarantined (reason `virus`, the first's signature, raw bytes in the
        quarantine area, an alert): never an ordinary `duplicate` whose bytes sit in the raw store."""
        if known.first_status == QUARANTINED:
            work.add_reason(VIRUS)
            work.virus = known.first_virus
            rid = records.commit_outcome(self.sessions, self.raw_store, work, QUARANTINED, known.record_id,
                                         action="duplicate", duplicate_of=known.first_id,
                                         alert=self._alert(work, QUARANTINED))
            return self._recorded(work, rid, QUARANTINED)
        rid = records.commit_outcome(self.sessions, self.raw_store, work, DUPLICATE, known.record_id,
                                     action="duplicate", duplicate_of=known.first_id)
        return self._recorded(work, rid, DUPLICATE)

    def _alert(self, work: Work, status: str) -> AlertDraft | None:
        assert work.received_at is not None
        return alert_for_status(status, work.received_at, work.size, work.reasons, work.virus, work.attachments,
                                work.arrival.source)

    def _record_failure(self, work: Work, action: str, error: str, final: bool = False) -> Outcome:
        """A stage crashed on this message's content: held for another try, rejected after max_attempts (at once
        when `final`: the watchdog's verdict, since another try would take as long)."""
        attempts = work.known.attempts + 1
        status = REJECTED if final or attempts >= self.config.max_attempts else HELD
        work.reasons = [PROCESSING_FAILED]
        work.comment_keys = []
        work.attachments = []
        work.result = {"comments": [], "submitter": {}, "texts": []}
        if work.received_at is None:  # the crash came before the received stage ran (it cannot, but be total)
            determine_received(work, self.rules)
        rid = records.commit_outcome(self.sessions, self.raw_store, work, status, work.known.record_id,
                                     action=action, attempts=attempts, last_error=error,
                                     alert=self._alert(work, status))
        log.warning("processing_failed", record=rid, sha=(work.sha256 or "")[:12], attempts=attempts,
                    status=status, error=error)
        return Outcome(rid, status, tuple(work.reasons), work.arrival.imap)

    def _recorded(self, work: Work, rid: int, status: str) -> Outcome:
        log.info("recorded", record=rid, sha=(work.sha256 or "")[:12], size=work.size, status=status,
                 reasons=list(work.reasons), flags=list(work.flags), source=work.arrival.source,
                 duration_ms=round(sum(work.timings.values()) * 1000, 2))
        return Outcome(rid, status, tuple(work.reasons), work.arrival.imap)

    # -- the door ----------------------------------------------------------------------------------
    def refuse_at_door(self, when: dt.datetime, size: int, source: str, stage: str) -> None:
        """A message refused at the LMTP/SMTP door (552, over the size limit): never stored, but counted, and
        staff hear about it (a `rejected` alert with size and time only, R12) in the same transaction."""
        alert = door_refusal_draft(size, when, source, size_limit(self.rules))
        refusals.add_refusal(self.sessions, when, size, source, stage, alert)

    # -- retries -----------------------------------------------------------------------------------
    def retry(self, record_id: int) -> Outcome:
        """Run a held record through the pipeline again, from the raw store."""
        with self.sessions() as session:
            msg = session.get(Message, record_id)
            if msg is None:
                raise LookupError(f"no record {record_id}")
            if msg.sha256 is None:
                raise LookupError(f"record {record_id} has no stored raw message")
            arrival = records.arrival_from_record(msg, self.raw_store.get(msg.sha256))
        return self.process(arrival, existing_id=record_id)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
