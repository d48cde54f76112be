"""R5: ClamAV scans the whole raw message before anything of ours opens it, then each attachment
on its own so that a verdict names the file. Scanner trouble holds the message (fail closed).

What a finding means (signature -> reason, verdict) is decided in stages/scan_policy.py; this stage
calls the scanner and records the decision on the message and its parts."""

from __future__ import annotations

import hashlib
from typing import Protocol

from daemon.model import SCAN_UNAVAILABLE, VIRUS, Part, Work
from daemon.scanner import ScanResult, ScanUnavailable
from daemon.stages.scan_policy import read_finding


class ScannerLike(Protocol):
    def scan(self, data: bytes) -> ScanResult: ...


def _apply_finding(work: Work, signature: str, part: Part | None) -> None:
    finding = read_finding(signature)
    work.add_reason(finding.reason)
    if finding.reason == VIRUS and work.virus is None:
        work.virus = signature
    if part is not None:
        part.signature = signature
        if finding.verdict is not None:
            part.verdict = finding.verdict
        elif finding.detail is not None:
            part.detail = finding.detail


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
