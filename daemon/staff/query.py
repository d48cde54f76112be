"""Which records and which comment items: the filters shared by `intake log`, `stats` and `export`."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon import jst
from daemon.model import ACCEPTED, DUPLICATE, HELD
from daemon.store.db import Message

# Record flags that place an arrival outside the window (R2): left out of the published table unless asked.
OUTSIDE_WINDOW = ("early", "late")
KIND_LABEL = {"individual": "個人", "organization": "法人・団体", "unknown": "個人"}
TARGET_KEYS = ("main", "annex")


def fold(text: str) -> str:
    """The form free-text search compares in: NFKC, case-folded, whitespace removed."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if not c.isspace())


@dataclass
class Filters:
    """Every filter is optional; an empty Filters selects every record."""

    statuses: list[str] = field(default_factory=list)
    reason: str | None = None
    flag: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    target: str | None = None  # main | annex: some comment item names it
    kind: str | None = None  # individual | organization | unknown
    text: str | None = None  # free text in a comment item (its text, 要旨 or 該当箇所)
    exclude_outside_window: bool = False  # leave out early / late arrivals
    exclude_duplicates: bool = False

    @classmethod
    def for_publication(cls, include_late: bool = False, include_held: bool = False, **kw: Any) -> Filters:
        """The records whose items go into the table: accepted (and released) ones, no duplicates, no
        arrivals outside the window and no held ones unless asked for."""
        statuses = [ACCEPTED, HELD] if include_held else [ACCEPTED]
        return cls(statuses=statuses, exclude_outside_window=not include_late, exclude_duplicates=True, **kw)

    def corpus(self) -> Filters:
        """Only the filters that define the set of records (status, window, duplicates), not the search ones:
        form-letter groups are found over this set so that a filtered export keeps the same group ids."""
        return Filters(statuses=list(self.statuses), exclude_outside_window=self.exclude_outside_window,
                       exclude_duplicates=self.exclude_duplicates)


def item_matches(item: dict[str, Any], f: Filters) -> bool:
    if f.target and f.target not in (item.get("targets") or []):
        return False
    if f.text:
        needle = fold(f.text)
        hay = "\n".join(fold(str(item.get(k) or "")) for k in ("text", "summary", "location"))
        if needle not in hay:
            return False
    return True


def record_matches(msg: Message, f: Filters) -> bool:
    if f.statuses and msg.status not in f.statuses:
        return False
    if f.exclude_duplicates and msg.status == DUPLICATE:
        return False
    if f.reason and f.reason not in (msg.reasons or []):
        return False
    if f.flag and f.flag not in (msg.flags or []):
        return False
    if f.exclude_outside_window and set(msg.flags or []) & set(OUTSIDE_WINDOW):
        return False
    result = msg.result or {}
    if f.kind and (result.get("submitter") or {}).get("kind", "unknown") != f.kind:
        return False
    if f.target or f.text:
        return any(item_matches(item, f) for item in result.get("comments") or [])
    return True


def select_records(session: Session, f: Filters, newest_first: bool = False) -> list[Message]:
    """The records that pass every filter. Status and time are filtered in SQL; the JSON fields in Python."""
    order = (Message.received_at.desc(), Message.id.desc()) if newest_first else (Message.received_at, Message.id)
    query = select(Message).order_by(*order)
    if f.statuses:
        query = query.where(Message.status.in_(f.statuses))
    if f.exclude_duplicates:
        query = query.where(Message.status != DUPLICATE)
    if f.since:
        query = query.where(Message.received_at >= f.since)
    if f.until:
        query = query.where(Message.received_at <= f.until)
    return [m for m in session.scalars(query) if record_matches(m, f)]


@dataclass
class Item:
    """One comment item of one record: a row of the export."""

    record_id: int
    index: int  # 1-based position of the item in its record
    received_at: dt.datetime
    status: str
    flags: list[str]
    submitter: dict[str, Any]
    from_address: str | None
    text: str
    targets: list[str]
    pages: list[str]
    location: str | None
    summary: str | None
    group: str | None = None

    @property
    def kind(self) -> str:
        return str(self.submitter.get("kind") or "unknown")

    @property
    def key(self) -> tuple[int, int]:
        return (self.record_id, self.index)


def items_of(records: Iterable[Message], f: Filters | None = None) -> list[Item]:
    out: list[Item] = []
    for msg in records:
        result = msg.result or {}
        for i, c in enumerate(result.get("comments") or [], 1):
            if f is not None and not item_matches(c, f):
                continue
            out.append(Item(
                record_id=msg.id, index=i, received_at=msg.received_at, status=msg.status,
                flags=list(msg.flags or []), submitter=dict(result.get("submitter") or {}),
                from_address=msg.from_address, text=str(c.get("text") or ""), targets=list(c.get("targets") or []),
                pages=list(c.get("pages") or []), location=c.get("location"), summary=c.get("summary"),
            ))
    return out


def jst_text(value: dt.datetime | None, seconds: bool = True) -> str:
    return jst.stamp(value, seconds=seconds, empty="")
