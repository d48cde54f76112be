"""R5's policy on plain strings: what a clamd signature means (daemon.stages.scan_policy), and the scan
stage applying it to a message with a stand-in scanner. No clamd needed."""

from __future__ import annotations

import pytest

from daemon.model import SCAN_UNAVAILABLE, Arrival, Part, Work
from daemon.scanner import ScanResult, ScanUnavailable
from daemon.stages.scan import scan_attachments, scan_message
from daemon.stages.scan_policy import SCANNER_VERDICTS, Finding, finding_reason, read_finding


@pytest.mark.parametrize(
    ("signature", "reason", "verdict", "detail"),
    [
        # clamd's macro heuristic is the consultation's "no macros" rule, not malware
        ("Heuristics.OLE2.ContainsMacros", "attachment_macro", "macro", None),
        ("Heuristics.OLE2.ContainsMacros.XLM", "attachment_macro", "macro", None),
        # encrypted archives and documents: refused as encrypted (R4), not as viruses
        ("Heuristics.Encrypted.Zip", "attachment_encrypted", "encrypted", None),
        ("Heuristics.Encrypted.PDF", "attachment_encrypted", "encrypted", None),
        ("Heuristics.Encrypted.RAR", "attachment_encrypted", "encrypted", None),
        # clamd gave up on a limit: never taken as clean, but not a virus either
        ("Heuristics.Limits.Exceeded.MaxFileSize", "scan_incomplete", None, "scan_incomplete"),
        ("Heuristics.Limits.Exceeded.MaxScanSize", "scan_incomplete", None, "scan_incomplete"),
        ("Heuristics.Limits.Exceeded.MaxRecursion", "scan_incomplete", None, "scan_incomplete"),
        # everything else is a virus, other heuristics included (fail closed)
        ("Win.Test.EICAR_HDB-1", "virus", "infected", None),
        ("Eicar-Signature", "virus", "infected", None),
        ("Doc.Downloader.Emotet-7000000-0", "virus", "infected", None),
        ("Heuristics.Phishing.Email.SpoofedDomain", "virus", "infected", None),
        ("Heuristics.Broken.Executable", "virus", "infected", None),
        # the names are matched as clamd spells them: a look-alike is not a harmless heuristic
        ("heuristics.ole2.containsmacros", "virus", "infected", None),
        ("Heuristics.Encrypted", "virus", "infected", None),
    ],
)
def test_signature_to_reason(signature: str, reason: str, verdict: str | None, detail: str | None) -> None:
    assert finding_reason(signature) == reason
    assert read_finding(signature) == Finding(reason, verdict, detail)


def test_the_verdicts_clamd_gives_are_the_ones_that_outrank_the_classifier() -> None:
    assert frozenset({"infected", "macro", "encrypted"}) == SCANNER_VERDICTS


# -- The stage applies the policy (a stand-in scanner: plain data in, plain data out) ----------------


class Stub:
    """Answers each scan from a list: a signature (infected), None (clean) or ScanUnavailable."""

    def __init__(self, *answers: str | type[ScanUnavailable] | None) -> None:
        self.answers = list(answers)

    def scan(self, data: bytes) -> ScanResult:
        answer = self.answers.pop(0)
        if answer is ScanUnavailable:
            raise ScanUnavailable("clamd_unreachable:test")
        return ScanResult(True, answer) if isinstance(answer, str) else ScanResult(False)


def work(*attachments: bytes) -> Work:
    w = Work(arrival=Arrival(raw=b"Subject: x\r\n\r\nbody\r\n", source="ingest"), sha256=None, content_id=None, size=1)
    w.attachments = [Part(i, data, f"a{i}.docx", None) for i, data in enumerate(attachments)]
    return w


def test_a_virus_in_the_message_names_it() -> None:
    w = work()
    scan_message(w, Stub("Win.Test.EICAR_HDB-1"))
    assert w.reasons == ["virus"] and w.virus == "Win.Test.EICAR_HDB-1" and not w.done


def test_each_attachment_gets_the_finding_its_signature_means() -> None:
    w = work(b"macro", b"locked", b"huge", b"evil", b"clean")
    scan_attachments(
        w,
        Stub(
            "Heuristics.OLE2.ContainsMacros",
            "Heuristics.Encrypted.Zip",
            "Heuristics.Limits.Exceeded.MaxFileSize",
            "Win.Test.EICAR_HDB-1",
            None,
        ),
    )
    got = [(p.verdict, p.detail, p.signature) for p in w.attachments]
    assert got == [
        ("macro", None, "Heuristics.OLE2.ContainsMacros"),
        ("encrypted", None, "Heuristics.Encrypted.Zip"),
        ("not_allowed", "scan_incomplete", "Heuristics.Limits.Exceeded.MaxFileSize"),
        ("infected", None, "Win.Test.EICAR_HDB-1"),
        ("not_allowed", None, None),  # untouched: the classifier decides
    ]
    assert w.reasons == ["attachment_macro", "attachment_encrypted", "scan_incomplete", "virus"]
    assert w.virus == "Win.Test.EICAR_HDB-1"
    assert all(p.sha256 for p in w.attachments)


def test_a_scanner_that_is_down_holds_the_message() -> None:
    w = work(b"one", b"two")
    scan_attachments(w, Stub(None, ScanUnavailable))
    assert w.reasons == [SCAN_UNAVAILABLE] and w.done
