"""The ダッシュボード's numbers: arrivals today and per day of the window, counts by status, what needs a person
now, the daemons' health and the days left. A few SQL counts, no record is loaded; the 者/件 line comes from
daemon/staff/stats.py (it reads every accepted record, so the page caches it for a minute)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.jst import JST
from daemon.model import HELD, QUARANTINED, REJECTED
from daemon.rules import Rules
from daemon.staff.query import Filters, items_of, select_records
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
    days: Counter[dt.date] = Counter()
    outside = 0
    # One column of timestamps, bucketed by JST day here: the same on SQLite and PostgreSQL.
    for (when,) in session.execute(select(Message.received_at).where(Message.status != "duplicate")):
        if start <= when <= end:
            days[when.astimezone(JST).date()] += 1
        else:
            outside += 1
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
    """「N者（個人a者、法人・団体b者）から延べM件」 over what would be published (as `intake stats`)."""
    return tally(items_of(select_records(session, Filters.for_publication())))
