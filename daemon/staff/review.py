"""整理: the staff's operations from comment items to the rows of the result document (issue 18).

- `sync` takes the comment items of the records that go into the published table (accepted and released, no
  duplicates, nothing outside the window; `Filters.for_publication`) that have no row yet, places each in the
  outline (daemon/outline.py) and groups it: an item to the same effect as an existing one (the form-letter
  groups of daemon/staff/groups.py: identical or near-identical text) joins that item's row; others start a
  row of their own. Staff decisions already made (moves, merges, splits) are never undone by a sync.
- `move`, `merge`, `split`: a row to another section; rows into one (同旨); an item out of its row.
- `supersede` / `restore`: a record replaced by a later one from the same submitter (a corrected resend): its
  items count nowhere and are not in the document. A company's corrected resend is not a form letter.
- `save_answer`: the 考え方 of a row, its 修正の有無 and its state, under an optimistic lock: a save made on an
  older version than the stored one is refused with the current answer (`StaleAnswer`), never overwritten.

Every change writes a `ReviewEvent` with who and when; a supersession also writes an `Event` on the record, so
the record's own history shows it. The web application (整理, 進捗) and `intake export --format result-*` call
these; neither re-implements them. Callers commit.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from daemon.outline import OTHER
from daemon.rules import Rules
from daemon.staff.export import public_submitter, staff_submitter
from daemon.staff.groups import DEFAULT_NGRAM, DEFAULT_SIMILARITY, find_groups
from daemon.staff.query import Filters, Item, items_of, record_matches, select_records
from daemon.store.db import Event, Message, now_utc
from daemon.store.review import DRAFT, FINAL, REVISED, STATES, TODO, ReviewEvent, ReviewGroup, ReviewItem, Supersession

MAX_ANSWER_CHARS = 20_000
SYSTEM = "intake"


class ReviewError(Exception):
    """The operation cannot be done; str() is one line for the user (Japanese: the web shows it as it is)."""


class StaleAnswer(ReviewError):
    """Someone saved this answer since the form was opened: `current` is what is stored now."""

    def __init__(self, current: ReviewGroup) -> None:
        super().__init__(f"この考え方は{current.answered_by or '他の人'}が先に保存しました。"
                         "現在の内容を確認してから、もう一度保存してください。")
        self.current = current


def _event(session: Session, actor: str, action: str, group_id: int | None = None, message_pk: int | None = None,
           **detail: object) -> None:
    session.add(ReviewEvent(at=now_utc(), actor=actor, action=action, group_id=group_id, message_pk=message_pk,
                            detail=dict(detail)))


def superseded_ids(session: Session) -> set[int]:
    return set(session.scalars(select(Supersession.message_pk)))


def eligible_items(session: Session) -> list[Item]:
    """The comment items that count: the publication set without superseded records, in order of arrival."""
    gone = superseded_ids(session)
    records = [m for m in select_records(session, Filters.for_publication()) if m.id not in gone]
    return items_of(records)


# -- sync ------------------------------------------------------------------------------------------
def _has_new_items(session: Session) -> bool:
    """Whether some counted record has a comment item without a row: only accepted records that have no row
    at all are read (few), not the whole publication set. A record's items are fixed once it is accepted
    (release and retry act on rejected and held records, which have no rows), so a record with rows has all."""
    pub = Filters.for_publication()
    gone = superseded_ids(session)
    fresh = session.scalars(select(Message).where(
        Message.status.in_(pub.statuses),
        ~select(ReviewItem.id).where(ReviewItem.message_pk == Message.id).exists()))
    return any(items_of([m]) for m in fresh if m.id not in gone and record_matches(m, pub))


def sync(session: Session, rules: Rules, actor: str = SYSTEM, threshold: float = DEFAULT_SIMILARITY,
         ngram: int = DEFAULT_NGRAM) -> int:
    """Give every counted item without a row its place and its row; returns how many were added."""
    if not _has_new_items(session):
        return 0  # the common case on every page view: no record has to be read
    known = {(r.message_pk, r.item_index): r for r in session.scalars(select(ReviewItem))}
    items = eligible_items(session)
    new = [n for n, it in enumerate(items) if it.key not in known]
    if not new:
        return 0
    cluster: dict[int, int] = {}  # item index -> found group number
    members: dict[int, list[int]] = {}
    for g_no, g in enumerate(find_groups([it.text for it in items], threshold, ngram)):
        members[g_no] = g.members
        for m in g.members:
            cluster[m] = g_no
    made: dict[int, int] = {}  # found group number -> the review group made for it in this sync
    for n in new:
        it = items[n]
        auto = rules.outline.place(it.targets, [*it.pages, *([it.location] if it.location else [])])
        group_id: int | None = None
        g_no = cluster.get(n)
        if g_no is not None:
            for m in members[g_no]:
                row = known.get(items[m].key)
                if row is not None:
                    group_id = row.group_id
                    break
            else:
                group_id = made.get(g_no)
        if group_id is None:
            group = ReviewGroup(section=auto, placed_by=SYSTEM, origin="auto", answer="", state=TODO, version=0,
                                created_at=now_utc())
            session.add(group)
            session.flush()
            group_id = group.id
            if g_no is not None:
                made[g_no] = group_id
        row = ReviewItem(message_pk=it.record_id, item_index=it.index, group_id=group_id, auto_section=auto,
                         created_at=now_utc())
        session.add(row)
        known[it.key] = row
    session.flush()
    _event(session, actor, "sync", added=len(new))
    return len(new)


# -- rows: move, merge, split --------------------------------------------------------------------
def _group(session: Session, group_id: int, lock: bool = False) -> ReviewGroup:
    group = session.get(ReviewGroup, group_id, with_for_update=lock)
    if group is None:
        raise ReviewError(f"整理の行 {group_id} はありません。")
    return group


def _members(session: Session, group_id: int) -> list[ReviewItem]:
    return list(session.scalars(select(ReviewItem).where(ReviewItem.group_id == group_id).order_by(ReviewItem.id)))


def move(session: Session, rules: Rules, group_id: int, section: str, actor: str) -> None:
    sections = dict(rules.outline.order)
    if section not in sections:
        raise ReviewError(f"項目「{section}」は目次にありません。")
    group = _group(session, group_id, lock=True)
    if group.section == section:
        return
    before, group.section, group.placed_by = group.section, section, actor
    _event(session, actor, "move", group_id, before=before, after=section)


def merge(session: Session, into: int, others: Sequence[int], actor: str) -> int:
    """Put the items of `others` in the row `into` (同旨); their rows become empty and leave the document.
    Returns how many items moved. The answer of `into` stays; the others' answers stay in the history."""
    target = _group(session, into, lock=True)
    moved = 0
    for gid in others:
        if gid == into:
            continue
        other = _group(session, gid, lock=True)
        items = _members(session, gid)
        for it in items:
            it.group_id = target.id
        moved += len(items)
        _event(session, actor, "merge", gid, into=target.id, items=len(items),
               answer=other.answer, revised=other.revised, state=other.state)
    if moved:
        _event(session, actor, "merge", target.id, received=moved, sources=[g for g in others if g != into])
    return moved


