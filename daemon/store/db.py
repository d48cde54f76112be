"""The database: one row per arrival (messages), its attachments, and an append-only event log.

SQLAlchemy 2 over SQLite (default) or PostgreSQL (production). The schema is created only by the
Alembic migrations in migrations/ (`intake db upgrade`); this module holds the mapped classes.
Timestamps are stored in UTC with their offset (SQLite has no zone: UTCDateTime normalises) and
shown in JST by the CLI. IMAP UIDs and UIDVALIDITY are unsigned 32-bit: BigInteger.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
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
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

UTC = dt.UTC
JST = dt.timezone(dt.timedelta(hours=9), "JST")

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
    content_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
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

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64), index=True)


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


def make_engine(url: str, **kw: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kw)

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
    return create_engine(url, pool_pre_ping=True, **kw)


def make_sessionmaker(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)
