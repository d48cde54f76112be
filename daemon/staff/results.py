"""The result document 「提出された意見及び考え方」 from the staff's review (daemon/staff/review.py).

What it holds, and why each part is so (行政手続法 §43, and how 総務省 publishes its results):
- the submitter list in order of first submission, 「計N者（M件）（意見提出順、敬称略）」: an organisation by its
  名称 (and 代表者), one that asked for anonymity (or whose name the intake only guessed) as
  「法人・団体（匿名希望）」, an individual only as 「個人」 (R11); a submitter is counted once however many mails
  it sent (the identity of `intake stats`);
- one table per section of the outline, in outline order, 「その他・全般」 last, empty sections left out; one row
  per row of the review (a comment, or several to the same effect: 「（同旨N件）」), numbered 意見1-1, 1-2 … by
  section, in order of their first arrival; the 提出された意見 is the first member's text with personal data
  masked as the public export masks it; the answer and 修正の有無 as staff saved them.
The 件 are comment items; superseded records, duplicates and anything outside the window are not counted.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from daemon.jst import JST
from daemon.rules import Rules
from daemon.staff.export import INDIVIDUAL, private_values, redact
from daemon.staff.groups import DEFAULT_NGRAM, DEFAULT_SIMILARITY
from daemon.staff.result_model import ResultDocument, ResultRow, ResultSection
from daemon.staff.review import Board, Row, board, sync
from daemon.staff.stats import submitter_identity

_WEEKDAYS = "月火水木金土日"


def wareki(day: dt.date) -> str:
    """令和7年12月26日（金）: the era the ministry writes dates in (令和 from 2019-05-01)."""
    era = f"令和{'元' if day.year == 2019 else day.year - 2018}年" if day >= dt.date(2019, 5, 1) else f"{day.year}年"
    return f"{era}{day.month}月{day.day}日（{_WEEKDAYS[day.weekday()]}）"


def period(rules: Rules) -> str:
    return f"{wareki(rules.window_start.astimezone(JST).date())}～{wareki(rules.window_end.astimezone(JST).date())}"


def row_submitters(row: Row) -> tuple[str, ...]:
    """The row's submitters as the list names them, each once: organisations by name, individuals as
    「個人」 (「個人（N者）」 when several individuals sent the same comment)."""
    names: list[str] = []
    people: set[str] = set()
    for m in row.members:
        if m.public_label == INDIVIDUAL:
            people.add(submitter_identity(m.item))
            if INDIVIDUAL not in names:
                names.append(INDIVIDUAL)
        elif m.public_label not in names:
            names.append(m.public_label)
    if len(people) > 1:
        names[names.index(INDIVIDUAL)] = f"{INDIVIDUAL}（{len(people)}者）"
    return tuple(names)


def document(b: Board, rules: Rules) -> ResultDocument:
    members = [m for _sid, _title, rows in b.sections for r in rows for m in r.members]
    members.sort(key=lambda m: (m.item.received_at, m.item.record_id, m.item.index))
    labels: dict[str, str] = {}  # identity -> how the list names it, in order of first submission
    for m in members:
        labels.setdefault(submitter_identity(m.item), m.public_label)
    sections: list[ResultSection] = []
    for _sid, title, rows in b.sections:
        if not rows:
            continue
        number = len(sections) + 1
        out = []
        for n, r in enumerate(rows, 1):
            first = r.first.item
            out.append(ResultRow(number=f"意見{number}-{n}", opinion=redact(first.text, private_values(first)),
                                 answer=r.group.answer or "", revised=r.group.revised, same=len(r.members),
                                 submitters=row_submitters(r)))
        sections.append(ResultSection(number=number, title=title, rows=tuple(out)))
    name = rules.title
    return ResultDocument(
        title=f"「{name}」に対する意見募集で提出された意見及び考え方",
        consultation=name,
        period=period(rules),
        submitters=tuple(labels.values()),
        items=len(members),
        sections=tuple(sections),
    )


def build(session: Session, rules: Rules, actor: str = "intake", threshold: float = DEFAULT_SIMILARITY,
          ngram: int = DEFAULT_NGRAM) -> ResultDocument:
    """Sync the review with the records (new items get their place and row), then the document."""
    sync(session, rules, actor, threshold, ngram)
    session.commit()
    return document(board(session, rules), rules)
