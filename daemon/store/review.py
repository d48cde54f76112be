"""The staff's review of the comments (migration 0010): rows of the result table, their answers, and history.

- `ReviewGroup` is one row of 「提出された意見及び考え方」: one comment item, or several to the same effect
  (同旨). It sits in a section of the outline and carries the answer (考え方, 修正の有無, state). `version`
  is the answer's optimistic lock: a save names the version it was made on, and a save on an older one is
  refused, so two reviewers never overwrite each other silently.
- `ReviewItem` is one comment item of one record (record id + its 1-based index in `result.comments`) and
  the group it belongs to. Every item is in exactly one group (a group of one is a single comment).
- `Supersession`: a record replaced by a later one from the same submitter (a corrected resend). The earlier
  record's items then count nowhere and are not in the document; undoing it deletes the row.
- `ReviewEvent` is append-only: who did what and when (placed, moved, merged, split, superseded, answered);
  an answer's every saved text is kept in its event, so the history of an answer can be read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from daemon.store.db import Base, IdType, UTCDateTime, now_utc

# An answer's state: 未着手 → 検討中 → 確定
TODO, DRAFT, FINAL = "todo", "draft", "final"
STATES = {TODO: "未着手", DRAFT: "検討中", FINAL: "確定"}
REVISED = ("有", "無")


class ReviewGroup(Base):
    __tablename__ = "review_groups"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    section: Mapped[str] = mapped_column(String(64), index=True)
    placed_by: Mapped[str] = mapped_column(String(64), default="intake")  # intake (automatic) or a user
    origin: Mapped[str] = mapped_column(String(16), default="auto")  # auto | staff (made by a split or merge)
    answer: Mapped[str] = mapped_column(Text, default="")
    revised: Mapped[str | None] = mapped_column(String(2), nullable=True)  # 有 | 無 | None
    state: Mapped[str] = mapped_column(String(8), default=TODO)
    version: Mapped[int] = mapped_column(Integer, default=0)
    answered_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)


class ReviewItem(Base):
    __tablename__ = "review_items"
    __table_args__ = (UniqueConstraint("message_pk", "item_index", name="uq_review_items_item"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    item_index: Mapped[int] = mapped_column(Integer)  # 1-based, as `intake show` numbers the items
    group_id: Mapped[int] = mapped_column(ForeignKey("review_groups.id"), index=True)
    auto_section: Mapped[str] = mapped_column(String(64))  # where the outline placed it
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)


class Supersession(Base):
    __tablename__ = "review_supersessions"

    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    replaced_by: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReviewEvent(Base):
    __tablename__ = "review_events"
    __table_args__ = (Index("ix_review_events_group_id", "group_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(24))  # sync | move | merge | split | supersede | restore | answer
    group_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # no FK: the history outlives a group
    message_pk: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
