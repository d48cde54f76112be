"""R5: ClamAV scans the whole raw message before anything of ours opens it, then each attachment
on its own so that a verdict names the file. Scanner trouble holds the message (fail closed)."""

from __future__ import annotations

import hashlib
from typing import Protocol

from daemon.model import SCAN_INCOMPLETE, SCAN_UNAVAILABLE, VIRUS, Part, Work
from daemon.scanner import ScanResult, ScanUnavailable, finding_reason


class ScannerLike(Protocol):
    def scan(self, data: bytes) -> ScanResult: ...


# The attachment verdict a clamd finding implies (reason -> verdict).
_VERDICT_OF = {VIRUS: "infected", "attachment_macro": "macro", "attachment_encrypted": "encrypted"}


def _apply_finding(work: Work, signature: str, part: Part | None) -> None:
    reason = finding_reason(signature)
    work.add_reason(reason)
    if reason == VIRUS and work.virus is None:
        work.virus = signature
    if part is not None:
        part.signature = signature
        if reason in _VERDICT_OF:
            part.verdict = _VERDICT_OF[reason]
        elif reason == SCAN_INCOMPLETE:
            part.detail = "scan_incomplete"


def scan_message(work: Work, scanner: ScannerLike) -> None:
    try:
        result = scanner.scan(work.arrival.raw)
    except ScanUnavailable:
        work.add_reason(SCAN_UNAVAILABLE)
        work.done = True
        return
    if result.infected and result.signature:
        _apply_finding(work, result.signature, None)


def scan_attachments(work: Work, scanner: ScannerLike) -> None:
    for part in work.attachments:
        part.sha256 = hashlib.sha256(part.data).hexdigest()
        try:
            result = scanner.scan(part.data)
        except ScanUnavailable:
            work.add_reason(SCAN_UNAVAILABLE)
            work.done = True
            return
        if result.infected and result.signature:
            _apply_finding(work, result.signature, part)
