"""Japan Standard Time: the consultation's zone (R2). Every time shown to staff or written to a file is JST."""

from __future__ import annotations

import datetime as dt

JST = dt.timezone(dt.timedelta(hours=9), "JST")


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in JST ('2026-01-10T09:15:00+09:00'), the JSON contract's form; None stays None."""
    return value.astimezone(JST).isoformat() if value is not None else None


def stamp(value: dt.datetime | None, seconds: bool = True, suffix: bool = False, empty: str = "-") -> str:
    """'2026-01-10 09:15:00' (or without seconds, or with ' JST') for tables, mails and exports."""
    if value is None:
        return empty
    text = value.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} JST" if suffix else text


def today(now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(JST).date()
