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


# -- issue 16.1: the identity cannot be gamed ----------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DEGENERATE = [
    b"",
    b"\r\n",
    b"   \n\t\n",
    b"Return-Path: <a@example.jp>",  # trace fields only, no line end
    b"Received: from a by b\r\nReturn-Path: <x@y>\r\n",  # trace fields only
    b"Received: from a by b\rSubject: virus\r\rX5O!P%@AP",  # bare CR line ends
    b"Subject: no line end at all",
    b"\x00\x01\x02binary noise\n\n",
]


def test_degenerate_inputs_have_no_identity() -> None:
    for raw in DEGENERATE:
        assert content_identity(raw) is None, raw


def test_bare_cr_mail_after_a_trace_field_keeps_its_content() -> None:
    # The recorded bypass: "Received:" + bare CR line ends skipped to the end, so every such mail hashed as b"".
    a = b"Received: from x by y\rSubject: a\r\rbody A\r"
    b = b"Received: from x by y\rSubject: b\r\rbody B\r"
    assert content_identity(a) is None and content_identity(b) is None


def test_an_overlong_trace_line_is_not_skipped() -> None:
    long_received = b"Received: " + b"x" * 10_000 + b"\n"
    assert content_identity(long_received + MAIL) != content_identity(MAIL)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=400))
def test_different_bytes_never_share_an_identity_unless_only_trace_or_line_ends_differ(a: bytes, b: bytes) -> None:
    ia, ib = content_identity(a), content_identity(b)
    assert ia is None or len(ia) == 64  # total: never raises, a hex digest or None
    if ia is not None and ia == ib:
        # The only allowed collisions: the same content after folding CRLF and removing leading trace lines.
        from daemon.stages.identity import _trace_end

        fa, fb = a.replace(b"\r\n", b"\n"), b.replace(b"\r\n", b"\n")
        assert fa[_trace_end(fa) :] == fb[_trace_end(fb) :]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"Received", b"Return-Path", b"Delivered-To", b"X-Original-To"]), max_size=4),
    st.binary(max_size=200),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_a_trace_only_or_line_endless_prefix_never_matches_another_mail(
    fields: list[bytes], tail: bytes, eol: bytes
) -> None:
    raw = b"".join(f + b": v" + eol for f in fields) + tail
    ident = content_identity(raw)
    if ident is not None:
        # A real identity always hashes a mail-shaped remainder: a field, a line end, non-blank content.
        assert b"\n" in tail.replace(b"\r\n", b"\n") or eol != b"\r"
    assert content_identity(b"Received: v" + eol) is None
