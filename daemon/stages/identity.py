"""Content identity: the same mail delivered twice, or retried by an MTA, hashes the same.

The SHA-256 is taken over the raw bytes with the *leading* trace fields removed (the ones each hop
or delivery prepends: Return-Path, Received, Delivered-To, X-Original-To, and the fields the intake
adds itself), and with CRLF folded to LF, so that a copy fetched over IMAP (CRLF) and the same file
given to `intake ingest` (LF) agree.

A duplicate is never scanned or opened again, so the identity is a security boundary (issue 16.1): two
different contents must never share one. Hence:
- a trace field is removed only when it is a whole line ended by LF (with its continuation lines), at most
  `MAX_TRACE_LINE` bytes a line and `MAX_TRACE_BLOCK` bytes in all: a message with bare CR line ends, or
  one long "Received:" line, keeps every byte in its identity;
- what remains must be a mail: a header field first, at least one line end, and something besides white
  space. Otherwise the input is *degenerate* (empty, trace fields only, no line ends, binary noise) and has
  no identity at all (`None`): it is never a duplicate of anything, and is scanned like any new mail;
The hash of a mail that is not degenerate is what it always was, so identities stored before this rule
still match.
"""

from __future__ import annotations

import hashlib
import re

from daemon.model import Work

TRACE_FIELDS = frozenset({b"return-path", b"received", b"delivered-to", b"x-original-to", b"x-intake-received"})
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")  # used with .match(data, pos): no ^
MAX_TRACE_LINE = 998 * 4  # RFC 5322's line limit, with room for long Received: fields some MTAs write
MAX_TRACE_BLOCK = 64 * 1024


def _trace_end(data: bytes) -> int:
    """Where the leading trace fields end: only whole LF-ended lines, within the bounds above."""
    pos = 0
    n = len(data)
    while pos < n and pos < MAX_TRACE_BLOCK:
        m = _FIELD.match(data, pos)
        if not m or m.group(1).lower() not in TRACE_FIELDS:
            break
        # The field and its continuation lines, each ended by LF; a field without an LF is kept.
        start = pos
        end = data.find(b"\n", pos)
        while end != -1 and end - start <= MAX_TRACE_LINE and data[end + 1 : end + 2] in (b" ", b"\t"):
            start = end + 1
            end = data.find(b"\n", start)
        if end == -1 or end - start > MAX_TRACE_LINE or end + 1 > MAX_TRACE_BLOCK:
            break
        pos = end + 1
    return pos


def is_degenerate(rest: bytes) -> bool:
    """A remainder that is not a mail: no header field first, no line end, or nothing but white space."""
    return not rest.strip() or b"\n" not in rest or not _FIELD.match(rest)


def content_identity(raw: bytes) -> str | None:
    """The content's identity, or None for a degenerate input (which never matches another)."""
    data = raw.replace(b"\r\n", b"\n")
    rest = data[_trace_end(data) :]
    if is_degenerate(rest):
        return None
    return hashlib.sha256(rest).hexdigest()


def mark_duplicate(work: Work) -> None:
    """The same content was recorded before (`work.known.first_id`): this arrival becomes a new row that
    points at the first, and is not scanned or opened again; it inherits the first record's scan verdict
    (a duplicate of quarantined mail is quarantined, pipeline.py)."""
    if work.known.first_id is not None and work.content_id is not None:
        work.done = True
