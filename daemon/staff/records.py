"""Reading records for a page: one page of the intake log (filtered, searched, counted in SQL) and one record
with what a person needs to judge it. For the web application's 受付一覧 and 受付詳細.

`intake log` filters the JSON fields in Python over every record (daemon/staff/query.py); a page of 50 out of
100,000 cannot, so here every filter is SQL: the reason and flag lists as text (the codes are ASCII and
quoted in the JSON), the submitter kind and the items' targets through the dialect's JSON functions, and the
free text through `record_search`, the trigram-indexed document the database keeps per record (migration
0008: PostgreSQL pg_trgm, SQLite FTS5; words of one or two characters: 0009, daemon/staff/search.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import String, cast, func, select, text
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from daemon.jst import JST
from daemon.model import QUARANTINED
from daemon.staff import search
from daemon.stages.parse import parse_message
from daemon.store.db import Attachment, Message
from daemon.store.raw import RawStore, RawStoreError

PER_PAGE = 50
MAX_WORDS = 8  # words of one search; more are ignored (each is one index probe)


@dataclass
class ListFilters:
    """The 受付一覧's filters; every one is optional. Dates are JST calendar days, both ends included."""

    status: str | None = None
    reason: str | None = None
    flag: str | None = None
    target: str | None = None  # main | annex
    kind: str | None = None  # individual | organization | unknown
    since: dt.date | None = None
    until: dt.date | None = None
    words: list[str] = field(default_factory=list)

    def any(self) -> bool:
        return any((self.status, self.reason, self.flag, self.target, self.kind, self.since, self.until, self.words))


@dataclass
class Row:
    id: int
    received_at: dt.datetime
    status: str
    reasons: list[str]
    flags: list[str]
    subject: str | None
    kind: str
    submitter: str  # the name or organisation, for staff (this page is behind a sign-in)
    items: int
    excerpt: str
    attachments: int


@dataclass
class Page:
    rows: list[Row]
    total: int
    page: int
    pages: int
    per_page: int = PER_PAGE


def split_words(query: str) -> list[str]:
    """Search words: split on any whitespace (full-width too), NFKC, ASCII lower-cased, at most MAX_WORDS."""
    words = [unicodedata.normalize("NFKC", w).lower() for w in query.split()]
    return [w for w in dict.fromkeys(words) if w][:MAX_WORDS]


def _code_in(column: Any, code: str) -> ColumnElement[bool]:
    """A JSON list of codes holds `code`: the codes are ASCII words, quoted in the stored JSON text."""
    return cast(column, String).like(f'%"{code}"%')


def _facet(name: str, value: str) -> ColumnElement[bool]:
    """Records with this submitter kind / target: `record_facets`, kept by the database's triggers (0008)."""
    facets = select(text("message_pk")).select_from(text("record_facets")).where(
        text(f"facet = :facet_{name}").bindparams(**{f"facet_{name}": f"{name}:{value}"}))
    return Message.id.in_(facets)


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=JST)


def conditions(session: Session, f: ListFilters) -> tuple[list[Any], dict[str, Any]]:
    where: list[Any] = []
    params: dict[str, Any] = {}
    if f.status:
        where.append(Message.status == f.status)
    if f.reason:
        where.append(_code_in(Message.reasons, f.reason))
    if f.flag:
        where.append(_code_in(Message.flags, f.flag))
    if f.kind:
        where.append(_facet("kind", f.kind))
    if f.target:
        where.append(_facet("target", f.target))
    if f.since:
        where.append(Message.received_at >= _day_start(f.since))
    if f.until:
        where.append(Message.received_at < _day_start(f.until + dt.timedelta(days=1)))
    for n, word in enumerate(f.words):
        clause, p = search.word_clause(session, word, n)
        where.append(clause)
        params.update(p)
    return where, params


def _row(msg: Message, attachments: int) -> Row:
    result = msg.result or {}
    sub = result.get("submitter") or {}
    comments = [c for c in result.get("comments") or [] if isinstance(c, dict)]
    first = " ".join(str(comments[0].get("text") or "").split()) if comments else ""
    who = str(sub.get("organization") or sub.get("name") or "") if isinstance(sub, dict) else ""
    return Row(id=msg.id, received_at=msg.received_at, status=msg.status, reasons=list(msg.reasons or []),
               flags=list(msg.flags or []), subject=msg.subject,
               kind=str(sub.get("kind") or "unknown") if isinstance(sub, dict) else "unknown",
               submitter=who, items=len(comments), excerpt=first[:80] + ("…" if len(first) > 80 else ""),
               attachments=attachments)


