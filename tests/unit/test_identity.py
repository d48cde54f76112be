"""Content identity (daemon/stages/identity.py): the same mail delivered twice hashes the same; a duplicate
is decided from what the store knew, and stops the walk before the scan."""

from __future__ import annotations

from daemon.model import Arrival, Known, Work
from daemon.stages.identity import content_identity, mark_duplicate

MAIL = b"From: a@example.jp\r\nSubject: x\r\n\r\nbody\r\n"


def test_crlf_and_lf_copies_agree() -> None:
    assert content_identity(MAIL) == content_identity(MAIL.replace(b"\r\n", b"\n"))


def test_leading_trace_fields_do_not_count() -> None:
    relayed = b"Received: from relay by mx; Sat, 10 Jan 2026 09:00:00 +0900\r\nReturn-Path: <a@example.jp>\r\n" + MAIL
    assert content_identity(relayed) == content_identity(MAIL)


def test_different_content_differs() -> None:
    assert content_identity(MAIL) != content_identity(MAIL.replace(b"body", b"other"))


def test_mark_duplicate_only_when_a_first_record_exists() -> None:
    arrival = Arrival(raw=MAIL, source="test")
    fresh = Work(arrival=arrival, sha256=None, content_id="c", size=len(MAIL))
    mark_duplicate(fresh)
    assert not fresh.done
    again = Work(arrival=arrival, sha256=None, content_id="c", size=len(MAIL), known=Known(first_id=3))
    mark_duplicate(again)
    assert again.done and again.reasons == []