def split(session: Session, item_id: int, actor: str) -> int:
    """Take one item out of its row into a row of its own in the same section; returns the new row's id."""
    item = session.get(ReviewItem, item_id, with_for_update=True)
    if item is None:
        raise ReviewError(f"意見 {item_id} はありません。")
    old = _group(session, item.group_id, lock=True)
    if len(_members(session, old.id)) < 2:
        raise ReviewError("この意見はすでに単独の行です。")
    group = ReviewGroup(section=old.section, placed_by=actor, origin="staff", answer="", state=TODO, version=0,
                        created_at=now_utc())
    session.add(group)
    session.flush()
    item.group_id = group.id
    _event(session, actor, "split", old.id, item=item_id, to=group.id, message_pk=item.message_pk)
    _event(session, actor, "split", group.id, item=item_id, from_row=old.id, message_pk=item.message_pk)
    return group.id


# -- supersede ---------------------------------------------------------------------------------------
def supersede(session: Session, earlier: int, later: int, actor: str, note: str = "") -> None:
    """Record `earlier` as replaced by `later` (a corrected resend from the same submitter)."""
    if earlier == later:
        raise ReviewError("同じ受付番号どうしは差し替えにできません。")
    old, new = session.get(Message, earlier), session.get(Message, later)
    for rid, msg in ((earlier, old), (later, new)):
        if msg is None:
            raise ReviewError(f"受付番号 {rid} はありません。")
    assert old is not None and new is not None
    if session.get(Supersession, earlier) is not None:
        raise ReviewError(f"受付番号 {earlier} はすでに差し替え済みです。")
    if session.get(Supersession, later) is not None:
        raise ReviewError(f"受付番号 {later} は差し替えられた記録です。差し替え先にはできません。")
    if session.scalar(select(func.count()).select_from(Supersession).where(Supersession.replaced_by == earlier)):
        raise ReviewError(f"受付番号 {earlier} は別の記録の差し替え先です。先にそちらを戻してください。")
    session.add(Supersession(message_pk=earlier, replaced_by=later, actor=actor, at=now_utc(), note=note or None))
    text = f"受付番号 {later} による差し替え" + (f": {note}" if note else "")
    session.add(Event(message_pk=earlier, at=now_utc(), action="superseded", status=old.status,
                      reasons=list(old.reasons or []), actor=actor, note=text))
    _event(session, actor, "supersede", message_pk=earlier, replaced_by=later, note=note)


