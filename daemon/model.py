"""Plain data that travels through the stages: what a source hands in, and the message in progress."""

from __future__ import annotations

import datetime as dt
import email.message
from dataclasses import dataclass, field
from typing import Any

# Reason codes (public interface: do not rename).
TOO_LARGE = "too_large"
ATTACHMENT_NOT_ALLOWED = "attachment_not_allowed"
ATTACHMENT_TYPE_MISMATCH = "attachment_type_mismatch"
ATTACHMENT_MACRO = "attachment_macro"
ATTACHMENT_ENCRYPTED = "attachment_encrypted"
VIRUS = "virus"
SCAN_UNAVAILABLE = "scan_unavailable"
SCAN_INCOMPLETE = "scan_incomplete"
MALFORMED = "malformed"
MALFORMED_STRUCTURE = "malformed_structure"  # over a structure limit of the rules' [limits] (issue 16)
PROCESSING_FAILED = "processing_failed"

# Flags raised here (the comment stage raises the rest; public interface).
DUPLICATE_TEXT = "duplicate_text"

# Statuses (public interface).
ACCEPTED = "accepted"
REJECTED = "rejected"
QUARANTINED = "quarantined"
HELD = "held"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Arrival:
    """One message as a source received it. `received_at` is the server's receipt time when the
    source knows it (IMAP INTERNALDATE, the LMTP accept time, `ingest --received-at`)."""

    raw: bytes
    source: str  # ingest | imap | lmtp | smtp
    received_at: dt.datetime | None = None
    received_source: str | None = None  # argument | imap_internaldate | lmtp | smtp
    size: int | None = None  # the declared size when the body was not downloaded (IMAP too_large)
    imap: dict[str, Any] | None = None  # account, mailbox, uidvalidity, uid
    # Bytes the intake itself put on top (the LMTP listener's Received: field): not part of the
    # message as delivered, so not counted against the size limit (R3).
    trace_bytes: int = 0


@dataclass(frozen=True)
class Known:
    """What the store already knows of an arrival, read once before the stages run."""

    settled: bool = False  # this very arrival is recorded and not held: nothing to do
    record_id: int | None = None  # the record this arrival continues (retry of a held record)
    status: str | None = None  # of that record, when settled
    reasons: tuple[str, ...] = ()
    attempts: int = 0
    received_at: dt.datetime | None = None  # a retry keeps the first arrival's time and window flags
    received_source: str | None = None
    flags: tuple[str, ...] = ()
    first_id: int | None = None  # the first record of the same content: this arrival is a duplicate
    first_status: str | None = None
    first_virus: str | None = None  # the first record's signature: a duplicate of quarantined mail inherits it


@dataclass(frozen=True)
class Outcome:
    """What `Intake.process` hands back once the record is durable: enough for a source to acknowledge
    (IMAP move to the status's folder, the LMTP reply) without reading the database again."""

    id: int
    status: str
    reasons: tuple[str, ...] = ()
    imap: dict[str, Any] | None = None  # the IMAP key of the record, when it came over IMAP


@dataclass
class Part:
    """An attachment (R4): a MIME leaf that is not a body part (R4a)."""

    position: int
    data: bytes
    filename: str | None
    declared_mime: str | None
    kind: str = "other"
    format: str = "unknown"
    mime: str = "application/octet-stream"
    verdict: str = "not_allowed"
    signature: str | None = None
    detail: str | None = None
    sha256: str = ""
    # A forwarded mail (message/rfc822) is not allowed whatever it holds (R4): not opened, not classified.
    forwarded: bool = False


@dataclass
class BodyPart:
    """A body part (text/plain, text/html alternatives, cid: images, S/MIME signature)."""

    role: str  # text | html | inline | signature
    part: email.message.Message


@dataclass
class Work:
    """The message in progress: each stage reads it and adds its findings."""

    arrival: Arrival
    sha256: str | None
    content_id: str | None
    size: int
    known: Known = field(default_factory=lambda: Known())
    received_at: dt.datetime | None = None
    received_source: str | None = None
    reasons: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    virus: str | None = None
    message_id: str | None = None
    from_address: str | None = None
    subject: str | None = None
    date_header: str | None = None  # the sender's Date: as written (never the arrival time, R2)
    defects: list[str] = field(default_factory=list)
    attachments: list[Part] = field(default_factory=list)
    body_parts: list[BodyPart] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=lambda: {"comments": [], "submitter": {}, "texts": []})
    duplicate_text_of: int | None = None
    sources: list[Any] = field(default_factory=list)  # comment.TextSource: the texts the comment stage reads
    comment_keys: list[str] = field(default_factory=list)  # hashed duplicate keys of the comment items
    done: bool = False  # a stage decided the outcome; later stages are skipped
    timings: dict[str, float] = field(default_factory=dict)

    def add_reason(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def add_flag(self, flag: str) -> None:
        if flag not in self.flags:
            self.flags.append(flag)


# The order of precedence of statuses (the first that applies wins).
def decide_status(reasons: list[str]) -> str:
    if VIRUS in reasons:
        return QUARANTINED
    if SCAN_UNAVAILABLE in reasons:
        return HELD
    if reasons:
        return REJECTED
    return ACCEPTED
