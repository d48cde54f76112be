"""The database: one row per arrival (messages), its attachments, and an append-only event log.

SQLAlchemy 2 over SQLite (default) or PostgreSQL (production). The schema is created only by the
Alembic migrations in migrations/ (`intake db upgrade`); this module holds the mapped classes.
Timestamps are stored in UTC with their offset (SQLite has no zone: UTCDateTime normalises) and
shown in JST by the CLI. IMAP UIDs and UIDVALIDITY are unsigned 32-bit: BigInteger.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import os
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

UTC = dt.UTC

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
IdType = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; attach a zone first")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now_utc() -> dt.datetime:
    return dt.datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("imap_account", "imap_mailbox", "imap_uidvalidity", "imap_uid", name="uq_messages_imap"),
        Index("ix_messages_received_at", "received_at"),
        # (content_id, id), not content_id alone: "the first record of this content" is then one index probe.
        # With content_id alone PostgreSQL walked the primary key and filtered (O(records) for new content).
        Index("ix_messages_content_id_id", "content_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), nullable=True)
    duplicate_text_of: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), nullable=True)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    received_source: Mapped[str] = mapped_column(String(24))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    content_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    virus: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16))
    raw_area: Mapped[str | None] = mapped_column(String(16), nullable=True)  # raw | quarantine | None
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    from_address: Mapped[str | None] = mapped_column(Text, nullable=True)
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    defects: Mapped[list[Any]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # comments, submitter, texts
    imap_account: Mapped[str | None] = mapped_column(Text, nullable=True)
    imap_mailbox: Mapped[str | None] = mapped_column(Text, nullable=True)
    imap_uidvalidity: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    imap_uid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, onupdate=now_utc)

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.position", cascade="all, delete-orphan"
    )
    events: Mapped[list[Event]] = relationship(
        back_populates="message", order_by="Event.id", cascade="all, delete-orphan"
    )


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str | None] = mapped_column(Text, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(32))
    mime: Mapped[str] = mapped_column(Text)
    declared_mime: Mapped[str | None] = mapped_column(Text, nullable=True)
    verdict: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)

    message: Mapped[Message] = relationship(back_populates="attachments")


class CommentKey(Base):
    """The normalized-text key (SHA-256 of comment.duplicate_key) of each comment item, for duplicate_text."""

    __tablename__ = "comment_keys"
    # (key, message_pk): the first record with a key is one index probe (see records.find_duplicate_text).
    __table_args__ = (Index("ix_comment_keys_key_message_pk", "key", "message_pk"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))


class Event(Base):
    """Append-only: every status change of a record, with when and why (and who, for staff)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)
    action: Mapped[str] = mapped_column(String(24))  # ingest | retry | duplicate | release | reject | …
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    actor: Mapped[str] = mapped_column(String(64), default="intake")
    note: Mapped[str | None] = mapped_column(Text, nullable=True)

    message: Mapped[Message] = relationship(back_populates="events")


class DoorRefusal(Base):
    """Append-only: a message refused at the door (LMTP/SMTP 552, too large) before any record existed.
    For `intake stats` and alerts; no record, no addresses, no content: time, size, source, stage."""

    __tablename__ = "door_refusals"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    size: Mapped[int] = mapped_column(BigInteger)  # declared SIZE= at MAIL FROM, else the bytes sent
    source: Mapped[str] = mapped_column(String(16))  # lmtp | smtp
    reason: Mapped[str] = mapped_column(String(24))  # too_large
    stage: Mapped[str] = mapped_column(String(16))  # mail_from | data


# The database holds personal data (R12): the service user reads and writes it, the staff group reads it,
# nobody else. SQLite gives its -wal and -shm files the mode and owner of the database file, so creating
# that file 0640 before SQLite does covers all three.
DB_FILE_MODE = 0o640


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL; None for PostgreSQL, in-memory or URI-style databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def prepare_sqlite_file(url: str, group: str | None = None) -> Path | None:
    """Create a SQLite database file 0640 before SQLite would create it 0644 (the umask's choice), owned by
    `group` (the staff group), else by the group of its folder (systemd's StateDirectory= has the unit's
    Group=). An existing file is left as it is: `intake check` reports a world-readable one."""
    path = sqlite_path(url)
    if path is None or path.exists():
        return path
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
    except FileExistsError:
        return path
    except OSError:
        return path  # a missing folder: SQLite's own error names it on connect
    try:
        gid = grp.getgrnam(group).gr_gid if group else path.parent.stat().st_gid
        with contextlib.suppress(OSError):
            os.fchown(fd, -1, gid)
        os.fchmod(fd, DB_FILE_MODE)  # the umask may have taken bits off, never added: set it exactly
    except KeyError:
        pass  # an unknown staff group is reported by the raw store and `intake check`
    finally:
        os.close(fd)
    return path