def restore(session: Session, earlier: int, actor: str, note: str = "") -> None:
    """Undo a supersession: the record counts again."""
    row = session.get(Supersession, earlier)
    if row is None:
        raise ReviewError(f"受付番号 {earlier} は差し替えられていません。")
    later = row.replaced_by
    session.delete(row)
    msg = session.get(Message, earlier)
    if msg is not None:
        session.add(Event(message_pk=earlier, at=now_utc(), action="unsuperseded", status=msg.status,
                          reasons=list(msg.reasons or []), actor=actor,
                          note=f"受付番号 {later} による差し替えを取り消し" + (f": {note}" if note else "")))
    _event(session, actor, "restore", message_pk=earlier, replaced_by=later, note=note)


# -- answers -------------------------------------------------------------------------------------------
def save_answer(session: Session, group_id: int, text: str, revised: str | None, state: str, version: int,
                actor: str) -> int:
    """Save the 考え方 of a row if nobody saved it since `version`; returns the new version.
    Raises StaleAnswer (with what is stored now) when somebody did, ReviewError when a value is not allowed."""
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_ANSWER_CHARS:
        raise ReviewError(f"考え方は{MAX_ANSWER_CHARS:,}字までです。")
    if revised not in (None, *REVISED):
        raise ReviewError("修正の有無は「有」「無」または未選択です。")
    if state not in STATES:
        raise ReviewError("状態は未着手・検討中・確定のいずれかです。")
    if state == FINAL and not text:
        raise ReviewError("考え方が空のままでは確定にできません。")
    if state == TODO and text:
        state = DRAFT  # an answer being written is no longer untouched
    now = now_utc()
    done = session.execute(
        update(ReviewGroup).where(ReviewGroup.id == group_id, ReviewGroup.version == version)
        .values(answer=text, revised=revised, state=state, version=version + 1, answered_by=actor, answered_at=now)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        current = _group(session, group_id)
        session.refresh(current)
        raise StaleAnswer(current)
    _event(session, actor, "answer", group_id, version=version + 1, answer=text, revised=revised, state=state)
    return version + 1


def history(session: Session, group_id: int) -> list[ReviewEvent]:
    """What happened to one row, oldest first: placed, moved, merged, split and every saved answer."""
    return list(session.scalars(select(ReviewEvent).where(ReviewEvent.group_id == group_id).order_by(ReviewEvent.id)))


# -- what the pages and the document read ---------------------------------------------------------------
@dataclass
class Member:
    item_id: int
    item: Item
    staff_label: str  # who sent it, as staff see it (a name)
    public_label: str  # as the published list names it (「個人」 for an individual)


@dataclass
class Row:
    group: ReviewGroup
    members: list[Member] = field(default_factory=list)

    @property
    def first(self) -> Member:
        return self.members[0]

    @property
    def received_at(self) -> dt.datetime:
        return self.first.item.received_at

    @property
    def state_label(self) -> str:
        return STATES.get(self.group.state, self.group.state)


@dataclass
class Board:
    """Every counted row by section in outline order (「その他・全般」 last), rows by their first arrival."""

    sections: list[tuple[str, str, list[Row]]]  # (section id, title, rows)
    items: list[Item]
    superseded: dict[int, int]  # earlier record -> later record

    def progress(self) -> list[tuple[str, str, Counter[str], int]]:
        """(section id, title, rows per state, items) for 進捗."""
        out = []
        for sid, title, rows in self.sections:
            out.append((sid, title, Counter(r.group.state for r in rows), sum(len(r.members) for r in rows)))
        return out

    def row(self, group_id: int) -> Row | None:
        return next((r for _s, _t, rows in self.sections for r in rows if r.group.id == group_id), None)


def board(session: Session, rules: Rules) -> Board:
    """The counted items in their rows. Items of records no longer counted (rejected since, superseded)
    are left out, and so are rows left empty; items not yet synced are not on the board (call `sync`)."""
    items = eligible_items(session)
    by_key = {it.key: it for it in items}
    groups = {g.id: g for g in session.scalars(select(ReviewGroup))}
    rows: dict[int, Row] = {}
    for ri in session.scalars(select(ReviewItem).order_by(ReviewItem.id)):
        it = by_key.get((ri.message_pk, ri.item_index))
        if it is None:
            continue
        row = rows.setdefault(ri.group_id, Row(groups[ri.group_id]))
        row.members.append(Member(ri.id, it, staff_submitter(it.submitter) or (it.from_address or ""),
                                  public_submitter(it.submitter)))
    for row in rows.values():
        row.members.sort(key=lambda m: (m.item.received_at, m.item.record_id, m.item.index))
    by_section: dict[str, list[Row]] = defaultdict(list)
    known = dict(rules.outline.order)
    for row in sorted(rows.values(), key=lambda r: (r.received_at, r.first.item.record_id, r.first.item.index)):
        section = row.group.section if row.group.section in known else OTHER  # a section since removed
        by_section[section].append(row)
    sections = [(sid, title, by_section.get(sid, [])) for sid, title in rules.outline.order]
    superseded = dict(session.execute(select(Supersession.message_pk, Supersession.replaced_by)).tuples().all())
    return Board(sections=sections, items=items, superseded=superseded)
