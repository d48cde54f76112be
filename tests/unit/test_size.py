"""R3 (daemon/stages/size.py): the raw message as delivered may be at most limits.max_message_bytes.

The one module that decides the size rule; the pipeline runs `check_size`, and the sources ask `too_large`
and `size_limit` instead of comparing numbers themselves. No service is needed.
"""

from __future__ import annotations

import dataclasses

from daemon.model import TOO_LARGE, Arrival, Work
from daemon.rules import load_rules
from daemon.stages.size import check_size, size_limit, too_large

from conftest import RULES

RULES_OBJ = load_rules(RULES)
LIMIT = RULES_OBJ.max_message_bytes


def work_of(size: int, trace_bytes: int = 0) -> Work:
    arrival = Arrival(raw=b"", source="test", size=size, trace_bytes=trace_bytes)
    return Work(arrival=arrival, sha256=None, content_id=None, size=size)


def test_the_limit_is_twenty_mib_from_the_rules() -> None:
    assert size_limit(RULES_OBJ) == LIMIT == 20 * 1024 * 1024


def test_exactly_the_limit_is_lawful_one_byte_more_is_not() -> None:
    assert not too_large(LIMIT, RULES_OBJ)
    assert too_large(LIMIT + 1, RULES_OBJ)


def test_our_own_trace_field_does_not_count() -> None:
    # The LMTP listener adds a Received: field on top of the message as delivered (R3 counts what was sent).
    assert not too_large(LIMIT + 300, RULES_OBJ, trace_bytes=300)
    assert too_large(LIMIT + 301, RULES_OBJ, trace_bytes=300)


def test_check_size_rejects_and_stops_the_walk() -> None:
    work = work_of(LIMIT + 1)
    check_size(work, RULES_OBJ)
    assert work.reasons == [TOO_LARGE] and work.done  # never scanned or opened


def test_check_size_leaves_a_lawful_message_alone() -> None:
    work = work_of(LIMIT)
    check_size(work, RULES_OBJ)
    assert work.reasons == [] and not work.done


def test_the_limit_follows_the_rules_object_it_is_given() -> None:
    # A reload hands a new Rules object: the same functions judge by the new limit at once.
    smaller = dataclasses.replace(RULES_OBJ, max_message_bytes=1000)
    assert too_large(1001, smaller) and not too_large(1001, RULES_OBJ)
    assert size_limit(smaller) == 1000
