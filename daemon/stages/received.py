"""R2: when did the ministry's server receive the mail, and is that inside the window (JST)?

The source's own time wins (IMAP INTERNALDATE, the LMTP accept time, `ingest --received-at`); else
the date of the topmost Received: field (the last hop, i.e. our server); else now, flagged
`received_at_uncertain`. The sender's Date: header is never used: it is the sender's claim.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re

from daemon.model import Work
from daemon.rules import Rules

RECEIVED_AT_UNCERTAIN = "received_at_uncertain"
_FIELD = re.compile(rb"^received[ \t]*:", re.IGNORECASE)


def topmost_received_date(raw: bytes) -> dt.datetime | None:
    """The date after the ';' of the first Received: field of the header block, if it parses."""
    head_end = raw.find(b"\n\n")
    crlf_end = raw.find(b"\r\n\r\n")
    ends = [e for e in (head_end, crlf_end) if e != -1]
    head = raw[: min(ends)] if ends else raw[:65536]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    for i, line in enumerate(lines):
        if _FIELD.match(line):
            value = line.split(b":", 1)[1]
            for cont in lines[i + 1 :]:
                if cont[:1] in (b" ", b"\t"):
                    value += b" " + cont.strip()
                else:
                    break
            text = value.decode("ascii", "replace")
            if ";" not in text:
                return None
            try:
                when = email.utils.parsedate_to_datetime(text.rsplit(";", 1)[1].strip())
            except (TypeError, ValueError, IndexError):
                return None
            return when if when.tzinfo else None
    return None


def determine_received(work: Work, rules: Rules, now: dt.datetime | None = None) -> None:
    if work.known.received_at is not None:
        # A retry of a held record: the first arrival's time and window flags stand (not a new arrival).
        work.received_at, work.received_source = work.known.received_at, work.known.received_source
        for flag in work.known.flags:
            work.add_flag(flag)
        return
    if work.arrival.received_at is not None:
        work.received_at = work.arrival.received_at
        work.received_source = work.arrival.received_source or "source"
    else:
        top = topmost_received_date(work.arrival.raw)
        if top is not None:
            work.received_at, work.received_source = top, "received_header"
        else:
            work.received_at = now or dt.datetime.now(dt.UTC)
            work.received_source = "now"
            work.add_flag(RECEIVED_AT_UNCERTAIN)
    flag = rules.window_flag(work.received_at)
    if flag:
        work.add_flag(flag)
