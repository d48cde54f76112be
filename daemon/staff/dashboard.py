"""The ダッシュボード's numbers: arrivals today and per day of the window, counts by status, what needs a person
now, the daemons' health and the days left. A few SQL counts, no record is loaded; the 者/件 line comes from
daemon/staff/stats.py (it reads every accepted record, so the page caches it for a minute)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, case, cast, func, select
from sqlalchemy.orm import Session

from daemon.jst import JST
from daemon.model import HELD, QUARANTINED, REJECTED
from daemon.rules import Rules
from daemon.staff.query import OUTSIDE_WINDOW, Filters, Item
from daemon.staff.stats import STATUSES, Tally, tally
from daemon.store.db import AlertDelivery, Message, ServiceHealth

STALE_AFTER = dt.timedelta(minutes=3)  # a daemon's health row older than this: not responding


@dataclass
class Summary:
    now: dt.datetime
    today: int
    by_status: dict[str, int]
    per_day: list[tuple[dt.date, int]]
    outside_window: int
    needs_person: dict[str, int]  # held, rejected (not released), quarantined, undelivered alerts
    days_left: int | None  # None after the window closed
    window_start: dt.datetime
    window_end: dt.datetime
    daemons: list[dict[str, Any]] = field(default_factory=list)


def summary(session: Session, rules: Rules, now: dt.datetime | None = None) -> Summary:
    now = now or dt.datetime.now(dt.UTC)
    local = now.astimezone(JST)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    by_status = Counter(dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all()))
    today = session.scalar(select(func.count()).select_from(Message).where(Message.received_at >= midnight)) or 0
    start, end = rules.window_start, rules.window_end
    # Counted by JST day in SQL: 100,000 timestamps never leave the database.
    if session.get_bind().dialect.name == "postgresql":
        day_expr: Any = func.date(func.timezone("Asia/Tokyo", Message.received_at))
    else:  # stored as UTC text 'YYYY-MM-DD HH:MM:SS'
        day_expr = func.date(Message.received_at, "+9 hours")
    counted = select(day_expr, func.count()).where(Message.status != "duplicate")
    days: Counter[dt.date] = Counter()
    for day, n in session.execute(counted.where(Message.received_at.between(start, end)).group_by(day_expr)):
        days[day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))] += n
    outside = session.scalar(select(func.count()).select_from(Message).where(
        Message.status != "duplicate", ~Message.received_at.between(start, end))) or 0
    first, last = start.astimezone(JST).date(), end.astimezone(JST).date()
    per_day = [(first + dt.timedelta(days=i), 0) for i in range((last - first).days + 1)]
    per_day = [(d, days[d]) for d, _ in per_day]
    rejected_open = session.scalar(select(func.count()).select_from(Message).where(Message.status == REJECTED)) or 0
    undelivered = session.scalar(select(func.count()).select_from(AlertDelivery)
                                 .where(AlertDelivery.state != "sent")) or 0
    needs = {HELD: by_status[HELD], REJECTED: rejected_open, QUARANTINED: by_status[QUARANTINED],
             "alerts": undelivered}
    days_left = None if now > end else (last - local.date()).days + 1  # today counts
    daemons = []
    for row in session.scalars(select(ServiceHealth).order_by(ServiceHealth.updated_at.desc()).limit(5)):
        running = row.state not in ("stopped", "dead") and now - row.updated_at <= STALE_AFTER
        daemons.append({"state": row.state if running else "停止または応答なし", "running": running,
                        "last_poll_at": row.last_poll_at, "backlog": row.backlog, "updated_at": row.updated_at,
                        "clamd_ok": row.clamd_ok, "clamd_version": row.clamd_version,
                        "last_error_at": row.last_error_at})
    return Summary(now=now, today=today, by_status={s: by_status[s] for s in STATUSES}, per_day=per_day,
                   outside_window=outside, needs_person=needs, days_left=days_left, window_start=start,
                   window_end=end, daemons=daemons)


def submitters(session: Session) -> Tally:
    """「N者（個人a者、法人・団体b者）から延べM件」 over what would be published, counted as `intake stats` counts
    (daemon/staff/stats.py `tally`, accepted records in the window, no duplicates), but reading only the
    submitter's fields and the number of items from the JSON in SQL, not every comment's text."""
    f = Filters.for_publication()
    res = Message.result
    if session.get_bind().dialect.name == "postgresql":
        comments = res["comments"]
        count: Any = case((func.json_typeof(comments) == "array", func.json_array_length(comments)), else_=0)
    else:
        count = func.coalesce(func.json_array_length(res, "$.comments"), 0)
    fields = [res[("submitter", k)].as_string() for k in ("kind", "name", "organization", "email")]
    query = select(Message.id, Message.from_address, *fields, count).where(Message.status.in_(f.statuses))
    for flag in OUTSIDE_WINDOW:
        query = query.where(~cast(Message.flags, String).like(f'%"{flag}"%'))
    # One item per record that has items: tally's identities are per submitter, so the result is the same,
    # and the items are counted here (tally parses each item's sender address: 180,000 of them take ~20 s).
    records: list[Item] = []
    count_items = 0
    for rid, sender, kind, name, org, mail, n in session.execute(query):
        if not n:
            continue
        count_items += int(n)
        sub = {"kind": kind or "unknown", "name": name, "organization": org, "email": mail}
        records.append(Item(record_id=rid, index=1, received_at=dt.datetime.min, status="", flags=[],
                            submitter=sub, from_address=sender, text="", targets=[], pages=[], location=None,
                            summary=None))
    per_record = tally(records)
    return Tally(per_record.submitters, per_record.individuals, per_record.organizations, count_items)
