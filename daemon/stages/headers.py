"""Who sent it: the header block alone, read before the size rule and the scan, for every record (issue 14.4).

Staff must know whose mail is held (clamd down), too large or refused, to tell the sender. So From,
Subject, Date and Message-ID come from the header block, bounded to its first `HEAD_LIMIT` bytes and never
the body, before anything else can stop the walk; the parse stage reads the same fields the same way.

Every header read accepts what the stdlib may return under compat32 (a str with surrogate escapes, an
`email.header.Header`, bytes) and decodes raw 8-bit text with the body decoders (`daemon.decode`), because
real mailers (GNU mailutils 3.15) put raw UTF-8 in headers and label it wrongly.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import re
from email.message import Message

from daemon.decode import decode_header
from daemon.decode.headers import HeaderValue
from daemon.model import Work

HEAD_LIMIT = 64 * 1024
_BLANK = re.compile(rb"\r?\n\r?\n|\r\r")
_FIELD_TEXT_LIMIT = 4096  # characters kept of one field: a subject of a megabyte is not a subject


def header_text(value: HeaderValue | None) -> str:
    """Any header value the stdlib returns (str, Header, bytes), decoded and unfolded; "" when absent."""
    if value is None:
        return ""
    try:
        return decode_header(value).text.strip()
    except Exception:  # a value no decoder can read is no value, never a crash of the walk
        return ""


def head_of(raw: bytes) -> bytes:
    """The header block alone: up to the first blank line, at most HEAD_LIMIT bytes."""
    head = raw[:HEAD_LIMIT]
    m = _BLANK.search(head)
    return head[: m.start()] + b"\n" if m else head


def read_identity(msg: Message, work: Work) -> None:
    """Message-ID, From (address), Subject and Date of a parsed message (or header block) onto `work`."""
    work.message_id = header_text(msg.get("Message-ID"))[:_FIELD_TEXT_LIMIT] or None
    if msg.get("From") is not None:
        _name, addr = email.utils.parseaddr(header_text(msg.get("From")))
        work.from_address = addr[:_FIELD_TEXT_LIMIT] or None
    if msg.get("Subject") is not None:
        work.subject = header_text(msg.get("Subject"))[:_FIELD_TEXT_LIMIT]
    if msg.get("Date") is not None:
        work.date_header = header_text(msg.get("Date"))[:_FIELD_TEXT_LIMIT] or None


def read_headers(work: Work) -> None:
    """The identifying fields of the header block, whatever happens to the message afterwards."""
    head = head_of(work.arrival.raw)
    if not head.strip():
        return
    try:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head, headersonly=True)
        read_identity(msg, work)
    except Exception:  # a header block the stdlib cannot read: the parse stage decides what it is
        return