def list_page(session: Session, f: ListFilters, page: int = 1, newest_first: bool = True,
              per_page: int = PER_PAGE) -> Page:
    """One page of the records that pass every filter, with the total: two statements (count, page)."""
    where, params = conditions(session, f)
    if f.words and not replace(f, words=[]).any():
        total = search.count_words(session, f.words)  # in record_search alone (daemon/staff/search.py)
    else:
        total = session.execute(select(func.count()).select_from(Message).where(*where), params).scalar_one()
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    order = (Message.received_at.desc(), Message.id.desc()) if newest_first else (Message.received_at, Message.id)
    # The page's ids first (an index walk over (received_at, id)), then those 50 records: a page deep in the
    # log never reads the records it skips.
    ids = list(session.scalars(select(Message.id).where(*where).order_by(*order)
                               .limit(per_page).offset((page - 1) * per_page), params))
    found = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))} if ids else {}
    msgs = [found[i] for i in ids if i in found]
    counts: dict[int, int] = {}
    if msgs:
        counts = dict(session.execute(  # type: ignore[arg-type]
            select(Attachment.message_pk, func.count()).where(Attachment.message_pk.in_([m.id for m in msgs]))
            .group_by(Attachment.message_pk)).all())
    return Page([_row(m, counts.get(m.id, 0)) for m in msgs], total, page, pages, per_page)


# -- one record ------------------------------------------------------------------------------------
def load(session: Session, record_id: int) -> Message | None:
    return session.get(Message, record_id,
                       options=[selectinload(Message.attachments), selectinload(Message.events)])


class NotAvailable(Exception):
    """The bytes asked for may not be given out (quarantined, infected, not an allowed file) or are gone;
    str() is one Japanese sentence for the page."""


def downloadable(msg: Message, att: Attachment) -> bool:
    """An attachment's original bytes are given out only when its verdict is `allowed` and the message is
    not quarantined: never the bytes of an infected or quarantined file."""
    return (att.verdict == "allowed" and msg.status != QUARANTINED and msg.raw_area == "raw"
            and msg.sha256 is not None and att.signature is None)


def _raw_bytes(store: RawStore, msg: Message) -> bytes:
    if msg.sha256 is None or msg.raw_area != "raw":
        raise NotAvailable("元のメールは保存されていません（容量超過、削除済み、または隔離中）。")
    path = store.path_for(msg.sha256, quarantined=False)  # never the quarantine area
    try:
        data = path.read_bytes()
    except OSError:
        raise NotAvailable("元のメールが保存場所に見つかりません。管理者に連絡してください。") from None
    if hashlib.sha256(data).hexdigest() != msg.sha256:
        raise NotAvailable("保存されている元のメールが記録と一致しません。管理者に連絡してください。")
    return data


def raw_message(store: RawStore, msg: Message) -> bytes:
    """The raw .eml as received (for reviewers); never a quarantined one."""
    if msg.status == QUARANTINED or msg.raw_area == "quarantine":
        raise NotAvailable("隔離されたメールはダウンロードできません。")
    return _raw_bytes(store, msg)


def attachment_bytes(store: RawStore, msg: Message, att: Attachment) -> bytes:
    """The original bytes of one allowed attachment, taken out of the stored raw mail and checked against the
    SHA-256 recorded when it was received."""
    if not downloadable(msg, att):
        raise NotAvailable("このファイルはダウンロードできません（受け付けない形式、ウイルス、または隔離中）。")
    from daemon.model import Arrival, Work

    raw = _raw_bytes(store, msg)
    work = Work(arrival=Arrival(raw=raw, source="web"), sha256=None, content_id=None, size=len(raw))
    parse_message(work)
    for part in work.attachments:
        if part.position == att.position and hashlib.sha256(part.data).hexdigest() == att.sha256:
            return part.data
    raise NotAvailable("添付ファイルを元のメールから取り出せませんでした。管理者に連絡してください。")


__all__ = ["PER_PAGE", "ListFilters", "NotAvailable", "Page", "RawStoreError", "Row", "attachment_bytes",
           "downloadable", "list_page", "load", "raw_message", "split_words"]
