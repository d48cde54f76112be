"""R2 (daemon/stages/received.py): the arrival time at the ministry's server, and the window in JST."""

from __future__ import annotations

import dataclasses
import datetime as dt

from daemon.jst import JST
from daemon.model import Arrival, Known, Work
from daemon.rules import load_rules
from daemon.stages.received import RECEIVED_AT_UNCERTAIN, determine_received, topmost_received_date

from conftest import RULES

RULES_OBJ = load_rules(RULES)
INSIDE = dt.datetime(2026, 1, 10, 9, 0, tzinfo=JST)


def work_of(raw: bytes = b"Subject: x\r\n\r\nbody\r\n", received_at: dt.datetime | None = None,
            known: Known | None = None) -> Work:
    arrival = Arrival(raw=raw, source="test", received_at=received_at, received_source="argument")
    return Work(arrival=arrival, sha256=None, content_id=None, size=len(raw), known=known or Known())


def test_the_sources_own_time_wins_over_received_fields() -> None:
    raw = b"Received: from a by b; Sat, 31 Jan 2026 10:00:00 +0900\r\nSubject: x\r\n\r\nb\r\n"
    work = work_of(raw, received_at=INSIDE)
    determine_received(work, RULES_OBJ)
    assert work.received_at == INSIDE and work.received_source == "argument" and work.flags == []


def test_the_topmost_received_field_is_the_last_hop() -> None:
    raw = (b"Received: from relay by mx.example.go.jp; Fri, 30 Jan 2026 00:00:01 +0900\r\n"
           b"Received: from sender by relay; Thu, 29 Jan 2026 23:00:00 +0900\r\nSubject: x\r\n\r\nb\r\n")
    assert topmost_received_date(raw) == dt.datetime(2026, 1, 30, 0, 0, 1, tzinfo=JST)
    work = work_of(raw)
    determine_received(work, RULES_OBJ)
    assert work.received_source == "received_header" and work.flags == ["late"]  # one second after 23:59:59 JST


def test_no_time_at_all_is_now_and_flagged() -> None:
    work = work_of()
    now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    determine_received(work, RULES_OBJ, now=now)
    assert work.received_at == now and work.received_source == "now" and work.flags == [RECEIVED_AT_UNCERTAIN]


def test_window_edges_in_jst() -> None:
    for when, flag in ((RULES_OBJ.window_start - dt.timedelta(seconds=1), ["early"]),
                       (RULES_OBJ.window_start, []), (RULES_OBJ.window_end, []),
                       (RULES_OBJ.window_end + dt.timedelta(seconds=1), ["late"])):
        work = work_of(received_at=when.astimezone(dt.UTC))  # any zone compares correctly
        determine_received(work, RULES_OBJ)
        assert work.flags == flag, when


def test_a_retry_keeps_its_first_arrival_and_flags_whatever_the_rules_say_now() -> None:
    first = RULES_OBJ.window_end + dt.timedelta(days=1)
    known = Known(record_id=7, received_at=first, received_source="imap_internaldate", flags=("late",))
    moved = dataclasses.replace(RULES_OBJ, window_end=first + dt.timedelta(days=30))  # the window was extended
    work = work_of(received_at=INSIDE, known=known)
    determine_received(work, moved)
    assert work.received_at == first and work.received_source == "imap_internaldate" and work.flags == ["late"]
