"""`intake stats`: counts by status, reason and flag; arrivals per day of the window (the last day by hour);
「N者（個人a者、法人・団体b者）から延べM件」; and the form-letter groups.

Counting rules (README, "Staff tools"): the 者 / 件 line and the groups are over the records that go into the
published table (accepted and released, no duplicates, nothing outside the window or held unless asked for).
A submitter is counted once however many mails it sent: an organisation by its name, an individual by name and
mail address, a submission without a name by its mail address. A submission without a name counts as an
individual's. Only submitters with at least one comment item are counted.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.jst import JST
from daemon.model import DUPLICATE
from daemon.rules import Rules
from daemon.staff.groups import DEFAULT_NGRAM, DEFAULT_SIMILARITY, Group, find_groups
from daemon.staff.query import Filters, Item, fold, items_of, select_records
from daemon.store.db import Message

STATUSES = ("accepted", "rejected", "quarantined", "held", "duplicate")


def submitter_identity(item: Item) -> str:
    sub = item.submitter
    mail = fold(str(sub.get("email") or parseaddr(item.from_address or "")[1] or ""))
    if item.kind == "organization" and sub.get("organization"):
        return "org:" + fold(str(sub["organization"]))
    if sub.get("name"):
        return "ind:" + fold(str(sub["name"])) + "|" + mail
    return ("mail:" + mail) if mail else f"rec:{item.record_id}"


@dataclass
class Tally:
    submitters: int = 0
    individuals: int = 0
    organizations: int = 0
    items: int = 0

    def line(self) -> str:
        return (f"{self.submitters}者（個人{self.individuals}者、法人・団体{self.organizations}者）"
                f"から延べ{self.items}件")


def tally(items: list[Item]) -> Tally:
    kinds: dict[str, str] = {}
    for it in items:
        ident = submitter_identity(it)
        kinds.setdefault(ident, "organization" if it.kind == "organization" else "individual")
    c = Counter(kinds.values())
    return Tally(len(kinds), c["individual"], c["organization"], len(items))


def assign_groups(items: list[Item], threshold: float = DEFAULT_SIMILARITY,
                  ngram: int = DEFAULT_NGRAM) -> list[Group]:
    groups = find_groups([it.text for it in items], threshold, ngram)
    for g in groups:
        for m in g.members:
            items[m].group = g.id
    return groups


@dataclass
class Stats:
    by_status: dict[str, int]
    by_reason: dict[str, int]
    by_flag: dict[str, int]
    per_day: list[tuple[str, Counter[str]]]  # (YYYY-MM-DD or 'before'/'after', status counts)
    last_day_hours: list[tuple[str, Counter[str]]]  # ('HH:00', status counts)
    tally: Tally
    groups: list[Group]
    items: list[Item] = field(repr=False)
    threshold: float = DEFAULT_SIMILARITY

    def to_json(self) -> dict[str, Any]:
        return {
            "by_status": self.by_status, "by_reason": self.by_reason, "by_flag": self.by_flag,
            "per_day": [{"day": d, **{s: c[s] for s in STATUSES}, "total": c.total()} for d, c in self.per_day],
            "last_day_by_hour": [{"hour": h, **{s: c[s] for s in STATUSES}, "total": c.total()}
                                 for h, c in self.last_day_hours],
            "submitters": self.tally.submitters, "individuals": self.tally.individuals,
            "organizations": self.tally.organizations, "items": self.tally.items, "line": self.tally.line(),
            "similarity": self.threshold,
            "form_letter_groups": [
                {"group": g.id, "count": g.count, "identical": g.identical,
                 "records": sorted({self.items[m].record_id for m in g.members}),
                 "duplicateComments": g.count - 1}
                for g in self.groups
            ],
        }


def compute(session: Session, rules: Rules, corpus: Filters, threshold: float = DEFAULT_SIMILARITY,
            ngram: int = DEFAULT_NGRAM) -> Stats:
    everything = list(session.scalars(select(Message).order_by(Message.received_at, Message.id)))
    by_status = Counter(m.status for m in everything)
    by_reason = Counter(r for m in everything for r in (m.reasons or []))
    by_flag = Counter(f for m in everything if m.status != DUPLICATE for f in (m.flags or []))

    start = rules.window_start.astimezone(JST).date()
    end = rules.window_end.astimezone(JST).date()
    days: dict[str, Counter[str]] = {}
    days["before"] = Counter()
    d = start
    while d <= end:
        days[d.isoformat()] = Counter()
        d += dt.timedelta(days=1)
    days["after"] = Counter()
    hours: dict[str, Counter[str]] = {f"{h:02d}:00": Counter() for h in range(24)}
    for m in everything:
        local = m.received_at.astimezone(JST)
        day = local.date()
        slot = "before" if day < start else "after" if day > end else day.isoformat()
        days[slot][m.status] += 1
        if day == end:
            hours[f"{local.hour:02d}:00"][m.status] += 1

    items = items_of(select_records(session, corpus))
    groups = assign_groups(items, threshold, ngram)
    per_day = [(k, v) for k, v in days.items() if k not in ("before", "after") or v]
    return Stats(
        by_status={s: by_status[s] for s in STATUSES},
        by_reason=dict(sorted(by_reason.items())), by_flag=dict(sorted(by_flag.items())),
        per_day=per_day, last_day_hours=list(hours.items()), tally=tally(items), groups=groups, items=items,
        threshold=threshold,
    )


def excerpt(text: str, n: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"
