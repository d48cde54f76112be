"""R4: every attachment gets a verdict by content (daemon.stages.classify); verdicts become reasons.

A verdict clamd already gave (daemon.stages.scan_policy) outranks the classifier's."""

from __future__ import annotations

from daemon.model import (
    ATTACHMENT_ENCRYPTED,
    ATTACHMENT_MACRO,
    ATTACHMENT_NOT_ALLOWED,
    ATTACHMENT_TYPE_MISMATCH,
    VIRUS,
    Work,
)
from daemon.rules import Rules
from daemon.stages.classify import Classification, ContainerLimits, classify
from daemon.stages.scan_policy import SCANNER_VERDICTS

REASON_OF_VERDICT = {
    "not_allowed": ATTACHMENT_NOT_ALLOWED,
    "type_mismatch": ATTACHMENT_TYPE_MISMATCH,
    "macro": ATTACHMENT_MACRO,
    "encrypted": ATTACHMENT_ENCRYPTED,
    "infected": VIRUS,
}


def classify_attachments(work: Work, rules: Rules, limits: ContainerLimits) -> None:
    for part in work.attachments:
        if part.verdict == "infected":
            # Malware is not opened by us; its kind is not needed to quarantine it.
            part.kind, part.format, part.mime = "other", "infected", "application/octet-stream"
        elif part.forwarded:
            part.kind, part.format, part.mime = "other", "message", "message/rfc822"
            part.verdict, part.detail = "not_allowed", "forwarded_mail"
        else:
            c: Classification = classify(part.data, part.filename, part.declared_mime, rules.allowed_kinds, limits)
            part.kind, part.format, part.mime = c.kind, c.format, c.mime
            if part.signature is not None and part.verdict in SCANNER_VERDICTS:
                part.detail = part.detail or c.detail
            else:
                part.verdict, part.detail = c.verdict, c.detail
        reason = REASON_OF_VERDICT.get(part.verdict)
        if reason:
            work.add_reason(reason)