class DatabaseFileChanged(SQLAlchemyError):
    """The SQLite file this process opened is no longer the file at its path (moved, deleted or replaced).

    Writing on would go through the open handle into a file nobody reads: records answered 250 would vanish
    with it. So every transaction fails from then on (the pipeline answers 451 and moves nothing over IMAP,
    the alerts say storage_error) until an operator puts the file back or restarts the daemon."""


class _WatchedFile:
    """The identity (device, inode) of the SQLite file when the engine first opened it, checked at the start
    of every transaction: one stat() call, a few microseconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None
        self.reported = False

    def current(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def check(self) -> None:
        now = self.current()
        if self.identity is None:
            self.identity = now
            return
        if now != self.identity:
            why = "deleted or moved away" if now is None else "replaced by another file"
            if not self.reported:
                self.reported = True
                _log_file_changed(why)
            raise DatabaseFileChanged(f"database file {why} since the daemon opened it: restore it or restart")


def _log_file_changed(why: str) -> None:
    from daemon.logs import get_logger

    get_logger("store").error("database_file_changed", detail=why)


def make_engine(url: str, group: str | None = None, pool_size: int | None = None, **kw: Any) -> Engine:
    """The engine for `url`. `pool_size`: the connections a process keeps (the daemon: one per worker thread).
    SQLAlchemy's default keeps 5 and opens the rest per checkout and closes them at check-in, which on PostgreSQL
    is a backend started and ended for most records of a busy daemon (BENCHMARKS.md, issue 20)."""
    if url.startswith("sqlite"):
        path = prepare_sqlite_file(url, group)
        if pool_size and path is not None:  # a file; an in-memory database has one connection per thread
            kw = {"pool_size": pool_size, "max_overflow": pool_size, **kw}
        engine = create_engine(url, connect_args={"timeout": 30}, **kw)
        if path is not None:
            watched = _WatchedFile(path.resolve())

            @event.listens_for(engine, "connect")
            def _identity_at_connect(_dbapi_conn: Any, _record: Any) -> None:
                watched.check()  # the first connection fixes it; a later one opened on another file fails

            @event.listens_for(engine, "begin")
            def _still_the_same_file(_conn: Any) -> None:
                watched.check()

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets CLI readers run beside the daemon; busy_timeout waits instead of failing.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    if pool_size:
        kw = {"pool_size": pool_size, "max_overflow": pool_size, **kw}
    return create_engine(url, pool_pre_ping=True, **kw)


def make_sessionmaker(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


class ImapClaim(Base):
    """A daemon's claim on one IMAP message before it has a record (daemon/store/claims.py).

    One row per (account, mailbox, UIDVALIDITY, UID) while a daemon downloads and records it; the
    lease expires when the daemon dies, so another daemon (or the restarted one) takes it over.
    Correctness never rests on the lease: the record's own unique IMAP key does that. The lease only
    keeps two daemons from doing the same work.
    """

    __tablename__ = "imap_claims"
    __table_args__ = (
        UniqueConstraint("account", "mailbox", "uidvalidity", "uid", name="uq_imap_claims_key"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(Text)
    mailbox: Mapped[str] = mapped_column(Text)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str] = mapped_column(String(128))
    lease_until: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)


class ServiceHealth(Base):
    """One row per running `intake run` (by owner id): what `intake status` reads from another process."""

    __tablename__ = "service_health"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)
    state: Mapped[str] = mapped_column(String(32))  # starting | idle | ingesting | reconnecting | stopped
    status_line: Mapped[str | None] = mapped_column(Text, nullable=True)
    mailbox: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_poll_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    backlog: Mapped[int | None] = mapped_column(Integer, nullable=True)
    in_flight: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    clamd_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    clamd_version: Mapped[str | None] = mapped_column(Text, nullable=True)


class Alert(Base):
    """The alert outbox (daemon/alerts/): one row per alert, written in the same transaction as its cause.

    The payload holds no personal data (R12): record id, times, sizes, statuses, reason codes, signature
    names, attachments' detected kinds. `dedup_key` keeps a watcher from raising the same alert twice.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    category: Mapped[str] = mapped_column(String(24), index=True)  # rejected | quarantined | held_too_long | …
    kind: Mapped[str] = mapped_column(String(24))  # record | door_refusal | held | down | recovered | …
    record_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)  # no FK: outlives it
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedup_key: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    routed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)  # deliveries created

    deliveries: Mapped[list[AlertDelivery]] = relationship(
        back_populates="alert", order_by="AlertDelivery.id", cascade="all, delete-orphan"
    )


class AlertDelivery(Base):
    """One alert on one channel (mail, webhook, log): pending until the channel accepted it.

    `batch` is the id a receiver sees (one alert, or a digest of many); it is fixed before the first
    try, so a retry after a crash carries the same id. `claimed_*` keeps two daemons from sending it twice.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel", name="uq_alert_deliveries_alert_channel"),
        Index("ix_alert_deliveries_queue", "state", "channel", "category"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(24))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent
    batch: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    mode: Mapped[str | None] = mapped_column(String(8), nullable=True)  # single | digest
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    alert: Mapped[Alert] = relationship(back_populates="deliveries")
