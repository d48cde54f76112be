"""Content identity: the same mail delivered twice, or retried by an MTA, hashes the same.

The SHA-256 is taken over the raw bytes with the *leading* trace fields removed (the ones each hop
or delivery prepends: Return-Path, Received, Delivered-To, X-Original-To, and the fields the intake
adds itself), and with CRLF folded to LF, so that a copy fetched over IMAP (CRLF) and the same file
given to `intake ingest` (LF) agree.
"""

from __future__ import annotations

import hashlib
import re

from daemon.model import Work

TRACE_FIELDS = frozenset({b"return-path", b"received", b"delivered-to", b"x-original-to", b"x-intake-received"})
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")  # used with .match(data, pos): no ^


def content_identity(raw: bytes) -> str:
    data = raw.replace(b"\r\n", b"\n")
    pos = 0
    n = len(data)
    while pos < n:
        m = _FIELD.match(data, pos)
        if not m or m.group(1).lower() not in TRACE_FIELDS:
            break
        # Skip this field and its continuation lines.
        end = data.find(b"\n", pos)
        while end != -1 and end + 1 < n and data[end + 1 : end + 2] in (b" ", b"\t"):
            end = data.find(b"\n", end + 1)
        pos = n if end == -1 else end + 1
    return hashlib.sha256(data[pos:]).hexdigest()


def mark_duplicate(work: Work) -> None:
    """The same content was recorded before (`work.known.first_id`): this arrival becomes a new row that
    points at the first, and is not scanned or opened again."""
    if work.known.first_id is not None:
        work.done = True
