"""R5's policy: what a clamd finding means. Pure: a signature name in, reason codes out.

The clamd adapter (daemon/scanner.py) only speaks the protocol and returns the signature name;
the scan stage (stages/scan.py) applies what this module decides to the message and its parts;
the verdicts stage (stages/verdicts.py) lets a verdict that clamd gave outrank the classifier's.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.model import ATTACHMENT_ENCRYPTED, ATTACHMENT_MACRO, SCAN_INCOMPLETE, VIRUS

__all__ = ["SCANNER_VERDICTS", "Finding", "finding_reason", "read_finding"]


def finding_reason(signature: str) -> str:
    """Map a clamd finding to a reason code. Policy heuristics are not viruses; limits are never clean."""
    if signature.startswith("Heuristics.OLE2.ContainsMacros"):
        return ATTACHMENT_MACRO
    if signature.startswith("Heuristics.Encrypted."):
        return ATTACHMENT_ENCRYPTED
    if signature.startswith("Heuristics.Limits.Exceeded"):
        return SCAN_INCOMPLETE
    return VIRUS


# The attachment verdict a clamd finding implies (reason -> verdict).
_VERDICT_OF = {VIRUS: "infected", ATTACHMENT_MACRO: "macro", ATTACHMENT_ENCRYPTED: "encrypted"}
# A verdict clamd already gave (infected, or a macro / encryption heuristic) outranks our own "allowed".
SCANNER_VERDICTS = frozenset(_VERDICT_OF.values())


@dataclass(frozen=True)
class Finding:
    """What one clamd finding means: the message's reason and, for an attachment, its verdict or detail."""

    reason: str  # a reason code of the record (virus, attachment_macro, ...)
    verdict: str | None  # the attachment's verdict, when the finding implies one
    detail: str | None  # the attachment's detail otherwise (a scan that hit clamd's limits)


def read_finding(signature: str) -> Finding:
    reason = finding_reason(signature)
    verdict = _VERDICT_OF.get(reason)
    detail = "scan_incomplete" if verdict is None and reason == SCAN_INCOMPLETE else None
    return Finding(reason, verdict, detail)
